"""The collator: CE targets are the answers only, and evaluation prompts equal training prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from utils.data.collate import IGNORE_INDEX, VideoChatCollator, sampled_fps
from utils.data.mevis import MeViSDataset


@pytest.fixture(scope="module")
def processor(tiny_parts):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_parts["backbone"])


@pytest.fixture(scope="module")
def samples(mevis_root: Path):
    dataset = MeViSDataset(mevis_root, "train", num_frames=4, train=True, expressions_per_sample=2)
    return [dataset[0], dataset[3]]


def test_labels_are_the_assistant_answer_and_its_end_token(processor, samples) -> None:
    batch = VideoChatCollator(processor, 128, 6.0)(samples)
    for row, sample in enumerate(samples):
        labels = batch["labels"][row]
        target = processor.tokenizer.decode(labels[labels != IGNORE_INDEX])
        assert target == sample.conversation[-1]["content"] + "<|im_end|>"


def test_batch_shapes(processor, samples) -> None:
    batch = VideoChatCollator(processor, 128, 6.0)(samples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["video_grid_thw"].tolist() == [[2, 8, 8]] * 2  # 4 frames / temporal patch 2; 112 px / 14
    assert [f.shape for f in batch["sam_frames"]] == [(4, 3, 128, 128)] * 2
    assert [m.shape for m in batch["gt_masks"]] == [(2, 4, 128, 128)] * 2
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in batch["gt_masks"])
    assert 0 <= min(f.min() for f in batch["sam_frames"]) and max(f.max() for f in batch["sam_frames"]) <= 1


def test_evaluation_prompt_is_the_training_prompt_up_to_the_answer(processor, samples) -> None:
    train = VideoChatCollator(processor, 128, 6.0)(samples[:1])
    test = VideoChatCollator(processor, 128, 6.0, inference=True)(samples[:1])
    answer_start = int((train["labels"][0] != IGNORE_INDEX).nonzero()[0])
    assert torch.equal(test["input_ids"][0], train["input_ids"][0, :answer_start])
    assert "labels" not in test and "gt_masks" not in test
    torch.testing.assert_close(test["pixel_values_videos"], train["pixel_values_videos"])
    torch.testing.assert_close(test["second_per_grid_ts"], train["second_per_grid_ts"])


def test_sampled_fps_follows_the_frame_spacing() -> None:
    assert sampled_fps([0, 2, 4, 6], 6.0) == 3.0
    assert sampled_fps([0, 1, 2], 6.0) == 6.0
    assert sampled_fps([5], 6.0) == 6.0

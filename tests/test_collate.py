"""The collator: CE targets are the answers only, images take Qwen's image path, time comes from timestamps,
and a recipe's training samples are prompted and sized as the benchmark path prompts and sizes them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from evaluation.benchmarks import build_benchmark_dataset
from evaluation.video_seg_predictor import UniGRVideoSegPredictor
from utils.data.collate import IGNORE_INDEX, SampleCollator
from utils.data.input_settings import InputSettings
from utils.data.mevis import MeViSDataset
from utils.data.mixture import build_training_mixture
from utils.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def processor(tiny_parts):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_parts["backbone"])


@pytest.fixture(scope="module")
def samples(mevis_root: Path):
    dataset = MeViSDataset(mevis_root, "train", num_frames=4, train=True, expressions_per_sample=2)
    return [dataset[0], dataset[3]]


def test_labels_are_the_assistant_answer_and_its_end_token(processor, samples) -> None:
    batch = SampleCollator(processor, 128)(samples)
    for row, sample in enumerate(samples):
        labels = batch["labels"][row]
        target = processor.tokenizer.decode(labels[labels != IGNORE_INDEX])
        assert target == sample.conversation[-1]["content"] + "<|im_end|>"


def test_batch_shapes(processor, samples) -> None:
    batch = SampleCollator(processor, 128)(samples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["mm_token_type_ids"].shape == batch["input_ids"].shape
    assert batch["video_grid_thw"].tolist() == [[2, 8, 8]] * 2  # 4 frames / temporal patch 2; 112 px / 14
    assert [f.shape for f in batch["sam_frames"]] == [(4, 3, 128, 128)] * 2
    assert [m.shape for m in batch["gt_masks"]] == [(2, 4, 128, 128)] * 2
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in batch["gt_masks"])
    assert 0 <= min(f.min() for f in batch["sam_frames"]) and max(f.max() for f in batch["sam_frames"]) <= 1


def test_an_image_goes_through_qwens_image_path_beside_a_video(processor, samples) -> None:
    image = dataclasses.replace(
        samples[0],
        frames=samples[0].frames[:1],
        frame_names=["0"],
        masks=samples[0].masks[:, :1],
        timestamps=None,
        medium="image",
    )
    batch = SampleCollator(processor, 128)([samples[1], image])
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]] and batch["video_grid_thw"].tolist() == [[2, 8, 8]]
    image_tokens = batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    video_tokens = batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert image_tokens[1].sum() == 16 and image_tokens[0].sum() == 0  # 8 x 8 patches merged 2 x 2
    assert video_tokens[0].sum() == 32 and video_tokens[1].sum() == 0
    assert (batch["mm_token_type_ids"][1] == 1).sum() == 16


def test_time_between_temporal_patches_comes_from_the_frame_timestamps(processor, samples) -> None:
    slow = dataclasses.replace(samples[0], timestamps=samples[0].timestamps * 4)
    fast, slowed = SampleCollator(processor, 128)([samples[0]]), SampleCollator(processor, 128)([slow])
    torch.testing.assert_close(slowed["second_per_grid_ts"], fast["second_per_grid_ts"] * 4)
    spacing = float(np.diff(samples[0].timestamps).mean())
    torch.testing.assert_close(fast["second_per_grid_ts"], torch.tensor([2 * spacing]))


def test_a_video_without_timestamps_is_refused(processor, samples) -> None:
    with pytest.raises(ValueError, match="timestamps"):
        SampleCollator(processor, 128)([dataclasses.replace(samples[0], timestamps=None)])


def test_training_and_evaluation_prompts_and_frame_sizes_agree(processor, tiny_model, mevis_root: Path, tmp_path):
    """A sample built by the quick-start recipe's mixture and one built by the MeViS benchmark path (the
    predictor's frame choice and collation) have the same prompt, up to the expression, and the same sizes."""
    cfg = load_config(
        ROOT / "configs/quickstart.yaml",
        ["parts_dir=unused", "data.num_frames=4", "data.datasets.synthetic_region_qa=null"],
    )
    cfg.data.datasets.synthetic_mevis.root = str(mevis_root)
    train_sample = build_training_mixture(cfg.data, seed=0)[0]
    train_batch = SampleCollator(processor, 128)([train_sample])

    model, _ = tiny_model
    model.config.inputs = InputSettings.from_data_config(cfg.data).to_dict()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    predictor = UniGRVideoSegPredictor(tmp_path)
    dataset, _ = build_benchmark_dataset("mevis", mevis_root)
    eval_sample = dataset[0]
    indices = predictor.llm_frames(eval_sample)
    seen = dataclasses.replace(
        eval_sample, frames=eval_sample.frames[indices], timestamps=eval_sample.timestamps[indices], masks=None
    )
    eval_batch = predictor.collator([seen])

    def prompt(batch: dict, expression: str) -> str:
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()]
        if "labels" in batch:
            ids = ids[: int((batch["labels"][0] != IGNORE_INDEX).nonzero()[0])]
        return processor.tokenizer.decode(ids).replace(expression, "{expression}")

    assert len(indices) == cfg.data.num_frames == len(train_sample.frames)
    assert prompt(train_batch, train_sample.meta["exp"]) == prompt(eval_batch, eval_sample.meta["exp"])
    assert eval_batch["video_grid_thw"].tolist() == train_batch["video_grid_thw"].tolist()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_train_referring_datasets_on_the_one_expression_prompt_evaluation_asks(path: Path) -> None:
    data = OmegaConf.to_container(load_config(path).get("data") or {}, resolve=False)
    for name, entry in (data.get("datasets") or {}).items():
        options = (entry or {}).get("options") or {}  # a null entry is left out of the mix
        assert options.get("expressions_per_sample", 1) == 1, f"{path.name}: {name}"

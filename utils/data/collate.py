"""Samples -> model inputs: Qwen's chat text and video tensors, SAM2 frames, mask targets, CE labels.

Training and evaluation both go through :class:`VideoChatCollator`, so prompts, frame resizing and
pixel budgets are the same at both times (``inference=True`` only drops the answer and the labels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ProcessorMixin
from transformers.video_utils import VideoMetadata

from utils.data.prompts import VIDEO_PLACEHOLDER
from utils.data.schema import Sample
from utils.video.model_inputs import sam2_frames

IGNORE_INDEX = -100


def resize_masks(sample: Sample, size: int) -> torch.Tensor:
    """The sample's ``(O, T, H, W)`` bool masks -> ``(O, T, size, size)`` float in {0, 1}."""
    masks = torch.from_numpy(sample.masks).float()
    resized = F.interpolate(masks, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (resized > 0.5).float()


def sampled_fps(frame_indices: list[int], video_fps: float) -> float:
    """Frame rate of the frames a model sees, given their indices in a ``video_fps`` source."""
    if len(frame_indices) < 2:
        return video_fps
    return video_fps * (len(frame_indices) - 1) / (frame_indices[-1] - frame_indices[0])


def chat_text(processor: ProcessorMixin, sample: Sample, inference: bool) -> str:
    """The sample's conversation in the chat template, video placeholder in the first user turn.

    With ``inference`` the final assistant turn is dropped and the generation prompt added.
    """
    turns = [dict(turn) for turn in sample.conversation]
    if inference and turns[-1]["role"] == "assistant":
        turns = turns[:-1]
    first_user = next(i for i, turn in enumerate(turns) if turn["role"] == "user")
    turns[first_user]["content"] = f"{VIDEO_PLACEHOLDER}\n{turns[first_user]['content']}"
    return processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=inference)


def assistant_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """``(B, L)`` labels: the tokens of every assistant turn (through its ``<|im_end|>``), -100 elsewhere."""
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    header = tokenizer.encode("assistant\n", add_special_tokens=False)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, ids in enumerate(input_ids.tolist()):
        for start in (p for p, token in enumerate(ids) if token == im_start):
            body = start + 1 + len(header)
            if ids[start + 1 : body] != header:
                continue
            end = next((p for p in range(body, len(ids)) if ids[p] == im_end), len(ids) - 1)
            labels[row, body : end + 1] = input_ids[row, body : end + 1]
    return labels


class VideoChatCollator:
    """Batches :class:`Sample` s for UniGR.

    Returns ``input_ids``/``attention_mask`` ``(B, L)``, Qwen's ``pixel_values_videos``,
    ``video_grid_thw`` ``(B, 3)`` and ``second_per_grid_ts`` ``(B,)``; ``sam_frames`` (per sample
    ``(T, 3, S, S)``); and when training, ``labels`` ``(B, L)`` and ``gt_masks`` (per sample
    ``(O, T, S, S)``, ``O = 0`` for QA-only samples) if any sample has masks.

    Args:
        processor: a Qwen2.5-VL / Qwen2-VL processor (its pixel budget sets the LLM's frame size).
        sam_image_size: SAM2's square input size S.
        video_fps: frame rate of the source videos; the sampled frames' rate follows from their indices.
        inference: prompt only (generation prompt added, left padding, no labels or targets).
    """

    def __init__(self, processor: ProcessorMixin, sam_image_size: int, video_fps: float, inference: bool = False):
        self.processor, self.sam_image_size, self.video_fps = processor, sam_image_size, video_fps
        self.inference = inference

    def __call__(self, samples: list[Sample]) -> dict:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left" if self.inference else "right"
        fps = [sampled_fps(s.meta.get("frame_indices", range(len(s.frames))), self.video_fps) for s in samples]
        batch = dict(
            self.processor(
                text=[chat_text(self.processor, s, self.inference) for s in samples],
                videos=[s.frames for s in samples],
                padding=True,
                return_tensors="pt",
                do_sample_frames=False,
                cap_pixels_per_frame=True,
                video_metadata=[VideoMetadata(total_num_frames=len(s.frames), fps=f) for s, f in zip(samples, fps)],
            )
        )
        batch["sam_frames"] = [sam2_frames(s.frames, self.sam_image_size, normalize=False) for s in samples]
        if not self.inference:
            batch["labels"] = assistant_labels(batch["input_ids"], tokenizer)
            if any(s.masks is not None for s in samples):  # QA-only samples get (0, T, S, S)
                size = self.sam_image_size
                batch["gt_masks"] = [
                    resize_masks(s, size) if s.masks is not None else torch.zeros(0, len(s.frames), size, size)
                    for s in samples
                ]
        return batch

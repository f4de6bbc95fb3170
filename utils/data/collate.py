"""Samples -> model inputs, for every task family on one code path.

:class:`SampleCollator` first builds what every sample has — the chat text with a visual placeholder
per video or image, Qwen's visual tensors (videos through :func:`utils.video.model_inputs.qwen_video`,
the one video-input builder; images through Qwen's image processor), and in training the CE labels —
and then runs one *step* per typed :class:`~utils.data.schema.Sample` field (:data:`COLLATE_STEPS`):
SAM2 frames, mask targets, region prompts, scene geometry. A new family adds a field and a step.

Training, evaluation, the demo and the command line all collate through it, so prompts, frame
resizing and pixel budgets are the same everywhere (``inference=True`` only drops the final answer
and the targets, and adds the generation prompt).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ProcessorMixin

from utils.data.prompts import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from utils.data.schema import Sample
from utils.video.model_inputs import qwen_video, sam2_frames

IGNORE_INDEX = -100


def resize_masks(masks: np.ndarray, size: int) -> torch.Tensor:
    """``(O, T, H, W)`` bool masks -> ``(O, T, size, size)`` float in {0, 1}."""
    masks = torch.from_numpy(masks).float()
    resized = F.interpolate(masks, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (resized > 0.5).float()


def visual_placeholders(sample: Sample) -> str:
    """The placeholder text of the sample's media: one video, or one image placeholder per image."""
    if sample.medium == "video":
        return VIDEO_PLACEHOLDER
    return "".join(IMAGE_PLACEHOLDER for _ in range(len(sample.frames)))


def chat_text(processor: ProcessorMixin, sample: Sample, inference: bool, after_visual: str = "") -> str:
    """The sample's conversation in the chat template, its media placeholders in the first user turn.

    ``after_visual`` (placeholder tokens of appended encoder tokens) follows the media. With
    ``inference`` the final assistant turn is dropped and the generation prompt added.
    """
    turns = [dict(turn) for turn in sample.conversation]
    if inference and turns[-1]["role"] == "assistant":
        turns = turns[:-1]
    first_user = next((i for i, turn in enumerate(turns) if turn["role"] == "user"), None)
    if first_user is None:
        raise ValueError(f"{sample.sample_id}: the conversation has no user turn")
    turns[first_user]["content"] = f"{visual_placeholders(sample)}{after_visual}\n{turns[first_user]['content']}"
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


CollateStep = Callable[["SampleCollator", list[Sample], dict], None]
"""``step(collator, samples, batch)`` adds its keys to ``batch`` (in place)."""


def sam_frames_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``sam_frames``: per sample ``(T, 3, S, S)`` float in [0, 1] (when the model has a SAM2 head)."""
    if collator.sam_image_size is not None:
        batch["sam_frames"] = [sam2_frames(s.frames, collator.sam_image_size, normalize=False) for s in samples]


def masks_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``gt_masks``: per sample ``(O, T, S, S)`` targets (``O = 0`` for samples without masks), training only."""
    size = collator.sam_image_size
    if collator.inference or size is None or not any(s.masks is not None for s in samples):
        return
    batch["gt_masks"] = [
        resize_masks(s.masks, size) if s.masks is not None else torch.zeros(0, len(s.frames), size, size)
        for s in samples
    ]


def regions_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``regions``: per sample its :class:`~utils.data.schema.RegionPrompt` list, for a region encoder."""
    if any(s.regions for s in samples):
        batch["regions"] = [list(s.regions) for s in samples]


def scene_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``scenes`` (posed RGB-D) and ``proposals`` per sample, for 3D encoders and heads."""
    if any(s.scene is not None for s in samples):
        batch["scenes"] = [s.scene for s in samples]
    if any(s.proposals is not None for s in samples):
        batch["proposals"] = [None if s.proposals is None else torch.from_numpy(s.proposals) for s in samples]


COLLATE_STEPS: tuple[CollateStep, ...] = (sam_frames_step, masks_step, regions_step, scene_step)
"""The per-field steps, in order, after the text and visual inputs."""


class SampleCollator:
    """Batches :class:`Sample` s for UniGR.

    Returns ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` ``(B, L)``; for videos Qwen's
    ``pixel_values_videos``, ``video_grid_thw`` ``(V, 3)`` and ``second_per_grid_ts`` ``(V,)`` (from
    each sample's frame timestamps); for images ``pixel_values`` and ``image_grid_thw`` ``(I, 3)``;
    in training ``labels`` ``(B, L)``; then what :data:`COLLATE_STEPS` add (``sam_frames``,
    ``gt_masks``, ``regions``, ``scenes``, ``proposals``).

    Args:
        processor: a Qwen2.5-VL / Qwen2-VL processor (its pixel budgets set the LLM's frame sizes).
        sam_image_size: SAM2's square input size S, or ``None`` for a model without a SAM2 head.
        inference: prompt only (generation prompt added, left padding, no labels or targets).
        after_visual: text placed right after the media placeholders (placeholders of appended tokens,
            :meth:`model.input_assembly.InputAssembly.after_visual_text`).
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        sam_image_size: int | None,
        inference: bool = False,
        after_visual: str = "",
    ):
        self.processor, self.sam_image_size, self.inference = processor, sam_image_size, inference
        self.after_visual = after_visual

    @classmethod
    def for_model(cls, model, processor: ProcessorMixin, inference: bool = False) -> SampleCollator:
        """The collator a UniGR model takes: SAM2 frames at its head's size (if it has the head) and the
        placeholders of its appended encoder tokens."""
        seg_head = getattr(model, "seg_head", None)
        return cls(
            processor,
            seg_head.image_size if seg_head is not None else None,
            inference=inference,
            after_visual=model.input_assembly.after_visual_text(),
        )

    def __call__(self, samples: list[Sample]) -> dict:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left" if self.inference else "right"
        videos = [
            qwen_video(s.frames, s.timestamps, self.processor.video_processor) for s in samples if s.medium == "video"
        ]
        images = [frame for s in samples if s.medium == "image" for frame in s.frames]
        kwargs: dict = {}
        if videos:
            kwargs["videos"] = [v.frames for v in videos]
            kwargs["videos_kwargs"] = {
                "video_metadata": [v.metadata for v in videos],
                "do_sample_frames": False,
                "do_resize": False,  # qwen_video sized them (smart_resize is not idempotent)
                "cap_pixels_per_frame": True,
            }
        if images:
            kwargs["images"] = images
        batch = dict(
            self.processor(
                text=[chat_text(self.processor, s, self.inference, self.after_visual) for s in samples],
                padding=True,
                return_tensors="pt",
                return_mm_token_type_ids=True,
                **kwargs,
            )
        )
        if not self.inference:
            batch["labels"] = assistant_labels(batch["input_ids"], tokenizer)
        for step in COLLATE_STEPS:
            step(self, samples, batch)
        return batch

"""Samples -> model inputs, for every task family on one code path.

:class:`SampleCollator` first builds what every sample has — the chat text with a visual placeholder
per video or image, Qwen's visual tensors (videos through :func:`utils.video.model_inputs.qwen_video`,
the one video-input builder; images through Qwen's image processor), and in training the CE labels —
and then runs one *step* per typed :class:`~utils.data.schema.Sample` field (:data:`COLLATE_STEPS`):
SAM2 frames, mask targets, region prompts (rasterised for the region encoder), scene geometry, 3D grounding
targets and the video tokens' world positions. A new family adds a field and a step.

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

from utils.data.prompts import GRD_TOKEN, IMAGE_PLACEHOLDER, SIT_TOKEN, VIDEO_PLACEHOLDER
from utils.data.question_times import token_seconds
from utils.data.schema import RegionPrompt, Sample, mask_box
from utils.scene3d.proposal_views import ProposalViews, proposal_views
from utils.scene3d.token_positions import token_world_positions
from utils.video.model_inputs import qwen_video, sam2_frames, video_processor_kwargs

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


def chat_text(
    processor: ProcessorMixin, sample: Sample, inference: bool, after_visual: str = "", media: bool = True
) -> str:
    """The sample's conversation in the chat template, its media placeholders in the first user turn.

    ``after_visual`` (placeholder tokens of appended encoder tokens) follows the media. With
    ``inference`` the final assistant turn is dropped and the generation prompt added. Without
    ``media`` the text is the conversation alone (no media placeholders, no ``after_visual``).
    """
    turns = [dict(turn) for turn in sample.conversation]
    if inference and turns[-1]["role"] == "assistant":
        turns = turns[:-1]
    first_user = next((i for i, turn in enumerate(turns) if turn["role"] == "user"), None)
    if first_user is None:
        raise ValueError(f"{sample.sample_id}: the conversation has no user turn")
    if media:
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


REGION_MASK_SIZE = 112
"""Region prompts are rasterised to this square size (the region encoder pools them onto Qwen's grid)."""

POINT_RADIUS = 0.03
"""A point prompt becomes a disc of this radius (a fraction of the frame's shorter side, at least 1 px)."""


def region_prompt_mask(sample: Sample, prompt: RegionPrompt) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mask (H, W) bool, box (4,) x1 y1 x2 y2 in [0, 1], kind)`` of one prompt on the sample's frame.

    A mask is used as given, a box is filled, points become small discs around the positive ones;
    ``kind`` indexes :data:`model.encoders.region.PROMPT_KINDS` (mask, box, points). An empty mask, a
    box outside the frame or no positive point is an error naming the sample and frame.
    """
    height, width = sample.frames.shape[1:3]
    where = f"{sample.sample_id}: region {prompt.region} on frame {prompt.frame}"
    if prompt.mask is not None:
        mask, kind = np.asarray(prompt.mask, dtype=bool), 0
        if mask.shape != (height, width):
            raise ValueError(f"{where}: mask {mask.shape} does not match the frame {(height, width)}")
        if not mask.any():
            raise ValueError(f"{where}: the mask is empty")
        box = mask_box(mask).astype(np.float64)
    elif prompt.box is not None:
        box, kind = np.asarray(prompt.box, dtype=np.float64), 1
        x1, y1 = np.clip(box[:2], 0, [width, height])
        x2, y2 = np.clip(box[2:], 0, [width, height])
        if not (box.shape == (4,) and x2 - x1 >= 1 and y2 - y1 >= 1):
            raise ValueError(f"{where}: box {prompt.box} covers no pixel of the {width}x{height} frame")
        box = np.array([x1, y1, x2, y2])
        mask = np.zeros((height, width), dtype=bool)
        mask[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
    else:
        points, kind = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2), 2
        labels = np.ones(len(points)) if prompt.point_labels is None else np.asarray(prompt.point_labels)
        positive = points[(labels > 0) & (points[:, 0] >= 0) & (points[:, 0] < width)]
        positive = positive[(positive[:, 1] >= 0) & (positive[:, 1] < height)]
        if len(positive) == 0:
            raise ValueError(f"{where}: no positive point inside the {width}x{height} frame")
        radius = max(POINT_RADIUS * min(height, width), 1.0)
        ys, xs = np.mgrid[:height, :width]
        dx = xs[None] + 0.5 - positive[:, 0, None, None]
        dy = ys[None] + 0.5 - positive[:, 1, None, None]
        mask = (dx**2 + dy**2 <= radius**2).any(0)
        box = np.concatenate([positive.min(0) - radius, positive.max(0) + radius]).clip(0, [width, height] * 2)
    return mask, box / np.array([width, height, width, height]), kind


def region_prompts_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``region_prompts``: per sample ``None`` or ``{"masks": (P, S, S) float, "frames": (P,), "regions": (P,),
    "kinds": (P,), "boxes": (P, 4), "appearance": (P, 6)}`` for its ``P`` region prompts (``S`` =
    :data:`REGION_MASK_SIZE`; appearance: :func:`region_appearance` at the frame's full resolution),
    read by the region encoder (:mod:`model.encoders.region`)."""
    if not any(s.regions for s in samples):
        return
    batch["region_prompts"] = [_region_prompts(s) if s.regions else None for s in samples]


def region_appearance(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(6,)``: mean and standard deviation of the RGB values (in [0, 1]) of ``frame`` inside ``mask``."""
    pixels = frame[mask].astype(np.float64) / 255.0  # (n, 3)
    return np.concatenate([pixels.mean(0), pixels.std(0)])


def _region_prompts(sample: Sample) -> dict[str, torch.Tensor]:
    masks, boxes, kinds = zip(*(region_prompt_mask(sample, prompt) for prompt in sample.regions), strict=True)
    looks = [region_appearance(sample.frames[p.frame], m) for p, m in zip(sample.regions, masks, strict=True)]
    resized = F.interpolate(
        torch.from_numpy(np.stack(masks)).float()[:, None],
        size=(REGION_MASK_SIZE, REGION_MASK_SIZE),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[:, 0]
    return {
        "masks": resized,
        "frames": torch.tensor([p.frame for p in sample.regions]),
        "regions": torch.tensor([p.region for p in sample.regions]),
        "kinds": torch.tensor(kinds),
        "boxes": torch.from_numpy(np.stack(boxes)).float(),
        "appearance": torch.from_numpy(np.stack(looks)).float(),
    }


def scene_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``scenes`` (posed RGB-D) and ``proposals`` per sample, for 3D encoders and heads."""
    if any(s.scene is not None for s in samples):
        batch["scenes"] = [s.scene for s in samples]
    if any(s.proposals is not None for s in samples):
        batch["proposals"] = [None if s.proposals is None else torch.from_numpy(s.proposals) for s in samples]


def grounding_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """What the proposal grounding head reads besides ``proposals``:

    * ``grounding_multi`` (batches with proposals): per sample its :attr:`~utils.data.schema.Sample.grounding_multi`;
    * ``gt_boxes_3d`` (training, batches with 3D grounding targets): per sample a list with one ``(K, 6)`` float32
      tensor per ``[GRD]`` of its answer (:attr:`~utils.data.schema.Sample.boxes_3d`), or ``None``; an answer
      whose ``[GRD]`` count differs from its ``boxes_3d`` entries is an error naming the sample;
    * ``gt_situations`` (training, batches with situation targets): per sample a list with one ``(4,)`` float32 pose
      per ``[SIT]`` of its conversation (:attr:`~utils.data.schema.Sample.situations`; SQA3D's closes the situation
      in the user turn), or ``None``; a count that differs from its ``[SIT]`` tokens is an error naming the sample;
    * ``token_positions`` (collators with ``token_positions``, batches with scenes): per sample ``(positions (N, 3)
      float32, valid (N,) bool)``, the world point each of its ``N`` video tokens sees, in the tokens' sequence
      order (:func:`~utils.scene3d.token_positions.token_world_positions` on the sample's ``video_grid_thw`` row), or
      ``None`` for a sample without a scene or without video tokens;
    * ``proposal_views`` (collators with ``proposal_views``, batches with scenes): per sample the
      :class:`~utils.scene3d.proposal_views.ProposalViews` of its proposals in its video tokens, or ``None`` for a
      sample without a scene, proposals or video tokens;
    * ``proposal_label_ids`` (the same collators, batches with proposal labels): per sample ``(N, K)`` long, the
      tokens of each proposal's class name (``" chair"``) padded with -1, or ``None``.
    """
    if any(s.proposals is not None for s in samples):
        batch["grounding_multi"] = [s.grounding_multi for s in samples]
    inference = collator.inference
    targets = [] if inference else [_token_targets(s, GRD_TOKEN, "boxes_3d", ("assistant",)) for s in samples]
    if any(boxes is not None for boxes in targets):
        batch["gt_boxes_3d"] = targets
    situations = (
        [] if inference else [_token_targets(s, SIT_TOKEN, "situations", ("user", "assistant")) for s in samples]
    )
    if any(poses is not None for poses in situations):
        batch["gt_situations"] = situations
    if collator.token_positions and any(s.scene is not None for s in samples):
        batch["token_positions"] = _token_positions(collator, samples, batch.get("video_grid_thw"))
    if collator.proposal_views and any(s.scene is not None and s.proposals is not None for s in samples):
        batch["proposal_views"] = _proposal_views(collator, samples, batch.get("video_grid_thw"))
    if collator.proposal_views and any(s.proposal_labels is not None for s in samples):
        batch["proposal_label_ids"] = [_label_ids(collator.processor.tokenizer, s.proposal_labels) for s in samples]


def _token_targets(sample: Sample, token: str, field: str, roles: tuple[str, ...]) -> list[torch.Tensor] | None:
    """The sample's ``field`` (``boxes_3d`` or ``situations``) as tensors, one entry per ``token`` (``[GRD]`` /
    ``[SIT]``) in its turns of ``roles`` (checked); ``None`` for a sample with neither (a token without targets would
    train nothing)."""
    values = getattr(sample, field)
    mentions = sum(turn["content"].count(token) for turn in sample.conversation if turn["role"] in roles)
    if values is None and mentions == 0:
        return None
    if values is None or mentions != len(values):
        entries = "no" if values is None else len(values)
        turns = " / ".join(roles)
        raise ValueError(f"{sample.sample_id}: {entries} {field} entries for {mentions} {token} in its {turns} turns")
    return [torch.from_numpy(value) for value in values]


def _video_grids(collator: SampleCollator, samples: list[Sample], video_grid_thw: torch.Tensor | None) -> list:
    """Per sample its row of ``video_grid_thw``, or ``None`` for a sample without video tokens."""
    grids = iter(video_grid_thw.tolist() if video_grid_thw is not None else [])
    # Qwen's rows follow the samples with a video, in order
    return [next(grids) if collator.media and sample.medium == "video" else None for sample in samples]


def _token_positions(
    collator: SampleCollator, samples: list[Sample], video_grid_thw: torch.Tensor | None
) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Per sample the world positions of its video tokens (see :func:`grounding_step`)."""
    video = collator.processor.video_processor
    result = []
    for sample, grid in zip(samples, _video_grids(collator, samples, video_grid_thw)):
        if sample.scene is None or grid is None:
            result.append(None)
            continue
        try:
            positions, valid = token_world_positions(sample.scene, grid, video.merge_size, video.temporal_patch_size)
        except ValueError as error:
            raise ValueError(f"{sample.sample_id}: {error}") from error
        result.append((torch.from_numpy(positions), torch.from_numpy(valid)))
    return result


def _label_ids(tokenizer, labels: list[str] | None) -> torch.Tensor | None:
    """``(N, K)`` long: the tokens of each of ``labels`` as a word (a leading space), padded with -1."""
    if labels is None:
        return None
    tokens = [tokenizer.encode(f" {label}", add_special_tokens=False) for label in labels]
    ids = torch.full((len(tokens), max((len(t) for t in tokens), default=1)), -1, dtype=torch.long)
    for row, label_tokens in enumerate(tokens):
        ids[row, : len(label_tokens)] = torch.tensor(label_tokens, dtype=torch.long)
    return ids


def _proposal_views(
    collator: SampleCollator, samples: list[Sample], video_grid_thw: torch.Tensor | None
) -> list[ProposalViews | None]:
    """Per sample its proposals' views in its video tokens (see :func:`grounding_step`)."""
    video = collator.processor.video_processor
    result = []
    for sample, grid in zip(samples, _video_grids(collator, samples, video_grid_thw)):
        if sample.scene is None or sample.proposals is None or grid is None:
            result.append(None)
            continue
        try:
            views = proposal_views(
                sample.scene, sample.frames, sample.proposals, grid, video.merge_size, video.temporal_patch_size
            )
        except ValueError as error:
            raise ValueError(f"{sample.sample_id}: {error}") from error
        result.append(views)
    return result


def question_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """``question_mask`` ``(B, L)`` bool, for collators with ``question_inputs`` (the encoders that read the
    question: the geometry encoder, object tokens with ``question_match``): the tokens of the user turns' text
    (:func:`question_mask`), the same tokens in a training and an inference batch of a sample; with
    ``geometry_inputs`` also ``question_seconds`` ``(B, L)`` float, the time each question token names, NaN for the
    others (:func:`utils.data.question_times.token_seconds`)."""
    if collator.question_inputs:
        tokenizer = collator.processor.tokenizer
        batch["question_mask"] = question_mask(batch["input_ids"], tokenizer)
        if collator.geometry_inputs:
            batch["question_seconds"] = token_seconds(batch["input_ids"], batch["question_mask"], tokenizer)


def geometry_step(collator: SampleCollator, samples: list[Sample], batch: dict) -> None:
    """What the geometry encoder (:mod:`model.encoders.geometry`) reads besides the question mask, for collators
    with ``geometry_inputs``: ``geometry_frames``, per sample its frames as Qwen sees them, ``(T, 3, grid_h * P,
    grid_w * P)`` float in ``[0, 1]`` (``P`` = Qwen's patch size, the sample's ``video_grid_thw`` row; bilinear,
    antialiased), or ``None`` for a sample without video tokens (images, text only)."""
    if not collator.geometry_inputs:
        return
    patch = collator.processor.video_processor.patch_size
    frames = []
    for sample, grid in zip(samples, _video_grids(collator, samples, batch.get("video_grid_thw"))):
        if grid is None:
            frames.append(None)
            continue
        frames.append(resize_geometry_frames(sample.frames, grid, patch))
    batch["geometry_frames"] = frames


def resize_geometry_frames(frames: np.ndarray, grid: list[int], patch: int) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames -> ``(T, 3, grid_h * patch, grid_w * patch)`` float in ``[0, 1]`` (bilinear,
    antialiased): a video's frames as the geometry encoder reads them for its Qwen grid ``(t, h, w)``."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    size = (grid[1] * patch, grid[2] * patch)
    return F.interpolate(video, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0.0, 1.0)


def question_mask(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """``(B, L)`` bool: the text tokens of every user turn, between its ``<|im_start|>user\\n`` header and its
    ``<|im_end|>``; tokens the tokenizer added (media, placeholders, chat-template tokens) are never marked, and
    neither are the system prompt nor the assistant turns."""
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    header = tokenizer.encode("user\n", add_special_tokens=False)
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, ids in enumerate(input_ids.tolist()):
        for start in (p for p, token in enumerate(ids) if token == im_start):
            body = start + 1 + len(header)
            if ids[start + 1 : body] != header:
                continue
            end = next((p for p in range(body, len(ids)) if ids[p] == im_end), len(ids))
            mask[row, body:end] = True
    added = torch.tensor(sorted(tokenizer.added_tokens_decoder), dtype=input_ids.dtype)
    return mask & ~torch.isin(input_ids, added)


COLLATE_STEPS: tuple[CollateStep, ...] = (
    sam_frames_step,
    masks_step,
    region_prompts_step,
    scene_step,
    grounding_step,
    question_step,
    geometry_step,
)
"""The per-field steps, in order, after the text and visual inputs."""


class SampleCollator:
    """Batches :class:`Sample` s for UniGR.

    Returns ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` ``(B, L)``; for videos Qwen's
    ``pixel_values_videos``, ``video_grid_thw`` ``(V, 3)`` and ``second_per_grid_ts`` ``(V,)`` (from
    each sample's frame timestamps); for images ``pixel_values`` and ``image_grid_thw`` ``(I, 3)``;
    in training ``labels`` ``(B, L)``; then what :data:`COLLATE_STEPS` add (``sam_frames``,
    ``gt_masks``, ``region_prompts``, ``scenes``, ``proposals``, ``grounding_multi``, ``gt_boxes_3d``,
    ``token_positions``, ``proposal_views``, ``question_mask``, ``geometry_frames``).

    Args:
        processor: a Qwen2.5-VL / Qwen2-VL processor (its pixel budgets set the LLM's frame sizes).
        sam_image_size: SAM2's square input size S, or ``None`` for a model without a SAM2 head.
        inference: prompt only (generation prompt added, left padding, no labels or targets).
        after_visual: text placed right after the media placeholders (placeholders of appended tokens,
            :meth:`model.input_assembly.InputAssembly.after_visual_text`).
        media: ``False``: text only (no frames, no media placeholders), for blind baselines.
        token_positions: add the world positions of scene samples' video tokens (for the 3D position encoder;
            they cost a back-projection of every depth frame).
        proposal_views: add how scene samples' proposals look in their video tokens (for the proposal grounding
            head; another back-projection of every depth frame).
        geometry_inputs: add the question mask and the video samples' frames at Qwen's size (for the geometry
            encoder, :func:`geometry_step`).
        question_inputs: add the question mask (:func:`question_step`; always with ``geometry_inputs``).
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        sam_image_size: int | None,
        inference: bool = False,
        after_visual: str = "",
        media: bool = True,
        token_positions: bool = False,
        proposal_views: bool = False,
        geometry_inputs: bool = False,
        question_inputs: bool = False,
    ):
        self.processor, self.sam_image_size, self.inference = processor, sam_image_size, inference
        self.after_visual, self.media, self.token_positions = after_visual, media, token_positions
        self.proposal_views = proposal_views
        self.geometry_inputs = geometry_inputs
        self.question_inputs = question_inputs or geometry_inputs

    @classmethod
    def for_model(cls, model, processor: ProcessorMixin, inference: bool = False) -> SampleCollator:
        """The collator a UniGR model takes: SAM2 frames at its head's size (if it has the head), the
        placeholders of its appended encoder tokens, token positions if its 3D position encoder reads them,
        proposal views if it has a grounding head or the proposal encoder, the question mask if an encoder reads
        the question, and the geometry encoder's inputs if it has that encoder."""
        seg_head = getattr(model, "seg_head", None)
        encoders = model.config.encoders or {}
        return cls(
            processor,
            seg_head.image_size if seg_head is not None else None,
            inference=inference,
            after_visual=model.input_assembly.after_visual_text(),
            token_positions="position3d" in encoders,
            proposal_views=getattr(model, "grounding_head", None) is not None or "proposals" in encoders,
            geometry_inputs="geometry" in encoders,
            question_inputs=bool((encoders.get("proposals") or {}).get("question_match")),
        )

    def __call__(self, samples: list[Sample]) -> dict:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left" if self.inference else "right"
        seen = samples if self.media else []
        videos = [
            qwen_video(s.frames, s.timestamps, self.processor.video_processor) for s in seen if s.medium == "video"
        ]
        images = [frame for s in seen if s.medium == "image" for frame in s.frames]
        kwargs: dict = {}
        if videos:
            kwargs["videos"] = [v.frames for v in videos]
            kwargs["videos_kwargs"] = video_processor_kwargs(videos)
        if images:
            kwargs["images"] = images
        batch = dict(
            self.processor(
                text=[chat_text(self.processor, s, self.inference, self.after_visual, self.media) for s in samples],
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

"""Where ``[SEG]`` points: a map over the LLM's visual tokens, its target and loss, and SAM2 prompts from it.

A language model's visual tokens carry *what* is where, but a ``[SEG]`` state alone does not say
*where*: a tiny Qwen2.5-VL trained from scratch cannot regress a position, because its visual tokens
hold position only through rotary attention. It can, however, tell which of its own visual tokens
show the thing an expression names. :class:`LocationMap` scores every merged visual token against a
``[SEG]`` state (one logit per token: ``(O, slots, h, w)`` over Qwen's temporal slots and merged grid),
trained by BCE against the target's token occupancy (:func:`location_targets`). The map reaches SAM2
as a position it understands (``SegHeadConfig.location_prompt``): a dense mask prompt
(:func:`dense_prompt`, SAM2's own mask-prompt path) and/or a click at its peak (:func:`peak_clicks`).

Frames and slots: Qwen merges ``temporal_patch_size`` consecutive video frames into one slot (an image
is one slot), so frame ``j`` of the frames the LLM saw reads slot ``j // temporal_patch_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

from model.visual_tokens import frame_slots

MIN_TARGET_FRACTION = 0.02
"""A token is a target token when the target covers at least this fraction of its area on a frame of its slot."""

LOCATION_PROMPTS = ("off", "mask", "click", "mask+click")
"""``SegHeadConfig.location_prompt`` values: how the map reaches SAM2 on conditioning frames."""


class LocationMap(nn.Module):
    """``[SEG]`` state x visual-token states -> one logit per merged visual token (scaled dot product)."""

    def __init__(self, llm_hidden_size: int, dim: int):
        super().__init__()
        self.query = nn.Linear(llm_hidden_size, dim)
        self.key = nn.Linear(llm_hidden_size, dim)
        self.scale = dim**-0.5

    def forward(
        self, seg_hidden: torch.Tensor, visual_hidden: torch.Tensor, grid: tuple[int, int, int]
    ) -> torch.Tensor:
        """``(O, D)`` and ``(N, D)`` -> ``(O, slots, h, w)`` logits, ``N = slots * h * w``."""
        dtype = self.query.weight.dtype
        query = self.query(seg_hidden.to(dtype))  # (O, d)
        key = self.key(visual_hidden.to(dtype))  # (N, d)
        return (query @ key.T * self.scale).float().view(-1, *grid)


def token_coverage(masks: torch.Tensor, grid: tuple[int, int, int], frames_per_slot: int) -> torch.Tensor:
    """``(O, T, H, W)`` masks -> ``(O, slots, h, w)``: the largest share of each token an object covers on a
    frame of the token's slot. Frame ``j`` falls in slot ``min(j // frames_per_slot, slots - 1)``."""
    slots, height, width = grid
    num_objects, num_frames = masks.shape[:2]
    if num_objects == 0:
        return masks.new_zeros(0, *grid, dtype=torch.float32)
    share = F.adaptive_avg_pool2d(masks.float().flatten(0, 1), (height, width))
    share = share.view(num_objects, num_frames, height, width)
    slot_of = frame_slots(num_frames, frames_per_slot, slots, masks.device)
    coverage = share.new_zeros(num_objects, slots, height, width)
    for slot in slot_of.unique().tolist():
        coverage[:, slot] = share[:, slot_of == slot].amax(1)
    return coverage


def location_targets(gt_masks: torch.Tensor, grid: tuple[int, int, int], frames_per_slot: int) -> torch.Tensor:
    """``(O, T, S, S)`` masks -> ``(O, slots, h, w)`` in {0, 1}: tokens the target covers (at least
    :data:`MIN_TARGET_FRACTION`) on any frame of their slot (:func:`token_coverage`)."""
    return (token_coverage(gt_masks, grid, frames_per_slot) >= MIN_TARGET_FRACTION).float()


def location_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per object ``(O,)``: BCE of ``(O, slots, h, w)`` map logits against token targets (mean over tokens),
    plus a ranking term: on each slot where the target is present, the cross-entropy of the softmax over
    the slot's tokens against the target tokens (uniform over them), averaged over those slots.

    The BCE keeps the logits calibrated (they are SAM2's mask prompt); the ranking term makes the target's
    tokens win over the other objects' tokens, which the BCE alone mostly learns as "any object".
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).mean(1)
    flat_targets = targets.flatten(2)  # (O, slots, h*w)
    counts = flat_targets.sum(2)  # (O, slots)
    present = (counts > 0).float()
    log_probs = logits.flatten(2).log_softmax(2)
    ranking = -(flat_targets * log_probs).sum(2) / counts.clamp(min=1)  # (O, slots)
    return bce + (ranking * present).sum(1) / present.sum(1).clamp(min=1)


def top_token_hits(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """``(hits, slots scored)``: over (object, slot) pairs where the target is present, how often the
    highest-scoring token is a target token (a random guess scores about the target's share of tokens)."""
    flat_logits, flat_targets = logits.flatten(2), targets.flatten(2)  # (O, slots, h*w)
    present = flat_targets.amax(2) > 0
    top = flat_logits.argmax(2, keepdim=True)
    hits = flat_targets.gather(2, top)[..., 0] > 0
    return int((hits & present).sum()), int(present.sum())


def frame_maps(logits: torch.Tensor, frames_per_slot: int, num_frames: int) -> torch.Tensor:
    """``(O, slots, h, w)`` -> ``(O, num_frames, h, w)``: each of the frames the LLM saw reads its slot."""
    return logits[:, frame_slots(num_frames, frames_per_slot, logits.shape[1], logits.device)]


def dense_prompt(sam: SAM2Base, logits: torch.Tensor) -> torch.Tensor:
    """``(O, h, w)`` map logits -> ``(O, C, H/16, W/16)`` SAM2 dense prompt embeddings, through SAM2's own
    mask-prompt encoder (the map resized to its mask input size, as SAM2 takes low-resolution mask logits)."""
    encoder = sam.sam_prompt_encoder
    size = encoder.mask_input_size
    masks = F.interpolate(logits[:, None].float(), size=size, mode="bilinear", align_corners=False)
    dtype = encoder.mask_downscaling[0].weight.dtype
    return encoder._embed_masks(masks.to(dtype))


def peak_clicks(sam: SAM2Base, logits: torch.Tensor) -> torch.Tensor:
    """``(O, h, w)`` map logits -> ``(O, 2, C)`` SAM2 sparse tokens of one positive click at the centre of
    the highest-scoring token (and SAM2's padding point), in SAM2's input pixels."""
    num_objects, height, width = logits.shape
    peak = logits.flatten(1).argmax(1)
    size = sam.image_size
    x = (peak % width + 0.5) * size / width
    y = (peak.div(width, rounding_mode="floor") + 0.5) * size / height
    coords = torch.stack([torch.stack([x, y], 1), torch.zeros(num_objects, 2, device=logits.device)], 1)
    labels = torch.tensor([1, -1], device=logits.device).expand(num_objects, 2)
    sparse, _ = sam.sam_prompt_encoder(points=(coords.float(), labels), boxes=None, masks=None)
    return sparse

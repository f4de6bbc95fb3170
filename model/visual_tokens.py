"""Where a sample's visual tokens are: their ids, their positions in the sequence and Qwen's merged grid.

Qwen2.5-VL merges ``spatial_merge_size`` x ``spatial_merge_size`` patches into one LLM token and
``temporal_patch_size`` consecutive video frames into one temporal *slot* (an image is one slot), so
frame ``j`` of the frames the LLM saw reads slot ``j // temporal_patch_size``. Heads (the location map)
and input encoders (the region encoder) read the visual tokens through :func:`visual_layouts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VisualTokens:
    """How to find a sample's visual tokens and lay them out on Qwen's merged grid."""

    video_token_id: int
    image_token_id: int
    spatial_merge_size: int
    temporal_patch_size: int

    @classmethod
    def from_backbone_config(cls, config) -> VisualTokens:
        """From a Qwen2.5-VL / Qwen2-VL config (object or dict)."""
        get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
        vision = get("vision_config")
        vision_get = vision.get if isinstance(vision, dict) else lambda key: getattr(vision, key)
        return cls(
            video_token_id=get("video_token_id"),
            image_token_id=get("image_token_id"),
            spatial_merge_size=vision_get("spatial_merge_size"),
            temporal_patch_size=vision_get("temporal_patch_size"),
        )


@dataclass
class VisualLayout:
    """One sample's visual tokens: where they sit in its sequence and how they tile its frames.

    Attributes:
        positions: ``(N,)`` indices of the visual tokens in the sample's sequence.
        grid: ``(slots, h, w)`` merged-token grid; ``N = slots * h * w``.
        frames_per_slot: frames of the sample per slot (Qwen's temporal patch for a video, 1 for images).
    """

    positions: torch.Tensor
    grid: tuple[int, int, int]
    frames_per_slot: int


def visual_layouts(input_ids: torch.Tensor, batch: dict, tokens: VisualTokens) -> list[VisualLayout | None]:
    """Per sample its :class:`VisualLayout` (``None`` for a text-only sample), from the token ids and the
    collated ``video_grid_thw`` / ``image_grid_thw`` (consumed in sample order, as Qwen does).

    Several images of one sample (one per frame) stack as slots; they must share a grid size.
    """
    merge = tokens.spatial_merge_size
    grids = {
        tokens.video_token_id: list(batch.get("video_grid_thw") if batch.get("video_grid_thw") is not None else []),
        tokens.image_token_id: list(batch.get("image_grid_thw") if batch.get("image_grid_thw") is not None else []),
    }
    layouts: list[VisualLayout | None] = []
    for row in input_ids:
        found = None
        for token_id, queue in grids.items():
            positions = (row == token_id).nonzero()[:, 0]
            if len(positions) == 0:
                continue
            if found is not None:
                raise ValueError("a sample with both video and image tokens has no single location map")
            items, count = [], 0
            while count < len(positions):
                t, h, w = (int(v) for v in queue.pop(0))
                items.append((t, h // merge, w // merge))
                count += t * (h // merge) * (w // merge)
            if count != len(positions) or len({item[1:] for item in items}) != 1:
                raise ValueError(f"visual tokens ({len(positions)}) do not tile the sample's grids {items}")
            slots = sum(item[0] for item in items)
            per_slot = tokens.temporal_patch_size if token_id == tokens.video_token_id else 1
            found = VisualLayout(positions, (slots, *items[0][1:]), per_slot)
        layouts.append(found)
    return layouts


def frame_slots(num_frames: int, frames_per_slot: int, slots: int, device: torch.device | None = None) -> torch.Tensor:
    """``(num_frames,)``: the slot each frame falls in, ``min(j // frames_per_slot, slots - 1)``."""
    return (torch.arange(num_frames, device=device) // frames_per_slot).clamp(max=slots - 1)

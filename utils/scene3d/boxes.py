"""Axis-aligned 3D boxes as ``(N, 6)`` centre + size (ScanNet / ScanRefer / Multi3DRefer convention): pairwise IoU
and which points fall inside which box, vectorised over boxes and points.

:func:`box_iou_3d` takes torch tensors or numpy arrays (evaluation scores numpy, heads assign targets in torch)
and answers in the type of its first argument.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_boxes(boxes: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """``boxes`` as a float tensor, checked to be ``(N, 6)`` with sizes >= 0."""
    boxes = torch.as_tensor(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 6:
        raise ValueError(f"{name} must be (N, 6) centre + size boxes, got shape {tuple(boxes.shape)}")
    boxes = boxes if boxes.is_floating_point() else boxes.float()
    if bool((boxes[:, 3:] < 0).any()):
        raise ValueError(f"{name} has boxes of negative size")
    return boxes


def box_corners(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 6)`` centre + size -> ``(lower (N, 3), upper (N, 3))`` corners."""
    half = boxes[:, 3:] / 2
    return boxes[:, :3] - half, boxes[:, :3] + half


def box_iou_3d(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Pairwise IoU of axis-aligned 3D boxes.

    Args:
        a: ``(N, 6)`` centre + size; b: ``(M, 6)`` centre + size (same units).
    Returns:
        ``(N, M)`` IoU in ``[0, 1]``; boxes that only touch give 0, and a pair of empty (zero-volume) boxes
        gives 0. A numpy array when ``a`` is one, else a tensor on ``a``'s device.
    """
    as_numpy = isinstance(a, np.ndarray)
    boxes_a, boxes_b = _as_boxes(a, "a"), _as_boxes(b, "b")
    dtype = torch.promote_types(boxes_a.dtype, boxes_b.dtype)
    boxes_a, boxes_b = boxes_a.to(dtype), boxes_b.to(device=boxes_a.device, dtype=dtype)
    lower_a, upper_a = box_corners(boxes_a)
    lower_b, upper_b = box_corners(boxes_b)
    overlap = torch.minimum(upper_a[:, None], upper_b[None]) - torch.maximum(lower_a[:, None], lower_b[None])
    intersection = overlap.clamp(min=0).prod(dim=-1)  # (N, M)
    union = boxes_a[:, 3:].prod(dim=-1)[:, None] + boxes_b[:, 3:].prod(dim=-1)[None] - intersection
    iou = torch.where(union > 0, intersection / union.clamp(min=torch.finfo(dtype).tiny), torch.zeros_like(union))
    return iou.numpy() if as_numpy else iou


def points_in_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` bool: whether point ``k`` lies in box ``n`` (faces included).

    Args:
        points: ``(K, 3)``; boxes: ``(N, 6)`` centre + size, in the points' frame. NaN points are in no box.
    """
    boxes = _as_boxes(boxes, "boxes")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (K, 3), got shape {tuple(points.shape)}")
    lower, upper = box_corners(boxes.to(points))
    return ((points[None] >= lower[:, None]) & (points[None] <= upper[:, None])).all(dim=-1)

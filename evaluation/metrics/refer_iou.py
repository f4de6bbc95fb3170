"""gIoU and cIoU of referring / reasoning image segmentation, as LISA's evaluation computes them.

Source: ``dvlab-research/LISA`` ``train_ds.py`` ``validate()`` with ``utils/utils.py``
(``intersectionAndUnionGPU``, ``AverageMeter``). Masks are per referring expression (one image can have
several); the prediction is ``logits > 0`` and the target is 0/1 with 255 = ignore.

* Per mask, two-class histograms over the pixels whose target is not 255 (``ignore_index``): the foreground
  intersection ``I = |pred & gt|`` and union ``U = |pred | gt|`` leave ignored pixels out of both.
* Per-mask IoU = ``I / (U + 1e-5)``, or 1.0 when ``U == 0`` (no object and none predicted).
* gIoU = sum of per-mask IoUs / (number of masks + 1e-5) (``AverageMeter.all_reduce`` adds the 1e-5).
* cIoU = total ``I`` / (total ``U`` + 1e-10), over all masks.

LISA accumulates in float32 on the GPU; here everything is float64 (differences are below 1e-6).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["giou_ciou", "intersection_union", "mask_iou"]


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """Foreground intersection and union of one mask, ignored pixels left out.

    Args:
        pred: ``(H, W)`` predicted mask; non-zero is foreground.
        gt: ``(H, W)`` target mask; non-zero is foreground.
        ignore: optional ``(H, W)`` boolean mask of pixels to leave out (LISA's target value 255).

    Returns:
        ``(intersection, union)`` pixel counts.
    """
    pred, gt = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape or (ignore is not None and np.shape(ignore) != gt.shape):
        raise ValueError(f"shapes differ: pred {pred.shape}, gt {gt.shape}, ignore {np.shape(ignore)}")
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        pred, gt = pred & keep, gt & keep
    inter = int(np.count_nonzero(pred & gt))
    return inter, int(np.count_nonzero(pred)) + int(np.count_nonzero(gt)) - inter


def mask_iou(intersection: int, union: int) -> float:
    """LISA's per-mask IoU: ``I / (U + 1e-5)``, and 1.0 for an empty union."""
    return 1.0 if union == 0 else intersection / (union + 1e-5)


def giou_ciou(pairs: Iterable[tuple[int, int]]) -> dict[str, float | int]:
    """gIoU and cIoU over masks given as ``(intersection, union)`` pairs (:func:`intersection_union`).

    Returns:
        ``{"gIoU": ..., "cIoU": ..., "count": number of masks}`` (fractions).

    Raises:
        ValueError: no masks, or a pair with ``intersection > union`` or a negative count.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no masks to score")
    total_i = total_u = 0
    iou_sum = 0.0
    for index, (inter, union) in enumerate(pairs):
        if not 0 <= inter <= union:
            raise ValueError(f"mask {index}: intersection {inter} and union {union} are inconsistent")
        total_i, total_u = total_i + inter, total_u + union
        iou_sum += mask_iou(inter, union)
    return {"gIoU": iou_sum / (len(pairs) + 1e-5), "cIoU": total_i / (total_u + 1e-10), "count": len(pairs)}

"""Video object segmentation metrics: region similarity J and boundary F-measure, fast and exact.

The numbers are identical to the DAVIS toolkit's (``davis2017-evaluation``, ``davis2017/metrics.py``),
whose rules are spelled out in :mod:`evaluation.metrics.davis_reference`, the frame-by-frame oracle
the tests compare against:

* **J** is the IoU of the predicted and ground-truth masks, 1 when both are empty.
* **F** is the F-measure of the one-pixel-wide boundaries: a boundary pixel matches when the other
  boundary has a pixel inside the disk ``skimage.morphology.disk(bound_pix)`` around it, where
  ``bound_pix`` is ``bound_th`` when ``bound_th >= 1``, else ``ceil(bound_th * ||(H, W)||)`` (8 px at
  480p, 18 px at 1080p).
* **Void** pixels (DAVIS-2017 ground-truth value 255) are removed from both masks first, which is
  exactly what the toolkit's J and boundary extraction do.

How it is fast without changing a number:

* Every pixel that affects a frame's counts lies in the bounding box of ``pred | gt`` grown by one
  pixel, so each frame is cropped to it (the one-pixel margin keeps the boundary rule exact).
* The toolkit dilates each boundary with the disk and reads the dilation at the other boundary's
  pixels. Here the disk is split into a few rectangles (one per distinct row length) and, for each
  boundary pixel of one mask, the other boundary's pixels inside each rectangle are counted with an
  integral image (``cv2.integral``); the pixel matches when a count is positive. Most pixels are
  settled by the largest rectangle, so the cost is a few look-ups per boundary pixel instead of a
  dilation of the whole frame per mask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "DEFAULT_BOUND_TH",
    "boundary_f_measure",
    "boundary_radius",
    "disk_footprint",
    "footprint_rectangles",
    "jf_per_frame",
    "jf_scores",
    "region_similarity",
    "seg2bmap",
    "summarize",
]

DEFAULT_BOUND_TH = 0.008


def _as_stack(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(T, H, W)`` pred and gt with void pixels cleared (a 2-D mask becomes ``T = 1``)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} does not match gt shape {gt.shape}")
    if void is not None and np.shape(void) != gt.shape:
        raise ValueError(f"void shape {np.shape(void)} does not match gt shape {gt.shape}")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
        void = None if void is None else np.asarray(void)[None]
    if pred.ndim != 3:
        raise ValueError(f"expected masks of shape (T, H, W) or (H, W), got {pred.shape}")
    pred, gt = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        pred, gt = pred & keep, gt & keep
    return pred, gt


def boundary_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Matching tolerance in pixels: ``bound_th`` if it is >= 1, else ``ceil(bound_th * ||(H, W)||)``.

    The norm is ``np.linalg.norm`` as in the toolkit, so the ceiling lands on the same side.
    """
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk_footprint(radius: float) -> np.ndarray:
    """``skimage.morphology.disk(radius)`` as a boolean ``(K, K)`` array.

    The grid is ``arange(-radius, radius + 1)`` along each axis and a cell belongs to the disk when
    ``x**2 + y**2 <= radius**2`` (``K`` is even for a radius like 2.5).
    """
    coords = np.arange(-radius, radius + 1)
    return (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2


@lru_cache(maxsize=64)
def footprint_rectangles(radius: float) -> tuple[tuple[int, int, int, int], ...]:
    """Rectangles whose union is the disk footprint as ``cv2.dilate`` applies it, largest first.

    ``cv2.dilate`` anchors a ``(K, K)`` kernel at ``(K // 2, K // 2)``, so footprint cell ``(i, j)`` is
    the offset ``(i - K // 2, j - K // 2)``. Each rectangle is ``(dy0, dy1, dx0, dx1)`` (inclusive
    offsets): one per distinct row run of the footprint, spanning every row whose run contains it.
    The union is checked against the footprint.
    """
    footprint = disk_footprint(radius)
    anchor = footprint.shape[0] // 2
    runs: dict[int, tuple[int, int]] = {}
    for i, row in enumerate(footprint):
        cols = np.flatnonzero(row)
        if cols.size and cols[-1] - cols[0] + 1 != cols.size:
            raise ValueError(f"disk({radius}) has a row that is not one run of ones")
        if cols.size:
            runs[i - anchor] = (int(cols[0]) - anchor, int(cols[-1]) - anchor)
    rects = []
    for lo, hi in set(runs.values()):
        rows = [dy for dy, (row_lo, row_hi) in runs.items() if row_lo <= lo and hi <= row_hi]
        rects.append((min(rows), max(rows), lo, hi))
    rects.sort(key=lambda r: (-(r[1] - r[0] + 1) * (r[3] - r[2] + 1), r))

    rebuilt = np.zeros_like(footprint)
    for dy0, dy1, dx0, dx1 in rects:
        rebuilt[dy0 + anchor : dy1 + anchor + 1, dx0 + anchor : dx1 + anchor + 1] = True
    if not np.array_equal(rebuilt, footprint):
        raise ValueError(f"disk({radius}) is not a union of its row-run rectangles")
    return tuple(rects)


def _bmap_into(seg: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write the boundary map of boolean ``seg`` (``(..., H, W)``) into the zeroed array ``out`` of its shape."""
    np.not_equal(seg[..., :, :-1], seg[..., :, 1:], out=out[..., :, :-1])
    out[..., :-1, :] |= seg[..., :-1, :] ^ seg[..., 1:, :]
    out[..., :-1, :-1] |= seg[..., :-1, :-1] ^ seg[..., 1:, 1:]
    return out


def seg2bmap(masks: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary maps of binary masks (the toolkit's ``_seg2bmap`` at full size).

    A pixel is a boundary pixel when it differs from its right, bottom or bottom-right neighbour;
    neighbours outside the array count as equal to the pixel itself (so the last row only looks
    right, the last column only looks down, and the bottom-right corner is never a boundary).

    Args:
        masks: ``(..., H, W)`` array; non-zero means object.

    Returns:
        Boolean array of the same shape.
    """
    seg = np.asarray(masks).astype(bool, copy=False)
    return _bmap_into(seg, np.zeros(seg.shape, dtype=bool))


def _padded_bmap(seg: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Boundary map of ``seg`` inside a ``pad``-pixel zero frame, and the flat indices of its pixels."""
    h, w = seg.shape
    out = np.zeros((h + 2 * pad, w + 2 * pad), dtype=bool)
    _bmap_into(seg, out[pad : pad + h, pad : pad + w])
    return out, np.flatnonzero(out)


def _count_matched(points: np.ndarray, other: np.ndarray, rects: tuple) -> int:
    """How many boundary pixels (flat indices into a padded map) have a pixel of ``other`` in the footprint.

    ``other`` is the other padded boundary map (same shape); the padding is at least the footprint
    radius, so no rectangle leaves the array.
    """
    stride = other.shape[1] + 1
    sat = cv2.integral(other.view(np.uint8)).ravel()  # sat[y * stride + x] = other[:y, :x].sum()
    points = points + points // other.shape[1]  # (y, x) -> y * stride + x
    matched = 0
    for dy0, dy1, dx0, dx1 in rects:
        top, bottom = dy0 * stride, (dy1 + 1) * stride
        count = sat[points + (bottom + dx1 + 1)] - sat[points + (top + dx1 + 1)]
        count -= sat[points + (bottom + dx0)] - sat[points + (top + dx0)]
        hit = count > 0
        n_hit = int(np.count_nonzero(hit))
        matched += n_hit
        if n_hit == points.size:
            break
        if n_hit:
            points = points[~hit]
    return matched


def _frame_counts(pred: np.ndarray, gt: np.ndarray, rects: tuple | None) -> tuple[int, ...]:
    """``(inter, union, pred boundary px, gt boundary px, matched pred px, matched gt px)`` of one frame.

    ``rects`` is :func:`footprint_rectangles` of the tolerance; ``None`` skips the boundary counts (J only).
    """
    height, width = pred.shape
    rows = np.flatnonzero(pred.any(axis=1) | gt.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0, 0, 0
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, height)
    cols = np.flatnonzero(pred[y0:y1].any(axis=0) | gt[y0:y1].any(axis=0))
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, width)
    p, g = pred[y0:y1, x0:x1], gt[y0:y1, x0:x1]
    inter = int(np.count_nonzero(p & g))
    union = int(np.count_nonzero(p)) + int(np.count_nonzero(g)) - inter
    if rects is None:
        return inter, union, 0, 0, 0, 0
    # Outside the crop both masks are 0, and the crop's last row/column (when inside the image) is 0 in
    # both, so the boundary rule at the crop edge gives the same maps as on the full frame.
    pad = max(abs(v) for rect in rects for v in rect)
    pred_b, pred_points = _padded_bmap(p, pad)
    gt_b, gt_points = _padded_bmap(g, pad)
    if pred_points.size == 0 or gt_points.size == 0:
        return inter, union, pred_points.size, gt_points.size, 0, 0
    pred_hit = _count_matched(pred_points, gt_b, rects)
    gt_hit = _count_matched(gt_points, pred_b, rects)
    return inter, union, pred_points.size, gt_points.size, pred_hit, gt_hit


def _counts(pred: np.ndarray, gt: np.ndarray, bound_th: float | None) -> np.ndarray:
    """``(T, 6)`` int64 counts of :func:`_frame_counts` for boolean stacks (no boundaries if ``bound_th`` is None)."""
    rects = None if bound_th is None else footprint_rectangles(boundary_radius(*pred.shape[1:], bound_th))
    return np.array([_frame_counts(p, g, rects) for p, g in zip(pred, gt)], dtype=np.int64).reshape(-1, 6)


def _j_from_counts(counts: np.ndarray) -> np.ndarray:
    inter, union = counts[:, 0], counts[:, 1]
    j = np.ones(len(counts), dtype=np.float64)
    nonempty = union > 0
    j[nonempty] = inter[nonempty] / union[nonempty]
    return j


def _f_from_counts(counts: np.ndarray) -> np.ndarray:
    n_pred, n_gt, pred_hit, gt_hit = counts[:, 2], counts[:, 3], counts[:, 4], counts[:, 5]
    # Toolkit conventions: an empty boundary on one side only gives precision 1 / recall 0 (prediction
    # empty) or precision 0 / recall 1 (ground truth empty); both empty gives 1 / 1.
    precision = np.ones(len(counts))
    recall = np.ones(len(counts))
    both = (n_pred > 0) & (n_gt > 0)
    precision[both] = pred_hit[both] / n_pred[both]
    recall[both] = gt_hit[both] / n_gt[both]
    precision[(n_pred > 0) & (n_gt == 0)] = 0.0
    recall[(n_pred == 0) & (n_gt > 0)] = 0.0
    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)


def region_similarity(pred: np.ndarray, gt: np.ndarray, *, void: np.ndarray | None = None) -> np.ndarray:
    """Per-frame Jaccard index (IoU) of two mask stacks.

    Args:
        pred: predicted masks, ``(T, H, W)`` (or ``(H, W)``); non-zero means object.
        gt: ground-truth masks of the same shape.
        void: optional boolean mask of the same shape; these pixels are ignored.

    Returns:
        ``(T,)`` float64 array of IoU values; frames with an empty union score 1.
    """
    return _j_from_counts(_counts(*_as_stack(pred, gt, void), None))


def boundary_f_measure(
    pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH, *, void: np.ndarray | None = None
) -> np.ndarray:
    """Per-frame boundary F-measure of two mask stacks.

    Args:
        pred: predicted masks, ``(T, H, W)`` (or ``(H, W)``); non-zero means object.
        gt: ground-truth masks of the same shape.
        bound_th: matching tolerance; a fraction of the image diagonal if < 1, else pixels.
        void: optional boolean mask of the same shape, cleared from both masks before boundaries are taken.

    Returns:
        ``(T,)`` float64 array. Empty-boundary rules: both empty -> 1; only the prediction empty
        (precision 1, recall 0) -> 0; only the ground truth empty (precision 0, recall 1) -> 0.
    """
    return _f_from_counts(_counts(*_as_stack(pred, gt, void), bound_th))


def jf_per_frame(
    pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH, *, void: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F in one pass over the frames: ``(J, F)``, each ``(T,)`` float64.

    Arguments as for :func:`boundary_f_measure`; the results equal :func:`region_similarity` and
    :func:`boundary_f_measure`.
    """
    counts = _counts(*_as_stack(pred, gt, void), bound_th)
    return _j_from_counts(counts), _f_from_counts(counts)


def jf_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    bound_th: float = DEFAULT_BOUND_TH,
    skip_first_last: bool = False,
    *,
    void: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean J, mean F and their average for one object track.

    Args:
        pred: predicted masks ``(T, H, W)`` of one object.
        gt: ground-truth masks ``(T, H, W)`` of the same object.
        bound_th: boundary tolerance passed to :func:`boundary_f_measure`.
        skip_first_last: drop the first and last frame before averaging, as the DAVIS-2017
            semi-supervised protocol does (needs ``T >= 3``).
        void: optional boolean ``(T, H, W)`` mask of ignored pixels.

    Returns:
        ``{"J": mean J, "F": mean F, "J&F": (J + F) / 2}`` as Python floats.
    """
    pred, gt = _as_stack(pred, gt, void)
    if skip_first_last:
        if pred.shape[0] < 3:
            raise ValueError("skip_first_last needs at least 3 frames")
        pred, gt = pred[1:-1], gt[1:-1]
    if pred.shape[0] == 0:
        raise ValueError("no frames to score")
    counts = _counts(pred, gt, bound_th)
    j, f = float(_j_from_counts(counts).mean()), float(_f_from_counts(counts).mean())
    return {"J": j, "F": f, "J&F": (j + f) / 2}


def summarize(per_sample: Mapping[str, Mapping[str, float]]) -> dict[str, float | int]:
    """Average per-sample scores (as returned by :func:`jf_scores`) over samples.

    Args:
        per_sample: sample name -> ``{"J": ..., "F": ...}`` (a ``"J&F"`` entry is ignored; it is
            recomputed from the means).

    Returns:
        ``{"J": mean J, "F": mean F, "J&F": (J + F) / 2, "count": number of samples}``; the means
        are NaN when ``per_sample`` is empty.
    """
    count = len(per_sample)
    if count == 0:
        return {"J": math.nan, "F": math.nan, "J&F": math.nan, "count": 0}
    j = float(np.mean([s["J"] for s in per_sample.values()]))
    f = float(np.mean([s["F"] for s in per_sample.values()]))
    return {"J": j, "F": f, "J&F": (j + f) / 2, "count": count}

"""Video object segmentation metrics: region similarity J and boundary F-measure.

The definitions follow the DAVIS evaluation toolkit (``davis2017-evaluation``):

* **J** is the intersection-over-union of the predicted and ground-truth masks. A frame where both
  masks are empty scores 1.
* **F** is the F-measure between the one-pixel-wide boundaries of the two masks. A predicted
  boundary pixel counts as correct if a ground-truth boundary pixel lies within a disk of radius
  ``bound_pix`` around it (and vice versa for recall), where ``bound_pix`` is ``bound_th`` itself
  when ``bound_th >= 1`` and otherwise ``ceil(bound_th * sqrt(H**2 + W**2))`` (8 px at 480p).

All functions take whole ``(T, H, W)`` stacks and use numpy array operations; the only Python loops
are over frames and over the rows of the small disk footprint, never over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "boundary_f_measure",
    "boundary_radius",
    "disk_footprint",
    "jf_scores",
    "region_similarity",
    "seg2bmap",
    "summarize",
]

DEFAULT_BOUND_TH = 0.008


def _as_stack(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``pred`` and ``gt`` as boolean ``(T, H, W)`` arrays (a 2-D mask becomes ``T = 1``)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} does not match gt shape {gt.shape}")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.ndim != 3:
        raise ValueError(f"expected masks of shape (T, H, W) or (H, W), got {pred.shape}")
    return pred.astype(bool, copy=False), gt.astype(bool, copy=False)


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame Jaccard index (IoU) of two mask stacks.

    Args:
        pred: predicted masks, ``(T, H, W)`` (or ``(H, W)``); non-zero means object.
        gt: ground-truth masks of the same shape.

    Returns:
        ``(T,)`` float64 array of IoU values; frames where both masks are empty score 1.
    """
    pred, gt = _as_stack(pred, gt)
    inter = np.logical_and(pred, gt).sum(axis=(1, 2), dtype=np.int64)
    union = np.logical_or(pred, gt).sum(axis=(1, 2), dtype=np.int64)
    j = np.ones(len(union), dtype=np.float64)
    nonempty = union > 0
    j[nonempty] = inter[nonempty] / union[nonempty]
    return j


def boundary_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Matching tolerance in pixels: ``bound_th`` if it is >= 1, else a fraction of the diagonal.

    For a fraction, the result is ``ceil(bound_th * sqrt(height**2 + width**2))`` (8 for 480x854).
    """
    if bound_th >= 1:
        return float(bound_th)
    return float(math.ceil(bound_th * math.hypot(height, width)))


def disk_footprint(radius: float) -> np.ndarray:
    """Disk structuring element with the semantics of ``skimage.morphology.disk(radius)``.

    The grid is ``arange(-radius, radius + 1)`` along each axis and a cell belongs to the disk when
    ``x**2 + y**2 <= radius**2``. Returns a boolean ``(K, K)`` array.
    """
    coords = np.arange(-radius, radius + 1)
    return (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2


def seg2bmap(masks: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary maps of binary masks (the toolkit's ``seg2bmap`` at full size).

    A pixel is a boundary pixel when it differs from its right, bottom or bottom-right neighbour;
    neighbours outside the image count as equal to the pixel itself (so the last row only looks
    right, the last column only looks down, and the bottom-right corner is never a boundary).

    Args:
        masks: ``(..., H, W)`` array; non-zero means object.

    Returns:
        Boolean array of the same shape.
    """
    seg = np.asarray(masks).astype(bool, copy=False)
    bmap = np.zeros_like(seg, dtype=bool)
    bmap[..., :, :-1] |= seg[..., :, :-1] ^ seg[..., :, 1:]
    bmap[..., :-1, :] |= seg[..., :-1, :] ^ seg[..., 1:, :]
    bmap[..., :-1, :-1] |= seg[..., :-1, :-1] ^ seg[..., 1:, 1:]
    return bmap


def _or_shifted(out: np.ndarray, src: np.ndarray, dy: int, dx: int) -> None:
    """In place: ``out[..., y, x] |= src[..., y + dy, x + dx]`` wherever the source index is valid."""
    h, w = out.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return
    oy, sy = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    ox, sx = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., oy, ox] |= src[..., sy, sx]


def _dilate(masks: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary dilation of ``(..., H, W)`` masks, with the footprint anchored at ``(K // 2, K // 2)``.

    Same result as ``cv2.dilate`` with the default anchor and border (pixels outside the image never
    contribute). Each footprint row is a contiguous run of ones (true for disks), so the dilation is
    built from horizontal "any within a run" maps, grown one column at a time, that are then OR-ed
    into the output at the row's vertical offset.
    """
    kh, kw = footprint.shape
    ay, ax = kh // 2, kw // 2
    rows = []  # (dy, first dx, run length - 1) for each non-empty footprint row
    for i in range(kh):
        cols = np.flatnonzero(footprint[i])
        if cols.size == 0:
            continue
        if cols[-1] - cols[0] + 1 != cols.size:
            raise ValueError("footprint rows must be contiguous runs of ones")
        rows.append((i - ay, int(cols[0]) - ax, int(cols[-1] - cols[0])))

    # Pad on the left so that windows starting left of the image keep their in-image part.
    pad = max(0, -min(r[1] for r in rows))
    padded = np.pad(masks, [(0, 0)] * (masks.ndim - 1) + [(pad, 0)])
    out = np.zeros_like(padded)
    run = padded.copy()  # run[..., x] == any(padded[..., x : x + n + 1]) for the current n
    n = 0
    for length in sorted({r[2] for r in rows}):
        while n < length:
            n += 1
            if n < run.shape[-1]:
                run[..., :-n] |= padded[..., n:]
        for dy, lo, span in rows:
            if span == length:
                _or_shifted(out, run, dy, lo)
    return out[..., pad:]


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> np.ndarray:
    """Per-frame boundary F-measure of two mask stacks.

    Args:
        pred: predicted masks, ``(T, H, W)`` (or ``(H, W)``); non-zero means object.
        gt: ground-truth masks of the same shape.
        bound_th: matching tolerance; a fraction of the image diagonal if < 1, else pixels.

    Returns:
        ``(T,)`` float64 array. Empty-boundary rules: both empty -> 1; only the prediction empty
        (precision 1, recall 0) -> 0; only the ground truth empty (precision 0, recall 1) -> 0.
    """
    pred, gt = _as_stack(pred, gt)
    height, width = pred.shape[1:]
    footprint = disk_footprint(boundary_radius(height, width, bound_th))

    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_pred = pred_b.sum(axis=(1, 2), dtype=np.int64)
    n_gt = gt_b.sum(axis=(1, 2), dtype=np.int64)
    pred_hit = np.zeros_like(n_pred)
    gt_hit = np.zeros_like(n_gt)
    for t in range(pred_b.shape[0]):
        # Dilation values are only read at boundary pixels and only boundary pixels are dilated, so
        # cropping each frame to the bounding box of its boundary pixels changes nothing.
        both = pred_b[t] | gt_b[t]
        rows = np.flatnonzero(both.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(both.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        p, g = pred_b[t][box], gt_b[t][box]
        pred_hit[t] = np.count_nonzero(p & _dilate(g, footprint))
        gt_hit[t] = np.count_nonzero(g & _dilate(p, footprint))

    # Toolkit conventions: an empty boundary on one side only gives precision 1 / recall 0 (prediction
    # empty) or precision 0 / recall 1 (ground truth empty); both empty gives 1 / 1.
    precision = np.ones(len(n_pred))
    recall = np.ones(len(n_gt))
    both = (n_pred > 0) & (n_gt > 0)
    precision[both] = pred_hit[both] / n_pred[both]
    recall[both] = gt_hit[both] / n_gt[both]
    precision[(n_pred > 0) & (n_gt == 0)] = 0.0
    recall[(n_pred == 0) & (n_gt > 0)] = 0.0

    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)


def jf_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    bound_th: float = DEFAULT_BOUND_TH,
    skip_first_last: bool = False,
) -> dict[str, float]:
    """Mean J, mean F and their average for one object track.

    Args:
        pred: predicted masks ``(T, H, W)`` of one object.
        gt: ground-truth masks ``(T, H, W)`` of the same object.
        bound_th: boundary tolerance passed to :func:`boundary_f_measure`.
        skip_first_last: drop the first and last frame before averaging, as the DAVIS-2017
            semi-supervised protocol does (needs ``T >= 3``).

    Returns:
        ``{"J": mean J, "F": mean F, "J&F": (J + F) / 2}`` as Python floats.
    """
    pred, gt = _as_stack(pred, gt)
    if skip_first_last:
        if pred.shape[0] < 3:
            raise ValueError("skip_first_last needs at least 3 frames")
        pred, gt = pred[1:-1], gt[1:-1]
    if pred.shape[0] == 0:
        raise ValueError("no frames to score")
    j = float(region_similarity(pred, gt).mean())
    f = float(boundary_f_measure(pred, gt, bound_th).mean())
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

"""Reference region similarity J and boundary F-measure, written frame by frame as the DAVIS toolkit does.

This module is the oracle for the tests and the baseline of ``scripts/benchmark_jf.py``; evaluation code
uses :mod:`evaluation.metrics.jf`, which gives identical numbers several times faster. The rules follow
``davis2017/metrics.py`` of ``davisvideochallenge/davis2017-evaluation`` (``db_eval_iou``,
``db_eval_boundary``, ``f_measure``, ``_seg2bmap``):

* masks are binary: any non-zero value is the object;
* void pixels (DAVIS-2017 ground-truth value 255, passed as a boolean ``void`` mask) are removed from both
  masks before anything else: J counts only non-void pixels, and the boundaries are taken of
  ``mask & ~void`` (so an object touching a void region gets a boundary along it);
* J = |pred & gt| / |pred | gt|, and 1 when the union is empty;
* boundaries are one pixel wide: a pixel is a boundary pixel when it differs from its right, bottom or
  bottom-right neighbour; the last row compares only to the right, the last column only downwards and
  the bottom-right pixel is never a boundary;
* the tolerance is ``bound_th`` pixels when ``bound_th >= 1``, else ``ceil(bound_th * ||(H, W)||)``; each
  boundary is dilated with ``cv2.dilate`` by ``skimage.morphology.disk(tolerance)`` and a boundary pixel
  matches when the other boundary's dilation covers it;
* precision = matched predicted / predicted boundary pixels, recall = matched ground-truth / ground-truth
  boundary pixels; an empty predicted boundary gives (1, 0), an empty ground-truth boundary (0, 1), both
  empty (1, 1); F = 2PR / (P + R), and 0 when P + R = 0.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.morphology import disk

__all__ = ["boundary_f_frame", "boundary_f_measure", "boundary_map", "region_similarity", "region_similarity_frame"]


def region_similarity_frame(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one ``(H, W)`` frame, void pixels excluded."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    keep = np.ones_like(gt) if void is None else ~void.astype(bool)
    inter = np.sum(pred & gt & keep)
    union = np.sum((pred | gt) & keep)
    return 1.0 if union == 0 else float(inter / union)


def boundary_map(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary ``(H, W)`` mask (the toolkit's ``_seg2bmap`` at full size)."""
    seg = seg.astype(bool)
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    below_right = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    below_right[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ right) | (seg ^ below) | (seg ^ below_right)
    bmap[-1, :] = seg[-1, :] ^ right[-1, :]
    bmap[:, -1] = seg[:, -1] ^ below[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_f_frame(
    pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008, void: np.ndarray | None = None
) -> float:
    """Boundary F-measure of one ``(H, W)`` frame."""
    keep = np.ones(gt.shape, dtype=bool) if void is None else ~void.astype(bool)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    pred_b = boundary_map(pred.astype(bool) & keep)
    gt_b = boundary_map(gt.astype(bool) & keep)
    footprint = disk(bound_pix).astype(np.uint8)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), footprint)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), footprint)
    n_pred, n_gt = np.sum(pred_b), np.sum(gt_b)
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = np.sum(pred_b * gt_dil) / float(n_pred)
        recall = np.sum(gt_b * pred_dil) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _frames(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None) -> list[tuple]:
    """``[(pred_t, gt_t, void_t), ...]`` for ``(T, H, W)`` or ``(H, W)`` inputs of one shape."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or (void is not None and np.shape(void) != gt.shape):
        raise ValueError(f"shapes differ: pred {pred.shape}, gt {gt.shape}, void {np.shape(void)}")
    if pred.ndim == 2:
        pred, gt, void = pred[None], gt[None], None if void is None else np.asarray(void)[None]
    if pred.ndim != 3:
        raise ValueError(f"expected masks of shape (T, H, W) or (H, W), got {pred.shape}")
    return [(pred[t], gt[t], None if void is None else void[t]) for t in range(pred.shape[0])]


def region_similarity(pred: np.ndarray, gt: np.ndarray, *, void: np.ndarray | None = None) -> np.ndarray:
    """Per-frame J of ``(T, H, W)`` stacks, as a ``(T,)`` float64 array."""
    return np.array([region_similarity_frame(p, g, v) for p, g, v in _frames(pred, gt, void)], dtype=np.float64)


def boundary_f_measure(
    pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008, *, void: np.ndarray | None = None
) -> np.ndarray:
    """Per-frame F of ``(T, H, W)`` stacks, as a ``(T,)`` float64 array."""
    return np.array([boundary_f_frame(p, g, bound_th, v) for p, g, v in _frames(pred, gt, void)], dtype=np.float64)

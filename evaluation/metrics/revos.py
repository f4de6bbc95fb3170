"""ReVOS scoring exactly as its official script does it (``cilinyan/VISA``: ``tools/eval_revos.py``, ``metrics.py``).

On disk: predictions ``<pred>/<video>/<exp_id>/<frame>.png``, read with ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``
(uint8; an indexed PNG becomes the grey level of its palette colour); ground truth from
``meta_expressions_valid_.json`` (``videos/<video>/expressions/<exp_id>``: ``exp``, ``anno_id`` list, ``type_id``),
``mask_dict.json`` (``<anno_id>`` -> one COCO RLE or null per frame) and ``mask_dict_foreground.json``
(``<video>/masks_rle`` -> one RLE per frame, possibly several channels).

What the official script does with them, per expression:

* ``gt`` = sum of the decoded masks of the expression's ``anno_id`` objects (uint8, 2 where two overlap);
  ``foreground`` = sum over the channels of the video's foreground RLE (every annotated object);
  ``pred`` = the grey PNG **as read, not thresholded**.
* **J** and **F**: the DAVIS definitions (``db_eval_iou`` / ``db_eval_boundary``, no void) on ``gt > 0`` and
  ``pred > 0``, averaged over frames.
* **A** (accuracy): per frame ``mean(gt == pred)`` on the raw values, averaged over frames.
* **R** (robustness, after R2-VOS): per frame ``max(1 - neg / (pos + 1e-6), 0)`` with ``neg`` the sum of
  ``(1 - gt) * pred`` in uint8 arithmetic (false-positive pixels weighted by the saved value) and ``pos`` the
  number of foreground pixels of all objects of the video; averaged over frames. It is computed for every
  expression. Where two targets overlap, ``gt`` is 2 and ``1 - gt`` wraps to 255, so even a perfect
  prediction loses A and R there.
* Each expression's J, F, A, R are stored as ``round(100 * x, 2)``; a group's value is the mean of those,
  its J&F is ``(J + F) / 2``; groups are ``type_id`` 0 (referring) and 1 (reasoning); ``type_id`` 2 is scored
  but enters no column; "overall" is the mean of the two group values (not a mean over expressions).

So A and R depend on the value the PNGs store for foreground: with 0/1 (what VISA's
``XMem/merge_results.py`` writes) they are the intended accuracy and robustness; with 0/100 (RGA3's
``inference_revos.py``) or 0/255 (this repository's prediction store) every foreground pixel counts as wrong
for A and false positives weigh 100x or 255x in R. :func:`binarize_scaled` reads a PNG saved with a given
scale and :func:`expression_scores` takes the scale to reproduce the official numbers for such files
(``saved_scale=1`` gives the intended ones). The official script scores a missing video or any error as 0;
here they raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from evaluation.metrics.jf import jf_per_frame

__all__ = [
    "GROUPS",
    "MASK_SCALES",
    "binarize_scaled",
    "expression_scores",
    "read_prediction_png",
    "revos_evaluate",
    "revos_table",
]

MASK_SCALES = (1, 100, 255)  # foreground values used by VISA, RGA3 and this repository
GROUPS = {0: "referring", 1: "reason"}  # type_id -> group; type_id 2 is in no group
TYPE_IDS = (0, 1, 2)
METRICS = ("J", "F", "A", "R")


def read_prediction_png(path: str | Path) -> np.ndarray:
    """A prediction PNG as the official script reads it: ``(H, W)`` uint8 from ``cv2.IMREAD_GRAYSCALE``."""
    png = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if png is None:
        raise FileNotFoundError(f"prediction PNG missing or unreadable: {path}")
    return png


def binarize_scaled(png: np.ndarray, scale: int) -> np.ndarray:
    """Boolean mask of a prediction PNG whose foreground value is ``scale`` (0 is background).

    The official J and F treat any non-zero value as foreground; this also checks that the PNG holds only
    0 and ``scale``, so a file written with another scale (or a palette PNG read as grey) is caught.

    Raises:
        ValueError: ``scale`` not in 1..255, or values other than 0 and ``scale``.
    """
    if not 1 <= int(scale) <= 255:
        raise ValueError(f"mask scale must be in 1..255, got {scale}")
    png = np.asarray(png)
    foreground = png != 0
    if np.any(foreground & (png != scale)):
        values = np.unique(png)[:8].tolist()
        raise ValueError(f"prediction values {values} are not 0/{scale}; check --mask-scale")
    return foreground


def expression_scores(
    pred: np.ndarray, gt: np.ndarray, foreground: np.ndarray, *, saved_scale: int = 1
) -> dict[str, float]:
    """Official J, F, A and R of one expression (fractions, not yet rounded).

    Args:
        pred: ``(T, H, W)`` predicted masks (bool, or anything whose non-zero pixels are foreground).
        gt: ``(T, H, W)`` sum of the target objects' masks (bool is the same when they do not overlap).
        foreground: ``(T, H, W)`` sum of all annotated objects' masks of the video.
        saved_scale: foreground value of the PNGs the official script would read (see the module notes);
            1 gives the intended A and R.

    Returns:
        ``{"J", "F", "A", "R"}`` as Python floats.
    """
    pred, gt, foreground = np.asarray(pred), np.asarray(gt), np.asarray(foreground)
    if not pred.shape == gt.shape == foreground.shape or pred.ndim != 3:
        raise ValueError(f"shapes differ or are not (T, H, W): pred {pred.shape}, gt {gt.shape}, fg {foreground.shape}")
    if not 1 <= int(saved_scale) <= 255:
        raise ValueError(f"saved_scale must be in 1..255, got {saved_scale}")
    j, f = jf_per_frame(pred, gt)
    raw_pred = (pred != 0).astype(np.uint8) * np.uint8(saved_scale)
    raw_gt = gt.astype(np.uint8)
    accuracy = (raw_gt == raw_pred).mean(axis=(1, 2))
    negative = ((np.uint8(1) - raw_gt) * raw_pred).sum(axis=(1, 2))  # uint8 products wrap as in the official code
    positive = foreground.astype(np.uint8).sum(axis=(1, 2))
    robustness = np.maximum(1 - negative / (positive + 1e-6), 0.0)
    return {"J": float(j.mean()), "F": float(f.mean()), "A": float(accuracy.mean()), "R": float(robustness.mean())}


def revos_table(per_expression: Mapping[str, Mapping]) -> dict[str, dict[str, float | int]]:
    """The official ReVOS table from per-expression scores.

    Args:
        per_expression: expression name -> ``{"J", "F", "A", "R"}`` (fractions, as returned by
            :func:`expression_scores`) and ``"type_id"`` (0 referring, 1 reasoning, 2 no column).

    Returns:
        ``{"referring": row, "reason": row, "overall": row}``, each row ``{"J", "F", "J&F", "A", "R",
        "count"}``. Values are the official numbers divided by 100 (the script prints percent), including
        its rounding of each expression's scores to 0.01 percent. A group without expressions is NaN.
    """
    rounded: dict[int, dict[str, list[float]]] = {type_id: {key: [] for key in METRICS} for type_id in TYPE_IDS}
    for name, scores in per_expression.items():
        missing = [key for key in (*METRICS, "type_id") if key not in scores]
        if missing:
            raise KeyError(f"ReVOS expression {name} lacks {missing}")
        if scores["type_id"] not in TYPE_IDS:
            raise ValueError(f"ReVOS expression {name} has type_id {scores['type_id']!r}, expected one of {TYPE_IDS}")
        for key in METRICS:
            rounded[scores["type_id"]][key].append(np.round(100 * np.float64(scores[key]), 2))

    rows = {}
    for type_id, group in GROUPS.items():
        columns = rounded[type_id]
        count = len(columns["J"])
        row = {key: float(np.array(columns[key]).mean()) if count else float("nan") for key in METRICS}
        rows[group] = {**row, "J&F": (row["J"] + row["F"]) / 2, "count": count}
    ref, reason = rows["referring"], rows["reason"]
    overall = {key: (ref[key] + reason[key]) / 2 for key in (*METRICS, "J&F")}
    rows["overall"] = {**overall, "count": ref["count"] + reason["count"]}
    return {group: {key: v if key == "count" else v / 100 for key, v in row.items()} for group, row in rows.items()}


def revos_evaluate(
    expressions: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray, int]], *, saved_scale: int = 1
) -> dict[str, dict]:
    """Score expression tracks and build the official table.

    Args:
        expressions: ``(name, pred, gt, foreground, type_id)`` per expression, arrays as for
            :func:`expression_scores` (a generator keeps one video in memory at a time).
        saved_scale: see :func:`expression_scores`.

    Returns:
        ``{"table": revos_table(...), "per_expression": {name: {"J", "F", "A", "R", "type_id"}}}``.
    """
    per_expression = {}
    for name, pred, gt, foreground, type_id in expressions:
        if name in per_expression:
            raise ValueError(f"ReVOS expression {name} is given twice")
        try:
            scores = expression_scores(pred, gt, foreground, saved_scale=saved_scale)
        except ValueError as error:
            raise ValueError(f"ReVOS expression {name}: {error}") from None
        per_expression[name] = {**scores, "type_id": type_id}
    return {"table": revos_table(per_expression), "per_expression": per_expression}

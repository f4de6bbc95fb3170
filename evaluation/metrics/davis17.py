"""DAVIS-2017 *unsupervised* protocol, the way Ref-DAVIS17 is scored (ReferFormer and the methods that follow it).

On disk (``davis2017-evaluation``, task ``unsupervised``): ground truth ``Annotations_unsupervised/480p/<seq>/
<frame>.png`` and predictions ``<results>/<seq>/<frame>.png``, one indexed (palette) PNG per ground-truth frame;
``np.array(Image.open(path))`` gives the ids (0 background, k object k, 255 void in the ground truth). Callers
pass the stacked ``(T, H, W)`` uint8 id maps.

Rules, from ``davisvideochallenge/davis2017-evaluation`` (``davis2017/davis.py``, ``results.py``,
``evaluation.py`` ``_evaluate_unsupervised`` / ``evaluate``, ``utils.py`` ``db_statistics``):

1. Ground truth: the loader turns 255 into 0, so void pixels count as background (the toolkit then looks
   for 255 in the per-object boolean masks and never finds it). The objects are ids ``1..N`` with ``N``
   the largest id of the *first* frame.
2. Predictions: proposals are ids ``1..M`` with ``M`` the largest id over all frames (an id that never
   occurs is an empty proposal). More than ``max_proposals`` (20) is an error; fewer than ``N`` are padded
   with empty proposals.
3. Every frame is scored (dropping the first and last frame is the semi-supervised protocol only).
4. J and F per frame for every (proposal, object) pair; the pairs are matched with the Hungarian algorithm
   (``scipy.optimize.linear_sum_assignment``) on ``-(mean J + mean F) / 2``.
5. Per matched object: mean, recall (share of frames > 0.5) and decay (mean of the first of four frame
   bins minus the last) of J and of F. Objects are listed in the matching's row order and named
   ``<seq>_<k>`` by that position, as the toolkit names them (so ``<seq>_1`` is not necessarily GT object 1;
   ``gt_id`` says which one it is).
6. Global: ``J-Mean`` is the mean over all objects of all sequences (likewise recall and decay, and F);
   ``J&F-Mean = (J-Mean + F-Mean) / 2``.

ReferFormer (``wjn922/ReferFormer``: ``inference_davis.py``, ``scripts/dist_test_davis.sh``,
``eval_davis.py``): expression ``i`` of a video describes object ``i // 4`` in expression set ``i % 4`` (first-
frame and full-video expressions of two annotators). For each set it merges the objects' masks into one id
map (:func:`merge_expression_masks`) and evaluates that folder with this protocol; papers report the mean of
the four results.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from evaluation.metrics.jf import DEFAULT_BOUND_TH, jf_per_frame

__all__ = [
    "MAX_PROPOSALS",
    "db_statistics",
    "evaluate_sequence",
    "gt_object_masks",
    "merge_expression_masks",
    "proposal_masks",
    "summarize_davis17",
]

MAX_PROPOSALS = 20
VOID_ID = 255
BACKGROUND_SCORE = 0.1  # ReferFormer's background score in the per-pixel argmax
MASK_THRESHOLD = 0.5  # ReferFormer zeroes object scores below this before the argmax


def _check_ids(ids: np.ndarray, what: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 3 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what}: expected an integer (T, H, W) id-map stack, got {ids.dtype} {ids.shape}")
    if ids.size and ids.min() < 0:
        raise ValueError(f"{what}: negative ids")
    return ids


def _one_hot(ids: np.ndarray, count: int) -> np.ndarray:
    """``(count, T, H, W)`` bool: mask ``k`` is ``ids == k + 1``."""
    return ids[None] == np.arange(1, count + 1, dtype=ids.dtype).reshape(-1, 1, 1, 1)


def gt_object_masks(gt_ids: np.ndarray, *, exclude_void: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground-truth object masks ``(N, T, H, W)`` and the void mask, as the toolkit loads them.

    Args:
        gt_ids: ``(T, H, W)`` id maps (0 background, 255 void).
        exclude_void: ``False`` (the toolkit's actual behaviour) makes void pixels background and returns
            no void mask; ``True`` returns ``gt_ids == 255`` so J and F ignore those pixels, as
            ``db_eval_iou`` / ``db_eval_boundary`` would if they ever received it.

    Returns:
        ``(masks, void)``; ``N`` is the largest id in the first frame (after void became 0).
    """
    gt_ids = _check_ids(gt_ids, "ground truth")
    void = gt_ids == VOID_ID
    ids = np.where(void, 0, gt_ids)
    count = int(ids[0].max()) if len(ids) else 0
    return _one_hot(ids, count), (void if exclude_void else None)


def proposal_masks(pred_ids: np.ndarray, max_proposals: int = MAX_PROPOSALS) -> np.ndarray:
    """Predicted proposals ``(M, T, H, W)``, ``M`` the largest id over all frames.

    Raises:
        ValueError: an id above ``max_proposals`` (the toolkit stops with "an index higher than the maximum
            number of proposals allowed"); note that 255 is not void in predictions.
    """
    pred_ids = _check_ids(pred_ids, "prediction")
    count = int(pred_ids.max()) if pred_ids.size else 0
    if count > max_proposals:
        raise ValueError(f"prediction has object id {count}, above the {max_proposals} proposals allowed")
    return _one_hot(pred_ids, count)


def merge_expression_masks(masks: np.ndarray) -> np.ndarray:
    """One id map from per-object masks or scores, as ReferFormer's ``inference_davis.py`` writes them.

    Scores below 0.5 become 0, a background score of 0.1 is put in front and each pixel takes the argmax, so
    object ``k`` (0-based) gets id ``k + 1``; where binary masks overlap the lower id wins.

    Args:
        masks: ``(K, T, H, W)`` bool masks or float scores in [0, 1], ``K <= 254``.

    Returns:
        ``(T, H, W)`` uint8 id maps.
    """
    masks = np.asarray(masks)
    if masks.ndim != 4 or len(masks) > 254:
        raise ValueError(f"expected (K, T, H, W) masks with K <= 254, got {masks.shape}")
    scores = np.where(masks < MASK_THRESHOLD, 0.0, masks.astype(np.float64))
    background = np.full((1, *masks.shape[1:]), BACKGROUND_SCORE)
    return np.argmax(np.concatenate([background, scores]), axis=0).astype(np.uint8)


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """``(mean, recall, decay)`` of per-frame values, as ``davis2017/utils.py`` ``db_statistics``.

    Recall is the share of frames above 0.5; decay splits the frames into four bins with the toolkit's
    boundaries ``round(linspace(1, T, 5) + 1e-10) - 1`` (each bin includes its end frame) and subtracts the
    last bin's mean from the first's. NaNs are ignored. The toolkit casts the bin boundaries to uint8, which
    wraps beyond 256 frames; they are kept as integers here (no DAVIS video is that long).
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-frame values, got shape {values.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
        bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


def evaluate_sequence(
    name: str,
    pred_ids: np.ndarray,
    gt_ids: np.ndarray,
    *,
    max_proposals: int = MAX_PROPOSALS,
    bound_th: float = DEFAULT_BOUND_TH,
    exclude_void: bool = False,
) -> list[dict]:
    """Match a sequence's proposals to its ground-truth objects and score each object.

    Args:
        name: sequence name (used for the per-object names and in errors).
        pred_ids: ``(T, H, W)`` predicted id maps, one per ground-truth frame.
        gt_ids: ``(T, H, W)`` ground-truth id maps.
        max_proposals: the toolkit's limit on predicted ids.
        bound_th: F tolerance.
        exclude_void: see :func:`gt_object_masks` (``False`` is the toolkit).

    Returns:
        One dict per ground-truth object, in the toolkit's order: ``name`` (``<seq>_<k>``), ``gt_id``,
        ``pred_id`` (0 for an empty padding proposal), per-frame ``J`` and ``F`` arrays, and ``J-Mean``,
        ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``, ``F-Decay``. Empty when the first ground-truth
        frame has no object (the toolkit then scores nothing for the sequence).
    """
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"{name}: prediction shape {pred_ids.shape} differs from ground truth {gt_ids.shape}")
    gt_masks, void = gt_object_masks(gt_ids, exclude_void=exclude_void)
    try:
        proposals = proposal_masks(pred_ids, max_proposals)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    n_gt, n_prop = len(gt_masks), max(len(proposals), len(gt_masks))
    empty = np.zeros(gt_ids.shape, dtype=bool)
    j = np.zeros((n_prop, n_gt, len(gt_ids)))
    f = np.zeros((n_prop, n_gt, len(gt_ids)))
    for ii in range(n_gt):
        for jj in range(n_prop):
            proposal = proposals[jj] if jj < len(proposals) else empty
            j[jj, ii], f[jj, ii] = jf_per_frame(proposal, gt_masks[ii], bound_th, void=void)
    pair_scores = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-pair_scores)
    objects = []
    for k, (row, col) in enumerate(zip(rows, cols)):
        j_stats, f_stats = db_statistics(j[row, col]), db_statistics(f[row, col])
        objects.append(
            {
                "name": f"{name}_{k + 1}",
                "gt_id": int(col) + 1,
                "pred_id": int(row) + 1 if row < len(proposals) else 0,
                "J": j[row, col],
                "F": f[row, col],
                **dict(zip(("J-Mean", "J-Recall", "J-Decay"), j_stats)),
                **dict(zip(("F-Mean", "F-Recall", "F-Decay"), f_stats)),
            }
        )
    return objects


def summarize_davis17(objects: Sequence[dict]) -> dict[str, float | int]:
    """The toolkit's global table from the objects of all sequences (:func:`evaluate_sequence` outputs).

    Returns:
        ``{"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"}`` (fractions, as
        the toolkit prints them) plus ``"count"`` (objects). Raises ``ValueError`` when there are none.
    """
    if not objects:
        raise ValueError("no objects to summarize")
    keys = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
    table = {key: float(np.mean([o[key] for o in objects])) for key in keys}
    return {"J&F-Mean": (table["J-Mean"] + table["F-Mean"]) / 2.0, **table, "count": len(objects)}

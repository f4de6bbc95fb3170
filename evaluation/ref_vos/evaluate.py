"""Score referring video segmentation predictions with J&F (DAVIS definitions), overall and by type.

    python -m evaluation.ref_vos.evaluate --pred work_dirs/quickstart/eval/trained/Annotations \\
        --data-root data/synthetic_mevis --split valid_u --out work_dirs/quickstart/eval/trained/metrics.json

Every expression of the split must have a prediction; otherwise nothing is scored and the missing
ones are named. Writes the metrics JSON (overall, per expression type, per expression).

Besides J&F it reports ``distinct_pairs``: over pairs of expressions of one video whose targets
differ (ground-truth IoU < 0.5), the share whose predicted masks differ too (IoU < 0.5). A model
that ignores the expression (e.g. segments every object) scores 0; the ground truth scores 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluation.mask_predictions import is_done, read_masks
from evaluation.metrics.jf import jf_scores, summarize
from utils.data.mevis import MeViSDataset

DISTINCT_IOU = 0.5


class IncompletePredictions(RuntimeError):
    """Raised instead of scoring a prediction set that lacks some samples."""


def video_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``(T, H, W)`` bool mask tracks over all their pixels (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def distinct_pairs(preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple[int, int]:
    """``(pairs with distinct predictions, pairs with distinct targets)`` among one video's expressions."""
    distinct = total = 0
    for i, j in itertools.combinations(range(len(gts)), 2):
        if video_iou(gts[i], gts[j]) < DISTINCT_IOU:
            total += 1
            distinct += video_iou(preds[i], preds[j]) < DISTINCT_IOU
    return distinct, total


def evaluate(pred_root: str | Path, data_root: str | Path, split: str) -> dict:
    """``{"overall": {...}, "by_type": {type: {...}}, "per_expression": {sample_id: {...}}}``."""
    dataset = MeViSDataset(data_root, split, num_frames=None, train=False)
    missing = [f"{video}/{exp_id}" for video, exp_id in dataset.keys() if not is_done(pred_root, video, exp_id)]
    if missing:
        raise IncompletePredictions(
            f"{len(missing)} of {len(dataset)} expressions have no prediction in {pred_root}: {missing[:10]}"
        )
    by_video = defaultdict(list)
    for index, (video, _) in enumerate(dataset.keys()):
        by_video[video].append(index)
    per_expression = {}
    distinct = total = 0
    for indices in tqdm(by_video.values(), desc=f"J&F on {split}", unit="video", dynamic_ncols=True):
        preds, gts = [], []
        for index in indices:
            sample = dataset[index]
            pred = read_masks(pred_root, sample.meta["video"], sample.meta["exp_id"], sample.frame_names)
            gt = sample.masks.any(0)
            scores = jf_scores(pred, gt)
            per_expression[sample.sample_id] = {**scores, "type": sample.meta.get("type", "unknown")}
            preds.append(pred)
            gts.append(gt)
        video_distinct, video_total = distinct_pairs(preds, gts)
        distinct, total = distinct + video_distinct, total + video_total
    by_type = defaultdict(dict)
    for sample_id, scores in per_expression.items():
        by_type[scores["type"]][sample_id] = scores
    overall = {**summarize(per_expression), "distinct_pairs": distinct / total if total else float("nan")}
    return {
        "overall": overall,
        "by_type": {name: summarize(group) for name, group in sorted(by_type.items())},
        "per_expression": per_expression,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="folder of <video>/<exp_id>/<frame>.png predictions")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="valid_u")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)
    metrics = evaluate(args.pred, args.data_root, args.split)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(metrics, indent=1))
    overall = metrics["overall"]
    print(
        f"J&F {overall['J&F']:.4f}  J {overall['J']:.4f}  F {overall['F']:.4f}  "
        f"distinct pairs {overall['distinct_pairs']:.3f}  ({overall['count']} expressions)"
    )
    return metrics


if __name__ == "__main__":
    main()

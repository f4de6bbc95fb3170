"""Score referring video segmentation predictions with J&F (DAVIS definitions), overall and by type.

    python -m evaluation.ref_vos.evaluate --pred work_dirs/quickstart/eval/trained/Annotations \\
        --data-root data/synthetic_mevis --split valid_u --out work_dirs/quickstart/eval/trained/metrics.json

Every expression of the split must have a prediction; otherwise nothing is scored and the missing
ones are named. Writes the metrics JSON (overall, per expression type, per expression).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from evaluation.mask_predictions import is_done, read_masks
from evaluation.metrics.jf import jf_scores, summarize
from utils.data.mevis import MeViSDataset


class IncompletePredictions(RuntimeError):
    """Raised instead of scoring a prediction set that lacks some samples."""


def evaluate(pred_root: str | Path, data_root: str | Path, split: str) -> dict:
    """``{"overall": {...}, "by_type": {type: {...}}, "per_expression": {sample_id: {...}}}``."""
    dataset = MeViSDataset(data_root, split, num_frames=None, train=False)
    missing = [f"{video}/{exp_id}" for video, exp_id in dataset.keys() if not is_done(pred_root, video, exp_id)]
    if missing:
        raise IncompletePredictions(
            f"{len(missing)} of {len(dataset)} expressions have no prediction in {pred_root}: {missing[:10]}"
        )
    per_expression = {}
    for i in tqdm(range(len(dataset)), desc=f"J&F on {split}", dynamic_ncols=True):
        sample = dataset[i]
        pred = read_masks(pred_root, sample.meta["video"], sample.meta["exp_id"], sample.frame_names)
        scores = jf_scores(pred, sample.masks.any(0))
        per_expression[sample.sample_id] = {**scores, "type": sample.meta.get("type", "unknown")}
    by_type = defaultdict(dict)
    for sample_id, scores in per_expression.items():
        by_type[scores["type"]][sample_id] = scores
    return {
        "overall": summarize(per_expression),
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
    print(f"J&F {overall['J&F']:.4f}  J {overall['J']:.4f}  F {overall['F']:.4f}  ({overall['count']} expressions)")
    return metrics


if __name__ == "__main__":
    main()

"""Referring video segmentation inference on a MeViS-format split: one PNG folder per expression.

    python -m evaluation.ref_vos.inference --predictor unigr --model work_dirs/quickstart/final \\
        --data-root data/synthetic_mevis --split valid_u --out work_dirs/quickstart/eval/trained

Writes ``<out>/Annotations/<video>/<exp_id>/<frame>.png`` and ``<out>/answers.jsonl``. Re-running
skips expressions already written, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from baselines.all_objects import AllObjectsPredictor
from evaluation.mask_predictions import is_done, write_masks
from evaluation.video_seg_predictor import UniGRVideoSegPredictor
from utils.data.mevis import MeViSDataset


def build_predictor(args: argparse.Namespace, dataset: MeViSDataset):
    if args.predictor == "unigr":
        return UniGRVideoSegPredictor(args.model, args.num_frames, args.video_fps, args.device)
    return AllObjectsPredictor(dataset)


def run(args: argparse.Namespace) -> Path:
    dataset = MeViSDataset(args.data_root, args.split, num_frames=None, train=False)
    out = Path(args.out)
    masks_root = out / "Annotations"
    todo = [i for i, key in enumerate(dataset.keys()) if not is_done(masks_root, *key)]
    print(f"{len(dataset) - len(todo)} of {len(dataset)} expressions already predicted")
    predictor = build_predictor(args, dataset) if todo else None
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "answers.jsonl", "a") as answers:
        for i in tqdm(todo, desc=f"{args.predictor} on {args.split}", dynamic_ncols=True):
            sample = dataset[i]
            masks, text = predictor.predict(sample)
            video, exp_id = sample.meta["video"], sample.meta["exp_id"]
            write_masks(masks_root, video, exp_id, sample.frame_names, masks)
            answers.write(json.dumps({"sample_id": sample.sample_id, "answer": text}) + "\n")
            answers.flush()
    return masks_root


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictor", choices=["unigr", "all_objects"], default="unigr")
    parser.add_argument("--model", help="UniGR folder (save_pretrained output); needed for --predictor unigr")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="valid_u")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-frames", type=int, default=8, help="frames the LLM sees (SAM2 segments all)")
    parser.add_argument("--video-fps", type=float, default=6.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.predictor == "unigr" and not args.model:
        parser.error("--predictor unigr needs --model")
    return run(args)


if __name__ == "__main__":
    main()

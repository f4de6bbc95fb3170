"""Write the synthetic dynamic spatial reasoning dataset: training conversations and a DSR-Bench-format split.

    python scripts/generate_synthetic_dynamic.py --out data/synthetic_dynamic \\
        --train-videos 1000 --eval-videos 100 --seed 0

``<out>/train/`` is a LLaVA-Video-178K-style root (``utils.data.llava_video`` with
``sources=("dsr_synthetic",)``), ``<out>/eval/`` holds ``benchmark.parquet`` and ``videos/`` (DSR-Bench);
see :mod:`utils.synthetic.dynamic_formats`. The splits use different generation seeds (``2 * seed`` for
train, ``2 * seed + 1`` for eval), recorded with the counts and skipped questions in
``<out>/generation.json``. Skips the work when ``--out`` already holds the dataset with the same settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.synthetic.dynamic_formats import generate_split
from utils.synthetic.dynamic_world import DynamicWorldConfig

GENERATOR_VERSION = 1
SPLITS = ("train", "eval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="dataset root; the splits go in train/ and eval/")
    parser.add_argument("--train-videos", type=int, required=True, help="videos of the training split")
    parser.add_argument("--eval-videos", type=int, required=True, help="videos of the DSR-Bench-format split")
    parser.add_argument("--seed", type=int, required=True, help="non-negative generation seed")
    parser.add_argument("--questions-per-type", type=int, default=1, help="questions of each type per video")
    args = parser.parse_args(argv)
    if min(args.train_videos, args.eval_videos, args.seed) < 0 or args.questions_per_type < 1:
        parser.error("video counts and --seed must be non-negative, --questions-per-type positive")
    return args


def split_seeds(seed: int) -> dict[str, int]:
    """The generation seed of each split (different for every ``seed``)."""
    return {"train": 2 * seed, "eval": 2 * seed + 1}


def main(argv: list[str] | None = None) -> None:
    """Generate both splits unless ``--out`` already holds them with the same settings."""
    args = parse_args(argv)
    settings = {
        "generator_version": GENERATOR_VERSION,
        "train_videos": args.train_videos,
        "eval_videos": args.eval_videos,
        "seed": args.seed,
        "split_seeds": split_seeds(args.seed),
        "questions_per_type": args.questions_per_type,
    }
    record = args.out / "generation.json"
    split_dirs = [args.out / split for split in SPLITS]
    if record.is_file():
        written = json.loads(record.read_text())
        if written.get("complete") and {key: written.get(key) for key in settings} == settings:
            print(f"{args.out} already holds this dataset ({settings}); skipping")
            return
    existing = [d for d in split_dirs if d.exists()]
    if existing and not record.is_file():
        sys.exit(f"{', '.join(map(str, existing))} exist but were not written by this script; choose another --out")
    for d in existing:  # stale output of this script (other settings, or an interrupted run)
        shutil.rmtree(d)
    args.out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({**settings, "complete": False}, indent=2) + "\n")
    counts = {"train": args.train_videos, "eval": args.eval_videos}
    summaries = {
        split: generate_split(
            args.out / split,
            split,
            counts[split],
            settings["split_seeds"][split],
            DynamicWorldConfig(),
            args.questions_per_type,
            progress=True,
        ).as_dict()
        for split in SPLITS
    }
    record.write_text(json.dumps({**settings, "splits": summaries, "complete": True}, indent=2) + "\n")
    for split, summary in summaries.items():
        print(f"{split}: {summary['videos']} videos, {sum(summary['questions'].values())} questions")


if __name__ == "__main__":
    main()

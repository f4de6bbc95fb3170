"""Write the synthetic "moving shapes" MeViS dataset (``train`` and ``valid_u`` splits).

    python scripts/generate_synthetic_mevis.py --out data/synthetic_mevis \\
        --num-train 500 --num-valid 100 --seed 0

Skips the work when ``--out`` already holds both splits generated with the same settings
(recorded in ``generation.json``, marked complete only once both splits are written).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.synthetic.moving_shapes import GENERATOR_VERSION, generate_mevis

SPLITS = ("train", "valid_u")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="dataset root; the splits go in its subfolders")
    parser.add_argument("--num-train", type=int, required=True, help="videos in the train split")
    parser.add_argument("--num-valid", type=int, required=True, help="videos in the valid_u split")
    parser.add_argument("--seed", type=int, required=True, help="non-negative generation seed")
    parser.add_argument("--size", type=int, default=128, help="frame height and width, px")
    parser.add_argument("--num-frames", type=int, default=8, help="frames per video")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Generate the dataset unless ``--out`` already holds it with the same settings."""
    args = parse_args(argv)
    settings = {
        "generator_version": GENERATOR_VERSION,
        "num_train": args.num_train,
        "num_valid": args.num_valid,
        "seed": args.seed,
        "size": args.size,
        "num_frames": args.num_frames,
    }
    record = args.out / "generation.json"
    split_dirs = [args.out / split for split in SPLITS]
    if (
        record.is_file()
        and json.loads(record.read_text()) == {**settings, "complete": True}
        and all((d / "meta_expressions.json").is_file() for d in split_dirs)
    ):
        print(f"{args.out} already holds this dataset ({settings}); skipping")
        return
    existing = [d for d in split_dirs if d.exists()]
    if existing and not record.is_file():
        sys.exit(f"{', '.join(map(str, existing))} exist but were not written by this script; choose another --out")
    # Stale output of this script (other settings, or an interrupted run): replace it.
    for d in existing:
        shutil.rmtree(d)
    args.out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({**settings, "complete": False}, indent=2) + "\n")
    generate_mevis(
        args.out,
        args.num_train,
        args.num_valid,
        args.seed,
        progress=True,
        height=args.size,
        width=args.size,
        num_frames=args.num_frames,
    )
    record.write_text(json.dumps({**settings, "complete": True}, indent=2) + "\n")
    print(f"wrote {args.num_train} train and {args.num_valid} valid_u videos to {args.out}")


if __name__ == "__main__":
    main()

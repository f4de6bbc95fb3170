"""Write the synthetic referring world: region questions over moving-shapes videos, in released formats.

    python scripts/generate_synthetic_referring.py --out data/synthetic_referring --num-train 400 \\
        --num-test 60 --seed 0

Questions (:mod:`utils.synthetic.region_qa`: colour, shape, motion, relation of pointed-at objects)
are written as

* ``<out>/VideoRefer-700K/synthetic-region-qa.json`` (+ ``videos/``): the training split, read by the
  ``videorefer`` loader (``options: {json_files: [synthetic-region-qa.json]}``); its videos are the
  moving-shapes world's ``train`` videos of the seed (those the synthetic MeViS train split shows);
* ``<out>/VideoRefer-Bench-Q/``: the evaluated split, in VideoRefer-Bench-Q's format, on videos of
  the world's ``region_test`` split, which no training split contains.

A question's objects are given by their masks on every frame where they are visible. Re-running with
the same arguments rewrites the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.synthetic.moving_shapes import WorldConfig, make_video  # noqa: E402
from utils.synthetic.region_qa import region_questions  # noqa: E402
from utils.synthetic.videorefer_format import (  # noqa: E402
    RegionQARecord,
    write_videorefer_700k,
    write_videorefer_bench_q,
)

TRAIN_FILE = "synthetic-region-qa.json"
TEST_WORLD_SPLIT = "region_test"


def world_records(seed: int, world_split: str, num_videos: int, config: WorldConfig) -> list[RegionQARecord]:
    """Every question of the first ``num_videos`` videos of ``world_split``, as VideoRefer records."""
    records = []
    frame_names = [f"{t:05d}" for t in range(config.num_frames)]
    for index in tqdm(range(num_videos), desc=world_split, unit="video"):
        video = make_video(seed, world_split, index, config)
        rng = np.random.default_rng([seed, index, 7])
        for question in region_questions(video, rng):
            records.append(
                RegionQARecord(
                    video=video.video_id,
                    frames=video.frames,
                    frame_names=frame_names,
                    objects=[{t: video.masks[obj, t] for t in question.frames} for obj in question.objects],
                    question=question.question,
                    options=question.options,
                    answer=question.answer,
                    category=question.category,
                    id=f"{video.video_id}_{len(records)}_{question.kind}",
                    frame_idx=question.frame,
                )
            )
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-train", type=int, required=True, help="training videos (0: none)")
    parser.add_argument("--num-test", type=int, required=True, help="Bench-Q-format test videos")
    parser.add_argument("--seed", type=int, required=True, help="non-negative world seed")
    parser.add_argument("--size", type=int, default=128, help="frame height and width, px")
    parser.add_argument("--num-frames", type=int, default=8)
    args = parser.parse_args(argv)
    config = WorldConfig(height=args.size, width=args.size, num_frames=args.num_frames)
    if args.num_train:
        train = world_records(args.seed, "train", args.num_train, config)
        path = write_videorefer_700k(args.out / "VideoRefer-700K", train, TRAIN_FILE)
        print(f"wrote {len(train)} training questions to {path}")
    test = world_records(args.seed, TEST_WORLD_SPLIT, args.num_test, config)
    path = write_videorefer_bench_q(args.out / "VideoRefer-Bench-Q", test)
    print(f"wrote {len(test)} test questions to {path}")


if __name__ == "__main__":
    main()

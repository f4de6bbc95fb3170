"""Speed of J&F scoring: ``evaluation.metrics.jf`` against the toolkit-style reference, on real DAVIS masks.

    python scripts/benchmark_jf.py                       # all 139 fixture frames, 480p / 720p / 1080p
    python scripts/benchmark_jf.py --frames 20 --repeats 1

Masks: the DAVIS-2016 ground truth and the OSVOS predictions of ``car-shadow``, ``libby`` and
``drift-straight`` from ``../shared/fixtures/davis`` (480 x 854, binarised with ``> 0``), resized with
nearest neighbour to 1280 x 720 and 1920 x 1080 for the larger rows. Each row times per-frame J and F of
every frame (best of ``--repeats``) with :mod:`evaluation.metrics.davis_reference` (frame by frame,
``cv2.dilate`` by ``skimage`` disks, as the DAVIS toolkit does it) and with :func:`jf.jf_per_frame`, prints
frames/s and the speed-up, and checks that both give identical numbers (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import davis_reference, jf  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "davis"
SEQUENCES = ("car-shadow", "libby", "drift-straight")
RESOLUTIONS = {480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}  # height -> (width, height)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=139, help="frames per resolution (at most 139)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per method; the best is kept")
    parser.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS), choices=list(RESOLUTIONS))
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="the DAVIS fixture folder")
    return parser.parse_args(argv)


def load_masks(root: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, gt)`` boolean ``(T, 480, 854)`` stacks: OSVOS predictions and ground truth, sequence after sequence."""
    preds, gts = [], []
    for seq in SEQUENCES:
        gt_dir, pred_dir = root / "Annotations" / "480p" / seq, root / "predictions" / "osvos" / seq
        names = sorted(p.stem for p in gt_dir.glob("*.png"))
        if not names:
            raise FileNotFoundError(f"no ground-truth PNGs in {gt_dir}")
        for name in names:
            gts.append(np.array(Image.open(gt_dir / f"{name}.png")) > 0)
            pred_path = pred_dir / f"{name}.png"
            if not pred_path.is_file():
                raise FileNotFoundError(f"prediction for {seq}/{name} missing: {pred_path}")
            preds.append(np.array(Image.open(pred_path)) > 0)
    return np.stack(preds[:frames]), np.stack(gts[:frames])


def resize(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean ``(T, H, W)`` stack to ``size = (width, height)``."""
    return np.stack([cv2.resize(m.view(np.uint8), size, interpolation=cv2.INTER_NEAREST) for m in masks]) > 0


def best_time(fn: Callable[[], tuple[np.ndarray, np.ndarray]], repeats: int) -> tuple[float, tuple]:
    """``(best seconds, result of the last run)`` over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def reference_jf(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return davis_reference.region_similarity(pred, gt), davis_reference.boundary_f_measure(pred, gt)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.frames < 1 or args.repeats < 1:
        raise ValueError("--frames and --repeats must be >= 1")
    pred480, gt480 = load_masks(args.fixtures, args.frames)
    rows = []
    for height in args.resolutions:
        size = RESOLUTIONS[height]
        pred, gt = (pred480, gt480) if height == 480 else (resize(pred480, size), resize(gt480, size))
        ref_s, (ref_j, ref_f) = best_time(lambda p=pred, g=gt: reference_jf(p, g), args.repeats)
        fast_s, (fast_j, fast_f) = best_time(lambda p=pred, g=gt: jf.jf_per_frame(p, g), args.repeats)
        identical = np.array_equal(ref_j, fast_j) and np.array_equal(ref_f, fast_f)
        rows.append(
            {
                "resolution": f"{size[1]}p ({size[0]}x{size[1]})",
                "frames": len(pred),
                "reference_fps": len(pred) / ref_s,
                "jf_fps": len(pred) / fast_s,
                "speedup": ref_s / fast_s,
                "identical": identical,
                "max_abs_diff": float(max(np.abs(ref_j - fast_j).max(), np.abs(ref_f - fast_f).max())),
            }
        )

    print("| resolution | frames | reference frames/s | jf.py frames/s | speed-up | identical J and F |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        same = "yes" if row["identical"] else f"NO (max diff {row['max_abs_diff']:.3g})"
        print(
            f"| {row['resolution']} | {row['frames']} | {row['reference_fps']:.1f} | {row['jf_fps']:.1f} "
            f"| {row['speedup']:.1f}x | {same} |"
        )
    if not all(row["identical"] for row in rows):
        print("jf.py and the reference disagree", file=sys.stderr)
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()

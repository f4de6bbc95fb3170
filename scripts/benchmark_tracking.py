"""Prompt tracking speed: milliseconds per frame of each tracker backend on a synthetic 480p clip.

    python scripts/benchmark_tracking.py                     # 854 x 480, 16 frames, every available backend
    python scripts/benchmark_tracking.py --frames 32 --cotracker-checkpoint checkpoints/scaled_offline.pth
    python scripts/benchmark_tracking.py --sam2-checkpoint checkpoints/sam2.1_hiera_large.pt \\
        --sam2-model-config configs/model/qwen2_5_vl_7b.yaml --device cuda

The clip is a moving-shapes video (:mod:`utils.synthetic.moving_shapes`; sizes and speeds scale with the
frame) of ``--frames`` frames at ``--width`` x ``--height``. The prompt is the visible mask of its largest
object on ``--prompt-frame`` (default: the middle frame, so that every backend tracks both ways), carried
to every frame by :meth:`~utils.visual_prompts.tracking.PromptTracker.track`. Each row times whole
``track`` calls (for SAM2: writing and reading the frames as JPEG, encoding every frame, propagating both
ways), median of ``--repeats`` after one warm-up call; ms/frame is that time over the clip's frames. The
mean IoU with the true masks on the other frames is printed beside it, with that of copying the prompt, to
show whether the tracker followed the object.

Backends: ``sam2`` from ``--sam2-checkpoint`` with the SAM2 config and overrides of ``--sam2-model-config``
(``model.seg`` of a UniGR model config; default the shipped tiny SAM2 trained to follow prompts, which
never learnt to use its memory); ``cotracker`` with ``--cotracker-checkpoint`` when CoTracker3 is
installed; ``optical_flow`` with each of ``--flow-methods``. Backends that cannot run are listed with why.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # SAM2's video predictor draws progress bars; read at tqdm's import

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.synthetic.moving_shapes import WorldConfig, make_video  # noqa: E402
from utils.visual_prompts.tracking import TRACKERS, PromptTracker, build_tracker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=16, help="frames in the clip")
    parser.add_argument("--prompt-frame", type=int, default=None, help="frame of the prompt (default: the middle)")
    parser.add_argument("--seed", type=int, default=0, help="which synthetic clip")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per backend (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (keep low on shared CPUs)")
    parser.add_argument("--device", default="cpu", help="where SAM2 and CoTracker run")
    parser.add_argument("--sam2-checkpoint", type=Path, default=ROOT / "assets" / "sam2.1_hiera_tiny_prompted.pt")
    parser.add_argument(
        "--sam2-model-config",
        type=Path,
        default=ROOT / "configs" / "model" / "tiny.yaml",
        help="UniGR model config whose model.seg names the checkpoint's SAM2 config and overrides",
    )
    parser.add_argument("--cotracker-checkpoint", type=Path, default=None, help="CoTracker3 scaled_offline.pth")
    parser.add_argument("--flow-methods", nargs="+", default=["dis", "farneback"], choices=["dis", "farneback"])
    return parser.parse_args(argv)


def trackers(args: argparse.Namespace) -> tuple[dict[str, PromptTracker], dict[str, str]]:
    """The backends to time (row label -> tracker) and those left out (name -> why)."""
    built: dict[str, PromptTracker] = {}
    skipped: dict[str, str] = {}
    for name, tracker in TRACKERS.items():
        reason = tracker.unavailable_reason()
        if reason is not None:
            skipped[name] = reason
        elif name == "sam2":
            seg = OmegaConf.load(args.sam2_model_config).model.seg
            overrides = OmegaConf.to_container(seg.get("sam2_overrides") or {})
            options = {"config": seg.sam2_config, "overrides": overrides, "device": args.device}
            built[f"sam2 ({args.sam2_checkpoint.name})"] = build_tracker(
                name, checkpoint=args.sam2_checkpoint, **options
            )
        elif name == "cotracker":
            if args.cotracker_checkpoint is None:
                skipped[name] = "no --cotracker-checkpoint given"
            else:
                built[name] = build_tracker(name, checkpoint=args.cotracker_checkpoint, device=args.device)
        else:
            built |= {f"{name} ({m})": build_tracker(name, method=m) for m in args.flow_methods}
    return built, skipped


def mean_iou(masks: np.ndarray, truth: np.ndarray, skip: int) -> float:
    """Mean IoU of ``(T, H, W)`` masks with the true ones over every frame but ``skip``."""
    scores = [(masks[t] & truth[t]).sum() / max((masks[t] | truth[t]).sum(), 1) for t in range(len(truth)) if t != skip]
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    video = make_video(
        args.seed, "benchmark", 0, WorldConfig(height=args.height, width=args.width, num_frames=args.frames)
    )
    frame = args.frames // 2 if args.prompt_frame is None else args.prompt_frame
    target = int(video.masks[:, frame].sum((1, 2)).argmax())
    truth = video.masks[target]
    built, skipped = trackers(args)
    rows = []
    for label, tracker in built.items():
        tracker.track(video.frames, frame, truth[frame])  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            masks = tracker.track(video.frames, frame, truth[frame])
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append({"backend": label, "seconds": seconds, "iou": mean_iou(masks, truth, frame)})
    copied = mean_iou(np.broadcast_to(truth[frame], truth.shape), truth, frame)
    print_table(args, frame, rows, skipped, copied)
    return rows


def print_table(args: argparse.Namespace, frame: int, rows: list[dict], skipped: dict[str, str], copied: float) -> None:
    print(
        f"\n{args.frames} frames of {args.width} x {args.height}, prompt on frame {frame}, {args.device} "
        f"({args.threads} threads), median of {args.repeats}\n"
    )
    print("| backend | ms / frame | s / clip | mean IoU, other frames |")
    print("|---|---:|---:|---:|")
    for row in rows:
        ms = 1000 * row["seconds"] / args.frames
        print(f"| {row['backend']} | {ms:.1f} | {row['seconds']:.2f} | {row['iou']:.3f} |")
    print(f"| (copy the prompt) | | | {copied:.3f} |")
    for name, reason in skipped.items():
        print(f"\nunavailable: {name}: {reason}")


if __name__ == "__main__":
    main()

"""SAM2 video inference cost: peak memory against video length, and the image-feature cache across expressions.

    python scripts/benchmark_sam2_video.py                                  # SAM2.1-L, 1024 px, 16 / 64 frames
    python scripts/benchmark_sam2_video.py --image-size 384 --video-frames 80 --cache-image-size 256

Builds SAM2 from ``--config`` with random weights on the CPU and runs the segmentation head's inference
path (``init_state`` -> ``propagate``; frames encoded in chunks of ``--chunk-size``, ``--objects``
prompts, the ``[SEG]`` prompt scored on ``--candidates`` evenly spaced frames, as a language model's
frames):

* memory: for each ``--frames`` value a fresh subprocess segments a video of that length and reports
  its peak resident memory (``ru_maxrss``, everything the process held: weights, frames, cached
  features, SAM2's memory bank, activations); the ratio to the first value is printed.
* cache: on a ``--video-frames`` video at ``--cache-image-size``, ``--expressions`` expressions on
  one state (every frame encoded once) against a fresh state per expression (every frame encoded
  again for each expression, as the head did before the state existed).

Frames are uint8 (the state accepts them; SAM2's frames are rounded to uint8 anyway), random content.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.heads.sam2_video import evenly_spaced  # noqa: E402
from model.heads.seg_sam2 import PromptableVideoSAM2, SegHeadConfig  # noqa: E402

SINGLE_MASK = {"model.multimask_output_in_sam": False, "model.multimask_output_for_tracking": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_l.yaml", help="SAM2 config name or path")
    parser.add_argument("--image-size", type=int, default=1024, help="SAM2 input size for the memory runs")
    parser.add_argument("--frames", type=int, nargs="*", default=[16, 64], help="video lengths for the memory runs")
    parser.add_argument("--chunk-size", type=int, default=8, help="frames per image-encoder batch")
    parser.add_argument("--objects", type=int, default=1, help="prompts (objects) per expression")
    parser.add_argument("--candidates", type=int, default=8, help="frames the prompt is scored on")
    parser.add_argument("--video-frames", type=int, default=80, help="video length for the cache runs (0: skip)")
    parser.add_argument("--cache-image-size", type=int, default=None, help="SAM2 input size there (--image-size)")
    parser.add_argument("--expressions", type=int, default=3, help="expressions on the cached state")
    parser.add_argument("--uncached", type=int, default=2, help="expressions timed on fresh states")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one memory run, JSON out
    return parser.parse_args(argv)


def build_head(config: str, image_size: int, chunk_size: int) -> PromptableVideoSAM2:
    """SAM2 at ``image_size`` with random weights, single-mask output as UniGR's configs set it."""
    seg = SegHeadConfig(
        sam2_config=config, sam2_overrides={"model.image_size": image_size, **SINGLE_MASK}, encode_chunk_size=chunk_size
    )
    return PromptableVideoSAM2(seg).eval()


def video(num_frames: int, image_size: int, seed: int) -> torch.Tensor:
    """``(T, 3, S, S)`` uint8 random frames."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_frames, 3, image_size, image_size), dtype=torch.uint8, generator=generator)


def expression(head: PromptableVideoSAM2, state, args: argparse.Namespace, seed: int) -> float:
    """Seconds to segment one expression's ``--objects`` random prompts on ``state``."""
    generator = torch.Generator().manual_seed(seed)
    prompts = torch.randn(args.objects, 1, head.sam2.sam_prompt_embed_dim, generator=generator)
    candidates = evenly_spaced(list(range(state.num_frames)), args.candidates)
    start = time.perf_counter()
    head.propagate(state, prompts, candidates)
    return time.perf_counter() - start


def memory_run(args: argparse.Namespace) -> dict:
    """One video of ``args.frames[0]`` frames in this process: peak RSS and seconds."""
    head = build_head(args.config, args.image_size, args.chunk_size)
    model_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    state = head.init_state(video(args.frames[0], args.image_size, seed=0))
    seconds = expression(head, state, args, seed=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"frames": args.frames[0], "model_gib": model_rss, "peak_gib": peak, "seconds": seconds}


def memory_table(args: argparse.Namespace, argv: list[str]) -> list[dict]:
    rows = []
    for num_frames in args.frames:
        others = [a for a in argv if a != "--worker"]
        command = [sys.executable, __file__, *others, "--frames", str(num_frames), "--video-frames", "0", "--worker"]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"  memory run: {rows[-1]}", flush=True)
    return rows


def cache_table(args: argparse.Namespace) -> dict:
    """Seconds per expression with one cached state and with a fresh state per expression."""
    size = args.cache_image_size or args.image_size
    head = build_head(args.config, size, args.chunk_size)
    frames = video(args.video_frames, size, seed=1)
    state = head.init_state(frames)
    cached = [expression(head, state, args, seed=i) for i in range(args.expressions)]
    uncached = [expression(head, head.init_state(frames), args, seed=i) for i in range(args.uncached)]
    return {"image_size": size, "cached": cached, "uncached": uncached}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(memory_run(args)))
        return {}
    figures: dict = {"memory": memory_table(args, argv) if args.frames else []}
    if args.video_frames:
        figures["cache"] = cache_table(args)
    print_tables(args, figures)
    return figures


def print_tables(args: argparse.Namespace, figures: dict) -> None:
    print(f"\nSAM2 {args.config}, random weights, CPU ({args.threads} threads), chunks of {args.chunk_size} frames,")
    print(f"{args.objects} object(s) per expression, prompt scored on {args.candidates} frames\n")
    if figures["memory"]:
        print_memory(args, figures["memory"])
    if "cache" in figures:
        print_cache(args, figures["cache"])


def print_memory(args: argparse.Namespace, rows: list[dict]) -> None:
    print("| frames | image size | model RSS GiB | peak RSS GiB | x first | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    first = rows[0]["peak_gib"]
    for row in rows:
        print(
            f"| {row['frames']} | {args.image_size} | {row['model_gib']:.2f} | {row['peak_gib']:.2f} "
            f"| {row['peak_gib'] / first:.2f} | {row['seconds']:.1f} |"
        )


def print_cache(args: argparse.Namespace, cache: dict) -> None:
    print(f"\n{args.video_frames}-frame video at {cache['image_size']} px, seconds per expression:\n")
    print("| state | expressions | seconds each | mean |")
    print("|---|---:|---|---:|")
    means = {}
    for key, name in (("cached", "one state, features cached"), ("uncached", "fresh state each (re-encodes)")):
        times = cache[key]
        means[key] = sum(times) / len(times)
        print(f"| {name} | {len(times)} | {', '.join(f'{t:.1f}' for t in times)} | {means[key]:.1f} |")
    print(f"\ncache speed-up over {len(cache['cached'])} expressions: {means['uncached'] / means['cached']:.2f}x")


if __name__ == "__main__":
    main()

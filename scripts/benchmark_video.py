"""Video decoding speed: ``utils.video`` against qwen-vl-utils' own video reader, and a training data loader.

    python scripts/benchmark_video.py                              # 8 / 16 / 32 frames, every backend
    python scripts/benchmark_video.py --frames 32 --repeats 1 --loader-samples 0

The clip (made once with PyAV, then reused): one minute of 1280x720 H.264 at 30 fps, 1,800 frames: the
150 real frames of ``../shared/fixtures/video/dog.mp4`` played forwards and backwards, encoded by libx264
(``veryfast``, CRF 23, a key frame every 2 s, B-frames on: x264's defaults otherwise).

Each row times one sample, cold (no cached metadata, a new decoder), median of ``--repeats`` runs taken
in turns: ``utils.video`` = probe + ``read_clip`` (uniform sampling, segment centres) + Qwen2.5-VL's
resize (transformers' processor, qwen-vl-utils' default pixel budget); qwen-vl-utils =
``fetch_video({"video": clip, "nframes": N})`` (decode + the same resize) with each reader it supports here
(``FORCE_QWENVL_VIDEO_READER``; its torchvision reader fails with torchvision 0.29). "decoded" counts the
pictures PyAV decoded for the sample. The loader row runs a ``DataLoader`` with ``--loader-workers``
workers (one decoder thread each) producing, per sample, jittered uniform frames and both models'
inputs (Qwen2.5-VL frames and SAM2 frames at ``--sam-size``), and reports samples/s after the first batch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.video.backends import available_backends  # noqa: E402
from utils.video.clip import read_clip  # noqa: E402
from utils.video.encode import write_video  # noqa: E402
from utils.video.model_inputs import model_inputs, qwen_video  # noqa: E402
from utils.video.sampling import FrameSampling  # noqa: E402
from utils.video.sources import clear_probe_cache, probe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "fixtures" / "video" / "dog.mp4"
CLIP = ROOT / "work_dirs" / "benchmark_video" / "dog_pingpong_720p_60s.mp4"
QWEN_READERS = ("decord", "torchcodec")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP, help="benchmark clip; made from --source if missing")
    parser.add_argument("--source", type=Path, default=SOURCE, help="real clip whose frames the benchmark clip loops")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a clip made here")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of a clip made here")
    parser.add_argument("--gop", type=int, default=60, help="frames between key frames in a clip made here")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32], help="frames per sample")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median kept)")
    parser.add_argument("--backends", nargs="+", default=None, help="utils.video backends (default: all installed)")
    parser.add_argument("--qwen-readers", nargs="+", default=list(QWEN_READERS), help="qwen-vl-utils readers")
    parser.add_argument("--threads", type=int, default=0, help="decoder threads of utils.video (0: FFmpeg's choice)")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--loader-frames", type=int, nargs="+", default=[8, 16], help="frames per loader sample")
    parser.add_argument("--loader-samples", type=int, default=24, help="timed loader samples (0: no loader row)")
    parser.add_argument("--sam-size", type=int, default=1024, help="SAM2 input size of the loader samples")
    return parser.parse_args(argv)


def pingpong(frames: list[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """``count`` frames playing ``frames`` forwards, backwards, forwards... (no cut at the turns)."""
    cycle = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    for i in range(count):
        yield frames[cycle[i % len(cycle)]]


def make_clip(path: Path, source: Path, seconds: float, fps: float, gop: int) -> Path:
    """Write the benchmark clip (see the module docstring) unless ``path`` exists."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(read_clip(source).frames)
    options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
    partial = path.with_suffix(".partial.mp4")
    write_video(partial, pingpong(frames, round(seconds * fps)), fps=fps, options=options)
    partial.rename(path)
    return path


def ours(path: Path, num_frames: int, backend: str, threads: int) -> int | None:
    """One sample through ``utils.video``: cold probe, decode, Qwen2.5-VL resize; returns pictures decoded."""
    clear_probe_cache()
    clip = read_clip(path, FrameSampling(num_frames=num_frames), backend=backend, threads=threads)
    qwen_video(clip.frames, clip.timestamps)
    return clip.decoded_frames


def qwen_vl_utils(path: Path, num_frames: int, reader: str) -> None:
    """One sample through qwen-vl-utils' ``fetch_video`` with ``reader``."""
    from qwen_vl_utils import vision_process

    if vision_process.FORCE_QWENVL_VIDEO_READER != reader:
        vision_process.FORCE_QWENVL_VIDEO_READER = reader  # what the environment variable sets at import
        vision_process.get_video_reader_backend.cache_clear()
        with contextlib.redirect_stderr(io.StringIO()):  # it prints its choice
            vision_process.get_video_reader_backend()
    vision_process.fetch_video({"video": str(path), "nframes": num_frames})


def usable_qwen_readers(readers: list[str]) -> list[str]:
    """The readers qwen-vl-utils can use here (it needs their packages; torchvision's is broken)."""
    try:
        import qwen_vl_utils  # noqa: F401
    except ImportError:
        return []
    return [r for r in readers if r in available_backends()]


def time_rows(args: argparse.Namespace, path: Path) -> list[dict]:
    """Median ms per sample of every (reader, frame count), the readers taking turns in each repeat."""
    backends = args.backends or available_backends()
    methods: dict[str, Callable[[int], int | None]] = {
        f"utils.video {b}": (lambda n, b=b: ours(path, n, b, args.threads)) for b in backends
    }
    readers = usable_qwen_readers(args.qwen_readers)
    methods |= {f"qwen-vl-utils {r}": (lambda n, r=r: qwen_vl_utils(path, n, r)) for r in readers}
    for method in methods.values():
        method(min(args.frames))  # warm-up: imports, first-call set-up
    times: dict[tuple[str, int], list[float]] = {}
    decoded: dict[tuple[str, int], int | None] = {}
    for _ in range(args.repeats):
        for n in args.frames:
            for name, method in methods.items():
                start = time.perf_counter()
                decoded[name, n] = method(n)
                times.setdefault((name, n), []).append(time.perf_counter() - start)
    rows = []
    for n in args.frames:
        baseline = min((statistics.median(times[k, n]) for k in methods if k.startswith("qwen")), default=None)
        for name in methods:
            seconds = statistics.median(times[name, n])
            speedup = baseline / seconds if baseline else None
            rows.append(
                {
                    "reader": name,
                    "frames": n,
                    "ms": 1000 * seconds,
                    "fps": n / seconds,
                    "decoded": decoded[name, n],
                    "speedup": speedup,
                }
            )
    return rows


def decode_all_seconds(path: Path) -> float:
    """Seconds PyAV takes to decode every frame of ``path`` in order (no RGB conversion): the cost of not seeking."""
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for _ in container.decode(video=0):
            pass
    return time.perf_counter() - start


class LoaderSamples(Dataset):
    """Item ``i``: jittered uniform frames of the clip (seed 0, item ``i``) and both models' inputs."""

    def __init__(self, path: Path, num_frames: int, sam_size: int, length: int):
        self.path, self.num_frames, self.sam_size, self.length = path, num_frames, sam_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        start = time.perf_counter()
        clip = read_clip(
            self.path,
            FrameSampling(num_frames=self.num_frames),
            threads=1,
            train=True,
            rng=np.random.default_rng([0, index]),
        )
        inputs = model_inputs(clip, self.sam_size, sam_normalize=False)
        return {"qwen": inputs.qwen.frames, "sam": inputs.sam_frames, "seconds": time.perf_counter() - start}


def first_item(items: list[dict]) -> dict:
    return items[0]


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def loader_rate(path: Path, num_frames: int, args: argparse.Namespace) -> tuple[float, float]:
    """``(samples/s, mean ms per sample inside a worker)`` of a ``DataLoader`` over :class:`LoaderSamples`."""
    dataset = LoaderSamples(path, num_frames, args.sam_size, args.loader_samples + args.loader_workers)
    loader = DataLoader(
        dataset,
        batch_size=1,
        num_workers=args.loader_workers,
        collate_fn=first_item,
        worker_init_fn=_one_thread if args.loader_workers else None,
    )
    batches = iter(loader)
    worker_seconds = [next(batches)["seconds"]]  # start-up and the first sample are not timed
    start = time.perf_counter()
    worker_seconds += [item["seconds"] for item in batches]
    elapsed = time.perf_counter() - start
    return (len(worker_seconds) - 1) / elapsed, 1000 * statistics.mean(worker_seconds)


def format_table(rows: list[dict]) -> str:
    lines = [
        "| reader | frames | ms / sample | frames/s | decoded pictures | speed-up vs best qwen-vl-utils |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        decoded = "" if r["decoded"] is None else str(r["decoded"])
        speedup = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['reader']} | {r['frames']} | {r['ms']:,.0f} | {r['fps']:.1f} | {decoded} | {speedup} |")
    return "\n".join(lines)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("av", "torchcodec", "decord", "qwen-vl-utils", "transformers", "torchvision"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    path = make_clip(args.clip, args.source, args.seconds, args.fps, args.gop)
    info = probe(path)
    print(
        f"clip: {path} ({info.width}x{info.height}, {info.num_frames} frames, {info.duration:.1f} s, "
        f"{len(info.keyframes)} key frames); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(versions())
    rows = time_rows(args, path)
    print(format_table(rows))
    best = {
        n: max((r for r in rows if r["frames"] == n and r["reader"].startswith("utils")), key=lambda r: r["fps"])
        for n in args.frames
    }
    for n, row in best.items():
        if row["speedup"] is not None:
            print(f"speed-up at {n} frames: {row['reader']} is {row['speedup']:.2f}x the fastest qwen-vl-utils reader")
    print(f"decoding every frame instead (PyAV, in order): {1000 * decode_all_seconds(path):,.0f} ms")
    for num_frames in args.loader_frames if args.loader_samples > 0 else []:
        rate, worker_ms = loader_rate(path, num_frames, args)
        print(
            f"loader: {args.loader_workers} workers, {num_frames} frames/sample, Qwen2.5-VL + SAM2 "
            f"{args.sam_size} px inputs: {rate:.2f} samples/s ({worker_ms:,.0f} ms per sample in a worker)"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return rows


if __name__ == "__main__":
    main()

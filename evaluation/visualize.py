"""Pictures a person would rather look at than read: mask overlays per frame, and training curves.

    python -m evaluation.visualize --benchmark mevis --data-root data/mevis --split valid_u \\
        --sample-id mevis/valid_u/<video>/<exp_id> --pred unigr=work_dirs/eval/mevis --out overlay.png

One row per mask source (ground truth first, then each ``--pred`` prediction store): a grid of up
to ``--max-frames`` frames (``.png``), or a clip of every frame (``.gif`` / ``.mp4``); the
question is written above it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from evaluation.benchmarks import add_benchmark_arguments, build_benchmark_dataset
from evaluation.prediction_store import PredictionStore
from utils.data.schema import Sample

MASK_COLOUR = np.array([255, 40, 200], dtype=np.float32)
"""Magenta: unlike every object colour of the synthetic world (red, green, blue, yellow) and common scene colours."""
MASK_ALPHA = 0.7
LABEL_HEIGHT = 28
LABEL_WIDTH = 110


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: mask pixels with a 4-neighbour outside the mask (or on the image border)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = MASK_ALPHA) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame with ``(H, W)`` bool mask blended in magenta and outlined in white."""
    out = frame.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * MASK_COLOUR
    out[mask_boundary(mask)] = 255
    return out.round().astype(np.uint8)


def overlay_grid(frames: np.ndarray, rows: dict[str, np.ndarray], title: str) -> Image.Image:
    """A grid: ``frames`` ``(T, H, W, 3)`` with each row's ``(T, H, W)`` masks; row names on the left."""
    num_frames, height, width = frames.shape[:3]
    grid = Image.new("RGB", (LABEL_WIDTH + num_frames * width, LABEL_HEIGHT + len(rows) * height), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((2, 1), title, fill="black")
    swatch = tuple(int(c) for c in MASK_COLOUR)
    draw.rectangle((2, 16, 12, 25), fill=swatch, outline="black")
    draw.text((16, 15), "= mask of that row (outlined in white); the frame shows through elsewhere", fill="black")
    for r, (name, masks) in enumerate(rows.items()):
        top = LABEL_HEIGHT + r * height
        draw.text((2, top + height // 2 - 5), name, fill="black")
        for t in range(num_frames):
            grid.paste(Image.fromarray(overlay(frames[t], masks[t])), (LABEL_WIDTH + t * width, top))
    return grid


def frame_columns(num_frames: int, max_frames: int | None) -> list[int]:
    """Which frames a grid shows: all, or ``max_frames`` spread evenly (first and last included)."""
    if max_frames is None or num_frames <= max_frames:
        return list(range(num_frames))
    return sorted({round(i * (num_frames - 1) / (max_frames - 1)) for i in range(max_frames)})


def overlay_rows(
    dataset: Dataset, sample_id: str, predictions: dict[str, str | Path]
) -> tuple[Sample, dict[str, np.ndarray]]:
    """The sample and its ``(T, H, W)`` mask rows: ground truth (if any), then each prediction store."""
    ids = dataset.sample_ids()
    if sample_id not in ids:
        raise KeyError(f"{sample_id} is not a sample of this split (e.g. {ids[:3]})")
    sample = dataset[ids.index(sample_id)]
    rows = {"ground truth": sample.masks.any(0)} if sample.masks is not None else {}
    for name, root in predictions.items():
        rows[name] = PredictionStore(root).read_masks(sample_id, sample.frame_names)
    return sample, rows


def sample_title(sample: Sample) -> str:
    """The sample id and the question asked about it."""
    return f"{sample.sample_id}: {sample.conversation[0]['content']}"


def save_sample_overlay(
    dataset: Dataset,
    sample_id: str,
    predictions: dict[str, str | Path],
    out: str | Path,
    max_frames: int | None = 8,
) -> Path:
    """Overlays of one sample: ground truth, then each prediction store, one row each.

    ``out`` ending in ``.png``/``.jpg`` gets a grid of up to ``max_frames`` frames; ``.gif`` or
    ``.mp4`` gets a clip of every frame with the rows stacked.
    """
    sample, rows = overlay_rows(dataset, sample_id, predictions)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix in (".gif", ".mp4"):
        frames = [
            np.asarray(
                overlay_grid(sample.frames[t : t + 1], {k: v[t : t + 1] for k, v in rows.items()}, sample_title(sample))
            )
            for t in range(len(sample.frames))
        ]
        write_clip(frames, out)
    else:
        keep = frame_columns(len(sample.frames), max_frames)
        overlay_grid(sample.frames[keep], {k: v[keep] for k, v in rows.items()}, sample_title(sample)).save(out)
    return out


def write_clip(frames: list[np.ndarray], out: Path, fps: float = 6.0) -> None:
    """``(H, W, 3)`` uint8 frames as an animated GIF or an MP4 (OpenCV's ``mp4v``)."""
    if out.suffix == ".gif":
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {out}")
    for frame in frames:
        writer.write(frame[:, :, ::-1])
    writer.release()


def plot_training_curves(runs: dict[str, str | Path], tags: list[str], out: str | Path) -> Path:
    """One panel per run: the given TensorBoard scalar ``tags`` against step, from each run's event files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.5), squeeze=False)
    for axis, (name, log_dir) in zip(axes[0], runs.items()):
        events = EventAccumulator(str(log_dir))
        events.Reload()
        for tag in tags:
            if tag in events.Tags()["scalars"]:
                scalars = events.Scalars(tag)
                axis.plot([s.step for s in scalars], [s.value for s in scalars], label=tag.split("/")[-1])
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.set_yscale("log")
        axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return Path(out)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark_arguments(parser)
    parser.add_argument(
        "--sample-id", required=True, help="as in the store's records, e.g. mevis/valid_u/<video>/<exp>"
    )
    parser.add_argument("--pred", action="append", default=[], help="NAME=prediction store folder (repeatable)")
    parser.add_argument("--max-frames", type=int, default=8, help="columns of a PNG grid")
    parser.add_argument("--out", required=True, help=".png/.jpg grid, or .gif/.mp4 clip of every frame")
    args = parser.parse_args(argv)
    predictions = dict(item.split("=", 1) for item in args.pred)
    dataset, _ = build_benchmark_dataset(args.benchmark, args.data_root, args.split, args.option)
    out = save_sample_overlay(dataset, args.sample_id, predictions, args.out, args.max_frames)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()

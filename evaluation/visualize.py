"""Pictures a person would rather look at than read: mask overlays per frame, and training curves.

    python -m evaluation.visualize --data-root data/synthetic_mevis --split valid_u \\
        --sample <video>/<exp_id> --pred trained=work_dirs/quickstart/eval/trained/Annotations --out overlay.png

The overlay grid has one row per mask source (ground truth first, then each ``--pred``) and one
column per frame; the expression is written above it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.mask_predictions import read_masks
from utils.data.mevis import MeViSDataset

MASK_COLOUR = np.array([255, 40, 200], dtype=np.float32)
LABEL_HEIGHT = 14
LABEL_WIDTH = 110


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: mask pixels with a 4-neighbour outside the mask (or on the image border)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
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
    for r, (name, masks) in enumerate(rows.items()):
        top = LABEL_HEIGHT + r * height
        draw.text((2, top + height // 2 - 5), name, fill="black")
        for t in range(num_frames):
            grid.paste(Image.fromarray(overlay(frames[t], masks[t])), (LABEL_WIDTH + t * width, top))
    return grid


def save_sample_overlay(
    dataset: MeViSDataset, sample_key: str, predictions: dict[str, str | Path], out: str | Path
) -> Path:
    """Overlay grid of one expression (``"<video>/<exp_id>"``): ground truth, then each prediction folder."""
    video, exp_id = sample_key.split("/")
    sample = dataset[dataset.keys().index((video, exp_id))]
    rows = {"ground truth": sample.masks.any(0)} if sample.masks is not None else {}
    for name, root in predictions.items():
        rows[name] = read_masks(root, video, exp_id, sample.frame_names)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    overlay_grid(sample.frames, rows, f'{sample_key}: "{sample.meta["exp"]}"').save(out)
    return Path(out)


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
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="valid_u")
    parser.add_argument("--sample", required=True, help="<video>/<exp_id>")
    parser.add_argument("--pred", action="append", default=[], help="name=folder of <video>/<exp_id>/<frame>.png")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    predictions = dict(item.split("=", 1) for item in args.pred)
    return save_sample_overlay(MeViSDataset(args.data_root, args.split), args.sample, predictions, args.out)


if __name__ == "__main__":
    main()

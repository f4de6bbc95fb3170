"""Mask predictions on disk, one folder per sample: ``<root>/<video>/<exp_id>/<frame>.png`` (0/255).

This is the layout of MeViS / Ref-YouTube-VOS submissions. Each sample's folder is written under a
temporary name and renamed when complete, so a crash never leaves a half-written sample and a
re-run skips exactly the samples that are done.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def sample_dir(root: str | Path, video: str, exp_id: str) -> Path:
    return Path(root) / video / str(exp_id)


def is_done(root: str | Path, video: str, exp_id: str) -> bool:
    return sample_dir(root, video, exp_id).is_dir()


def write_masks(root: str | Path, video: str, exp_id: str, frame_names: list[str], masks: np.ndarray) -> Path:
    """Atomically write ``(T, H, W)`` bool masks as ``<frame>.png`` files with values 0/255."""
    if len(frame_names) != len(masks):
        raise ValueError(f"{video}/{exp_id}: {len(masks)} masks for {len(frame_names)} frames")
    final = sample_dir(root, video, exp_id)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, mask in zip(frame_names, masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / f"{name}.png")
    tmp.rename(final)
    return final


def read_masks(root: str | Path, video: str, exp_id: str, frame_names: list[str]) -> np.ndarray:
    """``(T, H, W)`` bool; a missing frame raises naming the file."""
    folder = sample_dir(root, video, exp_id)
    masks = []
    for name in frame_names:
        path = folder / f"{name}.png"
        if not path.is_file():
            raise FileNotFoundError(f"prediction for {video}/{exp_id} lacks frame {path}")
        masks.append(np.array(Image.open(path)) > 0)
    return np.stack(masks)

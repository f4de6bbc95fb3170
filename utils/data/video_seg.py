"""Frame-folder video segmentation datasets: the shared base.

On disk, a video is a folder of per-frame JPEGs, ``<image_dir>/<video>/<frame>.jpg``, listed in a
JSON file whose top level is ``{"videos": {video: entry}}`` (the ReferFormer, YouTube-VOS, MeViS and
ReasonVOS files); each subclass reads its own per-frame mask PNGs (:meth:`VideoSegDataset.read_target`).

Here: reading the ``videos`` mapping and checking its entries (errors name the sample and the file),
the per-item recipe (:class:`VideoItem`) and :class:`VideoSegDataset`, which samples the frames and
builds the :class:`~utils.data.schema.Sample`, whose ``timestamps`` are ``frame_index / fps``: the
frame's position in the video's full frame list over the dataset's frame rate (each loader module
documents its rate in a constant; the loader option ``fps`` overrides it). Used by
:mod:`utils.data.ref_youtube_vos` and :mod:`utils.data.reasonvos`; :mod:`utils.data.mevis` shares
:func:`read_videos` and :func:`check_fps`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.image_io import read_json
from utils.data.prompts import referring_seg_answer
from utils.data.schema import Sample
from utils.video.clip import read_annotated_frames
from utils.video.sampling import FrameSampling

SAFE_ID_PART = re.compile(r"[A-Za-z0-9_.-]+")
"""What one ``/``-separated part of a ``sample_id`` may contain."""


# --- reading the JSON files --------------------------------------------------------------------------


def read_videos(path: Path) -> dict[str, dict]:
    """The ``"videos"`` mapping of an expression or meta JSON file."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise ValueError(f"{path} has no 'videos' mapping")
    return data["videos"]


def entry_field(entry: object, key: str, where: str, path: Path) -> object:
    """``entry[key]``, or a ``KeyError`` naming the sample and the file."""
    if not isinstance(entry, dict) or key not in entry:
        raise KeyError(f"{where}: no {key!r} in its entry of {path}")
    return entry[key]


def id_part(part: str, where: str) -> str:
    """``part`` if it may be one part of a ``sample_id``, else ``ValueError``."""
    if not SAFE_ID_PART.fullmatch(part) or part in (".", ".."):
        raise ValueError(f"{where}: {part!r} cannot be part of a sample id (allowed: A-Z a-z 0-9 _ . -)")
    return part


def frame_names(entry: object, where: str, path: Path, key: str = "frames") -> list[str]:
    """A video's frame names from ``entry[key]``: a non-empty list of distinct strings, kept in file order."""
    names = entry_field(entry, key, where, path)
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{where}: {key!r} in {path} must be a non-empty list of frame names")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: {key!r} in {path} repeats a frame name")
    return names


def text_field(entry: object, key: str, where: str, path: Path) -> str:
    """``entry[key]`` as a non-empty string (an expression), else ``ValueError`` naming the sample and the file."""
    text = entry_field(entry, key, where, path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: {key!r} in {path} is not a non-empty string: {text!r}")
    return text


def numbered_entries(entries: object, where: str, path: Path) -> list[tuple[str, object]]:
    """``(key, value)`` of a ``{"0": ..., "1": ...}`` mapping, in numeric key order."""
    if not isinstance(entries, dict):
        raise ValueError(f"{where}: expected a mapping of numbered entries in {path}, got {type(entries).__name__}")
    try:
        keys = sorted(entries, key=int)
    except ValueError:
        raise ValueError(f"{where}: entry ids in {path} must be integers, got {sorted(entries)}") from None
    return [(key, entries[key]) for key in keys]


# --- one dataset for every per-frame video format ------------------------------------------------------


def check_fps(fps: float, where: str) -> float:
    """``fps`` (a loader's frame rate option) as a float, or ``ValueError`` naming the dataset if not positive."""
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0:
        raise ValueError(f"{where}: fps must be a positive number (frames per second of the source), got {fps!r}")
    return float(fps)


@dataclass(frozen=True)
class VideoItem:
    """One sample's recipe.

    Attributes:
        video: video id (folder under the image folder).
        key: last part of the ``sample_id`` (expression id, category, ...), unique within the video.
        question: the user turn.
        target: what :meth:`VideoSegDataset.read_target` reads: object ids of the indexed PNGs, or a
            mask folder name (ReasonVOS).
        meta: facts copied into ``Sample.meta`` (``exp``, ``obj_id``, ...).
    """

    video: str
    key: str
    question: str
    target: tuple[int, ...] | str
    meta: dict = field(default_factory=dict)


def read_annotation(path: Path, read: Callable[[Path], np.ndarray], size: tuple[int, int], where: str) -> np.ndarray:
    """``read(path)`` of one frame's annotation PNG, checked against the frame ``size``; errors name the sample."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing annotation {path}")
    try:
        array = read(path)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    if array.shape != tuple(size):
        raise ValueError(
            f"{where}: annotation {path} is {array.shape[0]}x{array.shape[1]}, the frame {size[0]}x{size[1]}"
        )
    return array


def require_visible(
    track: np.ndarray, indices: list[int], num_total: int, shows_target: Callable[[int], bool], where: str
) -> None:
    """``ValueError`` unless the target shows in the chosen frames' ``track`` or in another annotated frame."""
    if track.any():
        return
    chosen = set(indices)
    if any(shows_target(t) for t in range(num_total) if t not in chosen):
        return
    raise ValueError(f"{where}: the target appears in none of the video's {num_total} annotated frames")


class VideoSegDataset(Dataset):
    """Samples of videos stored as per-frame JPEGs; subclasses read the masks (:meth:`read_target`).

    Args:
        name: loader name, the first part of every ``sample_id`` (``<name>/<split>/<video>/<key>``).
        split: the split, the second part.
        image_dir: folder of ``<video>/<frame>.jpg``.
        frames: video -> all its frame names in time order.
        items: the samples, in order.
        num_frames: frames per sample, one per equal segment of the video; ``None`` = every frame.
        train: jitter the frame choice inside each segment.
        seed: with ``train``, item ``i`` always draws the same frames for a seed.
        fps: the dataset's frame rate: its released frames per second of source video; frame ``i`` of a
            video's list is at ``i / fps`` seconds (``Sample.timestamps``).

    ``Sample.meta`` holds ``video``, ``exp_id`` (the ``sample_id``'s last part), the item's meta,
    ``frame_indices`` (into the video's frames) and what :meth:`read_target` adds.
    """

    def __init__(
        self,
        name: str,
        split: str,
        image_dir: Path,
        frames: dict[str, list[str]],
        items: list[VideoItem],
        num_frames: int | None = None,
        train: bool = False,
        seed: int = 0,
        *,
        fps: float,
    ):
        self.name, self.split, self.image_dir = name, split, Path(image_dir)
        self.fps = check_fps(fps, f"{name} {split}")
        self.frames, self.items = frames, items
        self.num_frames, self.train, self.seed = num_frames, train, seed
        self.ids = [f"{name}/{split}/{item.video}/{item.key}" for item in items]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"{name} {split}: sample ids repeat")

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no image)."""
        return list(self.ids)

    def videos(self) -> set[str]:
        """The videos its items show (for a training mix's benchmark-leakage check)."""
        return {item.video for item in self.items}

    def keys(self) -> list[tuple[str, str]]:
        """``(video, key)`` of every item, in item order."""
        return [(item.video, item.key) for item in self.items]

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        all_names = self.frames[item.video]
        rng = np.random.default_rng([self.seed, index]) if self.train else None
        where = f"sample {self.ids[index]}"
        sampling = FrameSampling(num_frames=self.num_frames)
        clip = read_annotated_frames(
            self.image_dir / item.video, all_names, sampling, where, fps=self.fps, train=self.train, rng=rng
        )
        indices, names, frames = clip.indices, clip.frame_names, clip.frames
        masks, extra = self.read_target(item, indices, frames.shape[1:3], where)
        return Sample(
            sample_id=self.ids[index],
            frames=frames,
            frame_names=names,
            conversation=[
                {"role": "user", "content": item.question},
                {"role": "assistant", "content": referring_seg_answer(1)},
            ],
            masks=masks,
            timestamps=clip.timestamps,
            meta={"video": item.video, "exp_id": item.key, **item.meta, "frame_indices": indices, **extra},
        )

    def read_target(
        self, item: VideoItem, indices: list[int], size: tuple[int, int], where: str
    ) -> tuple[np.ndarray | None, dict]:
        """``(masks (1, T, H, W) bool or None, extra meta)`` of the item on frames ``indices``."""
        raise NotImplementedError

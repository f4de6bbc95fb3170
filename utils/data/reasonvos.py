"""ReasonVOS (VideoLISA's reasoning video object segmentation benchmark), as released.

On disk, ``<root>`` is the released ``ReasonVOS/`` folder (showlab/VideoLISA ``BENCHMARK.md``,
``benchmark_check.py``, ``evaluation/reason_vos/``):

* ``meta_expressions.json``: ``{"videos": {video: {"source": "mevis" | "mose" | "burst" | "vipseg",
  "frames": [names], "expressions": [{"exp_id", "obj_id", "exp_text", "is_sent"}, ...]}}}``.
  ``is_sent`` tells a sentence (a question or an implicit query) from a short description. The
  released file lists expressions as above, and its ``exp_id`` can repeat within a video (as read by
  RGA3's and GLUS's ReasonVOS code); VideoLISA's own scripts read ``expressions`` as a
  ``{key: entry}`` mapping with ``is_sent`` on the video, which is accepted too.
* ``JPEGImages/<video>/<frame>.jpg``.
* ``Annotations/<source>_<video>_<obj_id>/<frame>.png``: the expression's target, one binary PNG
  per frame (non-zero = object), as VideoLISA's ``eval_reason_vos.py`` reads it.

One item per (video, expression) of a :class:`~utils.data.video_seg.VideoSegDataset`, in sorted
video order and file order; the ``sample_id`` is ``reasonvos/test/<video>/<k>`` for the video's
k-th expression (``exp_id`` is not unique). The benchmark has one split, named ``test`` here. Sentences are asked with
:func:`~utils.data.prompts.reasoning_seg_question`, descriptions as "the <description>" (VideoLISA's
"Please segment the {class_name}"). A target absent from every frame raises ``ValueError``.
``Sample.timestamps`` are the frames' positions in the video's list over :data:`REASONVOS_FPS` (loader
option ``fps``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.data.palette import read_binary_mask
from utils.data.prompts import reasoning_seg_question, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.video_seg import (
    VideoItem,
    VideoSegDataset,
    entry_field,
    frame_names,
    id_part,
    numbered_entries,
    read_annotation,
    read_videos,
    require_visible,
    text_field,
)

SPLIT = "test"
"""ReasonVOS's only split (an evaluation benchmark)."""

SOURCES = ("burst", "mevis", "mose", "vipseg")
"""The data sets ReasonVOS videos come from (``benchmark_check.py``)."""

REASONVOS_FPS = 5.0
"""Frames per second of ReasonVOS's JPEG folders. Its videos come from four data sets (:data:`SOURCES`) with
no single frame rate, and ReasonVOS states none; this is the documented rate of its MeViS videos (MeViS's
authors: most videos were extracted at 5 fps, a few at 3 or 30; henghuiding/MeViS issue #18), taken for all."""


def _expression_list(video_entry: dict, where: str, path: Path) -> list[dict]:
    """The video's expression entries in file order (a list, or VideoLISA's numbered mapping)."""
    expressions = entry_field(video_entry, "expressions", where, path)
    if isinstance(expressions, list):
        return expressions
    return [entry for _, entry in numbered_entries(expressions, where, path)]


def _is_sentence(expression: dict, video_entry: dict, where: str, path: Path) -> bool:
    """``is_sent`` of the expression (else of the video), which must be a boolean or 0 / 1."""
    value = expression.get("is_sent", video_entry.get("is_sent"))
    if value is None:
        raise KeyError(f"{where}: no 'is_sent' for the expression or its video in {path}")
    if value not in (True, False):
        raise ValueError(f"{where}: is_sent {value!r} in {path} is not a boolean")
    return bool(value)


class ReasonVOSDataset(VideoSegDataset):
    """ReasonVOS samples; ``root`` is the ``ReasonVOS/`` folder. Other arguments as :class:`VideoSegDataset`."""

    def __init__(
        self,
        root: str | Path,
        split: str = SPLIT,
        num_frames: int | None = None,
        train: bool = False,
        seed: int = 0,
        fps: float = REASONVOS_FPS,
    ):
        if split != SPLIT:
            raise ValueError(f"reasonvos has one split, {SPLIT!r}; got {split!r}")
        root = Path(root)
        path = root / "meta_expressions.json"
        videos = read_videos(path)
        items, frames = [], {}
        for video in sorted(videos):
            entry, where = videos[video], f"reasonvos/{split}/{id_part(video, video)}"
            frames[video] = frame_names(entry, where, path)
            source = entry_field(entry, "source", where, path)
            if not isinstance(source, str) or source.lower() not in SOURCES:
                raise ValueError(f"{where}: source {source!r} in {path} is not one of {SOURCES}")
            for position, expression in enumerate(_expression_list(entry, where, path)):
                where_exp = f"{where}/{position}"
                text = text_field(expression, "exp_text", where_exp, path)
                obj_id = id_part(str(entry_field(expression, "obj_id", where_exp, path)), where_exp)
                is_sent = _is_sentence(expression, entry, where_exp, path)
                question = reasoning_seg_question(text) if is_sent else referring_seg_question([f"the {text.lower()}"])
                meta = {
                    "exp": text,
                    "raw_exp_id": expression.get("exp_id", position),
                    "obj_id": obj_id,
                    "is_sent": is_sent,
                    "source": source,
                }
                items.append(VideoItem(video, str(position), question, f"{source}_{video}_{obj_id}", meta))
        super().__init__("reasonvos", split, root / "JPEGImages", frames, items, num_frames, train, seed, fps=fps)
        self.annotation_dir = root / "Annotations"

    def frame_mask(self, folder: str, name: str, size: tuple[int, int], where: str) -> np.ndarray:
        """``(H, W)`` bool mask of one frame, ``Annotations/<folder>/<name>.png``."""
        return read_annotation(self.annotation_dir / folder / f"{name}.png", read_binary_mask, size, where)

    def read_target(
        self, item: VideoItem, indices: list[int], size: tuple[int, int], where: str
    ) -> tuple[np.ndarray, dict]:
        """The expression's masks ``(1, T, H, W)`` from its mask folder; no extra meta."""
        names = self.frames[item.video]
        track = np.stack([self.frame_mask(item.target, names[t], size, where) for t in indices])
        require_visible(
            track,
            indices,
            len(names),
            lambda t: bool(self.frame_mask(item.target, names[t], size, where).any()),
            f"{where} ({self.annotation_dir / item.target})",
        )
        return track[None], {}


def _reasonvos_paths(root: Path, split: str) -> list[Path]:
    return [root / "meta_expressions.json", root / "JPEGImages", root / "Annotations"]


@register_dataset("reasonvos", family="reason_vos", required_paths=_reasonvos_paths, evaluated_splits=(SPLIT,))
def build_reasonvos(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, fps: float = REASONVOS_FPS
) -> ReasonVOSDataset:
    """ReasonVOS as released (``root`` = the ``ReasonVOS/`` folder); its one split is ``test``.

    ``fps``: frame rate of the JPEG folders (default :data:`REASONVOS_FPS`).
    """
    return ReasonVOSDataset(root, split, num_frames, train, seed, fps)

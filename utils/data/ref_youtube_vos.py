"""Ref-YouTube-VOS, Ref-DAVIS17 and YouTube-VOS 2019: JPEG videos with indexed PNG annotations.

On disk (layouts of wjn922/ReferFormer ``docs/data.md`` and ``tools/data/convert_davis_to_ytvos.py``):

* **Ref-YouTube-VOS**: ``<root>/meta_expressions/<split>/meta_expressions.json`` =
  ``{"videos": {video: {"expressions": {exp_id: {"exp": str, "obj_id": str}}, "frames": [names]}}}``
  (``obj_id`` only in ``train``; ``frames`` in time order, not a fixed stride),
  ``<root>/<split>/JPEGImages/<video>/<frame>.jpg`` and, for ``train`` only,
  ``<root>/<split>/Annotations/<video>/<frame>.png``. The ``valid`` expression file also lists the
  305 videos of the withheld test set; the 202 public ``valid`` videos are those absent from
  ``meta_expressions/test/meta_expressions.json`` (ReferFormer ``inference_ytvos.py``), so ``valid``
  requires that file.
* **Ref-DAVIS17** (after ReferFormer's conversion): the same files for ``valid`` (and ``train``),
  annotated, with DAVIS-2017 PNGs (the conversion moves ``Annotations_unsupervised/480p`` there) in
  which 255 is void. Each object has four expressions in a row: ``exp_id = 4 * k + run`` for the
  video's k-th object, runs 0..3 = :data:`DAVIS_RUNS`; ReferFormer's ``inference_davis.py`` scores
  each run separately.
* **YouTube-VOS 2019** ``train``: ``<root>/train/meta.json`` =
  ``{"videos": {video: {"objects": {obj_id: {"category": str, "frames": [names]}}}}}`` with
  ``JPEGImages`` and ``Annotations`` as above (the annotated frames, every 5th).

Items (of :class:`IndexedVOSDataset`, a :class:`~utils.data.video_seg.VideoSegDataset`): one per
(video, expression), in sorted order, for the referring sets; one per (video, category) for
YouTube-VOS, whose target is the union of the video's objects of that category (the question only
names the category, as in RGA3's ``utils/vos_dataset.py``).

Frame rates (``Sample.timestamps`` = position in the video's frame list / rate; loader option ``fps``
overrides): :data:`YOUTUBE_VOS_FPS` for Ref-YouTube-VOS and YouTube-VOS 2019, :data:`DAVIS_FPS` for
Ref-DAVIS17.

Masks (``O = 1``): the target's pixels of the annotation PNGs of the chosen frames, ``meta["void"]``
the void pixels. As in ReferFormer's loaders, a target missing from some frames has empty masks
there; a target that appears in none of its video's annotated frames is a broken annotation and
raises ``ValueError`` (looked for in the other frames only when the chosen ones show nothing).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from utils.data.palette import VOID_ID, read_index_mask, split_index_mask
from utils.data.prompts import referring_seg_question
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

YOUTUBE_VOS_FPS = 6.0
"""Frames per second of the released YouTube-VOS (and so Ref-YouTube-VOS) JPEG folders: every 5th frame of
the 30 fps videos (Xu et al. 2018; Ref-YouTube-VOS, Seo et al. 2020: "annotation at every 5 frames in 30-fps
videos"). A few Ref-YouTube-VOS ``frames`` lists are irregular (19 of the 507 ``valid`` lists have a gap
other than 5 frame numbers); positions in the list still count at this rate."""

DAVIS_FPS = 24.0
"""Frames per second of DAVIS 2017 (and so Ref-DAVIS17): every frame of the 24 fps sequences is released
(Perazzi et al. 2016, Pont-Tuset et al. 2017)."""

DAVIS_RUNS = (
    "annotator 1, first frame",
    "annotator 1, full video",
    "annotator 2, first frame",
    "annotator 2, full video",
)
"""Ref-DAVIS17's four expressions per object, in ``exp_id`` order (``meta["annotator"]`` indexes this)."""


def parse_obj_id(value: object, where: str, path: Path) -> int:
    """An object id of an indexed annotation (``"3"`` or ``3``), checked to be in 1..254."""
    try:
        obj_id = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: obj_id {value!r} in {path} is not an integer") from None
    if not 1 <= obj_id < VOID_ID:
        raise ValueError(f"{where}: obj_id {obj_id} in {path} is outside 1..{VOID_ID - 1}")
    return obj_id


class IndexedVOSDataset(VideoSegDataset):
    """A :class:`VideoSegDataset` whose masks are object ids in ``<annotation_dir>/<video>/<frame>.png``.

    ``annotation_dir`` ``None`` means the split has no public masks (``Sample.masks`` is ``None``);
    otherwise it must exist. Other arguments as :class:`VideoSegDataset`.
    """

    def __init__(self, *args, annotation_dir: Path | None, **kwargs):
        super().__init__(*args, **kwargs)
        if annotation_dir is not None and not Path(annotation_dir).is_dir():
            raise FileNotFoundError(f"{self.name} {self.split}: missing annotation folder {annotation_dir}")
        self.annotation_dir = None if annotation_dir is None else Path(annotation_dir)

    def id_map(self, video: str, name: str, size: tuple[int, int], where: str) -> np.ndarray:
        """``(H, W)`` uint8 object ids of one annotated frame."""
        return read_annotation(self.annotation_dir / video / f"{name}.png", read_index_mask, size, where)

    def read_target(
        self, item: VideoItem, indices: list[int], size: tuple[int, int], where: str
    ) -> tuple[np.ndarray | None, dict]:
        """The union of the item's objects ``(1, T, H, W)`` and ``{"void": (T, H, W) bool}``."""
        if self.annotation_dir is None:
            return None, {}
        names = self.frames[item.video]
        ids = np.stack([self.id_map(item.video, names[t], size, where) for t in indices])
        objects, void = split_index_mask(ids, item.target)
        track = objects.any(axis=0)
        require_visible(
            track,
            indices,
            len(names),
            lambda t: bool(np.isin(self.id_map(item.video, names[t], size, where), item.target).any()),
            f"{where} (obj_id {', '.join(map(str, item.target))} in {self.annotation_dir / item.video})",
        )
        return track[None], {"void": void}


# --- the three layouts ----------------------------------------------------------------------------------


def _expressions_path(root: Path, split: str) -> Path:
    return root / "meta_expressions" / split / "meta_expressions.json"


def referring_items(
    name: str, split: str, videos: dict[str, dict], path: Path, annotated: bool, runs_per_object: int = 0
) -> tuple[list[VideoItem], dict[str, list[str]]]:
    """``(items, frames)`` of a ReferFormer-layout expression file: one item per (video, expression).

    ``annotated``: expressions carry ``obj_id`` (the item's target). ``runs_per_object`` > 0: each
    object has that many consecutive expressions (Ref-DAVIS17: 4), recorded as ``meta["annotator"]``.
    """
    if runs_per_object and not annotated:
        raise ValueError("expressions grouped per object need obj_ids (annotated=True)")
    items, frames = [], {}
    for video in sorted(videos):
        where = f"{name}/{split}/{video}"
        frames[video] = frame_names(videos[video], where, path)
        entries = numbered_entries(entry_field(videos[video], "expressions", where, path), where, path)
        if runs_per_object and len(entries) % runs_per_object:
            raise ValueError(
                f"{where}: {len(entries)} expressions in {path}, not {runs_per_object} per object "
                f"({'; '.join(DAVIS_RUNS)})"
            )
        obj_ids = []
        for position, (exp_id, entry) in enumerate(entries):
            sample = f"{id_part(video, where)}/{id_part(exp_id, where)}"
            where_exp = f"{name}/{split}/{sample}"
            text = text_field(entry, "exp", where_exp, path)
            meta = {"exp": text}
            target: tuple[int, ...] = ()
            if annotated:
                obj_ids.append(parse_obj_id(entry_field(entry, "obj_id", where_exp, path), where_exp, path))
                target, meta["obj_id"] = (obj_ids[-1],), obj_ids[-1]
            if runs_per_object:
                meta["annotator"] = position % runs_per_object
                if obj_ids[-1] != obj_ids[position - meta["annotator"]]:
                    raise ValueError(
                        f"{where_exp}: obj_id {obj_ids[-1]} in {path}, but this object's first expression "
                        f"has obj_id {obj_ids[position - meta['annotator']]}"
                    )
            items.append(VideoItem(video, exp_id, referring_seg_question([text]), target, meta))
    return items, frames


def youtube_vos_items(videos: dict[str, dict], path: Path) -> tuple[list[VideoItem], dict[str, list[str]]]:
    """``(items, frames)`` of a YouTube-VOS ``meta.json``: one item per (video, category).

    A video's frames are the union of its objects' annotated frames (names of equal width sort in time order).
    """
    items, frames = [], {}
    for video in sorted(videos):
        where = f"youtube_vos/train/{id_part(video, video)}"
        by_category: dict[str, list[int]] = defaultdict(list)
        names: set[str] = set()
        for obj_key, obj in numbered_entries(entry_field(videos[video], "objects", where, path), where, path):
            category = entry_field(obj, "category", where, path)
            if not isinstance(category, str):
                raise ValueError(f"{where}: category {category!r} of object {obj_key} in {path} is not a string")
            by_category[id_part(category, where)].append(parse_obj_id(obj_key, where, path))
            names.update(frame_names(obj, f"{where} object {obj_key}", path))
        if not by_category:
            continue
        frames[video] = sorted(names, key=lambda n: (len(n), n))
        for category, obj_ids in sorted(by_category.items()):
            text = f"the {category.replace('_', ' ')}"
            meta = {"exp": text, "category": category, "obj_ids": obj_ids}
            items.append(VideoItem(video, category, referring_seg_question([text]), tuple(obj_ids), meta))
    return items, frames


def _dataset(
    name: str, root: Path, split: str, found: tuple[list[VideoItem], dict[str, list[str]]], annotated: bool, **sampling
) -> IndexedVOSDataset:
    """The :class:`IndexedVOSDataset` of ``<root>/<split>/{JPEGImages,Annotations}`` for ``(items, frames)``;
    ``sampling``: ``num_frames``, ``train``, ``seed`` and ``fps``."""
    items, frames = found
    split_dir = Path(root) / split
    annotations = split_dir / "Annotations" if annotated else None
    return IndexedVOSDataset(
        name, split, split_dir / "JPEGImages", frames, items, **sampling, annotation_dir=annotations
    )


def _ref_youtube_vos_paths(root: Path, split: str) -> list[Path]:
    paths = [_expressions_path(root, split), root / split / "JPEGImages"]
    if split == "train":
        paths.append(root / split / "Annotations")
    if split == "valid":
        paths.append(_expressions_path(root, "test"))
    return paths


@register_dataset(
    "ref_youtube_vos", family="ref_vos", required_paths=_ref_youtube_vos_paths, evaluated_splits=("valid",)
)
def build_ref_youtube_vos(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, fps: float = YOUTUBE_VOS_FPS
) -> IndexedVOSDataset:
    """Ref-YouTube-VOS as released: ``train`` with masks, ``valid`` (202 public videos, online server) without.

    ``fps``: frame rate of the JPEG folders (default :data:`YOUTUBE_VOS_FPS`).
    """
    path = _expressions_path(Path(root), split)
    videos = read_videos(path)
    if split == "valid":
        test_videos = read_videos(_expressions_path(Path(root), "test"))
        videos = {video: entry for video, entry in videos.items() if video not in test_videos}
    annotated = split == "train"
    found = referring_items("ref_youtube_vos", split, videos, path, annotated)
    return _dataset(
        "ref_youtube_vos", root, split, found, annotated, num_frames=num_frames, train=train, seed=seed, fps=fps
    )


def _ref_davis17_paths(root: Path, split: str) -> list[Path]:
    return [_expressions_path(root, split), root / split / "JPEGImages", root / split / "Annotations"]


@register_dataset("ref_davis17", family="ref_vos", required_paths=_ref_davis17_paths, evaluated_splits=("valid",))
def build_ref_davis17(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, fps: float = DAVIS_FPS
) -> IndexedVOSDataset:
    """Ref-DAVIS17 in ReferFormer's converted layout; every sample has ``meta["annotator"]`` and ``meta["void"]``.

    ``fps``: frame rate of the JPEG folders (default :data:`DAVIS_FPS`).
    """
    path = _expressions_path(Path(root), split)
    found = referring_items("ref_davis17", split, read_videos(path), path, True, len(DAVIS_RUNS))
    return _dataset("ref_davis17", root, split, found, True, num_frames=num_frames, train=train, seed=seed, fps=fps)


def _youtube_vos_paths(root: Path, split: str) -> list[Path]:
    return [root / split / "meta.json", root / split / "JPEGImages", root / split / "Annotations"]


@register_dataset("youtube_vos", family="vos", required_paths=_youtube_vos_paths)
def build_youtube_vos(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, fps: float = YOUTUBE_VOS_FPS
) -> IndexedVOSDataset:
    """YouTube-VOS 2019 ``train`` (the only split with every annotated frame's masks) as training data.

    ``fps``: frame rate of the JPEG folders (default :data:`YOUTUBE_VOS_FPS`).
    """
    if split != "train":
        raise ValueError(f"youtube_vos: only the 'train' split has full annotations, got {split!r}")
    path = Path(root) / split / "meta.json"
    found = youtube_vos_items(read_videos(path), path)
    return _dataset("youtube_vos", root, split, found, True, num_frames=num_frames, train=train, seed=seed, fps=fps)

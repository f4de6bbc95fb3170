"""MeViS-format referring video segmentation (also ReVOS, which shares the format).

On disk, ``<root>/<split>/``: ``meta_expressions.json`` (``{"videos": {video_id: {"expressions":
{exp_id: {"exp", "obj_id", "anno_id", ...}}, "frames": [names]}}}``), ``mask_dict.json``
(``{anno_id: [COCO RLE or null per frame]}``; absent for splits without public masks, e.g.
MeViS ``valid``) and ``JPEGImages/<video_id>/<frame>.jpg``. ReVOS keeps the same files at its
root for all splits, one expression file per split: ``meta_expressions_<split>_.json``.

One item per (video, expression), in sorted order. An expression naming several annotations
targets their union, as in MeViS's own evaluation. MeViS expressions are asked with the referring
template; ReVOS ones by their ``type_id`` (:data:`REVOS_TYPE_IDS`): referring, or a reasoning query with
:func:`~utils.data.prompts.reasoning_seg_question`. ``Sample.timestamps`` are the frames' positions in
the video's list over the layout's frame rate (:data:`MEVIS_FPS`, :data:`REVOS_FPS`; loader option ``fps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.image_io import read_json
from utils.data.prompts import reasoning_seg_question, referring_seg_answer, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.rle import decode_rle
from utils.data.schema import Sample
from utils.data.video_seg import check_fps, read_videos
from utils.video.clip import read_annotated_frames
from utils.video.sampling import FrameSampling

MEVIS_FPS = 5.0
"""Frames per second of MeViS's JPEG folders. MeViS states no rate in its files; its authors extracted
most videos at 5 fps and a few at lower (e.g. 3) or higher (e.g. 30) rates, with no per-video list
(henghuiding/MeViS issue #18, "Video FPS"), so the common 5 fps stands for all."""

REVOS_FPS = 6.0
"""Frames per second of ReVOS's JPEG folders. ReVOS gathers videos of several VOS / VIS sets (a video id
starts with its source, e.g. ``OVIS/...``) with no single rate and states none; 6 fps is their common
release: every 5th frame of 30 fps video (OVIS: "all the videos are annotated per 5 frames"; YouTube-VOS
likewise)."""

REVOS_TYPE_IDS = {0: "referring", 1: "reasoning", 2: "referring"}
"""ReVOS ``type_id`` -> how the expression is asked. 0 and 1 are the official scorer's referring and reasoning
groups (cilinyan/VISA ``tools/eval_revos.py``); 2, which that script scores in neither group (``is_nan``)
and does not document, is asked as referring, as an expression without ``type_id`` is."""


@dataclass(frozen=True)
class Layout:
    """Where a MeViS-format set keeps its files and how it is read.

    Attributes:
        folder: the split folder under the root (``{split}`` is the split; ``""``: the root itself).
        meta_file: the expression file in it.
        fps: the frame rate of its JPEG folders.
        typed: expressions carry ReVOS's ``type_id`` (:data:`REVOS_TYPE_IDS`); otherwise all are referring.
    """

    folder: str
    meta_file: str
    fps: float
    typed: bool


LAYOUTS = {
    "mevis": Layout("{split}", "meta_expressions.json", MEVIS_FPS, typed=False),
    "revos": Layout("", "meta_expressions_{split}_.json", REVOS_FPS, typed=True),
}
"""Layout name -> :class:`Layout`."""


def expression_kind(expression: dict, where: str, path: Path) -> str:
    """``"referring"`` or ``"reasoning"``, from a ReVOS expression's ``type_id`` (absent: referring).

    A ``type_id`` outside :data:`REVOS_TYPE_IDS` is a ``ValueError`` naming the sample ``where`` and the file.
    """
    type_id = expression.get("type_id")
    if type_id is None:
        return "referring"
    if isinstance(type_id, bool) or not isinstance(type_id, int) or type_id not in REVOS_TYPE_IDS:
        known = ", ".join(f"{key} ({kind})" for key, kind in REVOS_TYPE_IDS.items())
        raise ValueError(f"{where}: type_id {type_id!r} in {path} is not one of {known}")
    return REVOS_TYPE_IDS[type_id]


class MeViSDataset(Dataset):
    """Samples of one split.

    Args:
        root: folder holding the split folders.
        split: ``train``, ``valid_u``, ``valid``, ...
        num_frames: frames per sample, one per equal segment of the video; ``None`` = every frame.
        train: jitter the frame choice inside each segment and allow ``expressions_per_sample > 1``.
        seed: with ``train``, item ``i`` always draws the same frames and extra expressions for a seed.
        expressions_per_sample: (training) ask for this many objects of the same video in one
            sample, the item's own expression first; capped at the video's expression count. The others
            are referring expressions; a reasoning query is asked alone (its template takes one query).
        layout: a key of :data:`LAYOUTS`; also the first part of every ``sample_id``.
        fps: frame rate of the JPEG folders; ``None``: the layout's (:data:`MEVIS_FPS`, :data:`REVOS_FPS`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_frames: int | None = None,
        train: bool = False,
        seed: int = 0,
        expressions_per_sample: int = 1,
        layout: str = "mevis",
        fps: float | None = None,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
        spec = LAYOUTS[layout]
        self.split_dir = Path(root) / spec.folder.format(split=split)
        self.split, self.num_frames, self.train, self.seed = split, num_frames, train, seed
        self.layout = layout
        self.fps = check_fps(spec.fps if fps is None else fps, f"{layout} {split}")
        self.expressions_per_sample = expressions_per_sample if train else 1
        meta_path = self.split_dir / spec.meta_file.format(split=split)
        self.videos: dict[str, dict] = read_videos(meta_path)
        self.mask_path = self.split_dir / "mask_dict.json"
        self.mask_dict: dict | None = read_json(self.mask_path) if self.mask_path.is_file() else None
        self.items: list[tuple[str, str]] = [
            (video_id, exp_id)
            for video_id in sorted(self.videos)
            for exp_id in sorted(self.videos[video_id]["expressions"], key=int)
        ]
        self.kinds: dict[tuple[str, str], str] = {}  # (video_id, exp_id) -> "referring" | "reasoning"
        for video_id, exp_id in self.items:
            expression = self.videos[video_id]["expressions"][exp_id]
            sample_id = f"{layout}/{split}/{video_id}/{exp_id}"
            self.kinds[video_id, exp_id] = (
                expression_kind(expression, sample_id, meta_path) if spec.typed else "referring"
            )

    def __len__(self) -> int:
        return len(self.items)

    def keys(self) -> list[tuple[str, str]]:
        """``(video_id, exp_id)`` of every item, in item order."""
        return self.items

    def videos(self) -> set[str]:
        """The videos its items show (for a training mix's benchmark-leakage check)."""
        return {video_id for video_id, _ in self.items}

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no image)."""
        return [f"{self.layout}/{self.split}/{video_id}/{exp_id}" for video_id, exp_id in self.items]

    def frame_names(self, video_id: str) -> list[str]:
        """All frame names of a video in time order (from the meta file, else the sorted JPEG folder)."""
        names = self.videos[video_id].get("frames")
        if names is None:
            names = sorted(p.stem for p in (self.split_dir / "JPEGImages" / video_id).glob("*.jpg"))
        return list(names)

    def __getitem__(self, index: int) -> Sample:
        video_id, exp_id = self.items[index]
        expressions = self.videos[video_id]["expressions"]
        all_names = self.frame_names(video_id)
        rng = np.random.default_rng([self.seed, index]) if self.train else None
        where = f"{self.layout} {self.split} video {video_id}, expression {exp_id}"
        folder = self.split_dir / "JPEGImages" / video_id
        clip = read_annotated_frames(
            folder, all_names, FrameSampling(num_frames=self.num_frames), where, fps=self.fps, train=self.train, rng=rng
        )
        indices, names, frames = clip.indices, clip.frame_names, clip.frames
        kind = self.kinds[video_id, exp_id]
        exp_ids = [exp_id]
        if self.expressions_per_sample > 1 and kind == "referring":
            others = [e for e in sorted(expressions, key=int) if e != exp_id and self.kinds[video_id, e] == "referring"]
            count = min(self.expressions_per_sample - 1, len(others))
            exp_ids += [others[i] for i in rng.choice(len(others), size=count, replace=False)]

        masks = None
        if self.mask_dict is not None:
            height, width = frames.shape[1:3]
            masks = np.stack(
                [self.union_mask(expressions[e]["anno_id"], indices, height, width, where) for e in exp_ids]
            )
        texts = [expressions[e]["exp"] for e in exp_ids]
        meta = {"video": video_id, "exp_id": exp_id, "exp": texts[0], "exp_ids": exp_ids}
        for key in ("type", "type_id"):
            if key in expressions[exp_id]:
                meta[key] = expressions[exp_id][key]
        meta["frame_indices"] = indices
        question = reasoning_seg_question(texts[0]) if kind == "reasoning" else referring_seg_question(texts)
        return Sample(
            sample_id=f"{self.layout}/{self.split}/{video_id}/{exp_id}",
            frames=frames,
            frame_names=names,
            conversation=[
                {"role": "user", "content": question},
                {"role": "assistant", "content": referring_seg_answer(len(exp_ids))},
            ],
            masks=masks,
            timestamps=clip.timestamps,
            meta=meta,
        )

    def union_mask(self, anno_ids: list, indices: list[int], height: int, width: int, where: str) -> np.ndarray:
        """``(T, H, W)`` union of the expression's annotations on the chosen frames."""
        union = np.zeros((len(indices), height, width), dtype=bool)
        for anno_id in anno_ids:
            track = self.mask_dict.get(str(anno_id))
            if track is None:
                raise KeyError(f"{where}: anno_id {anno_id} is not in {self.mask_path}")
            for t, frame in enumerate(indices):
                try:
                    union[t] |= decode_rle(track[frame], height, width)
                except (ValueError, IndexError) as error:
                    raise ValueError(
                        f"{where}: malformed RLE in {self.mask_path} (anno_id {anno_id}, frame {frame}): {error}"
                    ) from error
        return union


SPLITS_WITHOUT_MASKS = ("valid",)
"""MeViS splits released without ``mask_dict.json`` (scored only by the online server)."""


def _mevis_paths(root: Path, split: str) -> list[Path]:
    masks = [] if split in SPLITS_WITHOUT_MASKS else [root / split / "mask_dict.json"]
    return [root / split / "meta_expressions.json", *masks, root / split / "JPEGImages"]


@register_dataset("mevis", family="ref_vos", required_paths=_mevis_paths, evaluated_splits=("valid_u", "valid"))
def build_mevis(
    root: Path,
    split: str,
    *,
    num_frames: int,
    train: bool,
    seed: int,
    expressions_per_sample: int = 1,
    fps: float | None = None,
) -> MeViSDataset:
    """MeViS as released (``<root>/<split>/``); also any set written in its layout (the synthetic one).

    Benchmarks: ``valid_u`` (local, with masks) and ``valid`` (online server, no masks). ``fps``: frame
    rate of the JPEG folders (``None``: :data:`MEVIS_FPS`).
    """
    return MeViSDataset(root, split, num_frames, train, seed, expressions_per_sample, fps=fps)


def _revos_paths(root: Path, split: str) -> list[Path]:
    return [root / f"meta_expressions_{split}_.json", root / "mask_dict.json", root / "JPEGImages"]


@register_dataset("revos", family="reason_vos", required_paths=_revos_paths, evaluated_splits=("valid",))
def build_revos(
    root: Path,
    split: str,
    *,
    num_frames: int,
    train: bool,
    seed: int,
    expressions_per_sample: int = 1,
    fps: float | None = None,
) -> MeViSDataset:
    """ReVOS as released: one root for all splits, ``meta_expressions_<split>_.json`` per split.

    ``fps``: frame rate of the JPEG folders (``None``: :data:`REVOS_FPS`).
    """
    return MeViSDataset(root, split, num_frames, train, seed, expressions_per_sample, layout="revos", fps=fps)

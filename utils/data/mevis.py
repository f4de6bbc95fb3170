"""MeViS-format referring video segmentation (also ReVOS, which shares the format).

On disk, ``<root>/<split>/``: ``meta_expressions.json`` (``{"videos": {video_id: {"expressions":
{exp_id: {"exp", "obj_id", "anno_id", ...}}, "frames": [names]}}}``), ``mask_dict.json``
(``{anno_id: [COCO RLE or null per frame]}``; absent for splits without public masks, e.g.
MeViS ``valid``) and ``JPEGImages/<video_id>/<frame>.jpg``. ReVOS keeps the same files at its
root for all splits, one expression file per split: ``meta_expressions_<split>_.json``.

One item per (video, expression), in sorted order. An expression naming several annotations
targets their union, as in MeViS's own evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.image_io import read_json
from utils.data.prompts import referring_seg_answer, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.rle import decode_rle
from utils.data.schema import Sample
from utils.video.clip import read_annotated_frames
from utils.video.sampling import FrameSampling
from utils.data.video_seg import read_videos

LAYOUTS = {
    "mevis": ("{split}", "meta_expressions.json"),
    "revos": ("", "meta_expressions_{split}_.json"),
}
"""Layout name -> (split folder under the root, expression file in it); ``{split}`` is the split."""


class MeViSDataset(Dataset):
    """Samples of one split.

    Args:
        root: folder holding the split folders.
        split: ``train``, ``valid_u``, ``valid``, ...
        num_frames: frames per sample, one per equal segment of the video; ``None`` = every frame.
        train: jitter the frame choice inside each segment and allow ``expressions_per_sample > 1``.
        seed: with ``train``, item ``i`` always draws the same frames and extra expressions for a seed.
        expressions_per_sample: (training) ask for this many objects of the same video in one
            sample, the item's own expression first; capped at the video's expression count.
        layout: a key of :data:`LAYOUTS`; also the first part of every ``sample_id``.
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
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
        folder, meta_file = (part.format(split=split) for part in LAYOUTS[layout])
        self.split_dir = Path(root) / folder
        self.split, self.num_frames, self.train, self.seed = split, num_frames, train, seed
        self.layout = layout
        self.expressions_per_sample = expressions_per_sample if train else 1
        meta_path = self.split_dir / meta_file
        self.videos: dict[str, dict] = read_videos(meta_path)
        self.mask_path = self.split_dir / "mask_dict.json"
        self.mask_dict: dict | None = read_json(self.mask_path) if self.mask_path.is_file() else None
        self.items: list[tuple[str, str]] = [
            (video_id, exp_id)
            for video_id in sorted(self.videos)
            for exp_id in sorted(self.videos[video_id]["expressions"], key=int)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def keys(self) -> list[tuple[str, str]]:
        """``(video_id, exp_id)`` of every item, in item order."""
        return self.items

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
            folder, all_names, FrameSampling(num_frames=self.num_frames), where, train=self.train, rng=rng
        )
        indices, names, frames = clip.indices, clip.frame_names, clip.frames
        exp_ids = [exp_id]
        if self.expressions_per_sample > 1:
            others = [e for e in sorted(expressions, key=int) if e != exp_id]
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
        if "type" in expressions[exp_id]:
            meta["type"] = expressions[exp_id]["type"]
        meta["frame_indices"] = indices
        return Sample(
            sample_id=f"{self.layout}/{self.split}/{video_id}/{exp_id}",
            frames=frames,
            frame_names=names,
            conversation=[
                {"role": "user", "content": referring_seg_question(texts)},
                {"role": "assistant", "content": referring_seg_answer(len(exp_ids))},
            ],
            masks=masks,
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
    root: Path, split: str, *, num_frames: int, train: bool, seed: int, expressions_per_sample: int = 1
) -> MeViSDataset:
    """MeViS as released (``<root>/<split>/``); also any set written in its layout (the synthetic one).

    Benchmarks: ``valid_u`` (local, with masks) and ``valid`` (online server, no masks).
    """
    return MeViSDataset(root, split, num_frames, train, seed, expressions_per_sample)


def _revos_paths(root: Path, split: str) -> list[Path]:
    return [root / f"meta_expressions_{split}_.json", root / "mask_dict.json", root / "JPEGImages"]


@register_dataset("revos", family="reason_vos", required_paths=_revos_paths, evaluated_splits=("valid",))
def build_revos(
    root: Path, split: str, *, num_frames: int, train: bool, seed: int, expressions_per_sample: int = 1
) -> MeViSDataset:
    """ReVOS as released: one root for all splits, ``meta_expressions_<split>_.json`` per split."""
    return MeViSDataset(root, split, num_frames, train, seed, expressions_per_sample, layout="revos")

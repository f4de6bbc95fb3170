"""Tiny synthetic video segmentation sets in the on-disk formats of Ref-YouTube-VOS, Ref-DAVIS17,
YouTube-VOS 2019 and ReasonVOS (see :mod:`utils.data.ref_youtube_vos` and :mod:`utils.data.reasonvos`).

Every video is a :mod:`~utils.synthetic.moving_shapes` world: coloured shapes whose referring
expressions each pick exactly one of them, so the masks match what the frames show and the text.
Frames are JPEGs; masks are indexed PNGs with the DAVIS palette (object ``i`` of the world is id
``i + 1``), or binary 0/255 PNGs for ReasonVOS. Each writer is a function of its seed and returns
what it wrote (:class:`WrittenVideo` per split and video) for tests to compare loaders against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from utils.data.palette import VOID_ID, write_index_mask
from utils.data.reasonvos import SOURCES
from utils.synthetic.moving_shapes import Video, WorldConfig, encode_masks, make_video

TINY = {"height": 64, "width": 64, "num_frames": 5}
"""Default world: 64x64 px, 5 frames (override with ``WorldConfig`` fields)."""

FRAME_STEPS = (5, 10, 3)
"""Ref-YouTube-VOS frame-name strides, cycled over videos (the real ``frames`` lists are not all every 5th)."""

DAVIS_TEMPLATES = ("{text}", "{text} in the whole video", "{text} seen at the start", "{text} all along")
"""One expression wording per Ref-DAVIS17 run, in the order of :data:`utils.data.ref_youtube_vos.DAVIS_RUNS`."""

SENTENCE_TEMPLATE = "Which shape would you point at if someone asked for {text}?"
"""ReasonVOS ``is_sent`` expressions and ReVOS reasoning (``type_id`` 1) ones are questions built from the
world's expression."""


@dataclass
class WrittenVideo:
    """One written video: the world, its frame names and the ``(T, H, W)`` uint8 object ids as written (255 = void)."""

    video: Video
    frame_names: list[str]
    ids: np.ndarray


def _make(fmt: str, split: str, index: int, seed: int, first: int, step: int, world: dict[str, Any]) -> WrittenVideo:
    """Video ``index`` of ``fmt``/``split``; frame ``t`` is named ``first + step * t`` (5 digits)."""
    video = make_video(seed, f"{fmt}-{split}", index, WorldConfig(**{**TINY, **world}))
    labels = np.arange(1, len(video.objects) + 1, dtype=np.uint8)[:, None, None, None]
    ids = (video.masks * labels).sum(axis=0).astype(np.uint8)  # visible masks are disjoint
    names = [f"{first + step * t:05d}" for t in range(len(video.frames))]
    return WrittenVideo(video, names, ids)


def _write_frames(folder: Path, written: WrittenVideo) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(written.frame_names, written.video.frames):
        Image.fromarray(frame).save(folder / f"{name}.jpg", quality=95)


def _write_id_maps(folder: Path, written: WrittenVideo) -> None:
    for name, ids in zip(written.frame_names, written.ids):
        write_index_mask(folder / f"{name}.png", ids)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _objects_meta(written: WrittenVideo) -> dict[str, dict]:
    """YouTube-VOS ``meta.json`` objects: category (the shape) and the frames each object is visible in."""
    return {
        str(i + 1): {
            "category": obj.shape,
            "frames": [name for name, mask in zip(written.frame_names, written.video.masks[i]) if mask.any()],
        }
        for i, obj in enumerate(written.video.objects)
    }


def _add_void(ids: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` ids with a one-pixel void ring (:data:`VOID_ID`) on the background around every object."""
    objects = ids > 0
    near = objects.copy()
    near[:, 1:] |= objects[:, :-1]
    near[:, :-1] |= objects[:, 1:]
    near[:, :, 1:] |= objects[:, :, :-1]
    near[:, :, :-1] |= objects[:, :, 1:]
    return np.where(near & ~objects, np.uint8(VOID_ID), ids)


def write_ref_youtube_vos(
    root: Path, seed: int = 0, num_videos: int = 3, num_test: int = 1, **world: Any
) -> dict[str, dict[str, WrittenVideo]]:
    """Ref-YouTube-VOS ``train`` (masks, ``meta.json``) and ``valid`` (no masks), ``num_videos`` each.

    The ``valid`` expression file lists all ``valid`` videos; the first ``num_test`` of them are also
    in ``meta_expressions/test/`` (the withheld test set), so only the others are public ``valid``.
    Frame names follow :data:`FRAME_STEPS` and start at 5 x the video index.
    """
    root = Path(root)
    written: dict[str, dict[str, WrittenVideo]] = {}
    for split in ("train", "valid"):
        videos, meta = {}, {}
        for index in range(num_videos):
            video = _make("ref_youtube_vos", split, index, seed, 5 * index, FRAME_STEPS[index % 3], world)
            video_id = video.video.video_id
            videos[video_id] = video
            _write_frames(root / split / "JPEGImages" / video_id, video)
            expressions = {}
            for k, expression in enumerate(video.video.expressions):
                expressions[str(k)] = {"exp": expression.text}
                if split == "train":
                    expressions[str(k)]["obj_id"] = str(expression.target + 1)
            meta[video_id] = {"expressions": expressions, "frames": video.frame_names}
            if split == "train":
                _write_id_maps(root / split / "Annotations" / video_id, video)
        if split == "train":
            _write_json(
                root / split / "meta.json", {"videos": {v: {"objects": _objects_meta(w)} for v, w in videos.items()}}
            )
        else:
            test = {video_id: meta[video_id] for video_id in list(meta)[:num_test]}
            _write_json(root / "meta_expressions" / "test" / "meta_expressions.json", {"videos": test})
        _write_json(root / "meta_expressions" / split / "meta_expressions.json", {"videos": meta})
        written[split] = videos
    return written


def write_ref_davis17(
    root: Path, seed: int = 0, num_videos: int = 2, **world: Any
) -> dict[str, dict[str, WrittenVideo]]:
    """Ref-DAVIS17 ``valid`` in ReferFormer's converted layout.

    Four expressions per object, object-major (``exp_id = 4 * k + run``, worded by
    :data:`DAVIS_TEMPLATES`); annotations carry a void ring around every object.
    """
    root = Path(root)
    videos, meta, objects = {}, {}, {}
    for index in range(num_videos):
        video = _make("ref_davis17", "valid", index, seed, 0, 1, world)
        video.ids = _add_void(video.ids)
        video_id = video.video.video_id
        videos[video_id] = video
        _write_frames(root / "valid" / "JPEGImages" / video_id, video)
        _write_id_maps(root / "valid" / "Annotations" / video_id, video)
        by_object = sorted(video.video.expressions, key=lambda e: e.target)
        expressions = [
            {"exp": template.format(text=e.text), "obj_id": str(e.target + 1)}
            for e in by_object
            for template in DAVIS_TEMPLATES
        ]
        meta[video_id] = {"expressions": {str(k): e for k, e in enumerate(expressions)}, "frames": video.frame_names}
        objects[video_id] = {"objects": {k: {"category": v["category"]} for k, v in _objects_meta(video).items()}}
    _write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": meta})
    _write_json(root / "valid" / "meta.json", {"videos": objects})
    return {"valid": videos}


def write_youtube_vos(
    root: Path, seed: int = 0, num_videos: int = 3, **world: Any
) -> dict[str, dict[str, WrittenVideo]]:
    """YouTube-VOS 2019 ``train``: ``meta.json`` (category = shape), JPEG frames every 5th, indexed PNGs."""
    root = Path(root)
    videos = {}
    for index in range(num_videos):
        video = _make("youtube_vos", "train", index, seed, 0, 5, world)
        videos[video.video.video_id] = video
        _write_frames(root / "train" / "JPEGImages" / video.video.video_id, video)
        _write_id_maps(root / "train" / "Annotations" / video.video.video_id, video)
    _write_json(root / "train" / "meta.json", {"videos": {v: {"objects": _objects_meta(w)} for v, w in videos.items()}})
    return {"train": videos}


def write_reasonvos(root: Path, seed: int = 0, num_videos: int = 3, **world: Any) -> dict[str, dict[str, WrittenVideo]]:
    """ReasonVOS as released, ``root`` being the ``ReasonVOS/`` folder.

    Expressions alternate between questions (:data:`SENTENCE_TEMPLATE`, ``is_sent`` true) and
    descriptions (the world's expression without its article); sources cycle over
    :data:`~utils.data.reasonvos.SOURCES`. As in the real file, ``exp_id`` repeats: each video's last
    expression reuses ``exp_id`` 0.
    """
    root = Path(root)
    videos, meta = {}, {}
    for index in range(num_videos):
        video = _make("reasonvos", "test", index, seed, 0, 1, world)
        video_id, source = video.video.video_id, SOURCES[index % len(SOURCES)]
        videos[video_id] = video
        _write_frames(root / "JPEGImages" / video_id, video)
        expressions = []
        for k, e in enumerate(video.video.expressions):
            is_sent = k % 2 == 0
            text = SENTENCE_TEMPLATE.format(text=e.text) if is_sent else e.text.removeprefix("the ")
            last = k == len(video.video.expressions) - 1
            expressions.append(
                {"exp_id": 0 if last else k, "obj_id": str(e.target + 1), "exp_text": text, "is_sent": is_sent}
            )
            folder = root / "Annotations" / f"{source}_{video_id}_{e.target + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, mask in zip(video.frame_names, video.video.masks[e.target]):
                Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}.png")
        meta[video_id] = {"source": source, "frames": video.frame_names, "expressions": expressions}
    _write_json(root / "meta_expressions.json", {"videos": meta})
    return {"test": videos}


REVOS_SOURCE = "synthetic"
"""ReVOS video ids carry their source dataset as a folder (``"OVIS/train/00e92ab4"``); the synthetic ones too."""


def write_revos(root: Path, split: str = "valid", seed: int = 0, num_videos: int = 3, **world: Any) -> Path:
    """ReVOS as released: ``<root>/meta_expressions_<split>_.json``, ``mask_dict.json``,
    ``mask_dict_foreground.json`` and ``JPEGImages/<source>/<video>/<frame>.jpg``.

    Attribute expressions are ``type_id`` 0 (referring, the world's text), motion ones ``type_id`` 1
    (reasoning, asked as a :data:`SENTENCE_TEMPLATE` question); ``mask_dict_foreground.json`` holds, per
    video, one RLE per frame of all its objects.
    """
    root = Path(root)
    config = WorldConfig(**{**TINY, **world})
    frame_names = [f"{t:05d}" for t in range(config.num_frames)]
    mask_dict = _read_or_empty(root / "mask_dict.json")
    foreground = _read_or_empty(root / "mask_dict_foreground.json")
    videos: dict[str, dict] = {}
    for index in range(num_videos):
        video = make_video(seed, f"revos_{split}", index, config)
        video_id = f"{REVOS_SOURCE}/{video.video_id}"
        anno_ids = [len(mask_dict) + i for i in range(len(video.objects))]
        mask_dict.update((str(a), rles) for a, rles in zip(anno_ids, encode_masks(video.masks), strict=True))
        foreground[video_id] = {"masks_rle": encode_masks(video.masks.any(0, keepdims=True))[0]}
        videos[video_id] = {
            "expressions": {
                str(k): {
                    "exp": SENTENCE_TEMPLATE.format(text=e.text) if e.type == "motion" else e.text,
                    "obj_id": [e.target],
                    "anno_id": [anno_ids[e.target]],
                    "type_id": int(e.type == "motion"),
                }
                for k, e in enumerate(video.expressions)
            },
            "frames": frame_names,
        }
        folder = root / "JPEGImages" / video_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in zip(frame_names, video.frames, strict=True):
            Image.fromarray(frame).save(folder / f"{name}.jpg", quality=config.jpeg_quality)
    _write_json(root / f"meta_expressions_{split}_.json", {"videos": videos})
    _write_json(root / "mask_dict.json", mask_dict)
    _write_json(root / "mask_dict_foreground.json", foreground)
    return root


def _read_or_empty(path: Path) -> dict:
    """The JSON object in ``path``, or ``{}`` if there is none yet (splits share ReVOS's mask files)."""
    return json.loads(path.read_text()) if path.is_file() else {}

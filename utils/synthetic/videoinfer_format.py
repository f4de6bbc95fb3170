"""Synthetic VideoInfer sets in the released on-disk layout (read by :mod:`utils.data.videoinfer`).

:func:`write_videoinfer` writes :class:`VideoInferRecord` s as ``frames/<video>/<frame>.jpg``,
``<split>.json``, ``mask_dict.json`` (COCO RLE, shared by the splits: a second split appends its
annotations) and, for ``test``, the fixed prompts ``visual_prompts/<video>/<exp_id>/<shape>.npz``
(``arr_0``: the ``(H, W, 4)`` uint8 RGBA layer of :func:`~utils.visual_prompts.overlays.render_overlay`).
:func:`write_tiny_videoinfer` makes a small set of moving-shapes videos (:mod:`utils.synthetic.moving_shapes`)
with questions about their objects' colour, shape and motion.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from utils.data.videoinfer import SPLITS, shape_name
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.visual_prompts.overlays import SHAPES, OverlayStyle, render_overlay

TINY_WORLD = WorldConfig(height=64, width=64, num_frames=6, min_objects=3, max_objects=3)
"""The world of :func:`write_tiny_videoinfer`: 64x64 px, 6 frames, 3 objects."""

TINY_COLOURS = ("red", "lime", "blue", "yellow", "fuchsia", "aqua", "orange", "purple", "gold")
"""Prompt colours of the tiny test split (RGA3's ``color_pool``), cycled over expressions."""


@dataclass
class VideoInferRecord:
    """One question about one expression of a video.

    Attributes:
        video: video name (folder under ``frames/``).
        frames: ``(T, H, W, 3)`` uint8 RGB.
        frame_names: ``T`` sorted, distinct frame names.
        objects: the expression's target, one ``{frame index: (H, W) bool mask}`` per annotation (frames
            not listed, or with an empty mask, are written ``null``); ``test`` takes exactly one.
        question, answer: ``Q`` and ``A``.
        exp_id: the expression id; records of the same ``(video, exp_id)`` are one expression with
            several questions and must agree on everything but the question, answer and ``qa_id``.
        styles: (test) the fixed prompt's style, one per object.
        qa_id: the question's id within the expression.
        prompt_frame: (test) ``overlayed_frame_idx``; ``None``: the middle frame where the object shows.
        expression: the ``exp`` text; ``None`` writes the question.
    """

    video: str
    frames: np.ndarray
    frame_names: list[str]
    objects: list[dict[int, np.ndarray]]
    question: str
    answer: str
    exp_id: str
    styles: list[OverlayStyle] | None = None
    qa_id: str = "0"
    prompt_frame: int | None = None
    expression: str | None = None


def _encode(mask: np.ndarray | None) -> dict | None:
    if mask is None or not mask.any():
        return None
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _check(record: VideoInferRecord, split: str) -> None:
    where = f"record {record.video}/{record.exp_id}/{record.qa_id}"
    frames = record.frames
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"{where}: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    names = list(record.frame_names)
    if len(names) != len(frames) or names != sorted(set(names)):
        raise ValueError(f"{where}: frame_names must be {len(frames)} sorted distinct names, got {names}")
    if not record.objects:
        raise ValueError(f"{where}: an expression needs at least one object")
    for masks in record.objects:
        for t, mask in masks.items():
            if not 0 <= t < len(frames) or mask.shape != frames.shape[1:3]:
                raise ValueError(f"{where}: mask on frame {t} {mask.shape} does not fit frames {frames.shape[:3]}")
    if split == "test" and (len(record.objects) != 1 or record.styles is None or len(record.styles) != 1):
        raise ValueError(f"{where}: a test expression has exactly one object and one overlay style (RGA3's test.json)")


def _prompt_frame(record: VideoInferRecord) -> int:
    if record.prompt_frame is not None:
        return record.prompt_frame
    shown = sorted(t for t, mask in record.objects[0].items() if mask.any())
    if not shown:
        raise ValueError(f"record {record.video}/{record.exp_id}: the object shows on no frame")
    return shown[len(shown) // 2]


def _same_expression(a: VideoInferRecord, b: VideoInferRecord) -> bool:
    same_masks = len(a.objects) == len(b.objects) and all(
        x.keys() == y.keys() and all(np.array_equal(x[t], y[t]) for t in x) for x, y in zip(a.objects, b.objects)
    )
    return same_masks and a.styles == b.styles and a.prompt_frame == b.prompt_frame and a.expression == b.expression


def write_videoinfer(root: Path, split: str, records: list[VideoInferRecord], seed: int = 0) -> Path:
    """Write ``records`` as VideoInfer ``split`` under ``root`` (see the module docstring); returns ``root``.

    ``<split>.json`` is written anew; ``mask_dict.json`` keeps what another split wrote and appends.
    Test prompts are drawn with ``np.random.default_rng([seed, crc32("<video>/<exp_id>")])``.
    """
    if split not in SPLITS:
        raise ValueError(f"videoinfer splits are {SPLITS}, got {split!r}")
    root = Path(root)
    mask_path = root / "mask_dict.json"
    mask_dict: dict[str, list] = json.loads(mask_path.read_text()) if mask_path.is_file() else {}
    next_id = max((int(k) for k in mask_dict), default=-1) + 1
    annotation: dict[str, dict] = {}
    first: dict[tuple[str, str], VideoInferRecord] = {}
    for record in records:
        _check(record, split)
        key = (record.video, record.exp_id)
        video = annotation.get(record.video)
        if video is None:
            video = annotation[record.video] = {"frames": list(record.frame_names), "expressions": {}}
            folder = root / "frames" / record.video
            folder.mkdir(parents=True, exist_ok=True)
            for name, frame in zip(record.frame_names, record.frames, strict=True):
                Image.fromarray(frame).save(folder / f"{name}.jpg", quality=95)
        elif video["frames"] != list(record.frame_names):
            raise ValueError(f"record {record.video}/{record.exp_id}: frames differ from another record of the video")
        expression = video["expressions"].get(record.exp_id)
        if expression is None:
            first[key] = record
            anno_ids = list(range(next_id, next_id + len(record.objects)))
            next_id += len(record.objects)
            for anno_id, masks in zip(anno_ids, record.objects, strict=True):
                mask_dict[str(anno_id)] = [_encode(masks.get(t)) for t in range(len(record.frames))]
            expression = video["expressions"][record.exp_id] = {
                "exp": record.expression if record.expression is not None else record.question,
                "anno_id": anno_ids,
                "QA": {},
            }
            if split == "test":
                _add_fixed_prompt(root, record, expression, seed)
        elif not _same_expression(first[key], record):
            raise ValueError(f"record {record.video}/{record.exp_id}/{record.qa_id}: differs from its expression")
        if record.qa_id in expression["QA"]:
            raise ValueError(f"record {record.video}/{record.exp_id}: qa_id {record.qa_id!r} repeats")
        expression["QA"][record.qa_id] = {"Q": record.question, "A": record.answer}
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.json").write_text(json.dumps(annotation))
    mask_path.write_text(json.dumps(mask_dict))
    return root


def _add_fixed_prompt(root: Path, record: VideoInferRecord, expression: dict, seed: int) -> None:
    """Render the test expression's prompt, save its ``.npz`` and add its fields (one ``anno_id``, as released)."""
    frame, style = _prompt_frame(record), record.styles[0]
    mask = record.objects[0].get(frame)
    if mask is None or not mask.any():
        raise ValueError(f"record {record.video}/{record.exp_id}: the object is not on its prompt frame {frame}")
    rng = np.random.default_rng([seed, zlib.crc32(f"{record.video}/{record.exp_id}".encode())])
    layer = render_overlay(record.frames.shape[1:3], style, mask=mask, rng=rng)
    folder = root / "visual_prompts" / record.video / record.exp_id
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{shape_name(style.shape)}.npz", layer)
    expression["anno_id"] = expression["anno_id"][0]
    expression.update({"overlayed_frame_idx": frame, "color": style.colour, "shape": shape_name(style.shape)})


def write_tiny_videoinfer(root: Path, split: str, seed: int = 0, num_videos: int = 2) -> list[VideoInferRecord]:
    """A tiny VideoInfer ``split`` of moving-shapes videos; returns the records written.

    Each video's first two objects are expressions ``"0"`` and ``"1"``, each with two questions: its
    motion, then its colour (``"0"``) or shape (``"1"``). Video names carry the split, so splits never
    share a video. Test styles step through :data:`~utils.visual_prompts.overlays.SHAPES` (from
    ``mask_contour``, written ``"mask contour"``, three at a time: eight expressions use every shape)
    and cycle over :data:`TINY_COLOURS`.
    """
    records = []
    for index in range(num_videos):
        video = make_video(seed, f"videoinfer-{split}", index, TINY_WORLD)
        name = f"{split}_{video.video_id}"
        frame_names = [f"{5 * t:05d}" for t in range(len(video.frames))]
        for exp_index in range(2):
            obj = video.objects[exp_index]
            masks = {t: m for t, m in enumerate(video.masks[exp_index]) if m.any()}
            style_index = 2 * index + exp_index
            styles = (
                [
                    OverlayStyle(
                        SHAPES[(5 + 3 * style_index) % len(SHAPES)], TINY_COLOURS[style_index % len(TINY_COLOURS)]
                    )
                ]
                if split == "test"
                else None
            )
            questions = [("Which way is it moving?", f"It is moving {obj.direction}.")]
            questions += [("What colour is it?", f"It is {obj.colour}.")] if exp_index == 0 else []
            questions += [("What shape is it?", f"It is a {obj.shape}.")] if exp_index == 1 else []
            for qa_index, (question, answer) in enumerate(questions):
                records.append(
                    VideoInferRecord(
                        video=name,
                        frames=video.frames,
                        frame_names=frame_names,
                        objects=[masks],
                        question=question,
                        answer=answer,
                        exp_id=str(exp_index),
                        styles=styles,
                        qa_id=str(qa_index),
                        expression=f"the {obj.colour} {obj.shape}",
                    )
                )
    write_videoinfer(root, split, records, seed)
    return records

"""ReasonSeg, LISA's reasoning segmentation benchmark, as released.

On disk (``<root>`` is LISA's ``reason_seg`` folder): ``<root>/ReasonSeg/<split>/<name>.jpg`` and
``<name>.json`` per image (``train``, ``val``, ``test``). The JSON is LabelMe-like:

* ``"text"``: the queries (training images have up to five rephrasings of one; a lone string is
  read as one query);
* ``"is_sentence"``: whether they are long sentences (asked with :func:`reasoning_seg_question`) or
  short phrases (asked as a referring expression);
* ``"shapes"``: ``[{"label", "points": [[x, y], ...]}]``; label ``"flag"`` (case-insensitive) is a
  deprecated annotation and skipped, a label containing ``"ignore"`` marks an ambiguous region
  that evaluation leaves out, any other label is target;
* LabelMe's ``"imageHeight"``/``"imageWidth"``, when present, must match the image.

The JSON is UTF-8 or, failing that, cp1252, as LISA reads it. Masks are rasterised exactly as LISA's
``utils/data_processing.get_mask_from_json``: polygons (points truncated to int32) sorted by their
own drawn area, largest first, each drawn with ``cv2.polylines`` (thickness 1) and ``cv2.fillPoly``,
value 255 for ignore and 1 for target, so a later (smaller) polygon overwrites an earlier one.
Points outside the image are clipped, as cv2 draws them. The image is read with its EXIF orientation
applied, as LabelMe (which drew the polygons) and LISA's ``cv2.imread`` do.

Items: one per image in name order. Evaluation asks the first query, as LISA's ``ValDataset`` does;
training draws a query from ``(seed, index)``. ``masks`` is ``(1, 1, H, W)``, the target;
``meta["void"]`` is the ``(1, H, W)`` bool ignore region (the ``(T, H, W)`` void pixels of the video
loaders, ``T = 1``), which evaluation leaves out.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from utils.data.image_io import read_json, read_rgb, safe_id_part
from utils.data.prompts import reasoning_seg_question, referring_seg_answer, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample

TARGET, IGNORE = 1, 255
"""Values of the rasterised label map (0 elsewhere), as in LISA."""


def _is_point(point: object) -> bool:
    return (
        isinstance(point, list)
        and len(point) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
    )


def _polygon(shape: object, where: str) -> tuple[str, np.ndarray]:
    """``(label, (1, N, 2) int32 points)`` of one LabelMe shape, points truncated as LISA's ``np.array(..., int32)``."""
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str) or "points" not in shape:
        raise ValueError(f"{where}: a shape lacks a string 'label' or 'points': {str(shape)[:200]}")
    points = shape["points"]
    if not isinstance(points, list) or not points or not all(_is_point(point) for point in points):
        raise ValueError(
            f"{where}: shape {shape['label']!r} has points that are not [[x, y], ...]: {str(points)[:200]}"
        )
    return shape["label"], np.array([points], dtype=np.int32)


def _draw(mask: np.ndarray, points: np.ndarray, value: int) -> None:
    cv2.polylines(mask, points, True, value, 1)
    cv2.fillPoly(mask, points, value)


def rasterize_shapes(shapes: object, height: int, width: int, where: str) -> np.ndarray:
    """``(H, W)`` uint8 label map of LabelMe ``shapes``: 1 target, 255 ignore, 0 elsewhere (LISA's rules)."""
    if not isinstance(shapes, list):
        raise ValueError(f"{where}: 'shapes' must be a list")
    polygons = [_polygon(shape, where) for shape in shapes]
    polygons = [(label, points) for label, points in polygons if label.lower() != "flag"]
    areas = []
    for _, points in polygons:
        scratch = np.zeros((height, width), dtype=np.uint8)
        _draw(scratch, points, 1)
        areas.append(scratch.sum())
    label_map = np.zeros((height, width), dtype=np.uint8)
    for index in np.argsort(areas)[::-1]:
        label, points = polygons[index]
        _draw(label_map, points, IGNORE if "ignore" in label.lower() else TARGET)
    return label_map


def _texts(annotation: dict, where: str) -> list[str]:
    texts = annotation.get("text")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"{where}: 'text' must be a non-empty list of non-empty queries, got {texts!r}")
    return [text.strip() for text in texts]


class ReasonSegDataset(Dataset):
    """One split of ReasonSeg (``<root>/ReasonSeg/<split>/``); every sample is one image (``T = 1``).

    Args:
        root: the folder holding ``ReasonSeg/``.
        split: ``train``, ``val`` or ``test``.
        train: draw the query from ``(seed, index)``; otherwise ask the first.
        seed: see ``train``.
    """

    def __init__(self, root: str | Path, split: str, train: bool = False, seed: int = 0):
        self.split_dir = Path(root) / "ReasonSeg" / split
        self.split, self.train, self.seed = split, train, seed
        if not self.split_dir.is_dir():
            raise FileNotFoundError(f"missing ReasonSeg split folder {self.split_dir}")
        self.names = sorted(path.stem for path in self.split_dir.glob("*.jpg"))
        if not self.names:
            raise FileNotFoundError(f"no .jpg images in {self.split_dir}")
        suffix = "" if train else "/0"
        self._ids = [f"reasonseg/{split}/{safe_id_part(name)}{suffix}" for name in self.names]
        if len(set(self._ids)) != len(self._ids):
            raise ValueError(f"{self.split_dir}: image names collide once made safe for sample ids")

    def __len__(self) -> int:
        return len(self.names)

    def sample_ids(self) -> list[str]:
        """``reasonseg/<split>/<name>/0`` (evaluation: query 0) or ``reasonseg/<split>/<name>`` (training)."""
        return list(self._ids)

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        where = f"reasonseg {self.split} image {name}"
        image_path, json_path = self.split_dir / f"{name}.jpg", self.split_dir / f"{name}.json"
        image = read_rgb(image_path, where, exif=True)
        annotation = read_json(json_path, encodings=("utf-8", "cp1252"))
        where = f"{where} ({json_path})"
        if not isinstance(annotation, dict) or not isinstance(annotation.get("is_sentence"), bool):
            raise ValueError(f"{where}: expected an object with 'text', a boolean 'is_sentence' and 'shapes'")
        height, width = image.shape[:2]
        stated = (annotation.get("imageHeight", height), annotation.get("imageWidth", width))
        if stated != (height, width):
            raise ValueError(f"{where}: the JSON says {stated[0]}x{stated[1]} but {image_path} is {height}x{width}")
        texts = _texts(annotation, where)
        label_map = rasterize_shapes(annotation.get("shapes"), height, width, where)
        target = label_map == TARGET
        if not target.any():
            raise ValueError(f"{where}: no target pixel (every shape is 'ignore' or 'flag', or none is drawn)")
        choice = int(np.random.default_rng([self.seed, index]).integers(len(texts))) if self.train else 0
        text = texts[choice]
        is_sentence = annotation["is_sentence"]
        question = (
            reasoning_seg_question(text, medium="image")
            if is_sentence
            else referring_seg_question([text], medium="image")
        )
        return Sample(
            sample_id=self._ids[index],
            frames=image[None],
            frame_names=[name],
            conversation=[
                {"role": "user", "content": question},
                {"role": "assistant", "content": referring_seg_answer(1)},
            ],
            masks=target[None, None],
            medium="image",
            meta={
                "image": name,
                "text_index": choice,
                "text": text,
                "is_sentence": is_sentence,
                "void": (label_map == IGNORE)[None],
            },
        )


def _reasonseg_paths(root: Path, split: str) -> list[Path]:
    return [root / "ReasonSeg" / split]


@register_dataset("reasonseg", family="reason_seg", required_paths=_reasonseg_paths, evaluated_splits=("val", "test"))
def build_reasonseg(root: Path, split: str, *, num_frames: int | None, train: bool, seed: int) -> ReasonSegDataset:
    """ReasonSeg as released (``<root>/ReasonSeg/<split>/``); images are one frame (``num_frames`` is unused)."""
    return ReasonSegDataset(root, split, train, seed)

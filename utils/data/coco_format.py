"""COCO-format instance annotations: indexing the JSON file and decoding a ``segmentation`` into a mask.

On disk, one JSON object: ``"images"`` ``[{"id", "file_name", "height", "width"}]``, ``"annotations"``
``[{"id", "image_id", "category_id", "segmentation"}]`` and ``"categories"`` ``[{"id", "name"}]``
(cocodataset.org "Data format"). A ``segmentation`` is polygons ``[[x1, y1, x2, y2, ...], ...]``, one
RLE ``{"size": [h, w], "counts"}`` (compressed string or uncompressed run lengths) or a list of RLEs
(RefCLEF), rasterised as pycocotools does: polygons clipped to the image, parts united.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from utils.data.image_io import read_json
from utils.data.rle import decode_rle


@dataclass
class CocoAnnotations:
    """A COCO-format annotation file, indexed by id; every reference between its parts checked."""

    path: Path
    images: dict[int, dict]
    annotations: dict[int, dict]
    categories: dict[int, dict]
    image_annotations: dict[int, list[dict]]
    """Image id -> its annotations, in file order (images without any are absent)."""


def _by_id(entries: object, keys: tuple[str, ...], path: Path, section: str) -> dict[int, dict]:
    if not isinstance(entries, list):
        raise ValueError(f"{path}: '{section}' must be a list, got {type(entries).__name__}")
    indexed: dict[int, dict] = {}
    for entry in entries:
        missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise ValueError(f"{path}: an entry of '{section}' lacks {missing}: {str(entry)[:200]}")
        entry_id = entry["id"]
        if isinstance(entry_id, bool) or not isinstance(entry_id, int):
            raise ValueError(f"{path}: '{section}' id {entry_id!r} is not an integer")
        if entry_id in indexed:
            raise ValueError(f"{path}: '{section}' id {entry_id} appears twice")
        indexed[entry_id] = entry
    return indexed


def load_coco(path: Path) -> CocoAnnotations:
    """Read ``images``, ``annotations`` and ``categories`` of a COCO-format JSON file.

    Raises ``KeyError`` for an annotation naming an image or category the file lacks,
    ``ValueError`` for malformed entries.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a COCO object with 'images', 'annotations', 'categories'")
    images = _by_id(data.get("images"), ("id", "file_name", "height", "width"), path, "images")
    annotations = _by_id(
        data.get("annotations"), ("id", "image_id", "category_id", "segmentation"), path, "annotations"
    )
    categories = _by_id(data.get("categories"), ("id", "name"), path, "categories")
    image_annotations: dict[int, list[dict]] = {}
    for ann_id, ann in annotations.items():
        if ann["image_id"] not in images:
            raise KeyError(f"{path}: annotation {ann_id} names image {ann['image_id']!r}, which is not in 'images'")
        if ann["category_id"] not in categories:
            raise KeyError(
                f"{path}: annotation {ann_id} names category {ann['category_id']!r}, which is not in 'categories'"
            )
        image_annotations.setdefault(ann["image_id"], []).append(ann)
    return CocoAnnotations(path, images, annotations, categories, image_annotations)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rle_mask(rle: dict, height: int, width: int) -> np.ndarray:
    """One COCO RLE, compressed (``counts`` a string) or not (a list of run lengths), as ``(H, W)`` bool."""
    counts = rle.get("counts")
    if isinstance(counts, list):
        if list(rle.get("size", ())) != [height, width]:
            raise ValueError(f"RLE size {rle.get('size')} but the image is {height}x{width}")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        if sum(counts) != height * width:
            raise ValueError(f"RLE run lengths cover {sum(counts)} pixels, not {height * width}")
        return mask_utils.decode(mask_utils.frPyObjects(rle, height, width)).astype(bool)
    return decode_rle(rle, height, width)


def _polygons_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """Union of COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` rasterised by pycocotools (clipped to the image).

    Polygons of fewer than 3 points cover no area and are left out (pycocotools would read a
    4-number one as a box).
    """
    for polygon in polygons:
        if not all(_is_number(v) for v in polygon) or len(polygon) % 2:
            raise ValueError("a polygon must be an even-length list of numbers [x1, y1, x2, y2, ...]")
    kept = [[float(v) for v in polygon] for polygon in polygons if len(polygon) >= 6]
    if not kept:
        return np.zeros((height, width), dtype=bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(kept, height, width))).astype(bool)


def segmentation_mask(segmentation: object, height: int, width: int, where: str) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO ``segmentation``: polygons, one RLE, or a list of RLEs (their union).

    Raises ``ValueError`` naming ``where`` if it is malformed or covers no pixel.
    """
    try:
        if isinstance(segmentation, dict):
            mask = _rle_mask(segmentation, height, width)
        elif isinstance(segmentation, list) and segmentation and all(isinstance(s, dict) for s in segmentation):
            mask = np.logical_or.reduce([_rle_mask(rle, height, width) for rle in segmentation])
        elif isinstance(segmentation, list) and segmentation and all(isinstance(s, list) for s in segmentation):
            mask = _polygons_mask(segmentation, height, width)
        else:
            raise ValueError(f"expected polygons or RLE, got {str(segmentation)[:120]}")
    except ValueError as error:
        raise ValueError(f"{where}: malformed segmentation: {error}") from error
    if not mask.any():
        raise ValueError(f"{where}: the segmentation covers no pixel of the {height}x{width} image")
    return mask

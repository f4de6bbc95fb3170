"""Reading the files the dataset loaders start from: images (JPEG / PNG) as RGB arrays and JSON annotation files.

Also how an image's file name becomes part of a ``sample_id`` (:func:`safe_id_part`). Errors name
the file and, where given, the sample.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def read_json(path: Path, encodings: tuple[str, ...] = ("utf-8",)) -> object:
    """The parsed JSON file, decoded with the first of ``encodings`` that fits.

    Raises ``FileNotFoundError`` if it is missing and ``ValueError`` naming it if it is not JSON.
    """
    if not path.is_file():
        raise FileNotFoundError(f"missing annotation file {path}")
    raw = path.read_bytes()
    for encoding in encodings:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValueError(f"{path} is not text in any of {list(encodings)}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def read_rgb(path: Path, where: str, exif: bool = False, kind: str = "image") -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of an image file (a video frame: ``kind="frame"``, for the error).

    ``exif`` turns the pixels as the file's EXIF orientation says (as LabelMe and ``cv2.imread`` do);
    without it they are the stored raster, which COCO's ``height``/``width`` describe.
    Raises ``FileNotFoundError`` ``"<where>: missing <kind> <path>"``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing {kind} {path}")
    with Image.open(path) as image:
        return np.asarray((ImageOps.exif_transpose(image) if exif else image).convert("RGB"))


def check_size(image: np.ndarray, height: int, width: int, where: str, path: Path) -> None:
    """Raise ``ValueError`` unless ``image`` is ``height x width`` (what its annotation says)."""
    if image.shape[:2] != (height, width):
        raise ValueError(f"{where}: {path} is {image.shape[0]}x{image.shape[1]}, its annotation says {height}x{width}")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_id_part(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_`` (for sample ids)."""
    return _UNSAFE.sub("_", name)

"""COCO run-length encoded masks: strict validation before decoding, so a corrupt file fails loudly.

``pycocotools`` decodes a truncated or garbled ``counts`` string into a plausible-looking wrong mask;
:func:`decode_rle` checks the string against the COCO compressed-RLE grammar first.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def rle_problem(rle: object, height: int, width: int) -> str | None:
    """Why ``rle`` is not a valid compressed COCO RLE of an ``height x width`` mask, or ``None`` if it is."""
    if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str) or "size" not in rle:
        return "expected {'size': [h, w], 'counts': str}"
    if list(rle["size"]) != [height, width]:
        return f"size {rle['size']} but the frame is {height}x{width}"
    counts, value, shift, total = [], 0, 0, 0
    for char in rle["counts"]:
        code = ord(char) - 48
        if not 0 <= code < 64:
            return f"character {char!r} outside the RLE alphabet"
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            return "negative run length"
        counts.append(value)
        total += value
        value, shift = 0, 0
    if shift:
        return "counts string ends inside a run length"
    if total != height * width:
        return f"run lengths cover {total} pixels, not {height * width}"
    return None


def decode_rle(rle: dict | None, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool; ``None`` (an absent object) is an empty mask. Raises ``ValueError`` on a bad RLE."""
    if rle is None:
        return np.zeros((height, width), dtype=bool)
    problem = rle_problem(rle, height, width)
    if problem is not None:
        raise ValueError(problem)
    return mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"].encode()}).astype(bool)

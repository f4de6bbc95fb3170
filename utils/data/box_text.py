"""Boxes written in text: HOI-QA's ``{<x1><y1><x2><y2>}`` on a 0-100 grid and Qwen2.5-VL's JSON in pixels.

Two ways a model writes a box, and how each is read back:

* **Grid** (MiniGPT-v2, HOI-QA): ``{<x1><y1><x2><y2>}`` with integer corners on a :data:`GRID` = 100 grid
  over the image (0 = left/top edge, 100 = right/bottom edge); several boxes follow each other
  (``{<..>}{<..>}``, any text between them).
* **Qwen JSON** (Qwen2.5-VL's grounding output): ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]`` with
  absolute integer pixels of the image the model saw, often inside a ```` ```json ```` fence.

Sizes are always ``(width, height)``; boxes are ``(K, 4)`` ``x1, y1, x2, y2`` arrays.

Grid <-> pixels: a grid corner ``g`` is the pixel coordinate ``g / 100 * size``; a pixel coordinate ``x``
is the grid corner ``round(x / size * 100)`` (``rounding="nearest"``, within half a grid step) or
``floor`` (``rounding="floor"``, within one step: HOI-QA's own ``int(x / W * 100)``).

What the parsers do with bad text (each case is counted in :class:`ParsedBoxes`, never silently):

* garbage (no box at all): no boxes, nothing counted;
* a partial box (a grid box with fewer or more than four numbers or no closing ``}``; a JSON ``bbox_2d``
  that is not four numbers): dropped and counted in ``dropped``;
* swapped corners (``x1 > x2`` or ``y1 > y2``): the two values of that axis are exchanged, counted in
  ``reordered``;
* out of range (a grid value outside ``[0, 100]``; a pixel outside ``[0, width] x [0, height]`` when
  the size is known, below 0 otherwise): clipped, counted in ``clipped``;
* JSON that does not load (cut off mid-answer, trailing commas): every complete
  ``"bbox_2d": [...]`` in it is still read (with the ``"label"`` that follows it in the same object).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

GRID = 100
"""Grid corners run from 0 to ``GRID`` inclusive."""

ROUNDINGS = ("nearest", "floor")

_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_GRID_CANDIDATE = re.compile(r"\{((?:\s*<\s*" + _NUMBER + r"\s*>)+)\s*(\}?)")
_GRID_VALUE = re.compile(r"<\s*(" + _NUMBER + r")\s*>")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
_BBOX_ITEM = re.compile(r'"bbox_2d"\s*:\s*\[([^\[\]]*)\](?:[^{}\[\]]*?"label"\s*:\s*"((?:[^"\\]|\\.)*)")?')


@dataclass(frozen=True)
class ParsedBoxes:
    """Boxes read from a text, with how much had to be repaired.

    Attributes:
        boxes: ``(K, 4)`` float64 ``x1 <= x2, y1 <= y2`` in the parser's units (grid or pixels).
        labels: ``K`` labels (``""`` where the format has none).
        dropped: partial or malformed boxes that were left out.
        reordered: boxes whose corners were swapped on at least one axis.
        clipped: boxes with at least one value clipped into range.
    """

    boxes: np.ndarray
    labels: tuple[str, ...]
    dropped: int = 0
    reordered: int = 0
    clipped: int = 0

    def __len__(self) -> int:
        return len(self.boxes)


def _as_boxes(boxes) -> np.ndarray:
    """``boxes`` as a ``(K, 4)`` float64 array (one box ``(4,)`` becomes ``(1, 4)``); ``ValueError`` otherwise."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"expected (K, 4) boxes, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"boxes must be finite, got {array.tolist()}")
    return array


def _check_size(size: tuple[float, float]) -> np.ndarray:
    """``(width, height, width, height)`` for scaling ``(K, 4)`` boxes; ``ValueError`` unless both are positive."""
    width, height = size
    if not (width > 0 and height > 0):
        raise ValueError(f"an image size (width, height) must be positive, got {size}")
    return np.array([width, height, width, height], dtype=np.float64)


def repair_boxes(boxes: np.ndarray, limit: tuple[float, float] | None) -> tuple[np.ndarray, int, int]:
    """``(boxes, reordered, clipped)``: corners put in order per axis, then clipped to ``[0, limit]``.

    ``boxes`` ``(K, 4)``; ``limit`` is ``(width, height)`` (``None``: only negative values are clipped, to 0).
    """
    boxes = _as_boxes(boxes) if len(boxes) else np.zeros((0, 4))
    low, high = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
    reordered = int((low != boxes[:, :2]).any(axis=1).sum())
    ordered = np.concatenate([low, high], axis=1)
    upper = np.inf if limit is None else _check_size(limit)
    repaired = np.clip(ordered, 0.0, upper)
    clipped = int((repaired != ordered).any(axis=1).sum())
    return repaired, reordered, clipped


# ---- grid <-> pixels -----------------------------------------------------------------------------


def grid_to_pixels(boxes, size: tuple[float, float]) -> np.ndarray:
    """``(K, 4)`` grid boxes -> float64 pixel boxes of an image of ``size`` ``(width, height)``."""
    return _as_boxes(boxes) / GRID * _check_size(size)


def pixels_to_grid(boxes, size: tuple[float, float], rounding: str = "nearest") -> np.ndarray:
    """``(K, 4)`` pixel boxes of an image of ``size`` -> int64 grid boxes in ``[0, 100]`` (see module docstring)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    scaled = _as_boxes(boxes) / _check_size(size) * GRID
    grid = np.floor(scaled) if rounding == "floor" else np.round(scaled)
    return np.clip(grid, 0, GRID).astype(np.int64)


def rescale_boxes(boxes, from_size: tuple[float, float], to_size: tuple[float, float]) -> np.ndarray:
    """``(K, 4)`` pixel boxes of an image of ``from_size`` -> the same boxes in pixels of ``to_size``."""
    return _as_boxes(boxes) / _check_size(from_size) * _check_size(to_size)


# ---- the grid format -----------------------------------------------------------------------------


def format_grid_boxes(boxes, separator: str = "") -> str:
    """``"{<x1><y1><x2><y2>}"`` per ``(K, 4)`` grid box, joined by ``separator``.

    Raises ``ValueError`` for a value that is not an integer in ``[0, 100]`` or corners out of order.
    """
    grid = _as_boxes(boxes)
    if (grid != np.round(grid)).any() or (grid < 0).any() or (grid > GRID).any():
        raise ValueError(f"grid boxes must be integers in [0, {GRID}], got {grid.tolist()}")
    if (grid[:, :2] > grid[:, 2:]).any():
        raise ValueError(f"grid boxes must have x1 <= x2 and y1 <= y2, got {grid.tolist()}")
    return separator.join("{" + "".join(f"<{int(v)}>" for v in box) + "}" for box in grid)


def parse_grid_boxes(text: str, limit: tuple[float, float] | None = (GRID, GRID)) -> ParsedBoxes:
    """Every ``{<x1><y1><x2><y2>}`` of ``text`` as ``(K, 4)`` boxes, repaired as the module docstring says.

    ``limit`` ``(width, height)`` is the range values are clipped to: the grid's by default; ``None`` reads
    values of another unit written in this syntax (only negatives are clipped).
    """
    boxes, dropped = [], 0
    for match in _GRID_CANDIDATE.finditer(text):
        values = [float(v) for v in _GRID_VALUE.findall(match.group(1))]
        if len(values) != 4 or not match.group(2):
            dropped += 1
            continue
        boxes.append(values)
    repaired, reordered, clipped = repair_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), limit)
    return ParsedBoxes(repaired, ("",) * len(repaired), dropped, reordered, clipped)


# ---- Qwen2.5-VL's JSON ---------------------------------------------------------------------------


def format_qwen_boxes(boxes, labels: list[str] | tuple[str, ...], fenced: bool = True) -> str:
    """Qwen2.5-VL's grounding answer for ``(K, 4)`` pixel boxes: ``[{"bbox_2d": [...], "label": ...}, ...]``.

    Corners are rounded to integers (as Qwen writes them); ``fenced`` wraps the JSON in a ```` ```json ````
    block. Raises ``ValueError`` if ``labels`` does not give one label per box.
    """
    pixels = np.round(_as_boxes(boxes)).astype(np.int64) if len(boxes) else np.zeros((0, 4), np.int64)
    if len(labels) != len(pixels):
        raise ValueError(f"{len(labels)} labels for {len(pixels)} boxes")
    items = [{"bbox_2d": [int(v) for v in box], "label": str(label)} for box, label in zip(pixels, labels)]
    body = json.dumps(items, ensure_ascii=False)
    return f"```json\n{body}\n```" if fenced else body


def _qwen_items(text: str) -> tuple[list, int] | None:
    """The decoded JSON items of ``text`` (fence removed) and 0, or ``None`` if no JSON value loads."""
    fenced = _FENCE.search(text)
    body = (fenced.group(1) if fenced else text).strip()
    start = min((i for i in (body.find("["), body.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError:
        return None
    return (value if isinstance(value, list) else [value]), 0


def _bbox_values(raw) -> list[float] | None:
    """A ``bbox_2d`` value as four floats, or ``None`` if it is not four finite numbers."""
    if not isinstance(raw, list) or len(raw) != 4:
        return None
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw):
        return None
    values = [float(v) for v in raw]
    return values if all(np.isfinite(values)) else None


def _json_string(raw: str | None) -> str:
    """A JSON string body as text (``""`` for ``None``; the raw characters if its escapes do not decode)."""
    if raw is None:
        return ""
    try:
        return json.loads(f'"{raw}"')
    except json.JSONDecodeError:
        return raw


def parse_qwen_boxes(text: str, size: tuple[float, float] | None = None) -> ParsedBoxes:
    """The ``bbox_2d`` boxes of a Qwen2.5-VL JSON answer, in its pixels, repaired as the module docstring says.

    ``size`` ``(width, height)`` of the image the model saw clips boxes to it (``None``: only below 0).
    Items without ``bbox_2d`` (or not objects) are not boxes and are not counted; a ``bbox_2d`` that is not
    four numbers is dropped and counted.
    """
    boxes, labels, dropped = [], [], 0
    decoded = _qwen_items(text)
    if decoded is not None:
        for item in decoded[0]:
            if not isinstance(item, dict) or "bbox_2d" not in item:
                continue
            values = _bbox_values(item["bbox_2d"])
            if values is None:
                dropped += 1
                continue
            boxes.append(values)
            labels.append(str(item.get("label", "")))
    else:
        for match in _BBOX_ITEM.finditer(text):
            try:
                values = _bbox_values(json.loads(f"[{match.group(1)}]"))
            except json.JSONDecodeError:
                values = None
            if values is None:
                dropped += 1
                continue
            boxes.append(values)
            labels.append(_json_string(match.group(2)))
    repaired, reordered, clipped = repair_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), size)
    return ParsedBoxes(repaired, tuple(labels), dropped, reordered, clipped)


# ---- either format, in pixels --------------------------------------------------------------------


def parse_pixel_boxes(
    text: str, size: tuple[float, float], json_size: tuple[float, float] | None = None
) -> tuple[ParsedBoxes, str]:
    """``(boxes in pixels of an image of size, format)`` from an answer in either format.

    Grid boxes (``format = "grid"``) win when the text has any grid box, dropped ones included; otherwise
    Qwen JSON boxes (``"qwen"``), in pixels of ``json_size`` (the image the model saw; ``None``: ``size``),
    are rescaled to ``size``; with neither, no boxes (``"none"``).
    """
    grid = parse_grid_boxes(text)
    if len(grid) or grid.dropped:
        pixels = grid_to_pixels(grid.boxes, size) if len(grid) else grid.boxes
        return ParsedBoxes(pixels, grid.labels, grid.dropped, grid.reordered, grid.clipped), "grid"
    seen = json_size or size
    qwen = parse_qwen_boxes(text, seen)
    if len(qwen) or qwen.dropped:
        pixels = rescale_boxes(qwen.boxes, seen, size) if len(qwen) else qwen.boxes
        return ParsedBoxes(pixels, qwen.labels, qwen.dropped, qwen.reordered, qwen.clipped), "qwen"
    return qwen, "none"

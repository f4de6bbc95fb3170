"""What a user points at on one frame — a box, clicks, a scribble or a mask — checked, and read from a file.

``python -m scripts.infer --region FILE`` takes a JSON file (the frame index is into the frames that were
read, see :mod:`inference.media`; pixels are of the original frame size)::

    {"frame": 0, "box": [x1, y1, x2, y2]}
    {"frame": 0, "points": [[x, y], ...], "labels": [1, ...]}     # labels: 1 on the object, 0 off it
    {"frame": 0, "scribble": [[x, y], ...]}                        # a stroke through the object
    {"frame": 0, "mask": "mask.png"}                               # relative to the JSON file

or a mask image (any non-zero pixel is the object) on frame 0. The demo builds the same
:class:`UserPrompt` from clicks and brush strokes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

PROMPT_KINDS = ("box", "points", "scribble", "mask")
"""How a user can point at an object."""

OVERLAY_SHAPES = {"box": "rectangle", "points": "point", "scribble": "scribble", "mask": "mask_contour"}
"""Per prompt kind, the overlay shape a model without a region encoder is shown."""

SCRIBBLE_WIDTH = 5
"""Stroke width (px) of a scribble given as points, when it is rasterised."""


@dataclass
class UserPrompt:
    """One prompt on one frame.

    Attributes:
        frame: index of the frame it is drawn on.
        kind: one of :data:`PROMPT_KINDS`.
        box: ``(4,)`` float ``x1, y1, x2, y2`` (``kind="box"``).
        points: ``(P, 2)`` float ``x, y`` (``"points"``; ``"scribble"`` given as a polyline).
        labels: ``(P,)`` int, 1 on the object and 0 off it (``"points"``).
        mask: ``(H, W)`` bool (``"mask"``; ``"scribble"`` drawn with a brush).
    """

    frame: int
    kind: str
    box: np.ndarray | None = None
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    mask: np.ndarray | None = None

    def check(self, num_frames: int, height: int, width: int, where: str = "region prompt") -> UserPrompt:
        """``self`` if it is a usable prompt on a ``num_frames``-frame ``height x width`` input, else a
        ``ValueError`` starting with ``where``; boxes and points are clipped to the frame."""
        if self.kind not in PROMPT_KINDS:
            raise ValueError(f"{where}: kind must be one of {PROMPT_KINDS}, got {self.kind!r}")
        if not 0 <= self.frame < num_frames:
            raise ValueError(f"{where}: frame {self.frame} is outside the input's {num_frames} frames")
        if self.kind == "box":
            box = np.asarray(self.box, dtype=np.float32).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise ValueError(f"{where}: a box is four numbers x1, y1, x2, y2, got {self.box!r}")
            x1, x2 = sorted(np.clip(box[[0, 2]], 0, width))
            y1, y2 = sorted(np.clip(box[[1, 3]], 0, height))
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise ValueError(f"{where}: the box {box.tolist()} covers no pixel of the {width}x{height} frame")
            self.box = np.array([x1, y1, x2, y2], dtype=np.float32)
        elif self.kind in ("points", "scribble") and self.mask is None:
            points = np.asarray(self.points, dtype=np.float32)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0 or not np.isfinite(points).all():
                raise ValueError(f"{where}: points are a list of [x, y] pairs, got {self.points!r}")
            inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
            if not inside.all():
                raise ValueError(f"{where}: points {points[~inside].tolist()} are outside the {width}x{height} frame")
            labels = np.ones(len(points), np.int64) if self.labels is None else np.asarray(self.labels, np.int64)
            if labels.shape != (len(points),) or not np.isin(labels, (0, 1)).all():
                raise ValueError(f"{where}: labels are one 0 or 1 per point, got {self.labels!r}")
            if not labels.any():
                raise ValueError(f"{where}: at least one point must be on the object (label 1)")
            self.points, self.labels = points, labels
        else:
            if self.mask is None or self.mask.shape != (height, width):
                got = None if self.mask is None else self.mask.shape
                raise ValueError(f"{where}: a {self.kind} must be a ({height}, {width}) mask, got {got}")
            self.mask = self.mask.astype(bool)
            if not self.mask.any():
                raise ValueError(f"{where}: the {self.kind} is empty: draw on the object")
        return self

    def scaled(self, scale: float, height: int, width: int) -> UserPrompt:
        """The prompt on frames resized by ``scale`` to ``height x width`` (a mask resized by nearest neighbour)."""
        if scale == 1.0:
            return self
        mask = None
        if self.mask is not None:
            mask = cv2.resize(self.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        box = None if self.box is None else np.asarray(self.box, dtype=np.float32) * scale
        points = None if self.points is None else np.asarray(self.points, dtype=np.float32) * scale
        return UserPrompt(self.frame, self.kind, box, points, self.labels, mask)

    def drawn_mask(self, height: int, width: int) -> np.ndarray:
        """``(H, W)`` bool of what was drawn: the mask, the box filled, the scribble stroke or discs at the
        positive points (what stands for the object when no SAM2 is there to segment it)."""
        if self.mask is not None:
            return self.mask
        canvas = np.zeros((height, width), np.uint8)
        if self.kind == "box":
            x1, y1, x2, y2 = np.round(self.box).astype(int)
            canvas[y1:y2, x1:x2] = 1
        elif self.kind == "scribble":
            cv2.polylines(canvas, [np.round(self.points).astype(np.int32)], False, 1, SCRIBBLE_WIDTH)
        else:
            radius = max(2, round(0.02 * max(height, width)))
            for x, y in np.round(self.points[self.labels == 1]).astype(int):
                cv2.circle(canvas, (int(x), int(y)), radius, 1, -1)
        return canvas.astype(bool)


def read_mask_image(path: Path, where: str) -> np.ndarray:
    """``(H, W)`` bool: the non-zero pixels of a mask image (any mode; an RGBA image's alpha counts)."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.getchannel("A") if image.mode == "RGBA" else image.convert("L"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{where}: cannot read the mask image {path} ({error})") from error
    return array > 0


def read_region_file(path: str | Path) -> UserPrompt:
    """The prompt in a region file (see the module docstring); unchecked: call :meth:`UserPrompt.check`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such region file")
    if path.suffix.lower() != ".json":
        return UserPrompt(0, "mask", mask=read_mask_image(path, str(path)))
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    return region_from_dict(spec, path.parent, str(path))


def region_from_dict(spec: object, base: Path, where: str) -> UserPrompt:
    """The prompt a region file's JSON object (or a batch entry's ``region``) describes."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a region is a JSON object, got {type(spec).__name__}")
    given = [kind for kind in ("box", "points", "scribble", "mask") if kind in spec]
    if len(given) != 1:
        raise ValueError(f"{where}: give exactly one of box, points, scribble or mask, got {given or 'none'}")
    frame = spec.get("frame", 0)
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise ValueError(f"{where}: frame must be an integer, got {frame!r}")
    kind = given[0]
    if kind == "box":
        return UserPrompt(frame, "box", box=spec["box"])
    if kind == "points":
        return UserPrompt(frame, "points", points=spec["points"], labels=spec.get("labels"))
    if kind == "scribble":
        return UserPrompt(frame, "scribble", points=spec["scribble"])
    return UserPrompt(frame, "mask", mask=read_mask_image(base / str(spec["mask"]), where))

"""What inference writes for a person: masks as indexed PNGs, overlay pictures and videos, an archive of masks.

Masks of ``O`` objects on ``T`` frames are written one PNG per frame in the DAVIS layout
(:func:`~utils.data.palette.write_index_mask`: 0 background, ``k`` the ``k``-th object; a later
object wins where two overlap), so every VOS tool reads them. Overlays colour each object in one of
:data:`OBJECT_COLOURS` and outline it in white.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np

from evaluation.visualize import MASK_COLOUR, mask_boundary
from utils.data.palette import write_index_mask
from utils.video.encode import write_video

OVERLAY_ALPHA = 0.55
"""Opacity of an object's colour over the frame."""


OBJECT_COLOURS = np.array(
    [MASK_COLOUR, (0, 220, 255), (255, 150, 0), (120, 255, 0), (140, 90, 255), (255, 255, 255)], dtype=np.float32
)
"""Overlay colours of objects 0, 1, ... (cycled): magenta first, as in :mod:`evaluation.visualize`, then
colours far from it and from one another."""


def object_colours(num_objects: int) -> np.ndarray:
    """``(O, 3)`` float32 RGB overlay colours of ``num_objects`` objects."""
    return OBJECT_COLOURS[np.arange(num_objects) % len(OBJECT_COLOURS)]


def index_masks(masks: np.ndarray) -> np.ndarray:
    """``(O, T, H, W)`` bool -> ``(T, H, W)`` uint8 ids (0 background, ``k + 1`` object ``k``)."""
    ids = np.zeros(masks.shape[1:], dtype=np.uint8)
    for k, track in enumerate(masks):
        ids[track] = k + 1
    return ids


def overlay_masks(frame: np.ndarray, masks: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame with each of ``(O, H, W)`` bool masks blended in its colour, outlined in white."""
    out = frame.astype(np.float32)
    for mask, colour in zip(masks, object_colours(len(masks)), strict=True):
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        out[mask_boundary(mask)] = 255
    return out.round().astype(np.uint8)


def overlay_frames(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames with ``(O, T, H, W)`` masks drawn on them."""
    return np.stack([overlay_masks(frame, masks[:, t]) for t, frame in enumerate(frames)])


def write_mask_pngs(folder: str | Path, masks: np.ndarray, frame_names: list[str]) -> list[Path]:
    """One indexed PNG per frame, ``<folder>/<frame name>.png``; returns the paths in frame order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = index_masks(masks)
    paths = []
    for name, frame_ids in zip(frame_names, ids, strict=True):
        path = folder / f"{name}.png"
        write_index_mask(path, frame_ids)
        paths.append(path)
    return paths


def write_overlay_video(path: str | Path, frames: np.ndarray, masks: np.ndarray, fps: float) -> Path:
    """An H.264 MP4 (plays in browsers) of the frames with ``(O, T, H, W)`` masks drawn; an odd width or
    height loses its last pixel row or column (4:2:0 chroma needs even sizes)."""
    drawn = overlay_frames(frames, masks)
    height, width = drawn.shape[1:3]
    drawn = drawn[:, : height - height % 2, : width - width % 2]
    return write_video(path, drawn, fps=fps, container_options={"movflags": "faststart"})


def zip_folder(folder: str | Path, path: str | Path) -> Path:
    """A ZIP archive at ``path`` of every file in ``folder`` (names relative to it)."""
    folder, path = Path(folder), Path(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder))
    return path


LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX
"""The font of drawn box labels."""


def draw_labelled_box(frame: np.ndarray, box: np.ndarray, label: str, colour: np.ndarray) -> None:
    """Draw ``box`` ``(4,)`` pixel edges and ``label`` above it on ``frame`` ``(H, W, 3)`` uint8, in place."""
    height, width = frame.shape[:2]
    scale = max(0.35, min(height, width) / 900)
    thickness = max(1, round(2 * scale))
    x1, y1, x2, y2 = np.round(box).astype(int).tolist()
    colour = tuple(int(c) for c in colour)
    cv2.rectangle(frame, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, thickness)
    if not label:
        return
    (text_width, text_height), baseline = cv2.getTextSize(label, LABEL_FONT, scale, thickness)
    top = y1 - text_height - baseline - 2 if y1 - text_height - baseline - 2 >= 0 else min(y2, height - 1)
    right = min(width - 1, x1 + text_width + 4)
    cv2.rectangle(frame, (x1, top), (right, top + text_height + baseline + 2), colour, -1)
    cv2.putText(frame, label, (x1 + 2, top + text_height + 1), LABEL_FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)

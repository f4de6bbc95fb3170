"""PNG segmentation annotations as DAVIS, YouTube-VOS and ReasonVOS ship them.

Indexed annotations (DAVIS-2017, YouTube-VOS, Ref-YouTube-VOS, Ref-DAVIS17): one PNG per frame,
PIL mode ``"P"`` whose pixel values are object ids (the palette only colours them): 0 is
background, 1..N the objects and 255 (:data:`VOID_ID`) "void", pixels that no metric counts (the
DAVIS-2017 toolkit, ``davis2017/davis.py``, sets them to 0 and ignores them). The palette is the
PASCAL VOC colour map (id 1 = (128, 0, 0), 255 = (224, 224, 192)), as in the DAVIS toolkit's
example results. Greyscale (``"L"``) PNGs are read the same way.

Binary annotations (ReasonVOS, DAVIS-2016): one PNG per frame and object, any non-zero value is the
object. A DAVIS-2016 ground truth (mode ``"L"``, values {0, 255}) read as an indexed annotation
is all void and no object; read it with :func:`read_binary_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

VOID_ID = 255
"""Object id of void pixels in indexed annotations."""

INDEXED_MODES = ("P", "L")
BINARY_MODES = ("P", "L", "1")


def davis_palette() -> list[int]:
    """The 768-entry PASCAL VOC / DAVIS palette: ``[r0, g0, b0, r1, ...]`` for ids 0..255."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        code = index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        palette.extend(rgb)
    return palette


def _read_png(path: Path, modes: tuple[str, ...], what: str) -> np.ndarray:
    """``(H, W)`` uint8 pixel values of a PNG in one of ``modes`` (palette indices for mode ``"P"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {what} {path}")
    with Image.open(path) as image:
        if image.mode not in modes:
            raise ValueError(
                f"{path} is a mode {image.mode!r} PNG; a {what} must be one of modes {modes} "
                "(an RGB colour mask is not an id map: convert it to palette indices first)"
            )
        return np.array(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)


def read_index_mask(path: str | Path) -> np.ndarray:
    """``(H, W)`` uint8 object ids of an indexed (``"P"``) or greyscale (``"L"``) annotation PNG.

    Values are returned as stored: 0 background, 1..254 objects, :data:`VOID_ID` void.
    """
    return _read_png(Path(path), INDEXED_MODES, "indexed annotation")


def read_binary_mask(path: str | Path) -> np.ndarray:
    """``(H, W)`` bool: the non-zero pixels of a binary mask PNG (mode ``"L"``, ``"1"`` or ``"P"``)."""
    return _read_png(Path(path), BINARY_MODES, "binary mask") > 0


def write_index_mask(path: str | Path, ids: np.ndarray) -> None:
    """Write ``(H, W)`` uint8 object ids as a mode ``"P"`` PNG with :func:`davis_palette`."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(f"object ids must be a (H, W) uint8 array, got {ids.dtype} of shape {ids.shape}")
    image = Image.fromarray(ids)  # mode "L"; putpalette turns it into "P" with the values as indices
    image.putpalette(davis_palette())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def object_ids(ids: np.ndarray) -> list[int]:
    """The object ids present in an id map, sorted, without background (0) and void."""
    return [int(i) for i in np.unique(ids) if i not in (0, VOID_ID)]


def split_index_mask(ids: np.ndarray, ids_to_keep: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-object masks and the void mask of an id map ``(..., H, W)`` (one frame or a ``(T, H, W)`` stack).

    Returns ``(masks (O, ..., H, W) bool, void (..., H, W) bool)``, one mask per id of
    ``ids_to_keep`` in that order (default: :func:`object_ids`); an id that is absent gives an
    empty mask. Void pixels belong to no object.
    """
    keep = object_ids(ids) if ids_to_keep is None else [int(i) for i in ids_to_keep]
    bad = [i for i in keep if not 1 <= i < VOID_ID]
    if bad:
        raise ValueError(f"object ids must be in 1..{VOID_ID - 1}, got {bad}")
    masks = ids[None] == np.asarray(keep, dtype=ids.dtype).reshape(-1, *([1] * ids.ndim))
    return masks, ids == VOID_ID

"""What each 3D object proposal looks like in the frames the LLM sees, measured at the depth maps' resolution.

A merged video token of a small grid is a 28-pixel cell over two frames, and its one 3D position (the mean of its
pixels' points, :mod:`utils.scene3d.token_positions`) often falls outside every box of a cluttered scene even
when the cell shows the object. So the proposal grounding head (:mod:`model.heads.proposal_grounding`) pools
tokens by the pixels they hold instead: a depth pixel (every ``stride``-th per side) lies in a proposal when its
back-projected point is inside the box, and

* ``token_weights`` ``(P, N)``: for each proposal and video token, the fraction of the token's valid pixels that
  lie in the box (token order: slot, row, column, as Qwen merges a video; see :func:`token_cells`);
* ``appearance`` ``(P, 7)``: mean and standard deviation of the RGB colour (0-1) of the frame pixels at those
  points, and ``log1p`` of how many pixels (per thousand sampled valid pixels) lie in the box; zeros for a box
  no pixel lies in.

:func:`box_pixel_masks` gives the same test per frame as masks, for region prompts of a named object (Scan2Cap).
The collator computes views once per sample, in the data workers (:func:`utils.data.collate.grounding_step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from utils.data.schema import SceneGeometry
from utils.scene3d.geometry import depth_to_points

APPEARANCE_DIM = 7
"""RGB mean (3), RGB standard deviation (3), log1p of the pixel share per mille (1)."""
MAX_PIXELS_PER_FRAME = 16384
"""Depth pixels tested per frame at most; the stride grows with the depth map (ScanNet's 640x480: stride 5)."""


@dataclass
class ProposalViews:
    """Per proposal: ``token_weights`` ``(P, N)`` float32 and ``appearance`` ``(P, 7)`` float32 (module docstring)."""

    token_weights: torch.Tensor
    appearance: torch.Tensor


def pixel_stride(height: int, width: int, max_pixels: int = MAX_PIXELS_PER_FRAME) -> int:
    """The smallest stride per side that tests at most ``max_pixels`` pixels of an ``(height, width)`` map."""
    return max(1, int(np.ceil(np.sqrt(height * width / max_pixels))))


def _frame_points(scene: SceneGeometry, frame: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """``(points (h', w', 3), valid (h', w'))`` of every ``stride``-th depth pixel of ``frame`` (only those are
    back-projected: pixel ``u'`` of the strided map is pixel ``stride * u'``, so ``fx, fy, cx, cy`` divide by
    ``stride``)."""
    intrinsics = scene.intrinsics[frame] if scene.intrinsics.ndim == 3 else scene.intrinsics
    strided = np.asarray(intrinsics, dtype=np.float64).copy()
    strided[:2] /= stride
    depth = scene.depth[frame][::stride, ::stride]
    return depth_to_points(depth, strided, scene.poses[frame], scene.axis_alignment)


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(P, n)`` bool: point ``(n, 3)`` inside box ``(P, 6)`` (centre, size; faces included)."""
    lower = boxes[:, None, :3] - boxes[:, None, 3:] / 2
    upper = boxes[:, None, :3] + boxes[:, None, 3:] / 2
    return ((points[None] >= lower) & (points[None] <= upper)).all(axis=-1)


def box_pixel_masks(scene: SceneGeometry, boxes: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """``(P, T, H, W)`` bool: the pixels of each frame whose depth point lies in each box.

    Args:
        scene: posed RGB-D of ``T`` frames; boxes: ``(P, 6)`` centre + size in the scene's aligned world.
        size: ``(H, W)`` of the masks (the colour frames'); the depth maps' own size when ``None``. Masks are
            resized by nearest neighbour.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    num_frames, height, width = scene.depth.shape
    out_h, out_w = size if size is not None else (height, width)
    rows = np.minimum((np.arange(out_h) + 0.5) * height / out_h, height - 1).astype(np.int64)
    cols = np.minimum((np.arange(out_w) + 0.5) * width / out_w, width - 1).astype(np.int64)
    masks = np.zeros((len(boxes), num_frames, out_h, out_w), dtype=bool)
    for frame in range(num_frames):
        points, valid = _frame_points(scene, frame, 1)
        inside = _inside(points.reshape(-1, 3), boxes).reshape(len(boxes), height, width) & valid[None]
        masks[:, frame] = inside[:, rows][:, :, cols]
    return masks


def token_cells(height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """``(height, width)`` int: the merged-grid cell (``row * cols + col``) each pixel's centre falls in."""
    cell_rows = np.minimum(((np.arange(height) + 0.5) * rows / height).astype(np.int64), rows - 1)
    cell_cols = np.minimum(((np.arange(width) + 0.5) * cols / width).astype(np.int64), cols - 1)
    return cell_rows[:, None] * cols + cell_cols[None, :]


def proposal_views(
    scene: SceneGeometry,
    frames: np.ndarray,
    proposals: np.ndarray,
    grid_thw: Sequence[int] | np.ndarray | torch.Tensor,
    spatial_merge_size: int = 2,
    temporal_patch_size: int = 2,
    max_pixels: int = MAX_PIXELS_PER_FRAME,
) -> ProposalViews:
    """Each proposal's token weights and appearance in the ``T`` frames the LLM sees (module docstring).

    Args:
        scene: posed RGB-D of the frames; frames: ``(T, H, W, 3)`` uint8 colour (any size: pixels are matched
            by their relative position); proposals: ``(P, 6)`` centre + size in the scene's aligned world.
        grid_thw: Qwen's video grid ``(slots, H / 14, W / 14)`` before merging; spatial_merge_size /
            temporal_patch_size: as its processor merges (an odd last frame is alone in its slot).
        max_pixels: depth pixels tested per frame at most (:func:`pixel_stride`).
    """
    slots, grid_h, grid_w = (int(v) for v in grid_thw)
    rows, cols = grid_h // spatial_merge_size, grid_w // spatial_merge_size
    num_frames, height, width = scene.depth.shape
    if len(frames) != num_frames:
        raise ValueError(f"{len(frames)} colour frames for {num_frames} depth maps")
    if -(-num_frames // temporal_patch_size) != slots:
        raise ValueError(f"{num_frames} frames do not make {slots} temporal patches of {temporal_patch_size}")
    boxes = np.asarray(proposals, dtype=np.float64).reshape(-1, 6)
    num_boxes, cells = len(boxes), rows * cols
    stride = pixel_stride(height, width, max_pixels)
    cell_of_pixel = token_cells(height, width, rows, cols)[::stride, ::stride].reshape(-1)  # (n,)
    colour_rows = np.minimum((np.arange(0, height, stride) + 0.5) * frames.shape[1] / height, frames.shape[1] - 1)
    colour_cols = np.minimum((np.arange(0, width, stride) + 0.5) * frames.shape[2] / width, frames.shape[2] - 1)
    colour_rows, colour_cols = colour_rows.astype(np.int64), colour_cols.astype(np.int64)
    in_box = np.zeros((num_boxes, slots, cells))
    valid_counts = np.zeros((slots, cells))
    colour_sums, square_sums = np.zeros((num_boxes, 3)), np.zeros((num_boxes, 3))
    for frame in range(num_frames):
        points, valid = _frame_points(scene, frame, stride)
        valid = valid.reshape(-1)
        slot = frame // temporal_patch_size
        valid_counts[slot] += np.bincount(cell_of_pixel[valid], minlength=cells)
        inside = _inside(points.reshape(-1, 3)[valid], boxes).astype(np.float64)  # (P, n_valid)
        in_box[:, slot] += inside @ np.eye(cells)[cell_of_pixel[valid]]
        colours = frames[frame][colour_rows][:, colour_cols].reshape(-1, 3)[valid] / 255.0  # (n_valid, 3)
        colour_sums += inside @ colours
        square_sums += inside @ colours**2
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.where(valid_counts > 0, in_box / valid_counts, 0.0)  # (P, slots, cells)
    counts = in_box.sum(axis=(1, 2))[:, None]  # (P, 1)
    mean = colour_sums / np.maximum(counts, 1)
    spread = np.sqrt(np.maximum(square_sums / np.maximum(counts, 1) - mean**2, 0.0))
    share = np.log1p(1000 * counts / max(valid_counts.sum(), 1))
    appearance = np.concatenate([mean, spread, share], axis=1)
    return ProposalViews(
        torch.from_numpy(weights.reshape(num_boxes, slots * cells).astype(np.float32)),
        torch.from_numpy(appearance.astype(np.float32)),
    )

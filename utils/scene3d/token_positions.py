"""Which point of the (aligned) world each of Qwen's merged video tokens sees, from posed RGB-D.

Read by the 3D position encoder (:mod:`model.encoders.position3d`) and the proposal grounding head
(:mod:`model.heads.proposal_grounding`); the collator computes them once per sample
(:func:`utils.data.collate.grounding_step`), in the data workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from utils.data.schema import SceneGeometry
from utils.scene3d.geometry import depth_to_points

AXES = 3
"""x, y, z."""


def token_world_positions(
    scene: SceneGeometry,
    grid_thw: Sequence[int] | np.ndarray | torch.Tensor,
    spatial_merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """The (aligned-)world point each merged video token sees: the mean of its valid depth pixels' points.

    Token ``(s, r, c)`` covers frames ``s * temporal_patch_size ...`` (an odd last frame is alone in its
    slot: Qwen's processor pads it with copies of itself, which leave the mean unchanged) and cell
    ``(r, c)`` of the merged grid; a depth pixel belongs to the cell its centre falls in, in normalised
    image coordinates. Both frames of a slot pool together (every valid pixel weighs the same).

    Args:
        scene: posed RGB-D of the ``T`` frames the LLM sees.
        grid_thw: ``(3,)`` Qwen's video grid ``(ceil(T / temporal_patch_size), H / 14, W / 14)`` before merging.
        spatial_merge_size: patches merged per side into one token; temporal_patch_size: frames per slot.
    Returns:
        ``(positions (N, 3) float32, valid (N,) bool)`` with ``N = slots * rows * cols`` in order slot, row,
        column; invalid tokens' positions are NaN.
    """
    slots, grid_h, grid_w = (int(v) for v in grid_thw)
    rows, cols = grid_h // spatial_merge_size, grid_w // spatial_merge_size
    depth = np.asarray(scene.depth)
    if depth.ndim != 3:
        raise ValueError(f"scene depth must be (T, h, w), got {depth.shape}")
    num_frames, height, width = depth.shape
    if -(-num_frames // temporal_patch_size) != slots:
        fewest, most = (slots - 1) * temporal_patch_size + 1, slots * temporal_patch_size
        raise ValueError(
            f"the scene has {num_frames} frames but the video has {fewest} to {most} "
            f"({slots} temporal patches of {temporal_patch_size} frames)"
        )
    if scene.poses.shape != (num_frames, 4, 4):
        raise ValueError(f"scene poses {scene.poses.shape} do not match its {num_frames} depth frames")
    if scene.intrinsics.shape not in ((3, 3), (num_frames, 3, 3)):
        raise ValueError(f"scene intrinsics {scene.intrinsics.shape} must be (3, 3) or ({num_frames}, 3, 3)")
    cell_rows = np.minimum(((np.arange(height) + 0.5) * rows / height).astype(np.int64), rows - 1)  # (h,)
    cell_cols = np.minimum(((np.arange(width) + 0.5) * cols / width).astype(np.int64), cols - 1)  # (w,)
    cell_of_pixel = cell_rows[:, None] * cols + cell_cols[None, :]  # (h, w)
    cells = rows * cols
    sums = np.zeros((slots, cells, AXES))
    counts = np.zeros((slots, cells))
    for frame in range(num_frames):
        intrinsics = scene.intrinsics[frame] if scene.intrinsics.ndim == 3 else scene.intrinsics
        points, valid = depth_to_points(depth[frame], intrinsics, scene.poses[frame], scene.axis_alignment)
        slot, where = frame // temporal_patch_size, cell_of_pixel[valid]  # (n,)
        counts[slot] += np.bincount(where, minlength=cells)
        for axis in range(AXES):
            sums[slot, :, axis] += np.bincount(where, weights=points[valid][:, axis], minlength=cells)
    valid_tokens = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        positions = np.where(valid_tokens[..., None], sums / counts[..., None], np.nan)
    return positions.reshape(-1, AXES).astype(np.float32), valid_tokens.reshape(-1)

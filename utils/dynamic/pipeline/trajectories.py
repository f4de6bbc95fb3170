"""3D trajectories of tracked objects from a reconstruction's point maps and their masks, in an upright world.

A reconstruction (Pi3) gives every frame a point map ``(T, h, w, 3)`` in one world (Pi3's: its first camera,
OpenCV axes, y down), a confidence ``(T, h, w)`` and camera-to-world poses ``(T, 4, 4)``. An object's position
on a frame is the median of the confident points inside its mask (:func:`object_positions`); frames where
too few are left are gaps, filled by linear interpolation in time (:func:`fill_gaps`). The question templates
want a z-up world: :func:`upright_rotation` turns the cameras' mean up direction (minus their y axis; the
videos are taken by upright cameras, no roll on average) onto +z (:func:`to_upright`). The reconstruction's
scale is its own (Pi3's is arbitrary): ``metric_scale`` multiplies it when it is known.
"""

from __future__ import annotations

import numpy as np


def object_positions(
    points: np.ndarray, confident: np.ndarray, masks: np.ndarray, min_points: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """``(positions (T, 3), seen (T,) bool)``: per frame the median of ``points`` ``(T, h, w, 3)`` where
    ``confident`` ``(T, h, w)`` and ``masks`` ``(T, h, w)`` both hold; NaN and unseen on frames with fewer than
    ``min_points`` such points."""
    keep = confident & masks  # (T, h, w)
    chosen = np.where(keep[..., None], points, np.nan).reshape(len(points), -1, 3)  # (T, h*w, 3)
    seen = keep.reshape(len(points), -1).sum(1) >= min_points
    positions = np.full((len(points), 3), np.nan)
    if seen.any():
        positions[seen] = np.nanmedian(chosen[seen], axis=1)
    return positions, seen


def fill_gaps(values: np.ndarray, seen: np.ndarray, times: np.ndarray, angular: bool = False) -> np.ndarray:
    """``values`` ``(T, ...)`` with the unseen frames filled by linear interpolation over ``times`` ``(T,)`` from the
    seen ones (held constant before the first and after the last); ``angular``: radians, interpolated unwrapped.
    ``ValueError`` when no frame is seen."""
    if not seen.any():
        raise ValueError("no frame to interpolate from")
    flat = values.reshape(len(values), -1).astype(np.float64)
    known = np.unwrap(flat[seen], axis=0) if angular else flat[seen]
    filled = np.stack([np.interp(times, times[seen], known[:, k]) for k in range(flat.shape[1])], axis=1)
    return filled.reshape(values.shape)


def upright_rotation(camera_poses: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation taking the cameras' mean up direction (``-y`` of ``(T, 4, 4)`` OpenCV poses) onto +z."""
    up = -camera_poses[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    axis = np.cross(up, [0.0, 0.0, 1.0])
    sine, cosine = np.linalg.norm(axis), float(up[2])
    if sine < 1e-9:
        return np.eye(3) if cosine > 0 else np.diag([1.0, -1.0, -1.0])
    axis /= sine
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + sine * skew + (1 - cosine) * skew @ skew


def to_upright(
    points: np.ndarray, camera_poses: np.ndarray, rotation: np.ndarray, metric_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(points (..., 3), poses (T, 4, 4))`` turned by ``rotation`` ``(3, 3)`` and scaled by ``metric_scale``."""
    turned = metric_scale * points @ rotation.T
    poses = camera_poses.copy()
    poses[:, :3, :3] = rotation @ camera_poses[:, :3, :3]
    poses[:, :3, 3] = metric_scale * camera_poses[:, :3, 3] @ rotation.T
    return turned, poses

"""Pinhole geometry of posed RGB-D frames, ScanNet conventions, vectorised over pixels and frames.

Depth is z-depth in metres (0 = invalid), intrinsics are the depth camera's ``K`` in pixels of the depth
image (pixel centres at integer coordinates), poses are camera-to-world with OpenCV axes (x right, y
down, z forward), and the axis alignment (ScanNet's ``axisAlignment``) maps world to aligned world.
Every function returns points in the aligned world when ``axis_alignment`` is given.
"""

from __future__ import annotations

import numpy as np


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(..., 3)`` points through a ``(4, 4)`` rigid / affine matrix."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def camera_to_aligned(pose: np.ndarray, axis_alignment: np.ndarray | None) -> np.ndarray:
    """``(4, 4)`` camera-to-aligned-world: ``axis_alignment @ pose`` (``pose`` alone without alignment)."""
    return pose if axis_alignment is None else axis_alignment @ pose


def valid_pose(pose: np.ndarray) -> bool:
    """Whether a camera-to-world matrix is usable: finite (ScanNet marks lost tracking with ``-inf``), with a
    rotation part that is a rotation (orthonormal, det +1, to 1e-3) and bottom row ``0 0 0 1``."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        return False
    rotation = pose[:3, :3]
    orthonormal = np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) and abs(np.linalg.det(rotation) - 1) < 1e-3
    return bool(orthonormal and np.allclose(pose[3], [0, 0, 0, 1]))


def depth_to_points(
    depth: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray, axis_alignment: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """World points of every pixel of one depth image.

    Args:
        depth: ``(h, w)`` z-depth in metres, 0 (or non-finite) where invalid.
        intrinsics: ``(3, 3)`` ``K`` of the depth image.
        pose: ``(4, 4)`` camera-to-world.
        axis_alignment: ``(4, 4)`` world-to-aligned-world, or ``None``.
    Returns:
        ``(points (h, w, 3) float32, valid (h, w) bool)``; invalid pixels' points are NaN (never the camera
        centre, which an unmasked back-projection of depth 0 would give).
    """
    height, width = depth.shape
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    valid = np.isfinite(depth) & (depth > 0)
    z = np.where(valid, depth, np.nan).astype(np.float64)
    u = np.arange(width, dtype=np.float64)[None, :]
    v = np.arange(height, dtype=np.float64)[:, None]
    camera = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1)
    return transform(camera, camera_to_aligned(pose, axis_alignment)).astype(np.float32), valid


def project_points(
    points: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray, axis_alignment: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``(N, 3)`` (aligned-)world points in one camera: ``(uv (N, 2), z (N,))``; ``z <= 0`` is behind it."""
    world_to_camera = np.linalg.inv(camera_to_aligned(pose, axis_alignment))
    camera = transform(np.asarray(points, dtype=np.float64), world_to_camera)
    z = camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack(
            [
                intrinsics[0, 0] * camera[:, 0] / z + intrinsics[0, 2],
                intrinsics[1, 1] * camera[:, 1] / z + intrinsics[1, 2],
            ],
            axis=-1,
        )
    return uv, z


def scale_intrinsics(intrinsics: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """``K`` of an image resized from ``(h, w)`` to ``(h', w')`` (pixel centres at integer coordinates)."""
    (h, w), (h2, w2) = from_size, to_size
    sx, sy = w2 / w, h2 / h
    scaled = np.array(intrinsics, dtype=np.float64, copy=True)
    scaled[0, 0] *= sx
    scaled[1, 1] *= sy
    scaled[0, 2] = (intrinsics[0, 2] + 0.5) * sx - 0.5
    scaled[1, 2] = (intrinsics[1, 2] + 0.5) * sy - 0.5
    return scaled

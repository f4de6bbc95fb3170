"""Maximum-coverage frame sampling for posed RGB-D video (Video-3D LLM's ``mc-ratio90`` / ``mc-ratio95``).

Each frame is reduced to the set of voxels its valid depth pixels fall in (:func:`frame_voxels`); frames are
then taken greedily, each time the one adding the most voxels not yet covered, until the picked frames cover
``ratio`` of all voxels the video sees or the frame budget is spent (:func:`greedy_max_coverage`).

Registered frame-sampling strategies (:class:`~utils.video.sampling.FrameSampling`): ``"mc-ratio90"``,
``"mc-ratio95"`` and ``"max_coverage"`` (ratio from ``options["ratio"]``). All read one voxel-key array per
timestamp from ``options["frame_voxels"]`` and the budget from ``num_frames``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from utils.scene3d.geometry import depth_to_points, valid_pose
from utils.video.sampling import SamplingContext, register_sampler

if TYPE_CHECKING:
    from utils.scene3d.scene_folder import Scene

VOXEL_AXIS_BITS = 21
"""Bits per axis in a packed voxel key: integer voxel coordinates in ``[-2**20, 2**20)`` (about +-210 km at 0.2 m)."""

_AXIS_OFFSET = 1 << (VOXEL_AXIS_BITS - 1)


@dataclass(frozen=True)
class CoverageSelection:
    """Frames chosen by greedy maximum coverage.

    Attributes:
        frames: the picked frame indices in time order.
        order: the same frames in the order the greedy picked them.
        covered: voxels covered by the picked frames.
        total: voxels covered by all frames.
    """

    frames: tuple[int, ...]
    order: tuple[int, ...]
    covered: int
    total: int

    @property
    def coverage(self) -> float:
        """Covered fraction of all voxels."""
        return self.covered / self.total


def voxel_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """``(N,)`` int64 keys of the voxels holding ``(N, 3)`` finite points: the integer voxel coordinates
    ``floor(p / voxel_size)``, offset to be non-negative and packed :data:`VOXEL_AXIS_BITS` bits per axis."""
    coordinates = np.floor(np.asarray(points, dtype=np.float64) / voxel_size).astype(np.int64) + _AXIS_OFFSET
    if coordinates.size and (coordinates.min() < 0 or coordinates.max() >= 1 << VOXEL_AXIS_BITS):
        raise ValueError(
            f"points up to {np.abs(points).max():.3g} m are too far from the origin for {voxel_size} m voxel keys"
        )
    return (coordinates[:, 0] << (2 * VOXEL_AXIS_BITS)) | (coordinates[:, 1] << VOXEL_AXIS_BITS) | coordinates[:, 2]


def frame_voxels(
    depths: np.ndarray,
    intrinsics: np.ndarray,
    poses: np.ndarray,
    axis_alignment: np.ndarray | None = None,
    voxel_size: float = 0.2,
    pixel_stride: int = 4,
) -> list[np.ndarray]:
    """The voxels each frame's valid depth falls in.

    Every ``pixel_stride``-th pixel of each row and column is back-projected
    (:func:`~utils.scene3d.geometry.depth_to_points` on the strided depth with the matching ``K``, so the
    points are exactly those of the full-resolution pixels kept).

    Args:
        depths: ``(T, h, w)`` z-depth in metres, 0 (or non-finite) where invalid.
        intrinsics: ``(3, 3)`` or ``(T, 3, 3)`` ``K`` of the depth images.
        poses: ``(T, 4, 4)`` camera-to-world.
        axis_alignment: ``(4, 4)`` world-to-aligned-world, or ``None``.
        voxel_size: voxel edge in metres.
        pixel_stride: keep every this many pixels along each image axis.
    Returns:
        ``T`` sorted, distinct int64 voxel-key arrays (:func:`voxel_keys`); empty for a frame without valid depth.
    """
    depths = np.asarray(depths)
    num_frames = len(depths)
    if (
        depths.ndim != 3
        or np.shape(poses) != (num_frames, 4, 4)
        or np.shape(intrinsics) not in {(3, 3), (num_frames, 3, 3)}
    ):
        raise ValueError(
            f"need depths (T, h, w), intrinsics (3, 3) or (T, 3, 3) and poses (T, 4, 4), got {depths.shape}, "
            f"{np.shape(intrinsics)} and {np.shape(poses)}"
        )
    intrinsics = np.broadcast_to(np.asarray(intrinsics, dtype=np.float64), (num_frames, 3, 3))
    if voxel_size <= 0 or pixel_stride < 1:
        raise ValueError(f"voxel_size must be positive and pixel_stride >= 1, got {voxel_size} and {pixel_stride}")
    strided_intrinsics = intrinsics.copy()
    strided_intrinsics[:, :2, :] /= pixel_stride  # fx, fy, cx, cy: pixel k of the strided image is pixel k * stride
    voxels = []
    for frame, (depth, camera, pose) in enumerate(zip(depths, strided_intrinsics, poses)):
        if not valid_pose(pose):
            raise ValueError(f"frame {frame}: camera-to-world pose is not a finite rigid transform")
        points, valid = depth_to_points(depth[::pixel_stride, ::pixel_stride], camera, pose, axis_alignment)
        voxels.append(np.unique(voxel_keys(points[valid], voxel_size)))
    return voxels


def scene_frame_voxels(
    scene: Scene, voxel_size: float = 0.2, pixel_stride: int = 4, frames_per_read: int = 64
) -> list[np.ndarray]:
    """:func:`frame_voxels` of every frame of a scene folder, reading ``frames_per_read`` depth images at a time."""
    voxels = []
    for start in range(0, scene.num_frames, frames_per_read):
        indices = list(range(start, min(start + frames_per_read, scene.num_frames)))
        depths = scene.read_depths(indices)
        voxels += frame_voxels(
            depths, scene.depth_intrinsics, scene.poses[indices], scene.axis_alignment, voxel_size, pixel_stride
        )
    return voxels


def voxels_needed(ratio: float, total: int) -> int:
    """Voxels to cover for ``ratio`` of ``total`` (``ceil``, forgiving float error such as ``0.95 * 20``)."""
    return math.ceil(ratio * total - 1e-6)


def _check_request(frame_voxels: Sequence[np.ndarray], ratio: float, num_frames: int | None) -> None:
    if not len(frame_voxels):
        raise ValueError("maximum-coverage sampling needs at least one frame's voxels")
    if not 0 < ratio <= 1:
        raise ValueError(f"coverage ratio must be in (0, 1], got {ratio}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be positive or None, got {num_frames}")


def _distinct_frame_keys(frame_voxels: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each frame's voxel keys as a sorted, distinct int64 array (frames already so, as from
    :func:`frame_voxels`, are kept as they are; the check is one vectorised pass)."""
    frame_keys = [np.asarray(keys, dtype=np.int64).ravel() for keys in frame_voxels]
    keys = np.concatenate(frame_keys)
    ends = np.cumsum([len(k) for k in frame_keys])
    increasing = np.ones(len(keys), dtype=bool)  # entry i > entry i - 1 of the same frame (first entries: True)
    increasing[1:] = keys[1:] > keys[:-1]
    increasing[ends[ends < len(keys)]] = True
    if increasing.all():
        return frame_keys
    unsorted = set(np.searchsorted(ends, np.flatnonzero(~increasing), side="right").tolist())
    return [np.unique(k) if frame in unsorted else k for frame, k in enumerate(frame_keys)]


def greedy_max_coverage(
    frame_voxels: Sequence[np.ndarray], ratio: float, num_frames: int | None = None
) -> CoverageSelection:
    """Greedy maximum coverage: repeatedly take the frame adding the most uncovered voxels (ties: the earliest
    frame) until ``ratio`` of all voxels is covered or ``num_frames`` frames are taken (``None``: no budget).

    Exact greedy with incrementally kept gains, no per-round recount. One sort of all (frame, voxel) entries
    maps the voxel keys to dense ids and lists each voxel's frames as a slice. ``gains[f]`` (uncovered voxels
    of frame ``f``) starts as the frame sizes; after a pick, only the voxels it newly covers are visited: they
    are marked in a boolean ``covered`` array and ``np.bincount`` of the frames holding them is subtracted from
    ``gains``. Every entry is thus touched once over the whole run, so the cost is one sort plus one ``argmax``
    over the frames per pick (``np.argmax`` returns the first maximum: the tie rule). Picks the same frames in
    the same order as :func:`reference_max_coverage`.

    Args:
        frame_voxels: one 1-D int voxel-key array per frame (e.g. :func:`frame_voxels`); repeats are allowed.
        ratio: covered fraction of all voxels to reach, in ``(0, 1]``.
        num_frames: the most frames to take, or ``None``.
    Returns:
        The :class:`CoverageSelection`; ``ValueError`` if no frame has a voxel.
    """
    _check_request(frame_voxels, ratio, num_frames)
    frame_keys = _distinct_frame_keys(frame_voxels)
    num_total = len(frame_keys)
    sizes = np.array([len(keys) for keys in frame_keys])
    keys = np.concatenate(frame_keys)  # (E,) frame-major entries
    if len(keys) == 0:
        raise ValueError(f"none of the {num_total} frames has a voxel (no valid depth)")
    frame_starts = np.concatenate([[0], np.cumsum(sizes)])
    by_voxel = np.argsort(keys)  # (E,) entries grouped by voxel
    first_of_voxel = np.ones(len(keys), dtype=bool)
    first_of_voxel[1:] = keys[by_voxel[1:]] != keys[by_voxel[:-1]]
    voxel_starts = np.append(np.flatnonzero(first_of_voxel), len(keys))  # (V + 1,) voxel v's entries' slice
    total = len(voxel_starts) - 1
    voxel_of_entry = np.empty(len(keys), dtype=np.int64)
    voxel_of_entry[by_voxel] = np.cumsum(first_of_voxel) - 1
    frames_by_voxel = np.repeat(np.arange(num_total), sizes)[by_voxel]  # (E,) each voxel's frames, slice by slice
    gains = sizes.copy()
    covered = np.zeros(total, dtype=bool)
    covered_count, needed, order = 0, voxels_needed(ratio, total), []
    while covered_count < needed and (num_frames is None or len(order) < num_frames):
        frame = int(np.argmax(gains))
        voxels = voxel_of_entry[frame_starts[frame] : frame_starts[frame + 1]]
        new = voxels[~covered[voxels]]
        covered[new] = True
        covered_count += len(new)
        order.append(frame)
        starts, counts = voxel_starts[new], voxel_starts[new + 1] - voxel_starts[new]
        entries = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        gains -= np.bincount(frames_by_voxel[entries], minlength=num_total)
    return CoverageSelection(tuple(sorted(order)), tuple(order), covered_count, total)


def reference_max_coverage(
    frame_voxels: Sequence[np.ndarray], ratio: float, num_frames: int | None = None
) -> CoverageSelection:
    """The same greedy as :func:`greedy_max_coverage`, written plainly: Python sets, every frame's gain
    recounted each round. For checking and benchmarking the fast one."""
    _check_request(frame_voxels, ratio, num_frames)
    frame_sets = [set(np.asarray(keys).ravel().tolist()) for keys in frame_voxels]
    total = len(set().union(*frame_sets))
    if total == 0:
        raise ValueError(f"none of the {len(frame_sets)} frames has a voxel (no valid depth)")
    covered: set[int] = set()
    needed, order = voxels_needed(ratio, total), []
    while len(covered) < needed and (num_frames is None or len(order) < num_frames):
        best_frame, best_gain = -1, -1
        for frame, voxels in enumerate(frame_sets):
            gain = len(voxels - covered)
            if gain > best_gain:
                best_frame, best_gain = frame, gain
        covered |= frame_sets[best_frame]
        order.append(best_frame)
    return CoverageSelection(tuple(sorted(order)), tuple(order), len(covered), total)


def _sample_max_coverage(context: SamplingContext, ratio: float, strategy: str) -> list[int]:
    """A maximum-coverage sampler's frames: voxels from ``options["frame_voxels"]``, budget ``num_frames``."""
    voxels = context.options.get("frame_voxels")
    if voxels is None:
        raise ValueError(
            f"strategy {strategy!r} needs options['frame_voxels']: one voxel-key array per timestamp, e.g. "
            "utils.scene3d.coverage.scene_frame_voxels(scene)"
        )
    if len(voxels) != context.num_total:
        raise ValueError(
            f"strategy {strategy!r}: options['frame_voxels'] has {len(voxels)} frames, the video {context.num_total}"
        )
    return list(greedy_max_coverage(voxels, ratio, context.num_frames).frames)


@register_sampler("mc-ratio90")
def _mc_ratio90(context: SamplingContext) -> list[int]:
    return _sample_max_coverage(context, 0.90, "mc-ratio90")


@register_sampler("mc-ratio95")
def _mc_ratio95(context: SamplingContext) -> list[int]:
    return _sample_max_coverage(context, 0.95, "mc-ratio95")


@register_sampler("max_coverage")
def _max_coverage(context: SamplingContext) -> list[int]:
    if "ratio" not in context.options:
        raise ValueError("strategy 'max_coverage' needs options['ratio'], the coverage to reach in (0, 1]")
    return _sample_max_coverage(context, float(context.options["ratio"]), "max_coverage")

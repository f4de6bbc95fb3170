"""Speed of maximum-coverage frame sampling: :func:`greedy_max_coverage` against the set-based reference.

    python scripts/benchmark_coverage.py                           # synthetic 300-frame room
    python scripts/benchmark_coverage.py --frames 600 --repeats 3
    python scripts/benchmark_coverage.py --scene data/scenes/scene0000_00

The synthetic scene is a box room (random size, a few random furniture boxes standing on the floor) seen by
cameras at random positions, headings and downward tilts, its z-depth ray-cast exactly with ScanNet's depth
resolution and intrinsics (only at the pixels ``--pixel-stride`` keeps). ``--scene`` reads a scene folder
instead (:mod:`utils.scene3d.scene_folder`). Per-frame voxels come from
:func:`~utils.scene3d.coverage.frame_voxels`; each row then times one request (coverage ratio, frame budget)
with both greedies (best of ``--repeats``), checks that they pick identical frames in the same order (exit
status 1 if not) and prints seconds per scene and the speed-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.scene3d.coverage import (  # noqa: E402
    CoverageSelection,
    frame_voxels,
    greedy_max_coverage,
    reference_max_coverage,
    scene_frame_voxels,
)
from utils.scene3d.scene_folder import read_scene  # noqa: E402

SCANNET_DEPTH_INTRINSICS = np.array([[577.87, 0.0, 319.5], [0.0, 577.87, 239.5], [0.0, 0.0, 1.0]])
REQUESTS = ((0.90, 32), (0.95, 32), (0.95, None))
"""(coverage ratio, frame budget) per row: mc-ratio90 / mc-ratio95 with 32 frames, and the ratio alone."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", type=Path, default=None, help="a scene folder; default: the synthetic room")
    parser.add_argument("--frames", type=int, default=300, help="frames of the synthetic scene")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    parser.add_argument("--voxel-size", type=float, default=0.2, help="voxel edge in metres")
    parser.add_argument("--pixel-stride", type=int, default=4, help="keep every this many depth pixels per axis")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per method; the best is kept")
    return parser.parse_args(argv)


def camera_to_world(position: np.ndarray, heading: float, tilt: float) -> np.ndarray:
    """``(4, 4)`` camera-to-world (OpenCV axes, z-up world) of a camera at ``position`` looking along
    ``heading`` (radians from +x) and ``tilt`` radians above the horizon."""
    forward = np.array([np.cos(tilt) * np.cos(heading), np.cos(tilt) * np.sin(heading), np.sin(tilt)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)  # x right, y down, z forward
    pose[:3, 3] = position
    return pose


def ray_cast_depth(
    pose: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int], stride: int, room: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    """``(h, w)`` z-depth seen from inside the box ``room`` ``(2, 3)`` (min, max corners) with furniture
    ``boxes`` ``(B, 2, 3)``; the camera must be inside the room and outside every box. Only every ``stride``-th
    pixel per axis (those :func:`frame_voxels` reads) is cast; the others are left invalid (0)."""
    height, width = size
    u, v = np.meshgrid(np.arange(0, width, stride, dtype=np.float32), np.arange(0, height, stride, dtype=np.float32))
    rays = [(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1], 1.0]  # z = 1
    directions = [sum(pose[axis, k] * rays[k] for k in range(3)).ravel() for axis in range(3)]  # 3 x (P,) world
    origin = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = [np.float32(1) / d for d in directions]
        depth = np.full(u.size, np.inf, dtype=np.float32)
        for axis in range(3):  # leaving the room through the wall ahead on each axis
            wall = np.where(directions[axis] > 0, room[1, axis], room[0, axis]) - origin[axis]
            depth = np.minimum(depth, np.where(directions[axis] != 0, wall * inverse[axis], np.inf))
        for low, high in boxes:  # slab test: enter after the last slab is entered, before the first is left
            enter, leave = np.full_like(depth, -np.inf), np.full_like(depth, np.inf)
            for axis in range(3):
                near, far = (low[axis] - origin[axis]) * inverse[axis], (high[axis] - origin[axis]) * inverse[axis]
                enter = np.maximum(enter, np.minimum(near, far))
                leave = np.minimum(leave, np.maximum(near, far))
            depth = np.where((enter <= leave) & (enter > 0), np.minimum(depth, enter), depth)
    full = np.zeros(size, dtype=np.float32)
    full[::stride, ::stride] = depth.reshape(u.shape)
    return full


def synthetic_room_voxels(
    num_frames: int, seed: int, voxel_size: float, pixel_stride: int, frames_per_chunk: int = 32
) -> Iterator[np.ndarray]:
    """Per-frame voxels of a random box room seen from ``num_frames`` random cameras (480 x 640 depth)."""
    rng = np.random.default_rng(seed)
    room = np.array([[0.0, 0.0, 0.0], [rng.uniform(5, 10), rng.uniform(4, 8), rng.uniform(2.5, 3.2)]])
    corners = rng.uniform(room[0] + 0.3, room[1] - 1.5, size=(6, 3))
    corners[:, 2] = 0.0
    boxes = np.stack([corners, corners + rng.uniform([0.4, 0.4, 0.4], [1.2, 1.2, 1.1], size=(6, 3))], axis=1)
    for start in range(0, num_frames, frames_per_chunk):
        count = min(frames_per_chunk, num_frames - start)
        poses = []
        for _ in range(count):
            position = rng.uniform(room[0] + [0.2, 0.2, 1.3], room[1] - [0.2, 0.2, room[1, 2] - 1.8])
            poses.append(camera_to_world(position, rng.uniform(-np.pi, np.pi), rng.uniform(-0.6, 0.1)))
        depths = np.stack(
            [ray_cast_depth(p, SCANNET_DEPTH_INTRINSICS, (480, 640), pixel_stride, room, boxes) for p in poses]
        )
        yield from frame_voxels(depths, SCANNET_DEPTH_INTRINSICS, np.stack(poses), None, voxel_size, pixel_stride)


def best_time(select: Callable[[], CoverageSelection], repeats: int) -> tuple[float, CoverageSelection]:
    """``(best seconds, selection of the last run)`` over ``repeats`` calls."""
    best, selection = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        selection = select()
        best = min(best, time.perf_counter() - start)
    return best, selection


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.scene is not None:
        scene = read_scene(args.scene)
        voxels, name = scene_frame_voxels(scene, args.voxel_size, args.pixel_stride), scene.scene_id
    else:
        voxels = list(synthetic_room_voxels(args.frames, args.seed, args.voxel_size, args.pixel_stride))
        name = f"synthetic room, seed {args.seed}"
    print(
        f"{name}: {len(voxels)} frames, {len(np.unique(np.concatenate(voxels)))} voxels of {args.voxel_size} m, "
        f"{np.mean([len(v) for v in voxels]):.0f} per frame (depth to voxels: {time.perf_counter() - start:.2f} s)"
    )
    print(f"{'ratio':>5} {'budget':>6} {'picked':>6} {'coverage':>8} {'fast s':>9} {'reference s':>11} {'speed-up':>8}")
    rows, identical = [], True
    for ratio, budget in REQUESTS:
        fast_s, fast = best_time(lambda r=ratio, b=budget: greedy_max_coverage(voxels, r, b), args.repeats)
        ref_s, ref = best_time(lambda r=ratio, b=budget: reference_max_coverage(voxels, r, b), args.repeats)
        identical &= fast == ref
        rows.append({"ratio": ratio, "budget": budget, "fast_s": fast_s, "reference_s": ref_s, "same": fast == ref})
        print(
            f"{ratio:>5.2f} {budget or '-':>6} {len(fast.frames):>6} {fast.coverage:>8.3f} {fast_s:>9.4f} "
            f"{ref_s:>11.4f} {ref_s / fast_s:>7.1f}x" + ("" if fast == ref else "  PICKS DIFFER")
        )
    if not identical:
        print("the fast greedy and the reference picked different frames", file=sys.stderr)
        sys.exit(1)
    return rows


if __name__ == "__main__":
    main()

"""Maximum-coverage frame sampling (``utils.scene3d.coverage``): per-frame voxels, the fast greedy against the
set-based reference, and the ``mc-ratio90`` / ``mc-ratio95`` / ``max_coverage`` samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import utils.scene3d  # noqa: F401  (the package import registers the samplers)
from utils.scene3d.coverage import (
    VOXEL_AXIS_BITS,
    frame_voxels,
    greedy_max_coverage,
    reference_max_coverage,
    scene_frame_voxels,
    voxel_keys,
)
from utils.scene3d.geometry import depth_to_points, project_points
from utils.scene3d.scene_folder import Boxes, read_scene, write_scene
from utils.video.sampling import SAMPLERS, FrameSampling

ROOT = Path(__file__).resolve().parents[1]
ROOM = ROOT.parent / "shared" / "fixtures" / "scene3d" / "room" / "condition.npz"

BLOCKS = [np.arange(0, 6), np.array([6, 7]), np.array([8]), np.array([9])]
"""Ten voxels: frame 0 has six, frame 1 two, frames 2 and 3 one each."""


def decode(keys: np.ndarray) -> np.ndarray:
    """``(N, 3)`` integer voxel coordinates of packed keys."""
    mask = (1 << VOXEL_AXIS_BITS) - 1
    shifts = (2 * VOXEL_AXIS_BITS, VOXEL_AXIS_BITS, 0)
    return np.stack([(keys >> shift) & mask for shift in shifts], axis=-1) - (1 << (VOXEL_AXIS_BITS - 1))


def random_case(rng: np.random.Generator) -> list[np.ndarray]:
    """A few frames over a small pool of arbitrary int64 keys (so gains tie often); some frames empty, some
    unsorted with repeats."""
    pool = rng.integers(-(2**40), 2**40, size=int(rng.integers(1, 40)))
    frames = []
    for _ in range(int(rng.integers(1, 25))):
        keys = rng.choice(pool, size=int(rng.integers(0, len(pool) + 1)), replace=bool(rng.random() < 0.3))
        frames.append(keys if rng.random() < 0.3 else np.unique(keys))
    frames[int(rng.integers(len(frames)))] = pool[:1]  # at least one voxel
    return frames


def test_fast_greedy_picks_what_the_set_reference_picks_on_random_cases():
    rng = np.random.default_rng(0)
    budget_cuts = ratio_cuts = 0
    for _ in range(400):
        frames = random_case(rng)
        ratio = float(rng.choice([0.1, 0.5, 0.9, 0.95, 1.0, rng.uniform(0.05, 1.0)]))
        budget = None if rng.random() < 0.4 else int(rng.integers(1, min(len(frames), 4) + 1))
        fast, reference = greedy_max_coverage(frames, ratio, budget), reference_max_coverage(frames, ratio, budget)
        assert fast == reference, (ratio, budget, frames)
        budget_cuts += fast.covered < np.ceil(ratio * fast.total - 1e-6)
        ratio_cuts += budget is not None and len(fast.frames) < budget
    assert budget_cuts > 20 and ratio_cuts > 20  # both stopping rules were exercised


def test_gain_ties_go_to_the_earliest_frame():
    frames = [np.array([1, 2]), np.array([3, 4, 5]), np.array([3, 4, 5]), np.array([1, 2])]
    for select in (greedy_max_coverage, reference_max_coverage):
        assert select(frames, 1.0).order == (1, 0)


def test_greedy_stops_as_soon_as_the_ratio_is_reached():
    assert greedy_max_coverage(BLOCKS, 0.8).order == (0, 1)  # 8 of 10 voxels: exactly 0.8
    assert greedy_max_coverage(BLOCKS, 0.81).order == (0, 1, 2)
    twenty = [np.arange(19), np.array([19])]
    assert greedy_max_coverage(twenty, 0.95).frames == (0,)  # 0.95 * 20 is 19 despite float error


def test_budget_cuts_the_greedy_before_the_ratio():
    selection = greedy_max_coverage(BLOCKS, 1.0, num_frames=2)
    assert selection.frames == (0, 1) and selection.covered == 8 and selection.coverage == pytest.approx(0.8)


def test_picks_are_returned_in_time_order_and_the_greedy_order_is_kept():
    frames = [np.array([1]), np.array([2]), np.array([3, 4, 5])]
    selection = greedy_max_coverage(frames, 1.0, num_frames=2)
    assert selection.order == (2, 0) and selection.frames == (0, 2)


def test_reported_coverage_is_the_union_of_the_picked_frames():
    rng = np.random.default_rng(1)
    for _ in range(100):
        frames = random_case(rng)
        ratio = float(rng.uniform(0.05, 1.0))
        selection = greedy_max_coverage(frames, ratio)
        union = np.unique(np.concatenate([frames[i] for i in selection.frames]))
        assert selection.covered == len(union)
        assert selection.total == len(np.unique(np.concatenate(frames)))
        assert selection.coverage >= ratio - 1e-6
        before_last = [np.asarray(frames[i]) for i in selection.order[:-1]]
        assert len(np.unique(np.concatenate(before_last or [np.array([])]))) < ratio * selection.total - 1e-6


@pytest.mark.parametrize(
    ("frames", "ratio", "budget", "message"),
    [
        ([np.array([1])], 0.0, None, "ratio"),
        ([np.array([1])], 1.5, None, "ratio"),
        ([np.array([1])], 0.9, 0, "num_frames"),
        ([np.array([], np.int64), np.array([], np.int64)], 0.9, None, "none of the 2 frames"),
        ([], 0.9, None, "at least one frame"),
    ],
)
def test_bad_coverage_requests_raise(frames, ratio, budget, message):
    for select in (greedy_max_coverage, reference_max_coverage):
        with pytest.raises(ValueError, match=message):
            select(frames, ratio, budget)


def test_voxel_keys_pack_the_integer_voxel_coordinates():
    points = np.array([[0.25, -0.05, 1.0], [-209_000.0, 0.0, 209_000.0]])
    np.testing.assert_array_equal(decode(voxel_keys(points, 0.2)), [[1, -1, 5], [-1_045_000, 0, 1_045_000]])
    neighbours = np.array([[x, y, z] for x in (0.1, 0.3) for y in (0.1, 0.3) for z in (0.1, 0.3)])
    assert len(np.unique(voxel_keys(neighbours, 0.2))) == 8


def test_points_too_far_for_voxel_keys_raise():
    with pytest.raises(ValueError, match="too far"):
        voxel_keys(np.array([[0.0, 0.0, 300_000.0]]), 0.2)


def flat_wall(num_frames: int = 2, depth: float = 2.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(depths (T, 48, 64), K, poses)`` of cameras at the origin facing a wall ``depth`` metres ahead."""
    intrinsics = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
    return np.full((num_frames, 48, 64), depth, np.float32), intrinsics, np.tile(np.eye(4), (num_frames, 1, 1))


def test_frame_voxels_are_sorted_distinct_int64_keys_on_the_surface_seen():
    depths, intrinsics, poses = flat_wall()
    voxels = frame_voxels(depths, intrinsics, poses)
    assert len(voxels) == 2 and all(v.dtype == np.int64 and (np.diff(v) > 0).all() for v in voxels)
    coordinates = decode(voxels[0])
    assert (coordinates[:, 2] == 10).all() and len(voxels[0]) > 10  # z = 2.1 m, many voxels across the wall


def test_invalid_depth_gives_no_voxels():
    depths, intrinsics, poses = flat_wall(3)
    depths[1] = 0.0
    depths[2, :, :32] = np.nan
    voxels = frame_voxels(depths, intrinsics, poses)
    assert len(voxels[1]) == 0
    assert 0 < len(voxels[2]) < len(voxels[0]) and np.isin(voxels[2], voxels[0]).all()


def test_strided_pixels_back_project_exactly_as_at_full_resolution():
    rng = np.random.default_rng(2)
    depths = rng.uniform(0.5, 4.0, size=(2, 48, 64)).astype(np.float32)
    _, intrinsics, _ = flat_wall()
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, :3, 3] = [0.3, -0.2, 0.1]
    full = frame_voxels(depths, intrinsics, poses, pixel_stride=1, voxel_size=0.05)
    strided = frame_voxels(depths, intrinsics, poses, pixel_stride=4, voxel_size=0.05)
    for frame in range(2):
        points, valid = depth_to_points(depths[frame], intrinsics, poses[frame])
        kept = points[::4, ::4][valid[::4, ::4]]
        np.testing.assert_array_equal(strided[frame], np.unique(voxel_keys(kept, 0.05)))
        assert np.isin(strided[frame], full[frame]).all() and len(strided[frame]) < len(full[frame])


def test_axis_alignment_moves_the_voxels_like_the_poses():
    depths, intrinsics, poses = flat_wall()
    alignment = np.eye(4)
    alignment[:3, 3] = [1.0, -2.0, 0.5]
    aligned = frame_voxels(depths, intrinsics, poses, alignment)
    moved = frame_voxels(depths, intrinsics, alignment @ poses)
    assert all(np.array_equal(a, b) for a, b in zip(aligned, moved))
    assert not np.array_equal(aligned[0], frame_voxels(depths, intrinsics, poses)[0])


def test_invalid_pose_is_reported_with_its_frame():
    depths, intrinsics, poses = flat_wall(3)
    poses[2, 0, 3] = -np.inf
    with pytest.raises(ValueError, match="frame 2"):
        frame_voxels(depths, intrinsics, poses)


def test_mismatched_geometry_shapes_raise():
    depths, intrinsics, poses = flat_wall(3)
    with pytest.raises(ValueError, match="poses"):
        frame_voxels(depths, intrinsics, poses[:2])
    with pytest.raises(ValueError, match="intrinsics"):
        frame_voxels(depths, np.stack([intrinsics] * 2), poses)


def test_samplers_are_registered_by_the_scene3d_package():
    assert {"mc-ratio90", "mc-ratio95", "max_coverage"} <= set(SAMPLERS)


@pytest.mark.parametrize(("strategy", "ratio"), [("mc-ratio90", 0.90), ("mc-ratio95", 0.95)])
@pytest.mark.parametrize("budget", [None, 3])
def test_mc_ratio_samplers_pick_the_greedy_frames(strategy, ratio, budget):
    rng = np.random.default_rng(3)
    for _ in range(20):
        frames = random_case(rng)
        timestamps = np.arange(len(frames)) / 3.0
        chosen = FrameSampling(strategy, num_frames=budget, options={"frame_voxels": frames}).select(timestamps)
        assert chosen == list(greedy_max_coverage(frames, ratio, budget).frames)


def test_mc_ratio90_takes_fewer_frames_than_mc_ratio95():
    frames = [np.arange(9), np.array([9])]
    timestamps = np.array([0.0, 0.5])
    options = {"frame_voxels": frames}
    assert FrameSampling("mc-ratio90", options=options).select(timestamps) == [0]
    assert FrameSampling("mc-ratio95", options=options).select(timestamps) == [0, 1]
    assert FrameSampling("max_coverage", options={**options, "ratio": 0.5}).select(timestamps) == [0]


@pytest.mark.parametrize(
    ("strategy", "options", "message"),
    [
        ("mc-ratio90", {}, "frame_voxels"),
        ("mc-ratio95", {"frame_voxels": [np.array([1])]}, "has 1 frames, the video 2"),
        ("max_coverage", {"frame_voxels": [np.array([1]), np.array([2])]}, r"options\['ratio'\]"),
        ("mc-ratio80", {"frame_voxels": [np.array([1]), np.array([2])]}, "unknown frame sampling strategy"),
    ],
)
def test_bad_sampler_requests_raise_instead_of_falling_back(strategy, options, message):
    with pytest.raises(ValueError, match=message):
        FrameSampling(strategy, num_frames=1, options=options).select(np.array([0.0, 1.0]))


@pytest.fixture(scope="module")
def room() -> dict[str, np.ndarray]:
    """The real posed RGB-D fixture: depths (8, 350, 434), intrinsics (8, 3, 3), poses (8, 4, 4)."""
    if not ROOM.is_file():
        pytest.skip(f"shared fixture {ROOM} is absent")
    with np.load(ROOM) as data:
        return {key: np.asarray(data[key], dtype=np.float64) for key in ("depths", "intrinsics", "poses")}


def view_overlap(room: dict[str, np.ndarray], source: int, target: int) -> float:
    """Share of ``source``'s (stride-4) pixels that ``target`` sees at the same depth (within 5 %)."""
    depths, intrinsics, poses = room["depths"], room["intrinsics"], room["poses"]
    points, valid = depth_to_points(depths[source], intrinsics[source], poses[source])
    points = points[::4, ::4][valid[::4, ::4]]
    uv, z = project_points(points, intrinsics[target], poses[target])
    height, width = depths[target].shape
    u, v = np.rint(np.nan_to_num(uv, nan=-1.0)).astype(np.int64).T
    inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    seen = np.zeros(len(points), bool)
    seen[inside] = np.abs(depths[target][v[inside], u[inside]] - z[inside]) < 0.05 * z[inside]
    return float(seen.mean())


def test_room_frames_that_see_the_same_place_share_voxels(room):
    voxels = frame_voxels(room["depths"], room["intrinsics"], room["poses"])
    assert all(len(v) > 100 for v in voxels)
    for source in range(8):
        for target in range(8):
            overlap = view_overlap(room, source, target)
            shared = len(np.intersect1d(voxels[source], voxels[target])) / len(voxels[source])
            if overlap > 0.3:
                assert shared > 0.15, (source, target, overlap, shared)
            if overlap < 0.005:
                assert shared < 0.02, (source, target, overlap, shared)
    assert len(np.intersect1d(voxels[0], voxels[1])) > 0.5 * len(voxels[0])  # frames 0 and 1 nearly coincide


def test_room_greedy_matches_the_reference_and_full_coverage_needs_the_lone_view(room):
    voxels = frame_voxels(room["depths"], room["intrinsics"], room["poses"])
    for ratio in (0.5, 0.9, 0.95, 1.0):
        assert greedy_max_coverage(voxels, ratio) == reference_max_coverage(voxels, ratio)
    full = greedy_max_coverage(voxels, 1.0)
    assert 7 in full.frames and full.covered == full.total  # frame 7 shares no voxel with the others
    assert len(greedy_max_coverage(voxels, 0.9).frames) < len(full.frames)


def test_scene_folder_voxels_match_its_depths_read_in_chunks(room, tmp_path):
    depths, intrinsics, poses = room["depths"][:5], room["intrinsics"][0], room["poses"][:5]
    folder = write_scene(
        tmp_path / "room",
        [f"{i:06d}" for i in range(5)],
        np.zeros((5, 35, 43, 3), np.uint8),
        depths,
        poses,
        intrinsics,
        intrinsics,
        Boxes(np.zeros((0, 6)), np.array([], dtype=str)),
    )
    scene = read_scene(folder)
    expected = frame_voxels(scene.read_depths(list(range(5))), intrinsics, poses, scene.axis_alignment)
    chunked = scene_frame_voxels(scene, frames_per_read=2)
    assert len(chunked) == 5 and all(np.array_equal(a, b) for a, b in zip(chunked, expected))

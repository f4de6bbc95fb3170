"""Synthetic rooms: deterministic layouts, depth that agrees with the boxes, proposals that follow their rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.scene3d.geometry import depth_to_points, valid_pose
from utils.scene3d.scene_folder import read_scene
from utils.synthetic.rooms import COLOURS, RoomConfig, make_room, render_room, room_rng, write_room

TINY = RoomConfig(height=64, width=80, num_frames=8)


def _render(seed: int, split: str, index: int, config: RoomConfig = TINY):
    room = make_room(seed, split, index, config)
    return room, render_room(room, config, room_rng(seed, split, index, 1))


def test_rooms_are_a_function_of_seed_split_and_index() -> None:
    room, frames = _render(3, "train", 5)
    again, frames_again = _render(3, "train", 5)
    assert room.labels == again.labels and room.colours == again.colours
    np.testing.assert_array_equal(room.boxes, again.boxes)
    np.testing.assert_array_equal(room.proposals.boxes, again.proposals.boxes)
    np.testing.assert_array_equal(frames.colors, frames_again.colors)
    np.testing.assert_array_equal(frames.depths, frames_again.depths)
    for other in (make_room(3, "val", 5, TINY), make_room(3, "train", 6, TINY), make_room(4, "train", 5, TINY)):
        assert other.boxes.shape != room.boxes.shape or not np.allclose(other.boxes, room.boxes)


def test_pixels_back_project_onto_the_box_or_room_plane_they_show_within_a_centimetre(tmp_path: Path) -> None:
    room, frames = _render(0, "val", 1)
    scene = read_scene(write_room(tmp_path, room, frames, TINY))
    geometry = scene.geometry(list(range(scene.num_frames)))
    checked = 0
    for t in range(scene.num_frames):
        points, valid = depth_to_points(geometry.depth[t], geometry.intrinsics, geometry.poses[t])
        for k, box in enumerate(room.boxes):
            on_box = (frames.instances[t] == k) & valid
            offsets = np.abs(points[on_box] - box[:3]) - box[3:] / 2  # (P, 3); 0 on a face, < 0 inside
            assert np.abs(offsets.max(axis=1)).max(initial=0.0) <= 0.01, (t, k)
            checked += int(on_box.sum())
        room_points = points[(frames.instances[t] == -1) & valid]  # floor and walls
        to_planes = np.abs(np.concatenate([room_points, room_points[:, :2] - room.extent[:2]], axis=1))
        assert to_planes.min(axis=1).max(initial=0.0) <= 0.01
    assert checked > 1000


def test_written_scene_folder_holds_the_ground_truth_and_valid_poses(tmp_path: Path) -> None:
    room, frames = _render(0, "val", 2)
    scene = read_scene(write_room(tmp_path, room, frames, TINY))
    assert scene.scene_id == room.scene_id and scene.num_frames == TINY.num_frames
    np.testing.assert_array_equal(scene.objects.object_ids, room.object_ids)
    np.testing.assert_allclose(scene.objects.boxes, room.boxes, atol=1e-5)
    np.testing.assert_allclose(scene.proposals.boxes, room.proposals.boxes, atol=1e-6)
    assert all(valid_pose(pose) for pose in scene.poses)
    assert scene.read_colors([0]).shape == (1, TINY.height, TINY.width, 3)


def test_every_object_is_seen_and_the_camera_stays_outside_the_boxes() -> None:
    for index in range(4):
        room, frames = _render(1, "train", index)
        assert set(range(len(room.labels))) <= set(np.unique(frames.instances).tolist())
        eyes = frames.poses[:, :3, 3]
        inside = (np.abs(eyes[:, None] - room.boxes[None, :, :3]) <= room.boxes[None, :, 3:] / 2).all(axis=-1)
        assert not inside.any()
        assert (frames.depths > 0).mean() > 0.5


def test_proposal_misses_spurious_boxes_and_jitter_follow_the_rates() -> None:
    config = RoomConfig(miss_rate=0.2, spurious_rate=0.3, centre_noise=0.05, size_noise=0.08)
    objects = missed = spurious = 0
    centre_errors, size_ratios = [], []
    for index in range(300):
        room = make_room(7, "train", index, config)
        sources = room.proposal_sources
        kept = sources[sources >= 0]
        assert len(set(kept.tolist())) == len(kept)  # a ground-truth box is jittered at most once
        objects += len(room.boxes)
        missed += len(room.boxes) - len(kept)
        spurious += int((sources == -1).sum())
        jittered = room.proposals.boxes[sources >= 0]
        centre_errors.append(jittered[:, :3] - room.boxes[kept, :3])
        size_ratios.append(jittered[:, 3:] / room.boxes[kept, 3:] - 1)
    assert missed / objects == pytest.approx(0.2, abs=0.04)
    assert spurious / objects == pytest.approx(0.3, abs=0.05)
    assert np.concatenate(centre_errors).std() == pytest.approx(0.05, rel=0.2)
    assert np.concatenate(size_ratios).std() == pytest.approx(0.08, rel=0.2)


def test_without_noise_rates_proposals_are_exactly_the_objects_shuffled() -> None:
    config = RoomConfig(miss_rate=0.0, spurious_rate=0.0, centre_noise=0.0, size_noise=0.0)
    room = make_room(0, "train", 0, config)
    assert sorted(room.proposal_sources.tolist()) == list(range(len(room.boxes)))
    np.testing.assert_allclose(room.proposals.boxes, room.boxes[room.proposal_sources], atol=1e-6)
    assert list(room.proposals.labels) == [room.labels[k] for k in room.proposal_sources]


def test_each_room_repeats_a_class_with_distinct_colours_and_unique_means_alone() -> None:
    for index in range(50):
        room = make_room(2, "train", index, TINY)
        counts = {label: room.labels.count(label) for label in room.labels}
        assert TINY.min_objects <= len(room.labels) <= TINY.max_objects
        assert max(counts.values()) >= 2
        for label in counts:
            colours = [c for c, name in zip(room.colours, room.labels) if name == label]
            assert len(set(colours)) == len(colours) and set(colours) <= set(COLOURS)
        assert [room.is_unique(k) for k in range(len(room.labels))] == [counts[n] == 1 for n in room.labels]
        assert len(set(room.object_ids.tolist())) == len(room.labels)

"""Scene preprocessing (utils/scene3d/scannet_layouts.py, scripts/preprocess_scenes.py): the public posed-image layouts
become scene folders whose frames, poses and depth round-trip, bad poses are dropped and counted, bad files are
named, the axis alignment is applied, instances become boxes, and the script resumes and survives a failing scene."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.preprocess_scenes import main as preprocess
from utils.scene3d.geometry import depth_to_points, transform
from utils.scene3d.scannet_layouts import (
    boxes_from_instances,
    read_axis_alignment,
    read_embodiedscan_infos,
    read_embodiedscan_scene,
    read_ply_vertices,
    read_posed_images,
    read_proposals,
    read_scannet_export,
    refuse_gpt4scene,
    scannet_objects,
)
from utils.scene3d.scene_folder import read_scene

ROOM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "scene3d" / "room"
SCENE = "scene0000_00"
LOST = (2, 5)
"""Frames given ScanNet's ``-inf`` lost-tracking pose."""
ALIGNMENT = np.array([[0.0, -1.0, 0.0, 3.0], [1.0, 0.0, 0.0, -2.0], [0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0]])
"""A ScanNet-style axis alignment: 90 degrees about z, then a shift."""


@pytest.fixture(scope="module")
def room() -> dict[str, np.ndarray]:
    """The real posed RGB-D room: colours (8, 350, 434, 3), depths (8, 350, 434) m, poses (8, 4, 4), K (3, 3)."""
    if not (ROOM / "condition.npz").is_file():
        pytest.skip(f"the shared room fixture is absent ({ROOM})")
    with np.load(ROOM / "condition.npz") as data:
        arrays = {key: np.asarray(data[key], dtype=np.float64) for key in ("intrinsics", "poses", "depths")}
    colors = np.stack([np.asarray(Image.open(ROOM / "rgb" / f"{i}.png").convert("RGB")) for i in range(8)])
    return {"colors": colors, "depths": arrays["depths"], "poses": arrays["poses"], "K": arrays["intrinsics"][0]}


def write_matrix(path: Path, matrix: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(f"{value:.9g}" for value in row) for row in matrix) + "\n")


def millimetres(depth: np.ndarray) -> np.ndarray:
    return np.rint(depth * 1000).astype(np.uint16)


def write_posed_images(root: Path, room: dict, scene: str = SCENE, alignment: np.ndarray | None = ALIGNMENT) -> Path:
    """The room in the posed-images layout under ``root`` (frames ``LOST`` with -inf poses) and a ScanNet meta
    file; returns the posed-images root."""
    folder = root / "posed_images" / scene
    folder.mkdir(parents=True)
    for i in range(8):
        name = f"{i:05d}"
        Image.fromarray(room["colors"][i]).save(folder / f"{name}.jpg", quality=100)
        Image.fromarray(millimetres(room["depths"][i])).save(folder / f"{name}.png")
        write_matrix(folder / f"{name}.txt", np.full((4, 4), -np.inf) if i in LOST else room["poses"][i])
    k4 = np.eye(4)
    k4[:3, :3] = room["K"]
    write_matrix(folder / "intrinsic.txt", k4)
    write_matrix(folder / "depth_intrinsic.txt", k4)
    meta = root / "scans" / scene / f"{scene}.txt"
    meta.parent.mkdir(parents=True)
    lines = ["colorHeight = 350", "colorWidth = 434"]
    if alignment is not None:
        lines.insert(0, "axisAlignment = " + " ".join(f"{value:.9g}" for value in alignment.ravel()))
    meta.write_text("\n".join(lines) + "\n")
    return root / "posed_images"


def run(root: Path, *extra: str) -> int:
    return preprocess(
        ["--layout", "posed_images", "--input", str(root / "posed_images"), "--scans", str(root / "scans")]
        + ["--out", str(root / "scenes"), "--bev-metres-per-pixel", "0.05", *extra]
    )


def test_preprocessed_room_round_trips_frames_poses_and_depths(tmp_path: Path, room: dict) -> None:
    write_posed_images(tmp_path, room)
    assert run(tmp_path) == 0
    scene = read_scene(tmp_path / "scenes" / SCENE)
    kept = [i for i in range(8) if i not in LOST]
    assert scene.frame_names == [f"{i:05d}" for i in kept]
    np.testing.assert_allclose(scene.poses, room["poses"][kept], atol=1e-6)
    np.testing.assert_array_equal(millimetres(scene.read_depths(list(range(6)))), millimetres(room["depths"][kept]))
    colour_error = np.abs(scene.read_colors(list(range(6))).astype(int) - room["colors"][kept].astype(int))
    assert colour_error.mean() < 3  # two JPEG encodings
    np.testing.assert_allclose(scene.depth_intrinsics, room["K"], atol=1e-6)
    np.testing.assert_allclose(scene.color_intrinsics, room["K"], atol=1e-6)
    np.testing.assert_allclose(scene.timestamps, np.array(kept) / 30)
    for name in ("bev.png", "bev_plain.png", "bev.json", "frame_markers.npz"):
        assert (tmp_path / "scenes" / SCENE / name).is_file()


def test_frames_with_infinite_poses_are_dropped_and_counted(tmp_path: Path, room: dict) -> None:
    write_posed_images(tmp_path, room)
    assert run(tmp_path) == 0
    report = json.loads((tmp_path / "scenes" / SCENE / "preprocess.json").read_text())
    assert (report["frames_read"], report["frames_kept"], report["frames_dropped"]) == (8, 6, 2)
    assert report["dropped"] == {"00002": "non-finite pose (lost tracking)", "00005": "non-finite pose (lost tracking)"}
    assert report["dropped_by_reason"] == {"non-finite pose (lost tracking)": 2}


def test_a_pose_that_is_not_a_rotation_is_dropped_with_its_reason(tmp_path: Path, room: dict) -> None:
    posed = write_posed_images(tmp_path, room)
    sheared = room["poses"][3].copy()
    sheared[:3, :3] *= 2
    write_matrix(posed / SCENE / "00003.txt", sheared)
    frames = read_posed_images(posed, SCENE, tmp_path / "scans")
    assert frames.dropped["00003"] == "not a rigid camera-to-world pose"
    assert len(frames.frame_names) == 5


def test_axis_alignment_line_is_applied_and_a_missing_line_means_identity(tmp_path: Path, room: dict) -> None:
    write_posed_images(tmp_path / "aligned", room)
    write_posed_images(tmp_path / "plain", room, alignment=None)
    assert run(tmp_path / "aligned") == 0 and run(tmp_path / "plain") == 0
    aligned = read_scene(tmp_path / "aligned" / "scenes" / SCENE)
    plain = read_scene(tmp_path / "plain" / "scenes" / SCENE)
    np.testing.assert_allclose(aligned.axis_alignment, ALIGNMENT)
    np.testing.assert_array_equal(plain.axis_alignment, np.eye(4))
    # The BEV is rendered in the aligned world: a quarter turn about z swaps its width and height.
    aligned_bev = json.loads((tmp_path / "aligned" / "scenes" / SCENE / "bev.json").read_text())
    plain_bev = json.loads((tmp_path / "plain" / "scenes" / SCENE / "bev.json").read_text())
    assert aligned_bev["size"] == plain_bev["size"][::-1] and aligned_bev["size"][0] != aligned_bev["size"][1]


def test_axis_alignment_line_with_wrong_count_names_the_meta_file(tmp_path: Path) -> None:
    meta = tmp_path / "scene.txt"
    meta.write_text("axisAlignment = 1 0 0 0 1\n")
    with pytest.raises(ValueError, match=str(meta)):
        read_axis_alignment(meta)


def test_corrupt_pose_file_names_the_file(tmp_path: Path, room: dict) -> None:
    posed = write_posed_images(tmp_path, room)
    (posed / SCENE / "00004.txt").write_text("1 0 0 0\n0 1 zero 0\n")
    with pytest.raises(ValueError, match=str(posed / SCENE / "00004.txt")):
        read_posed_images(posed, SCENE, tmp_path / "scans")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_scene_is_reported_and_counted_and_the_others_go_on(tmp_path: Path, room: dict, workers: int) -> None:
    posed = write_posed_images(tmp_path, room)
    write_posed_images(tmp_path / "second", room, scene="scene0001_00")
    (tmp_path / "second" / "posed_images" / "scene0001_00").rename(posed / "scene0001_00")
    (tmp_path / "second" / "scans" / "scene0001_00").rename(tmp_path / "scans" / "scene0001_00")
    (posed / "scene0001_00" / "00001.txt").write_text("not a pose")
    assert run(tmp_path, "--workers", str(workers)) == 1
    summary = json.loads((tmp_path / "scenes" / "preprocess_summary.json").read_text())
    assert summary["done"] == [SCENE] and list(summary["failed"]) == ["scene0001_00"]
    assert str(posed / "scene0001_00" / "00001.txt") in summary["failed"]["scene0001_00"]
    assert not (tmp_path / "scenes" / "scene0001_00").exists()


def test_finished_scenes_are_skipped_on_a_rerun(tmp_path: Path, room: dict) -> None:
    write_posed_images(tmp_path, room)
    assert run(tmp_path, "--scenes", SCENE) == 0
    written = (tmp_path / "scenes" / SCENE / "scene.npz").stat().st_mtime_ns
    assert run(tmp_path) == 0
    summary = json.loads((tmp_path / "scenes" / "preprocess_summary.json").read_text())
    assert summary == {"done": [], "skipped": [SCENE], "failed": {}}
    assert (tmp_path / "scenes" / SCENE / "scene.npz").stat().st_mtime_ns == written


def test_proposals_get_markers_on_the_bev_and_on_the_frames_that_see_them(tmp_path: Path, room: dict) -> None:
    write_posed_images(tmp_path, room)
    points, _ = depth_to_points(room["depths"][0], room["K"], room["poses"][0], ALIGNMENT)
    box = np.r_[points[175, 217], 0.4, 0.4, 0.4]  # on the surface at frame 0's image centre
    (tmp_path / "proposals").mkdir()
    np.save(tmp_path / "proposals" / f"{SCENE}.npy", box[None])
    assert run(tmp_path, "--proposals", str(tmp_path / "proposals")) == 0
    folder = tmp_path / "scenes" / SCENE
    with np.load(folder / "frame_markers.npz") as markers:
        positions = markers["positions"]
    assert positions.shape == (6, 1, 2)
    assert np.hypot(*(positions[0, 0] - [216.5, 174.5])) < 20
    bev = json.loads((folder / "bev.json").read_text())
    world_to_pixel = np.array(bev["world_to_pixel"])
    assert bev["markers"][0]["id"] == 0
    np.testing.assert_allclose(bev["markers"][0]["pixel"], (world_to_pixel @ np.r_[box[:3], 1])[:2], atol=1e-6)


def test_frame_stride_reads_every_kth_frame(tmp_path: Path, room: dict) -> None:
    posed = write_posed_images(tmp_path, room)
    frames = read_posed_images(posed, SCENE, tmp_path / "scans", frame_stride=3)
    assert frames.frame_names == ["00000", "00003", "00006"]
    assert frames.report()["frames_listed"] == 8 and frames.report()["frames_read"] == 3


def test_posed_images_without_meta_root_use_identity_and_say_so(tmp_path: Path, room: dict) -> None:
    posed = write_posed_images(tmp_path, room)
    frames = read_posed_images(posed, SCENE)
    np.testing.assert_array_equal(frames.axis_alignment, np.eye(4))
    assert frames.notes == ["no ScanNet meta root given: identity axis alignment"]


def test_colour_intrinsics_of_another_resolution_are_refused_naming_the_frame(tmp_path: Path, room: dict) -> None:
    posed = write_posed_images(tmp_path, room)
    k4 = np.eye(4)
    k4[:3, :3] = room["K"] * [[3], [3], [1]]  # full-size intrinsics, frames resized to a third
    write_matrix(posed / SCENE / "intrinsic.txt", k4)
    assert run(tmp_path) == 1
    summary = json.loads((tmp_path / "scenes" / "preprocess_summary.json").read_text())
    assert "principal point" in summary["failed"][SCENE] and "00000.jpg" in summary["failed"][SCENE]


def write_scannet_export(scans: Path, room: dict, names: list[str]) -> Path:
    """The room's first ``len(names)`` frames as ScanNet's SensReader export in ``scans/<SCENE>``, with meta."""
    scan = scans / SCENE
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scan / sub).mkdir(parents=True)
    for i, name in enumerate(names):
        Image.fromarray(room["colors"][i]).save(scan / "color" / f"{name}.jpg")
        Image.fromarray(millimetres(room["depths"][i])).save(scan / "depth" / f"{name}.png")
        write_matrix(scan / "pose" / f"{name}.txt", room["poses"][i])
    k4 = np.eye(4)
    k4[:3, :3] = room["K"]
    write_matrix(scan / "intrinsic" / "intrinsic_color.txt", k4)
    write_matrix(scan / "intrinsic" / "intrinsic_depth.txt", k4)
    (scan / f"{SCENE}.txt").write_text("axisAlignment = " + " ".join(map(str, ALIGNMENT.ravel())) + "\n")
    return scan


def test_scannet_export_layout_is_read_in_numeric_frame_order(tmp_path: Path, room: dict) -> None:
    names = ["0", "5", "10", "15"]
    scan = write_scannet_export(tmp_path / "scans", room, names)
    frames = read_scannet_export(tmp_path / "scans", SCENE)
    assert frames.frame_names == names
    assert frames.depth_paths[2] == scan / "depth" / "10.png"
    np.testing.assert_allclose(frames.poses, room["poses"][:4], atol=1e-6)
    np.testing.assert_allclose(frames.axis_alignment, ALIGNMENT)


def test_scannet_scan_with_mesh_gives_objects_gt_proposals_and_a_mesh_bev(tmp_path: Path, room: dict) -> None:
    scan = write_scannet_export(tmp_path / "scans", room, ["0", "1", "2"])
    points, valid = depth_to_points(room["depths"][0], room["K"], room["poses"][0])
    vertices = points[valid][::7]
    colours = room["colors"][0][valid][::7]
    write_binary_ply(scan / f"{SCENE}_vh_clean_2.ply", vertices, colours)
    segments = np.where(vertices[:, 2] < 0.1, 4, 9)  # floor and the rest
    (scan / f"{SCENE}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": segments.tolist()}))
    groups = [{"objectId": 0, "label": "floor", "segments": [4]}, {"objectId": 1, "label": "wall", "segments": [9]}]
    (scan / f"{SCENE}.aggregation.json").write_text(json.dumps({"segGroups": groups}))
    out = tmp_path / "scenes"
    status = preprocess(
        ["--layout", "scannet", "--input", str(tmp_path / "scans"), "--out", str(out), "--objects"]
        + ["--proposals", "gt", "--bev-source", "mesh", "--bev-size", "128"]
    )
    assert status == 0
    scene = read_scene(out / SCENE)
    assert scene.objects.labels.tolist() == ["floor", "wall"]
    np.testing.assert_array_equal(scene.proposals.boxes, scene.objects.boxes)
    floor = transform(vertices[segments == 4].astype(np.float64), ALIGNMENT)
    np.testing.assert_allclose(scene.objects.boxes[0, :3], (floor.min(axis=0) + floor.max(axis=0)) / 2, atol=1e-4)
    bev = json.loads((out / SCENE / "bev.json").read_text())
    assert bev["size"] == [128, 128] and [marker["label"] for marker in bev["markers"]] == ["floor", "wall"]


@pytest.mark.parametrize("suffix", [".pkl", ".json"])
def test_embodiedscan_info_file_gives_posed_frames(tmp_path: Path, room: dict, suffix: str) -> None:
    posed = write_posed_images(tmp_path / "data" / "scannet", room)
    images = [
        {
            "img_path": f"scannet/posed_images/{SCENE}/{i:05d}.jpg",
            "depth_path": f"scannet/posed_images/{SCENE}/{i:05d}.png",
            "cam2global": (np.full((4, 4), np.nan) if i == 1 else room["poses"][i]).tolist(),
            "visible_instance_ids": [],
        }
        for i in (0, 1, 3)
    ]
    k4 = np.eye(4)
    k4[:3, :3] = room["K"]
    entry = {
        "sample_idx": f"scannet/{SCENE}",
        "images": images,
        "cam2img": k4.tolist(),
        "depth_cam2img": k4.tolist(),
        "axis_align_matrix": ALIGNMENT.tolist(),
        "instances": [],
    }
    info = tmp_path / "data" / f"infos{suffix}"
    infos = {"metainfo": {}, "data_list": [entry]}
    if suffix == ".pkl":
        info.write_bytes(pickle.dumps(infos))
    else:
        info.write_text(json.dumps(infos))
    scenes = read_embodiedscan_infos(info)
    assert list(scenes) == [SCENE]
    frames = read_embodiedscan_scene(scenes[SCENE], tmp_path / "data")
    assert frames.frame_names == ["00000", "00003"] and frames.dropped == {"00001": "non-finite pose (lost tracking)"}
    assert frames.color_paths[1] == posed / SCENE / "00003.jpg"
    np.testing.assert_allclose(frames.axis_alignment, ALIGNMENT)
    np.testing.assert_allclose(frames.depth_intrinsics, room["K"])
    assert frames.depth_units == 1000


def test_gpt4scene_image_folders_are_refused_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "images_2D" / SCENE
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(folder / f"{i}.jpg")
    with pytest.raises(ValueError, match=r"\(3 frames\) has no depth, camera poses or intrinsics"):
        refuse_gpt4scene(folder)
    with pytest.raises(SystemExit):
        preprocess(["--layout", "gpt4scene", "--input", str(folder), "--out", str(tmp_path / "out")])


def test_boxes_from_instances_bound_each_instance_and_ignore_unlabelled_points() -> None:
    points = np.array([[0, 0, 0], [1, 2, 3], [5, 5, 5], [4, 6, 5], [9, 9, 9.0]])
    boxes, ids = boxes_from_instances(points, np.array([7, 7, 2, 2, -1]))
    np.testing.assert_array_equal(ids, [2, 7])
    np.testing.assert_allclose(boxes, [[4.5, 5.5, 5, 1, 1, 0], [0.5, 1, 1.5, 1, 2, 3]])


def write_binary_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """A ScanNet-like binary PLY: float x y z, uchar red green blue alpha, then one face."""
    header = (
        f"ply\nformat binary_little_endian 1.0\ncomment test\nelement vertex {len(xyz)}\nproperty float x\n"
        "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
        "property uchar alpha\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vertices = np.zeros(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + [(c, "u1") for c in "rgba"])
    for axis, column in zip("xyz", xyz.T):
        vertices[axis] = column
    for channel, column in zip("rgb", rgb.T):
        vertices[channel] = column
    path.write_bytes(header.encode() + vertices.tobytes() + bytes([3]) + np.array([0, 1, 2], "<i4").tobytes())


def test_scannet_mesh_and_aggregation_give_aligned_object_boxes(tmp_path: Path) -> None:
    scan = tmp_path / SCENE
    scan.mkdir()
    xyz = np.array([[0, 0, 0], [1, 1, 1], [2, 0, 0], [2, 3, 1], [8, 8, 8]], dtype=np.float32)
    rgb = np.arange(15, dtype=np.uint8).reshape(5, 3)
    write_binary_ply(scan / f"{SCENE}_vh_clean_2.ply", xyz, rgb)
    (scan / f"{SCENE}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": [10, 10, 31, 31, 99]}))
    groups = [{"objectId": 0, "label": "chair", "segments": [10]}, {"objectId": 1, "label": "table", "segments": [31]}]
    (scan / f"{SCENE}.aggregation.json").write_text(json.dumps({"segGroups": groups}))
    read_xyz, read_rgb = read_ply_vertices(scan / f"{SCENE}_vh_clean_2.ply")
    np.testing.assert_array_equal(read_xyz, xyz)
    np.testing.assert_array_equal(read_rgb, rgb)
    objects = scannet_objects(scan, SCENE, ALIGNMENT)
    assert objects.labels.tolist() == ["chair", "table"] and objects.object_ids.tolist() == [0, 1]
    expected, _ = boxes_from_instances(transform(xyz[:4].astype(np.float64), ALIGNMENT), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(objects.boxes, expected, atol=1e-6)


def test_mask3d_pred_masks_give_proposal_boxes_over_the_mesh(tmp_path: Path) -> None:
    mesh = np.array([[0, 0, 0], [1, 2, 3], [4, 4, 4], [5, 6, 4.0]])
    masks = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    np.savez(tmp_path / "scene.npz", pred_masks=masks, pred_scores=np.array([0.9, 0.4]))
    proposals = read_proposals(tmp_path / "scene.npz", mesh)
    np.testing.assert_allclose(proposals.boxes, [[0.5, 1, 1.5, 1, 2, 3], [4.5, 5, 4, 1, 2, 0]])
    np.testing.assert_allclose(proposals.scores, [0.9, 0.4])
    with pytest.raises(ValueError, match="give the scene's mesh"):
        read_proposals(tmp_path / "scene.npz")


def test_proposals_of_the_wrong_shape_name_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "scene.npy", np.zeros((3, 7)))
    with pytest.raises(ValueError, match=str(tmp_path / "scene.npy")):
        read_proposals(tmp_path / "scene.npy")

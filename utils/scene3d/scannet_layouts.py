"""Readers of the public layouts ScanNet-style scans ship in: posed RGB-D frames and object instances.

Every frame reader returns a :class:`PosedFrames` (file paths, poses, intrinsics, axis alignment and the
count of dropped frames) that ``scripts/preprocess_scenes.py`` turns into a scene folder
(:mod:`utils.scene3d.scene_folder`). Frame names are file stems, sorted by number when they are numbers.
A frame whose pose is non-finite (ScanNet writes ``-inf`` where tracking was lost) or not a rigid
camera-to-world is dropped and counted in :attr:`PosedFrames.dropped`; any other bad input (a missing
or unparsable file) raises an error naming the file.

``posed_images`` (:func:`read_posed_images`), as EmbodiedScan's ``generate_image_scannet.py`` exports
the ``.sens`` files and Video-3D LLM, LEO and other 3D LLMs ship them::

    <posed_root>/<scene>/<frame>.jpg      colour
                         <frame>.png      depth, uint16 millimetres
                         <frame>.txt      4x4 camera-to-world
                         intrinsic.txt    4x4 colour intrinsics (K top-left)
                         depth_intrinsic.txt
    <meta_root>/<scene>/<scene>.txt       ScanNet meta; its ``axisAlignment = 16 numbers`` line is the
                                          row-major world-to-aligned matrix (test scans lack it: identity)

``scannet`` (:func:`read_scannet_export`), ScanNet's SensReader export inside the scan folder::

    <scans_root>/<scene>/color/<i>.jpg, depth/<i>.png, pose/<i>.txt, <scene>.txt,
                         intrinsic/intrinsic_color.txt, intrinsic/intrinsic_depth.txt

``embodiedscan`` (:func:`read_embodiedscan_infos`, :func:`read_embodiedscan_scene`): an info file, pickle
(``.pkl``) or JSON, holding ``{"data_list": [scene, ...]}`` (or the list itself). Keys read per scene:
``sample_idx`` (``"scannet/scene0000_00"``; the scene id is what follows the dataset name, ``/`` -> ``_``),
``images[i]["img_path"]``, ``images[i]["depth_path"]`` (relative to the data root), ``images[i]["cam2global"]``
(4x4), ``cam2img`` (4x4 or 3x3; else every image's ``cam2img``, which must then agree), ``depth_cam2img``
(default: ``cam2img``) and ``axis_align_matrix`` (default: identity), as EmbodiedScan's own loader reads
them. Depth is millimetres, quarter-millimetres for ``matterport3d`` scenes (EmbodiedScan's
``depth_shift``). Not read: ``metainfo``, ``instances`` (9-DoF boxes), ``visible_instance_ids``.

``gpt4scene``: GPT4Scene's released image folders (``<scene>/<frame>.jpg``) hold frames only, with no
depth, pose or intrinsics. A scene folder, its BEV and its markers all need geometry, so they are refused
(:func:`refuse_gpt4scene`, which names the folder and what it lacks); preprocess the same scans from a
layout above instead.

Object instances, as boxes ``(N, 6)`` centre + size in the aligned world: :func:`boxes_from_instances`
(points and a per-point instance id), ScanNet's mesh + over-segmentation + aggregation
(:func:`read_ply_vertices`, :func:`read_scannet_instances`), and proposal files (:func:`read_proposals`:
boxes, or Mask3D-style ``pred_masks`` over the mesh vertices).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

from utils.data.image_io import read_json
from utils.scene3d.geometry import transform, valid_pose
from utils.scene3d.scene_folder import Boxes

MILLIMETRES = 1000.0
"""Depth PNG units per metre in ScanNet, 3RScan and the posed-image exports."""

MATTERPORT_DEPTH_UNITS = 4000.0
"""Depth PNG units per metre of Matterport3D frames (EmbodiedScan's ``depth_shift``)."""

PROPOSAL_LABEL = "object"
"""Label of proposals whose file names no class."""


@dataclass
class PosedFrames:
    """One scan's posed RGB-D frames as a layout lists them (paths; pixels are read by the caller).

    Attributes:
        scene_id: ``scene0000_00``.
        frame_names: ``T`` kept frame names, in time order.
        color_paths, depth_paths: ``T`` files each.
        poses: ``(T, 4, 4)`` camera-to-world, all valid.
        depth_intrinsics, color_intrinsics: ``(3, 3)`` ``K`` of the depth and colour images.
        axis_alignment: ``(4, 4)`` world-to-aligned-world.
        depth_units: depth PNG values per metre.
        frames_listed: frames the layout has before ``frame_stride``.
        frame_stride: every ``frame_stride``-th listed frame was read.
        dropped: ``{frame name: reason}`` of the read frames that were dropped.
        notes: facts about defaults taken (``"no ScanNet meta: identity axis alignment"``).
    """

    scene_id: str
    frame_names: list[str]
    color_paths: list[Path]
    depth_paths: list[Path]
    poses: np.ndarray
    depth_intrinsics: np.ndarray
    color_intrinsics: np.ndarray
    axis_alignment: np.ndarray
    depth_units: float
    frames_listed: int
    frame_stride: int
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict:
        """What was read and dropped, as ``preprocess.json`` records it."""
        reasons: dict[str, int] = {}
        for reason in self.dropped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        return {
            "scene_id": self.scene_id,
            "frames_listed": self.frames_listed,
            "frame_stride": self.frame_stride,
            "frames_read": len(self.frame_names) + len(self.dropped),
            "frames_kept": len(self.frame_names),
            "frames_dropped": len(self.dropped),
            "dropped_by_reason": reasons,
            "dropped": self.dropped,
            "notes": self.notes,
        }


def frame_sort_key(name: str) -> tuple[int, int | str]:
    """Numeric names in numeric order (``"2"`` before ``"10"``), then the rest by name."""
    return (0, int(name)) if name.isdigit() else (1, name)


def read_matrix(path: Path) -> np.ndarray:
    """``(4, 4)`` float64 matrix of a text file of 16 numbers (``inf`` / ``nan`` are kept, for the caller)."""
    if not path.is_file():
        raise FileNotFoundError(f"missing matrix file {path}")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: not a matrix of numbers ({error})") from error
    if values.size != 16:
        raise ValueError(f"{path}: expected 16 numbers (a 4x4 matrix), found {values.size}")
    return values.reshape(4, 4)


def intrinsics_3x3(matrix: np.ndarray, where: str) -> np.ndarray:
    """The ``(3, 3)`` pinhole ``K`` of a 3x3 or 4x4 intrinsics matrix; ``ValueError`` naming ``where`` if not one."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"{where}: intrinsics must be 3x3 or 4x4, got {matrix.shape}")
    k = matrix[:3, :3]
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
        raise ValueError(f"{where}: not pinhole intrinsics (fx, fy > 0, last row 0 0 1):\n{k}")
    return k


def read_axis_alignment(meta_path: Path) -> np.ndarray:
    """``(4, 4)`` world-to-aligned matrix of a ScanNet meta file's ``axisAlignment`` line (identity without one)."""
    if not meta_path.is_file():
        raise FileNotFoundError(f"missing ScanNet meta file {meta_path}")
    for line in meta_path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() != "axisAlignment":
            continue
        try:
            matrix = np.array(value.split(), dtype=np.float64)
        except ValueError as error:
            raise ValueError(f"{meta_path}: axisAlignment is not numbers ({error})") from error
        if matrix.size != 16 or not np.isfinite(matrix).all():
            raise ValueError(f"{meta_path}: axisAlignment needs 16 finite numbers, found {matrix.size}")
        matrix = matrix.reshape(4, 4)
        if not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise ValueError(f"{meta_path}: axisAlignment's last row must be 0 0 0 1, got {matrix[3]}")
        return matrix
    return np.eye(4)


def pose_problem(pose: np.ndarray) -> str | None:
    """Why a camera-to-world pose cannot be used (the reason counted in reports), or ``None`` if it can."""
    if not np.isfinite(pose).all():
        return "non-finite pose (lost tracking)"
    if not valid_pose(pose):
        return "not a rigid camera-to-world pose"
    return None


def _posed_frames(
    scene_id: str,
    names: list[str],
    color_paths: list[Path],
    depth_paths: list[Path],
    read_pose: Callable[[int], np.ndarray],
    depth_intrinsics: np.ndarray,
    color_intrinsics: np.ndarray,
    axis_alignment: np.ndarray,
    depth_units: float,
    frame_stride: int,
    notes: list[str],
) -> PosedFrames:
    """Every ``frame_stride``-th frame with a valid pose (``read_pose(i)`` of frame ``i``), the others dropped with
    their reasons; the kept frames' files must exist."""
    if frame_stride < 1:
        raise ValueError(f"{scene_id}: frame_stride must be >= 1, got {frame_stride}")
    kept, poses, dropped = [], [], {}
    for index in range(0, len(names), frame_stride):
        pose = read_pose(index)
        problem = pose_problem(pose)
        if problem is not None:
            dropped[names[index]] = problem
            continue
        for path in (color_paths[index], depth_paths[index]):
            if not path.is_file():
                raise FileNotFoundError(f"{scene_id}: missing file {path} of frame {names[index]}")
        kept.append(index)
        poses.append(pose)
    if not kept:
        raise ValueError(f"{scene_id}: none of {len(names)} frames (stride {frame_stride}) has a valid pose")
    return PosedFrames(
        scene_id,
        [names[i] for i in kept],
        [color_paths[i] for i in kept],
        [depth_paths[i] for i in kept],
        np.stack(poses),
        depth_intrinsics,
        color_intrinsics,
        axis_alignment,
        depth_units,
        len(names),
        frame_stride,
        dropped,
        notes,
    )


def _frames_from_files(
    scene_id: str,
    names: list[str],
    color_paths: list[Path],
    depth_paths: list[Path],
    pose_paths: list[Path],
    depth_intrinsics: np.ndarray,
    color_intrinsics: np.ndarray,
    axis_alignment: np.ndarray,
    frame_stride: int,
    notes: list[str],
) -> PosedFrames:
    """:func:`_posed_frames` of a layout with one pose text file per frame and millimetre depth PNGs."""
    return _posed_frames(
        scene_id,
        names,
        color_paths,
        depth_paths,
        lambda i: read_matrix(pose_paths[i]),
        depth_intrinsics,
        color_intrinsics,
        axis_alignment,
        MILLIMETRES,
        frame_stride,
        notes,
    )


def _meta_axis_alignment(scene_id: str, meta_root: Path | None, notes: list[str]) -> np.ndarray:
    if meta_root is None:
        notes.append("no ScanNet meta root given: identity axis alignment")
        return np.eye(4)
    return read_axis_alignment(meta_root / scene_id / f"{scene_id}.txt")


def read_posed_images(
    posed_root: str | Path, scene_id: str, meta_root: str | Path | None = None, frame_stride: int = 1
) -> PosedFrames:
    """The frames of ``<posed_root>/<scene_id>/`` (posed-images layout, see the module docstring).

    ``meta_root`` is the ScanNet ``scans`` folder holding ``<scene_id>/<scene_id>.txt`` (the axis alignment);
    without it the alignment is the identity and the report says so.
    """
    folder = Path(posed_root) / scene_id
    if not folder.is_dir():
        raise FileNotFoundError(f"{scene_id}: missing posed-images folder {folder}")
    names = sorted((path.stem for path in folder.glob("*.jpg")), key=frame_sort_key)
    if not names:
        raise FileNotFoundError(f"{scene_id}: no <frame>.jpg in {folder}")
    notes: list[str] = []
    return _frames_from_files(
        scene_id,
        names,
        [folder / f"{name}.jpg" for name in names],
        [folder / f"{name}.png" for name in names],
        [folder / f"{name}.txt" for name in names],
        intrinsics_3x3(read_matrix(folder / "depth_intrinsic.txt"), str(folder / "depth_intrinsic.txt")),
        intrinsics_3x3(read_matrix(folder / "intrinsic.txt"), str(folder / "intrinsic.txt")),
        _meta_axis_alignment(scene_id, None if meta_root is None else Path(meta_root), notes),
        frame_stride,
        notes,
    )


def read_scannet_export(scans_root: str | Path, scene_id: str, frame_stride: int = 1) -> PosedFrames:
    """The frames of ScanNet's SensReader export in ``<scans_root>/<scene_id>/`` (see the module docstring)."""
    folder = Path(scans_root) / scene_id
    color_folder = folder / "color"
    if not color_folder.is_dir():
        raise FileNotFoundError(f"{scene_id}: missing {color_folder} (export the .sens file with SensReader)")
    names = sorted((path.stem for path in color_folder.glob("*.jpg")), key=frame_sort_key)
    if not names:
        raise FileNotFoundError(f"{scene_id}: no <frame>.jpg in {color_folder}")
    depth_file = folder / "intrinsic" / "intrinsic_depth.txt"
    color_file = folder / "intrinsic" / "intrinsic_color.txt"
    return _frames_from_files(
        scene_id,
        names,
        [color_folder / f"{name}.jpg" for name in names],
        [folder / "depth" / f"{name}.png" for name in names],
        [folder / "pose" / f"{name}.txt" for name in names],
        intrinsics_3x3(read_matrix(depth_file), str(depth_file)),
        intrinsics_3x3(read_matrix(color_file), str(color_file)),
        read_axis_alignment(folder / f"{scene_id}.txt"),
        frame_stride,
        [],
    )


def embodiedscan_scene_id(sample_idx: str) -> str:
    """``"scannet/scene0000_00"`` -> ``"scene0000_00"``; ``"matterport3d/<building>/<region>"`` ->
    ``"<building>_<region>"``."""
    parts = sample_idx.split("/")
    return "_".join(parts[1:]) if len(parts) > 1 else sample_idx


def read_embodiedscan_infos(info_path: str | Path) -> dict[str, dict]:
    """``{scene id: scene entry}`` of an EmbodiedScan-style info file (``.pkl`` or ``.json``).

    The pickle is unpickled: read only info files from a source you trust.
    """
    info_path = Path(info_path)
    if not info_path.is_file():
        raise FileNotFoundError(f"missing EmbodiedScan info file {info_path}")
    if info_path.suffix == ".pkl":
        with info_path.open("rb") as handle:
            infos = pickle.load(handle)
    elif info_path.suffix == ".json":
        infos = read_json(info_path)
    else:
        raise ValueError(f"{info_path}: an EmbodiedScan info file is .pkl or .json")
    entries = infos.get("data_list") if isinstance(infos, dict) else infos
    if not isinstance(entries, list):
        raise ValueError(f"{info_path}: expected {{'data_list': [...]}} or a list of scene entries")
    scenes = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "sample_idx" not in entry or "images" not in entry:
            raise ValueError(f"{info_path}: entry {position} has no 'sample_idx' / 'images'")
        scenes[embodiedscan_scene_id(str(entry["sample_idx"]))] = entry
    return scenes


def _scene_intrinsics(entry: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(depth K, colour K)`` of an EmbodiedScan scene entry, both ``(3, 3)``."""
    if "cam2img" in entry:
        color = intrinsics_3x3(entry["cam2img"], f"{where} cam2img")
    else:
        per_image = [np.asarray(image.get("cam2img", np.nan), dtype=np.float64) for image in entry["images"]]
        if not per_image or any(k.shape != per_image[0].shape or not np.allclose(k, per_image[0]) for k in per_image):
            raise ValueError(f"{where}: no scene 'cam2img' and the images' cam2img are missing or differ")
        color = intrinsics_3x3(per_image[0], f"{where} images' cam2img")
    depth = intrinsics_3x3(entry["depth_cam2img"], f"{where} depth_cam2img") if "depth_cam2img" in entry else color
    return depth, color


def read_embodiedscan_scene(entry: dict, data_root: str | Path, frame_stride: int = 1) -> PosedFrames:
    """The frames of one EmbodiedScan scene entry (keys in the module docstring); paths under ``data_root``."""
    sample_idx = str(entry["sample_idx"])
    scene_id = embodiedscan_scene_id(sample_idx)
    data_root = Path(data_root)
    images = entry["images"]
    if not images:
        raise ValueError(f"{sample_idx}: no images")
    missing = sorted({key for image in images for key in ("img_path", "depth_path", "cam2global") if key not in image})
    if missing:
        raise ValueError(f"{sample_idx}: images lack {missing}")
    names = [Path(image["img_path"]).stem for image in images]
    color_paths = [data_root / image["img_path"] for image in images]
    depth_paths = [data_root / image["depth_path"] for image in images]
    depth_k, color_k = _scene_intrinsics(entry, sample_idx)
    notes = []
    if "axis_align_matrix" in entry:
        axis_alignment = np.asarray(entry["axis_align_matrix"], dtype=np.float64)
        if axis_alignment.shape != (4, 4) or not np.isfinite(axis_alignment).all():
            raise ValueError(f"{sample_idx}: axis_align_matrix must be a finite 4x4, got {axis_alignment.shape}")
    else:
        axis_alignment = np.eye(4)
        notes.append("no axis_align_matrix: identity axis alignment")

    def read_pose(index: int) -> np.ndarray:
        pose = np.asarray(images[index]["cam2global"], dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"{sample_idx}: cam2global of {images[index]['img_path']} is {pose.shape}, not 4x4")
        return pose

    units = MATTERPORT_DEPTH_UNITS if sample_idx.startswith("matterport3d/") else MILLIMETRES
    return _posed_frames(
        scene_id,
        names,
        color_paths,
        depth_paths,
        read_pose,
        depth_k,
        color_k,
        axis_alignment,
        units,
        frame_stride,
        notes,
    )


def refuse_gpt4scene(scene_folder: str | Path) -> NoReturn:
    """Raise ``ValueError`` naming a GPT4Scene image folder, its frame count and why no scene folder is made."""
    scene_folder = Path(scene_folder)
    if not scene_folder.is_dir():
        raise FileNotFoundError(f"missing GPT4Scene image folder {scene_folder}")
    frames = [path for path in scene_folder.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png")]
    raise ValueError(
        f"{scene_folder}: a GPT4Scene image folder ({len(frames)} frames) has no depth, camera poses or "
        "intrinsics, so no scene folder, BEV or object markers can be made from it; preprocess the same "
        "scans from ScanNet posed images (--layout posed_images) or the ScanNet export (--layout scannet)"
    )


def read_depth_png(path: Path, units_per_metre: float) -> np.ndarray:
    """``(h, w)`` float32 z-depth in metres of a 16-bit depth PNG (0 = invalid)."""
    if not path.is_file():
        raise FileNotFoundError(f"missing depth image {path}")
    with Image.open(path) as image:
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: depth must be a 16-bit PNG, got mode {image.mode}")
        values = np.asarray(image)
    return values.astype(np.float32) / units_per_metre


def boxes_from_instances(points: np.ndarray, instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds of each instance's points.

    Args:
        points: ``(P, 3)`` points (in the frame the boxes should be in: the aligned world).
        instance_ids: ``(P,)`` integer instance of each point; negative ids (unlabelled) are ignored.
    Returns:
        ``(boxes (N, 6) float32 centre + size, ids (N,) int64)``, one per instance id, ids ascending.
    """
    points = np.asarray(points, dtype=np.float64)
    instance_ids = np.asarray(instance_ids).astype(np.int64)
    if points.ndim != 2 or points.shape[1] != 3 or instance_ids.shape != (len(points),):
        raise ValueError(f"points must be (P, 3) with (P,) instance ids, got {points.shape} and {instance_ids.shape}")
    labelled = instance_ids >= 0
    ids, points = instance_ids[labelled], points[labelled]
    if not len(ids):
        return np.zeros((0, 6), dtype=np.float32), np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids, points = ids[order], points[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    lower = np.minimum.reduceat(points, starts, axis=0)
    upper = np.maximum.reduceat(points, starts, axis=0)
    boxes = np.concatenate([(lower + upper) / 2, upper - lower], axis=1)
    return boxes.astype(np.float32), ids[starts]


_PLY_TYPES = {
    name: code
    for names, code in (
        ("char int8", "i1"),
        ("uchar uint8", "u1"),
        ("short int16", "i2"),
        ("ushort uint16", "u2"),
        ("int int32", "i4"),
        ("uint uint32", "u4"),
        ("float float32", "f4"),
        ("double float64", "f8"),
    )
    for name in names.split()
}
"""PLY scalar property types -> numpy type codes."""


def read_ply_vertices(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices of a PLY mesh or point cloud (binary little-endian or ASCII; the vertex element first, as
    ScanNet's ``_vh_clean_2.ply``): ``(xyz (P, 3) float64, rgb (P, 3) uint8 or None)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing PLY file {path}")
    with path.open("rb") as handle:
        if handle.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file")
        fmt, count, properties, element = None, None, [], None
        while True:
            line = handle.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header")
            words = line.decode("ascii", errors="replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                element = words[1]
                if element == "vertex":
                    count = int(words[2])
                elif count is None:
                    raise ValueError(f"{path}: the vertex element must come first in the PLY")
            elif words[0] == "property" and element == "vertex":
                if words[1] == "list" or words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unsupported vertex property {' '.join(words[1:])}")
                properties.append((words[2], _PLY_TYPES[words[1]]))
        if count is None:
            raise ValueError(f"{path}: PLY has no vertex element")
        names = [name for name, _ in properties]
        if fmt == "binary_little_endian":
            dtype = np.dtype([(name, "<" + kind) for name, kind in properties])
            raw = handle.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise ValueError(f"{path}: PLY is truncated (fewer than {count} vertices)")
            vertices = np.frombuffer(raw, dtype=dtype)
            columns = {name: vertices[name] for name in names}
        elif fmt == "ascii":
            table = np.loadtxt(handle, max_rows=count, ndmin=2)
            if table.shape != (count, len(names)):
                raise ValueError(f"{path}: expected {count} vertices of {len(names)} values, got {table.shape}")
            columns = {name: table[:, column] for column, name in enumerate(names)}
        else:
            raise ValueError(f"{path}: unsupported PLY format {fmt} (binary_little_endian or ascii)")
    if not {"x", "y", "z"} <= columns.keys():
        raise ValueError(f"{path}: vertices lack x, y, z")
    xyz = np.stack([columns[axis] for axis in "xyz"], axis=1).astype(np.float64)
    rgb = None
    if {"red", "green", "blue"} <= columns.keys():
        rgb = np.stack([columns[channel] for channel in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return xyz, rgb


def scannet_mesh_path(scan_folder: Path, scene_id: str) -> Path:
    """``<scan_folder>/<scene_id>_vh_clean_2.ply``, the mesh ScanNet's instances and Mask3D's masks index."""
    return scan_folder / f"{scene_id}_vh_clean_2.ply"


def read_scannet_instances(scan_folder: str | Path, scene_id: str) -> tuple[np.ndarray, dict[int, str]]:
    """Per-vertex instance ids of ScanNet's ``_vh_clean_2`` mesh and each instance's label.

    Reads ``<scene>_vh_clean_2.0.010000.segs.json`` (``segIndices``: the segment of each vertex) and
    ``<scene>.aggregation.json`` (or ``<scene>_vh_clean.aggregation.json``; ``segGroups``: ``objectId``,
    ``label``, ``segments``). Returns ``(ids (P,) int64, -1 where no instance; {objectId: label})``; the
    ``objectId`` s are the ones ScanRefer's ``object_id`` names.
    """
    scan_folder = Path(scan_folder)
    segments = np.asarray(read_json(scan_folder / f"{scene_id}_vh_clean_2.0.010000.segs.json")["segIndices"])
    candidates = [scan_folder / f"{scene_id}.aggregation.json", scan_folder / f"{scene_id}_vh_clean.aggregation.json"]
    aggregation_path = next((path for path in candidates if path.is_file()), candidates[0])
    groups = read_json(aggregation_path)["segGroups"]
    labels = {int(group["objectId"]): str(group["label"]) for group in groups}
    if not groups:
        return np.full(len(segments), -1, dtype=np.int64), labels
    group_segments = np.concatenate([np.asarray(group["segments"], dtype=np.int64) for group in groups])
    group_objects = np.concatenate(
        [np.full(len(group["segments"]), int(group["objectId"]), dtype=np.int64) for group in groups]
    )
    order = np.argsort(group_segments)
    keys, values = group_segments[order], group_objects[order]
    if (keys[1:] == keys[:-1]).any():
        raise ValueError(f"{aggregation_path}: a segment belongs to two objects")
    slots = np.clip(np.searchsorted(keys, segments), 0, len(keys) - 1)
    return np.where(keys[slots] == segments, values[slots], -1), labels


def read_proposals(path: str | Path, mesh_points: np.ndarray | None = None) -> Boxes:
    """Object proposals of one scene; proposal ``k`` (``<OBJ{k:03d}>``) is row ``k`` of the file.

    Accepted files:

    - ``.npy``: boxes ``(N, 6)`` centre + size in the aligned world.
    - ``.npz`` with ``boxes`` ``(N, 6)`` (optional ``labels`` ``(N,)`` and ``scores`` ``(N,)``).
    - ``.npz`` with Mask3D-style ``pred_masks`` ``(P, N)`` over the mesh vertices ``mesh_points`` ``(P, 3)``
      (aligned world; optional ``pred_scores`` ``(N,)``): a proposal's box bounds its mask's vertices.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing proposals file {path}")
    labels, scores = None, None
    if path.suffix == ".npy":
        boxes = np.load(path, allow_pickle=False)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "boxes" in data:
                boxes = data["boxes"]
                labels = data["labels"].astype(str) if "labels" in data else None
                scores = data["scores"] if "scores" in data else None
            elif "pred_masks" in data:
                boxes = _boxes_from_masks(np.asarray(data["pred_masks"]), mesh_points, path)
                scores = data["pred_scores"] if "pred_scores" in data else None
            else:
                raise ValueError(f"{path}: proposals .npz needs 'boxes' or 'pred_masks', has {sorted(data.files)}")
    else:
        raise ValueError(f"{path}: proposals are a .npy or .npz file")
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 6:
        raise ValueError(f"{path}: boxes must be (N, 6) centre + size, got {boxes.shape}")
    labels = np.full(len(boxes), PROPOSAL_LABEL) if labels is None else labels
    return Boxes(boxes, labels, None if scores is None else np.asarray(scores, dtype=np.float32))


def _boxes_from_masks(masks: np.ndarray, mesh_points: np.ndarray | None, path: Path) -> np.ndarray:
    """``(N, 6)`` boxes of ``(P, N)`` vertex masks."""
    if mesh_points is None:
        raise ValueError(f"{path}: pred_masks index mesh vertices; give the scene's mesh (ScanNet scans root)")
    if masks.ndim != 2 or masks.shape[0] != len(mesh_points):
        raise ValueError(f"{path}: pred_masks must be (P={len(mesh_points)} vertices, N), got {masks.shape}")
    masks = masks.astype(bool)
    empty = np.flatnonzero(~masks.any(axis=0))
    if len(empty):
        raise ValueError(f"{path}: pred_masks {empty[:5].tolist()} select no vertex")
    boxes = []
    for column in masks.T:  # one box per proposal; each mask is vectorised over its points
        inside = mesh_points[column]
        lower, upper = inside.min(axis=0), inside.max(axis=0)
        boxes.append(np.concatenate([(lower + upper) / 2, upper - lower]))
    return np.stack(boxes) if boxes else np.zeros((0, 6))


def scannet_objects(scan_folder: str | Path, scene_id: str, axis_alignment: np.ndarray) -> Boxes:
    """Ground-truth objects of a ScanNet scan: each aggregated instance's box in the aligned world, its label and
    its ``objectId``."""
    scan_folder = Path(scan_folder)
    points, _ = read_ply_vertices(scannet_mesh_path(scan_folder, scene_id))
    instance_ids, labels = read_scannet_instances(scan_folder, scene_id)
    if len(instance_ids) != len(points):
        raise ValueError(f"{scan_folder}: {len(instance_ids)} segIndices for {len(points)} mesh vertices")
    boxes, ids = boxes_from_instances(transform(points, axis_alignment), instance_ids)
    return Boxes(boxes, np.array([labels[int(i)] for i in ids], dtype=str), None, ids)

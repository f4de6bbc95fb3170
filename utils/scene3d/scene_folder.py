"""The scene folder: one preprocessed 3D scan as every 3D dataset, benchmark and the demo read it.

``scripts/preprocess_scenes.py`` writes it from the public layouts (ScanNet posed images, the raw ScanNet
export, EmbodiedScan / Video-3D LLM info files; GPT4Scene's frames-only image folders carry no depth or
poses and are refused with that reason); the synthetic rooms write it directly::

    <root>/<scene_id>/
        color/<frame>.jpg        RGB frames, in time order
        depth/<frame>.png        uint16 z-depth in millimetres, 0 = invalid
        scene.npz                frame_names (T,), timestamps (T,) s, poses (T, 4, 4) camera-to-world,
                                 depth_intrinsics (3, 3), color_intrinsics (3, 3), axis_alignment (4, 4)
        proposals.npz            boxes (N, 6) centre + size in the aligned world, labels (N,), scores (N,)
        objects.npz              (optional) ground-truth instances: boxes (M, 6), labels (M,), object_ids (M,)
        bev.png, bev_plain.png   (preprocessing) the top-down render with and without proposal markers
        bev.json                 (preprocessing) its world-to-pixel transform and each marker's id, box and pixel
        frame_markers.npz        (preprocessing) each proposal's marker position on each frame, NaN where hidden
        preprocess.json          (preprocessing) frames read, kept and dropped (with reasons)

Only frames with valid poses are written (:func:`~utils.scene3d.geometry.valid_pose`); the preprocessing
counts the dropped ones. Proposal ``k`` is ``<OBJ{k:03d}>`` in text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from utils.data.image_io import read_rgb
from utils.data.schema import SceneGeometry
from utils.scene3d.geometry import valid_pose

DEPTH_SCALE = 1000.0
"""Depth PNG units per metre (ScanNet: millimetres)."""


@dataclass
class Boxes:
    """Axis-aligned 3D boxes in the aligned world: ``boxes`` ``(N, 6)`` centre + size, ``labels`` ``(N,)`` class
    names, ``scores`` ``(N,)`` (proposals) and ``object_ids`` ``(N,)`` (ground truth, the scan's instance ids)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    object_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class Scene:
    """A scene folder's metadata; frames and depth are read on demand.

    Attributes:
        scene_id: the folder's name (``scene0000_00``).
        folder: the scene folder.
        frame_names: ``T`` frame names (file stems), in time order.
        timestamps: ``(T,)`` seconds.
        poses: ``(T, 4, 4)`` camera-to-world.
        depth_intrinsics, color_intrinsics: ``(3, 3)``.
        axis_alignment: ``(4, 4)`` world-to-aligned-world.
        proposals: the object proposals (``<OBJ###>`` ids are their indices).
        objects: ground-truth instances, or ``None``.
    """

    scene_id: str
    folder: Path
    frame_names: list[str]
    timestamps: np.ndarray
    poses: np.ndarray
    depth_intrinsics: np.ndarray
    color_intrinsics: np.ndarray
    axis_alignment: np.ndarray
    proposals: Boxes
    objects: Boxes | None

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    def read_colors(self, indices: list[int]) -> np.ndarray:
        """``(T', H, W, 3)`` uint8 RGB of frames ``indices``."""
        return np.stack(
            [
                read_rgb(self.folder / "color" / f"{self.frame_names[i]}.jpg", self.scene_id, kind="frame")
                for i in indices
            ]
        )

    def read_depths(self, indices: list[int]) -> np.ndarray:
        """``(T', h, w)`` float32 z-depth in metres of frames ``indices`` (0 = invalid)."""
        depths = []
        for i in indices:
            path = self.folder / "depth" / f"{self.frame_names[i]}.png"
            if not path.is_file():
                raise FileNotFoundError(f"{self.scene_id}: missing depth frame {path}")
            with Image.open(path) as image:
                depths.append(np.asarray(image, dtype=np.float32) / DEPTH_SCALE)
        return np.stack(depths)

    def geometry(self, indices: list[int]) -> SceneGeometry:
        """The :class:`SceneGeometry` of frames ``indices`` (what 3D encoders read)."""
        return SceneGeometry(self.read_depths(indices), self.depth_intrinsics, self.poses[indices], self.axis_alignment)


def _boxes(path: Path, ground_truth: bool) -> Boxes:
    with np.load(path, allow_pickle=False) as data:
        boxes = np.asarray(data["boxes"], dtype=np.float32).reshape(-1, 6)
        labels = np.asarray(data["labels"]).astype(str)
        scores = np.asarray(data["scores"], dtype=np.float32) if "scores" in data else None
        ids = np.asarray(data["object_ids"], dtype=np.int64) if "object_ids" in data else None
    if len(labels) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(f"{path}: {len(boxes)} boxes but {len(labels)} labels / scores")
    if ground_truth and (ids is None or len(ids) != len(boxes)):
        raise ValueError(f"{path}: ground-truth objects need one object_id per box")
    if (boxes[:, 3:] < 0).any() or not np.isfinite(boxes).all():
        raise ValueError(f"{path}: boxes must be finite with non-negative sizes")
    return Boxes(boxes, labels, scores, ids)


def read_scene(folder: str | Path) -> Scene:
    """The scene folder's metadata (see the module docstring); errors name the folder and the file."""
    folder = Path(folder)
    meta_path = folder / "scene.npz"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a scene folder (no scene.npz); make it with scripts/preprocess_scenes.py"
        )
    with np.load(meta_path, allow_pickle=False) as meta:
        names = [str(name) for name in meta["frame_names"]]
        poses = np.asarray(meta["poses"], dtype=np.float64)
        scene = Scene(
            folder.name,
            folder,
            names,
            np.asarray(meta["timestamps"], dtype=np.float64),
            poses,
            np.asarray(meta["depth_intrinsics"], dtype=np.float64),
            np.asarray(meta["color_intrinsics"], dtype=np.float64),
            np.asarray(meta["axis_alignment"], dtype=np.float64),
            _boxes(folder / "proposals.npz", ground_truth=False),
            _boxes(folder / "objects.npz", ground_truth=True) if (folder / "objects.npz").is_file() else None,
        )
    if not names or poses.shape != (len(names), 4, 4) or scene.timestamps.shape != (len(names),):
        raise ValueError(
            f"{meta_path}: {len(names)} frame names, poses {poses.shape}, timestamps {scene.timestamps.shape}"
        )
    bad = [name for name, pose in zip(names, poses) if not valid_pose(pose)]
    if bad:
        raise ValueError(f"{meta_path}: invalid poses for frames {bad[:5]} ({len(bad)}); preprocessing drops them")
    return scene


def write_scene(
    folder: str | Path,
    frame_names: list[str],
    colors: Sequence[np.ndarray],
    depths: Sequence[np.ndarray],
    poses: np.ndarray,
    depth_intrinsics: np.ndarray,
    color_intrinsics: np.ndarray,
    proposals: Boxes,
    axis_alignment: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
    objects: Boxes | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write a scene folder.

    ``colors`` ``(T, H, W, 3)`` uint8 and ``depths`` ``(T, h, w)`` metres (0 invalid) are arrays or any sequences of
    frames (read one at a time); ``poses`` ``(T, 4, 4)`` valid camera-to-world (invalid frames must be dropped
    before); ``timestamps`` default ``frame index / 30``.
    """
    folder = Path(folder)
    num_frames = len(frame_names)
    if not (len(colors) == len(depths) == len(poses) == num_frames):
        raise ValueError(
            f"{folder}: {num_frames} names, {len(colors)} colours, {len(depths)} depths, {len(poses)} poses"
        )
    bad = [name for name, pose in zip(frame_names, poses) if not valid_pose(pose)]
    if bad:
        raise ValueError(f"{folder}: invalid poses for frames {bad[:5]}; drop them before writing")
    (folder / "color").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(exist_ok=True)
    for name, color, depth in zip(frame_names, colors, depths):
        Image.fromarray(color).save(folder / "color" / f"{name}.jpg", quality=jpeg_quality)
        millimetres = np.clip(np.rint(np.nan_to_num(depth) * DEPTH_SCALE), 0, 65535).astype(np.uint16)
        Image.fromarray(millimetres).save(folder / "depth" / f"{name}.png")
    np.savez(
        folder / "scene.npz",
        frame_names=np.array(frame_names),
        timestamps=np.arange(num_frames) / 30.0 if timestamps is None else np.asarray(timestamps, dtype=np.float64),
        poses=np.asarray(poses, dtype=np.float64),
        depth_intrinsics=np.asarray(depth_intrinsics, dtype=np.float64),
        color_intrinsics=np.asarray(color_intrinsics, dtype=np.float64),
        axis_alignment=np.eye(4) if axis_alignment is None else np.asarray(axis_alignment, dtype=np.float64),
    )
    _write_boxes(folder / "proposals.npz", proposals)
    if objects is not None:
        _write_boxes(folder / "objects.npz", objects)
    return folder


def _write_boxes(path: Path, boxes: Boxes) -> None:
    arrays = {
        "boxes": np.asarray(boxes.boxes, dtype=np.float32).reshape(-1, 6),
        "labels": np.asarray(boxes.labels, dtype=str),
    }
    if boxes.scores is not None:
        arrays["scores"] = np.asarray(boxes.scores, dtype=np.float32)
    if boxes.object_ids is not None:
        arrays["object_ids"] = np.asarray(boxes.object_ids, dtype=np.int64)
    np.savez(path, **arrays)

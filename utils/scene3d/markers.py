"""Numbered object markers, GPT4Scene style: proposal ``k`` is drawn as the number ``k`` in a filled circle, at
its box centre on the BEV and on every frame that sees it, so ``<OBJ012>`` in text is one marker everywhere.

Where a box shows on a frame (:func:`frame_markers`): points on the box's six faces
(``face_samples`` x ``face_samples`` each) are projected into the frame. A sample counts when it lands in
the colour image, at least ``min_depth`` in front of the camera, and is not hidden behind the frame's
depth: the depth image has a valid value ``d`` at its pixel and its own depth ``z <= d + depth_tolerance``.
The box is on the frame when more than ``min_visible_fraction`` of its samples count, and its marker goes
at the mean pixel of the counted samples. Frames are handled one at a time; boxes and samples are
vectorised. A marker's colour is the id's entry of the PASCAL VOC palette (:func:`marker_colour`), the
same on the BEV and on the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.data.palette import davis_palette
from utils.scene3d.bev import BEVRender
from utils.scene3d.geometry import project_points
from utils.scene3d.scene_folder import Scene

PALETTE = np.array(davis_palette(), dtype=np.uint8).reshape(256, 3)
"""Marker fills: the PASCAL VOC colour map (entry 0, black, unused)."""


@dataclass(frozen=True)
class MarkerConfig:
    """Visibility test and drawing of markers (see the module docstring).

    Attributes:
        face_samples: samples per box-face edge (``6 * face_samples**2`` samples per box).
        min_visible_fraction: a box is on a frame when more than this fraction of its samples count.
        depth_tolerance: metres a sample may lie behind the frame's depth and still count.
        min_depth: metres in front of the camera a sample must be.
        radius_fraction: marker radius as a fraction of the image's shorter side ...
        min_radius: ... but at least this many pixels.
    """

    face_samples: int = 6
    min_visible_fraction: float = 0.1
    depth_tolerance: float = 0.1
    min_depth: float = 0.1
    radius_fraction: float = 0.022
    min_radius: int = 7

    def __post_init__(self) -> None:
        if self.face_samples < 2:
            raise ValueError(f"MarkerConfig: face_samples must be >= 2, got {self.face_samples}")
        if not 0 <= self.min_visible_fraction < 1:
            raise ValueError(f"MarkerConfig: min_visible_fraction must be in [0, 1), got {self.min_visible_fraction}")


@dataclass
class FrameMarkers:
    """Where each proposal's marker sits on each frame.

    Attributes:
        positions: ``(T, N, 2)`` float pixel ``(u, v)`` in the colour frame, NaN where the box is not shown.
        visible_fraction: ``(T, N)`` fraction of the box's samples that count.
    """

    positions: np.ndarray
    visible_fraction: np.ndarray

    @property
    def shown(self) -> np.ndarray:
        """``(T, N)`` bool: the marker is drawn on the frame."""
        return np.isfinite(self.positions[..., 0])


def box_surface_samples(boxes: np.ndarray, face_samples: int) -> np.ndarray:
    """``(N, S, 3)`` points on the faces of ``(N, 6)`` centre + size boxes, ``S = 6 * face_samples**2``."""
    grid = np.linspace(-0.5, 0.5, face_samples)
    a, b = (axis.ravel() for axis in np.meshgrid(grid, grid, indexing="ij"))
    faces = []
    for axis in range(3):
        others = [other for other in range(3) if other != axis]
        for side in (-0.5, 0.5):
            face = np.empty((len(a), 3))
            face[:, axis], face[:, others[0]], face[:, others[1]] = side, a, b
            faces.append(face)
    unit = np.concatenate(faces)  # (S, 3) on the unit cube's surface
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    return boxes[:, None, :3] + boxes[:, None, 3:] * unit[None]


def frame_markers(
    boxes: np.ndarray,
    depths: np.ndarray,
    poses: np.ndarray,
    depth_intrinsics: np.ndarray,
    color_intrinsics: np.ndarray,
    color_size: tuple[int, int],
    axis_alignment: np.ndarray | None = None,
    config: MarkerConfig = MarkerConfig(),
) -> FrameMarkers:
    """Marker positions of ``(N, 6)`` aligned-world boxes on ``T`` posed frames.

    Args:
        boxes: ``(N, 6)`` centre + size.
        depths: ``(T, h, w)`` z-depth in metres, 0 invalid.
        poses: ``(T, 4, 4)`` camera-to-world.
        depth_intrinsics, color_intrinsics: ``(3, 3)``.
        color_size: ``(H, W)`` of the colour frames the markers are drawn on.
        axis_alignment: ``(4, 4)`` world-to-aligned-world, or ``None``.
    """
    samples = box_surface_samples(boxes, config.face_samples)
    num_boxes, num_samples = samples.shape[:2]
    flat = samples.reshape(-1, 3)
    color_height, color_width = color_size
    positions = np.full((len(depths), num_boxes, 2), np.nan)
    fractions = np.zeros((len(depths), num_boxes))
    kd, kc = depth_intrinsics, color_intrinsics
    for t, (depth, pose) in enumerate(zip(depths, poses)):
        uv_depth, z = project_points(flat, kd, pose, axis_alignment)
        # The same ray in the colour image: u_c = fx_c * (u_d - cx_d) / fx_d + cx_c.
        uv_color = np.stack(
            [
                kc[0, 0] * (uv_depth[:, 0] - kd[0, 2]) / kd[0, 0] + kc[0, 2],
                kc[1, 1] * (uv_depth[:, 1] - kd[1, 2]) / kd[1, 1] + kc[1, 2],
            ],
            axis=-1,
        )
        in_front = z >= config.min_depth
        with np.errstate(invalid="ignore"):
            in_image = (
                in_front
                & (uv_color[:, 0] > -0.5)
                & (uv_color[:, 0] < color_width - 0.5)
                & (uv_color[:, 1] > -0.5)
                & (uv_color[:, 1] < color_height - 0.5)
            )
        cols = np.where(in_front, np.rint(uv_depth[:, 0]), -1).astype(np.int64)
        rows = np.where(in_front, np.rint(uv_depth[:, 1]), -1).astype(np.int64)
        on_depth = in_image & (cols >= 0) & (cols < depth.shape[1]) & (rows >= 0) & (rows < depth.shape[0])
        observed = np.zeros(len(flat))
        observed[on_depth] = depth[rows[on_depth], cols[on_depth]]
        counts = (on_depth & (observed > 0) & (z <= observed + config.depth_tolerance)).reshape(num_boxes, num_samples)
        fractions[t] = counts.mean(axis=1)
        shown = fractions[t] > config.min_visible_fraction
        uv = uv_color.reshape(num_boxes, num_samples, 2)
        sums = np.where(counts[..., None], uv, 0).sum(axis=1)
        positions[t, shown] = sums[shown] / counts[shown].sum(axis=1, keepdims=True)
    return FrameMarkers(positions, fractions)


def bev_marker_positions(render: BEVRender, boxes: np.ndarray) -> np.ndarray:
    """``(N, 2)`` BEV pixel ``(u, v)`` of ``(N, 6)`` boxes' centres."""
    return render.to_pixels(np.asarray(boxes, dtype=np.float64).reshape(-1, 6)[:, :3])


def marker_colour(marker_id: int) -> tuple[int, int, int]:
    """RGB fill of marker ``marker_id``: the PASCAL VOC palette, skipping black (id 0 -> palette entry 1)."""
    return tuple(int(channel) for channel in PALETTE[1 + marker_id % 254])


def marker_radius(image_size: tuple[int, int], config: MarkerConfig) -> int:
    """Marker radius in pixels on an image of ``(H, W)``."""
    return max(config.min_radius, round(config.radius_fraction * min(image_size)))


def draw_markers(image: np.ndarray, positions: np.ndarray, config: MarkerConfig = MarkerConfig()) -> np.ndarray:
    """A copy of ``(H, W, 3)`` uint8 ``image`` with marker ``k`` drawn at ``positions[k]`` (``(N, 2)`` ``u, v``;
    NaN rows are skipped): a filled circle in :func:`marker_colour` with a white rim and the number ``k``."""
    canvas = np.ascontiguousarray(image).copy()
    radius = marker_radius(canvas.shape[:2], config)
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, radius // 8)
    for marker_id in np.flatnonzero(np.isfinite(positions).all(axis=1)):
        centre = tuple(int(round(c)) for c in positions[marker_id])
        fill = marker_colour(int(marker_id))
        cv2.circle(canvas, centre, radius, fill, thickness=-1, lineType=cv2.LINE_AA)
        cv2.circle(canvas, centre, radius, (255, 255, 255), thickness=max(1, radius // 6), lineType=cv2.LINE_AA)
        text = str(marker_id)
        (width, height), _ = cv2.getTextSize(text, font, 1.0, thickness)
        scale = 1.3 * radius / max(width, height)
        (width, height), _ = cv2.getTextSize(text, font, scale, thickness)
        luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
        ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        origin = (centre[0] - width // 2, centre[1] + height // 2)
        cv2.putText(canvas, text, origin, font, scale, ink, thickness, lineType=cv2.LINE_AA)
    return canvas


def mark_frames(frames: np.ndarray, markers: FrameMarkers, config: MarkerConfig = MarkerConfig()) -> np.ndarray:
    """``(T, H, W, 3)`` frames with their markers drawn (``markers`` from :func:`frame_markers` for these frames)."""
    if len(frames) != len(markers.positions):
        raise ValueError(f"mark_frames: {len(frames)} frames but markers for {len(markers.positions)}")
    return np.stack([draw_markers(frame, positions, config) for frame, positions in zip(frames, markers.positions)])


def scene_frame_markers(
    scene: Scene,
    indices: list[int],
    config: MarkerConfig = MarkerConfig(),
    color_size: tuple[int, int] | None = None,
) -> FrameMarkers:
    """Marker positions of the scene's proposals on its frames ``indices`` (reads their depth; ``color_size``
    ``(H, W)`` defaults to the first frame's)."""
    if color_size is None:
        color_size = scene.read_colors(indices[:1]).shape[1:3]
    return frame_markers(
        scene.proposals.boxes,
        scene.read_depths(indices),
        scene.poses[indices],
        scene.depth_intrinsics,
        scene.color_intrinsics,
        color_size,
        scene.axis_alignment,
        config,
    )


def mark_scene_frames(
    scene: Scene, indices: list[int], config: MarkerConfig = MarkerConfig()
) -> tuple[np.ndarray, FrameMarkers]:
    """The scene's frames ``indices`` with their proposals' markers drawn, and where each marker is."""
    frames = scene.read_colors(indices)
    markers = scene_frame_markers(scene, indices, config, frames.shape[1:3])
    return mark_frames(frames, markers, config), markers

"""Procedural rooms of labelled boxes, rendered as posed RGB-D video and written as scene folders.

A room is a floor and four walls (z up, metres, the floor's corner at the origin) holding 4 to 8
axis-aligned boxes standing on the floor, each a class (:data:`CLASS_SIZES`) and a colour (:data:`COLOURS`).
At least one class appears two or three times, and objects of one class never share a colour, so
"the red chair" names exactly one object while "the chair" may not (ScanRefer's unique / multiple split).

A camera walks once around the room along a rectangle :data:`CAMERA_MARGIN` inside the walls (outside the
objects' area), at eye height, looking at the room's centre. Each frame is ray cast (:func:`render_room`):
every pixel's ray against every box (slab test) and every room plane, vectorised over the pixels of a frame.
Faces are flat shaded by their normal under one directional light, with mild uniform colour noise. Depth is
z-depth in metres (0 where a ray hits nothing), poses are camera-to-world with OpenCV axes (x right, y down,
z forward), as in :mod:`utils.scene3d.geometry`.

Proposals imitate a 3D detector: each ground-truth box is missed with probability ``miss_rate``, the
others are jittered (centre by ``N(0, centre_noise)`` metres per axis, size by a factor
``1 + N(0, size_noise)`` per axis), ``Binomial(M, spurious_rate)`` spurious boxes are added, and the list
is shuffled (so ``<OBJ###>`` ids say nothing about the objects). Everything is a function of
``(seed, split, index)``.

On disk (:func:`write_room`): one scene folder per room, ``<root>/<scene_id>/``
(:mod:`utils.scene3d.scene_folder`), with ``objects.npz`` holding the ground truth and its ``object_ids``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.scene3d.scene_folder import Boxes, write_scene

CLASS_SIZES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "chair": ((0.45, 0.45, 0.8), (0.6, 0.6, 1.0)),
    "table": ((1.0, 0.7, 0.7), (1.5, 1.0, 0.8)),
    "bed": ((1.9, 1.4, 0.5), (2.1, 1.7, 0.65)),
    "cabinet": ((0.5, 0.4, 1.0), (0.9, 0.6, 1.8)),
    "sofa": ((1.6, 0.8, 0.75), (2.0, 1.0, 0.9)),
    "lamp": ((0.25, 0.25, 1.3), (0.4, 0.4, 1.7)),
}
"""Class -> (smallest, largest) box size ``(x, y, z)`` in metres before a random quarter turn."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 80, 220),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
    "purple": (140, 60, 170),
}
FLOOR_COLOUR = (120, 105, 90)
WALL_COLOUR = (190, 185, 170)
BACKGROUND_COLOUR = (15, 15, 15)
"""Pixels whose ray hits nothing (above the walls)."""

LIGHT = np.array([0.4, 0.6, 1.0]) / np.linalg.norm([0.4, 0.6, 1.0])
"""Direction towards the light (world)."""
AMBIENT, DIFFUSE = 0.45, 0.55

WALL_HEIGHT = 3.0
ROOM_X, ROOM_Y = (7.0, 9.0), (6.0, 8.0)
"""Ranges of the room's extent in x and y, metres."""
CAMERA_MARGIN = 0.5
"""The camera's path keeps this far from the walls."""
OBJECT_MARGIN = 1.0
"""Objects keep this far from the walls (outside them the camera walks)."""
OBJECT_GAP = 0.2
"""Smallest gap between two objects' footprints."""
EYE_HEIGHT, LOOK_AT_HEIGHT = 1.5, 0.5
MAX_PER_CLASS = 3
"""At most this many objects of one class (fewer than :data:`COLOURS`, so their colours differ)."""
MAX_PLACEMENT_TRIES = 200
"""Random positions tried per object; a layout where one fits none is drawn again."""
MAX_LAYOUTS = 50


@dataclass(frozen=True)
class RoomConfig:
    """How rooms look and how noisy their proposals are.

    Attributes:
        height, width: frame size in pixels.
        num_frames: frames of the camera's one walk around the room.
        min_objects, max_objects: ground-truth objects per room (4 to 8).
        fov_degrees: horizontal field of view.
        pixel_noise: colour noise, uniform in +-this many grey levels.
        centre_noise: proposal centre jitter, standard deviation in metres per axis.
        size_noise: proposal size jitter, standard deviation of the relative size change per axis.
        miss_rate: probability that a ground-truth object has no proposal.
        spurious_rate: expected spurious proposals per ground-truth object.
        jpeg_quality: of the colour frames written.
    """

    height: int = 96
    width: int = 128
    num_frames: int = 16
    min_objects: int = 4
    max_objects: int = 8
    fov_degrees: float = 70.0
    pixel_noise: float = 6.0
    centre_noise: float = 0.05
    size_noise: float = 0.08
    miss_rate: float = 0.1
    spurious_rate: float = 0.15
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 16 or self.num_frames < 1:
            raise ValueError(f"frames must be at least 16x16 and num_frames >= 1, got {self}")
        if not 4 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(f"need 4 <= min_objects <= max_objects <= 8, got {self.min_objects}, {self.max_objects}")
        if not (0 <= self.miss_rate <= 1 and 0 <= self.spurious_rate <= 1):
            raise ValueError(
                f"miss_rate and spurious_rate must be in [0, 1], got {self.miss_rate}, {self.spurious_rate}"
            )


@dataclass
class Room:
    """One room's ground truth and proposals.

    Attributes:
        scene_id: the scene folder's name.
        extent: ``(3,)`` room size ``x, y`` and wall height, metres (the floor spans ``[0, x] x [0, y]``).
        boxes: ``(M, 6)`` ground-truth boxes, centre + size.
        labels: ``M`` class names; colours: ``M`` colour names (distinct within a class).
        object_ids: ``(M,)`` instance ids (as in a scan, not positions).
        proposals: ``N`` proposal boxes, labels and scores (``<OBJ{k:03d}>`` is proposal ``k``).
        proposal_sources: ``(N,)`` the ground-truth position each proposal jitters, -1 for a spurious one.
    """

    scene_id: str
    extent: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    colours: list[str]
    object_ids: np.ndarray
    proposals: Boxes
    proposal_sources: np.ndarray

    @property
    def objects(self) -> Boxes:
        """The ground truth as scene-folder boxes (``objects.npz``)."""
        return Boxes(self.boxes.astype(np.float32), np.array(self.labels), object_ids=self.object_ids)

    def is_unique(self, position: int) -> bool:
        """Whether object ``position`` is the only one of its class (ScanRefer's "unique")."""
        return self.labels.count(self.labels[position]) == 1


@dataclass
class RoomFrames:
    """A rendered walk: ``colors`` ``(T, H, W, 3)`` uint8, ``depths`` ``(T, H, W)`` float32 metres (0 = no hit),
    ``instances`` ``(T, H, W)`` int16 ground-truth position per pixel (-1: floor, wall or nothing), ``poses``
    ``(T, 4, 4)`` camera-to-world, ``intrinsics`` ``(3, 3)``."""

    colors: np.ndarray
    depths: np.ndarray
    instances: np.ndarray
    poses: np.ndarray
    intrinsics: np.ndarray


def room_scene_id(split: str, index: int) -> str:
    """The scene id of room ``index`` of ``split``: ``scene_<split>_<index:04d>``."""
    return f"scene_{split}_{index:04d}"


def room_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The generator of one room's ``stream`` (0: layout and proposals, 1: rendering noise)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index, stream])


# --- layout ------------------------------------------------------------------------------------------


def _labels(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` class names: one class two or three times, the rest drawn freely (a class at most
    :data:`MAX_PER_CLASS` times), big classes first so they are placed while the floor is free."""
    names = list(CLASS_SIZES)
    repeated = str(rng.choice(names))
    labels = [repeated] * int(rng.integers(2, 4))
    while len(labels) < count:
        name = str(rng.choice(names))
        if labels.count(name) < MAX_PER_CLASS:
            labels.append(name)
    area = {name: np.prod(CLASS_SIZES[name][1][:2]) for name in names}
    return sorted(labels, key=lambda name: -area[name])


def _place(rng: np.random.Generator, sizes: np.ndarray, extent: np.ndarray) -> np.ndarray | None:
    """``(M, 2)`` footprint centres inside the object area with :data:`OBJECT_GAP` between footprints, or ``None``
    if an object fits nowhere among :data:`MAX_PLACEMENT_TRIES` random positions."""
    centres = np.zeros((len(sizes), 2))
    for k, size in enumerate(sizes):
        low, high = OBJECT_MARGIN + size[:2] / 2, extent[:2] - OBJECT_MARGIN - size[:2] / 2
        candidates = rng.uniform(low, high, size=(MAX_PLACEMENT_TRIES, 2))
        gaps = np.abs(candidates[:, None] - centres[None, :k]) - (size[:2] + sizes[:k, :2]) / 2  # (tries, k, 2)
        free = (gaps.max(axis=-1) >= OBJECT_GAP).all(axis=1) if k else np.ones(len(candidates), bool)
        if not free.any():
            return None
        centres[k] = candidates[np.argmax(free)]
    return centres


def _proposals(
    rng: np.random.Generator, boxes: np.ndarray, labels: list[str], extent: np.ndarray, config: RoomConfig
) -> tuple[Boxes, np.ndarray]:
    """Jittered, thinned, padded and shuffled ground truth (see the module docstring)."""
    count = len(boxes)
    kept = np.flatnonzero(rng.random(count) >= config.miss_rate)
    centres = boxes[kept, :3] + rng.normal(0.0, config.centre_noise, size=(len(kept), 3))
    sizes = boxes[kept, 3:] * np.clip(1.0 + rng.normal(0.0, config.size_noise, size=(len(kept), 3)), 0.2, None)
    num_spurious = int(rng.binomial(count, config.spurious_rate))
    spurious_labels = [str(name) for name in rng.choice(list(CLASS_SIZES), size=num_spurious)]
    spurious_sizes = np.array([rng.uniform(*CLASS_SIZES[name]) for name in spurious_labels]).reshape(-1, 3)
    spurious_xy = rng.uniform(OBJECT_MARGIN, extent[:2] - OBJECT_MARGIN, size=(num_spurious, 2))
    spurious = np.concatenate([spurious_xy, spurious_sizes[:, 2:] / 2, spurious_sizes], axis=1)
    all_boxes = np.concatenate([np.concatenate([centres, sizes], axis=1), spurious]).astype(np.float32)
    sources = np.concatenate([kept, np.full(num_spurious, -1)]).astype(np.int64)
    all_labels = [labels[k] for k in kept] + spurious_labels
    scores = np.concatenate([rng.uniform(0.6, 1.0, len(kept)), rng.uniform(0.1, 0.6, num_spurious)])
    order = rng.permutation(len(all_boxes))
    proposals = Boxes(all_boxes[order], np.array(all_labels, dtype=str)[order], scores.astype(np.float32)[order])
    return proposals, sources[order]


def make_room(seed: int, split: str, index: int, config: RoomConfig | None = None) -> Room:
    """Room ``index`` of ``split``: layout, ground truth and proposals (no rendering)."""
    config = config or RoomConfig()
    rng = room_rng(seed, split, index, 0)
    extent = np.array([rng.uniform(*ROOM_X), rng.uniform(*ROOM_Y), WALL_HEIGHT])
    for _ in range(MAX_LAYOUTS):
        labels = _labels(rng, int(rng.integers(config.min_objects, config.max_objects + 1)))
        sizes = np.array([rng.uniform(*CLASS_SIZES[name]) for name in labels])
        turned = rng.random(len(labels)) < 0.5
        sizes[turned, :2] = sizes[turned, 1::-1]
        centres = _place(rng, sizes, extent)
        if centres is not None:
            break
    else:
        raise RuntimeError(f"room {index} of {split} (seed {seed}): no layout fits after {MAX_LAYOUTS} tries")
    boxes = np.concatenate([centres, sizes[:, 2:] / 2, sizes], axis=1)
    colours = [""] * len(labels)
    for name in sorted(set(labels)):  # not set order: it changes with the hash seed of the process
        members = [k for k, label in enumerate(labels) if label == name]
        for k, colour in zip(members, rng.choice(list(COLOURS), size=len(members), replace=False)):
            colours[k] = str(colour)
    object_ids = rng.choice(np.arange(1, 4 * len(labels) + 1), size=len(labels), replace=False).astype(np.int64)
    proposals, sources = _proposals(rng, boxes, labels, extent, config)
    return Room(room_scene_id(split, index), extent, boxes, labels, colours, object_ids, proposals, sources)


# --- rendering ---------------------------------------------------------------------------------------


def camera_path(room: Room, config: RoomConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(poses (T, 4, 4) camera-to-world, intrinsics (3, 3))`` of the walk around ``room``."""
    focal = config.width / 2 / np.tan(np.radians(config.fov_degrees) / 2)
    intrinsics = np.array([[focal, 0, (config.width - 1) / 2], [0, focal, (config.height - 1) / 2], [0, 0, 1]])
    centre = room.extent[:2] / 2
    low, high = CAMERA_MARGIN, room.extent[:2] - CAMERA_MARGIN
    corners = np.array([[low, low], [high[0], low], high, [low, high[1]], [low, low]])
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(corners, axis=0), axis=1))])
    walked = (np.arange(config.num_frames) / config.num_frames + 0.1) % 1.0 * along[-1]
    angles = 2 * np.pi * walked / along[-1]
    eyes = np.stack(
        [
            np.interp(walked, along, corners[:, 0]),
            np.interp(walked, along, corners[:, 1]),
            EYE_HEIGHT + 0.05 * np.sin(3 * angles),
        ],
        axis=1,
    )
    forward = np.array([*centre, LOOK_AT_HEIGHT]) - eyes
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    poses = np.tile(np.eye(4), (config.num_frames, 1, 1))
    poses[:, :3, :3] = np.stack([right, down, forward], axis=2)
    poses[:, :3, 3] = eyes
    return poses, intrinsics


def _ray_directions(intrinsics: np.ndarray, pose: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H * W, 3)`` world ray directions scaled so that the ray parameter is the z-depth."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    camera = np.stack(
        [(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1], np.ones_like(u)], -1
    )
    directions = camera.reshape(-1, 3) @ pose[:3, :3].T
    return np.where(np.abs(directions) < 1e-12, 1e-12, directions)


def _cast_boxes(origin: np.ndarray, directions: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Slab test of ``(P, 3)`` rays from ``origin`` against ``(M, 6)`` boxes: ``(t (P,), box (P,), normal (P, 3))``
    of the nearest hit in front of the camera (``t`` inf where none)."""
    lower, upper = boxes[:, :3] - boxes[:, 3:] / 2, boxes[:, :3] + boxes[:, 3:] / 2
    t_lower = (lower[None] - origin) / directions[:, None]  # (P, M, 3)
    t_upper = (upper[None] - origin) / directions[:, None]
    t_near = np.minimum(t_lower, t_upper)
    enter, leave = t_near.max(axis=-1), np.maximum(t_lower, t_upper).min(axis=-1)  # (P, M)
    t_all = np.where((enter <= leave) & (enter > 0), enter, np.inf)
    box = t_all.argmin(axis=1)
    rows = np.arange(len(directions))
    axis = t_near[rows, box].argmax(axis=-1)  # the face's axis
    normal = np.zeros_like(directions)
    normal[rows, axis] = -np.sign(directions[rows, axis])
    return t_all[rows, box], box, normal


def _cast_room(origin: np.ndarray, directions: np.ndarray, extent: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rays against the floor and the four walls: ``(t (P,), is_floor (P,), normal (P, 3))``."""
    planes = [(2, 0.0, 1.0), (0, 0.0, 1.0), (0, extent[0], -1.0), (1, 0.0, 1.0), (1, extent[1], -1.0)]
    ts, normals = [], []
    for axis, value, facing in planes:
        t = (value - origin[axis]) / directions[:, axis]
        points = origin + t[:, None] * directions
        inside = (points >= -1e-6).all(axis=1) & (points <= extent + 1e-6).all(axis=1)
        ts.append(np.where((t > 0) & inside, t, np.inf))
        normals.append(np.eye(3)[axis] * facing)
    ts = np.stack(ts, axis=1)
    plane = ts.argmin(axis=1)
    return ts[np.arange(len(directions)), plane], plane == 0, np.array(normals)[plane]


def render_room(room: Room, config: RoomConfig, rng: np.random.Generator) -> RoomFrames:
    """Ray cast the walk around ``room`` (see the module docstring); ``rng`` draws the colour noise."""
    poses, intrinsics = camera_path(room, config)
    shape = (config.num_frames, config.height, config.width)
    colors, depths = np.zeros((*shape, 3), np.uint8), np.zeros(shape, np.float32)
    instances = np.full(shape, -1, np.int16)
    palette = np.array([COLOURS[name] for name in room.colours], dtype=np.float64)
    for t, pose in enumerate(poses):
        origin, directions = pose[:3, 3], _ray_directions(intrinsics, pose, config.height, config.width)
        t_box, box, box_normal = _cast_boxes(origin, directions, room.boxes)
        t_room, is_floor, room_normal = _cast_room(origin, directions, room.extent)
        on_box = t_box < t_room
        depth = np.where(on_box, t_box, t_room)
        hit = np.isfinite(depth)
        albedo = np.where(is_floor[:, None], FLOOR_COLOUR, WALL_COLOUR).astype(np.float64)
        albedo = np.where(on_box[:, None], palette[box], albedo)
        normal = np.where(on_box[:, None], box_normal, room_normal)
        shade = AMBIENT + DIFFUSE * np.clip(normal @ LIGHT, 0.0, None)
        pixels = np.where(hit[:, None], albedo * shade[:, None], BACKGROUND_COLOUR)
        pixels = pixels + rng.uniform(-config.pixel_noise, config.pixel_noise, size=pixels.shape)
        colors[t] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(config.height, config.width, 3)
        depths[t] = np.where(hit, depth, 0.0).reshape(config.height, config.width)
        instances[t] = np.where(on_box, box, -1).reshape(config.height, config.width)
    return RoomFrames(colors, depths, instances, poses, intrinsics)


# --- on disk -----------------------------------------------------------------------------------------


def write_room(root: str | Path, room: Room, frames: RoomFrames, config: RoomConfig) -> Path:
    """Write ``room`` as the scene folder ``<root>/<scene_id>/``; returns it."""
    names = [f"{t:05d}" for t in range(len(frames.colors))]
    return write_scene(
        Path(root) / room.scene_id,
        names,
        frames.colors,
        frames.depths,
        frames.poses,
        frames.intrinsics,
        frames.intrinsics,
        room.proposals,
        objects=room.objects,
        jpeg_quality=config.jpeg_quality,
    )


def generate_rooms(
    root: str | Path, split: str, count: int, seed: int = 0, config: RoomConfig | None = None
) -> list[Room]:
    """Make, render and write rooms ``0 .. count - 1`` of ``split`` under ``root``; returns them."""
    config = config or RoomConfig()
    rooms = []
    for index in range(count):
        room = make_room(seed, split, index, config)
        write_room(root, room, render_room(room, config, room_rng(seed, split, index, 1)), config)
        rooms.append(room)
    return rooms

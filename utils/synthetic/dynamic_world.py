"""A synthetic 4D world: coloured balls and robots moving on a floor, filmed by a moving camera as RGB-D video.

A world (:func:`make_world`) holds 2 to 4 objects on a checkered floor (z up, metres, the origin at the
arena's centre): balls (no facing direction) and robots (agents: a ball-shaped body with a dark "nose" ball
on the side it faces). Each object moves on a known trajectory with constant speed and constant turn rate
(a straight line or a gentle arc, :func:`arc_positions`); a robot faces the way it moves; some balls stand
still. Objects stay inside a disc of radius :data:`ARENA_RADIUS` and never touch. Trajectories run
:attr:`DynamicWorldConfig.future_frames` frames past the video, so questions can ask where objects go next.

The camera circles the arena at :data:`CAMERA_DISTANCE`, :data:`CAMERA_HEIGHT` above the floor, sweeping
:data:`CAMERA_SWEEP` degrees over the clip while looking at a slowly drifting point near the centre. Frames are
ray cast (:func:`render_world`) with the pixel rays of :mod:`utils.synthetic.rooms`: every pixel's ray against
every sphere (bodies and noses, analytically) and the floor plane, vectorised over the pixels of a frame, flat
shaded under the rooms' light with uniform colour noise. Depth is z-depth in metres (0 where a ray hits
nothing), poses are camera-to-world with OpenCV axes (x right, y down, z forward). Spheres make the ground
truth checkable from the pixels: a sphere fitted to an object's back-projected depth recovers its centre.

Everything is a function of ``(seed, split, index)`` (:func:`utils.synthetic.rooms.room_rng` streams: 0 for
the world, 1 for the rendering noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.dynamic.qa_templates import DynamicScene, Track, forward_from_yaw
from utils.synthetic.rooms import AMBIENT, COLOURS, DIFFUSE, LIGHT, _ray_directions, room_rng

KINDS = ("ball", "robot")
"""Object kinds; robots are agents (they have a facing direction)."""

BALL_RADIUS = (0.3, 0.45)
ROBOT_RADIUS = (0.4, 0.5)
"""Radius ranges of a ball and a robot's body, metres."""
NOSE_SCALE = 0.5
"""A robot's nose radius over its body radius; the nose's centre is one body radius plus half a nose radius
in front of the body's centre, at the same height."""
NOSE_COLOUR = (35, 35, 35)
SPEED = (0.2, 0.7)
"""Speed range of a moving object, metres per second."""
MAX_TURN_RATE = np.radians(25.0)
"""Largest turn rate, radians per second (the arcs are gentle)."""
START_RADIUS, ARENA_RADIUS = 1.6, 2.5
"""Objects start within the first radius of the centre and stay within the second."""
OBJECT_GAP = 0.1
"""Smallest gap between two objects' outlines at every frame, metres."""
MAX_PLACEMENT_TRIES, MAX_LAYOUTS = 100, 50

CAMERA_DISTANCE = (4.5, 6.0)
CAMERA_HEIGHT = (2.5, 3.5)
CAMERA_SWEEP = (15.0, 45.0)
"""Degrees the camera travels around the arena over the whole trajectory, in either direction."""
LOOK_AT_HEIGHT = 0.3
LOOK_AT_DRIFT = 0.5
"""The look-at point starts and ends within this many metres of the centre."""

FLOOR_RADIUS = 25.0
FLOOR_COLOURS = ((118, 104, 90), (150, 136, 118))
"""The two tiles of the floor's 1 m checkerboard."""
SKY_COLOUR = (170, 200, 230)


@dataclass(frozen=True)
class DynamicWorldConfig:
    """How worlds look and move.

    Attributes:
        height, width: frame size in pixels.
        num_frames: frames of the video.
        future_frames: trajectory frames after the video (not rendered into it).
        fps: frames per second (timestamps are ``frame / fps``).
        min_objects, max_objects: objects per world (2 to 4).
        robot_probability: chance that an object is a robot (every world has at least one robot and one ball).
        static_probability: chance that a ball stands still.
        fov_degrees: horizontal field of view.
        pixel_noise: colour noise, uniform in +-this many grey levels.
    """

    height: int = 96
    width: int = 128
    num_frames: int = 16
    future_frames: int = 4
    fps: float = 4.0
    min_objects: int = 2
    max_objects: int = 4
    robot_probability: float = 0.5
    static_probability: float = 0.15
    fov_degrees: float = 70.0
    pixel_noise: float = 4.0

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 16 or self.num_frames < 5 or self.future_frames < 0 or self.fps <= 0:
            raise ValueError(f"need frames >= 16x16, num_frames >= 5, future_frames >= 0, fps > 0; got {self}")
        if not 2 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError(f"need 2 <= min_objects <= max_objects <= 4, got {self.min_objects}, {self.max_objects}")


@dataclass
class DynamicWorld:
    """One world's ground truth.

    Attributes:
        video_id: the video's name.
        kinds: ``N`` :data:`KINDS`; colours: ``N`` distinct :data:`~utils.synthetic.rooms.COLOURS` names.
        radii: ``(N,)`` ball or body radius, metres.
        positions: ``(N, T, 3)`` centres over the ``T = num_video_frames + future_frames`` trajectory frames.
        yaws: ``(N, T)`` facing angles (radians, counter-clockwise from +x), NaN for balls.
        camera_poses: ``(T, 4, 4)`` camera-to-world; intrinsics: ``(3, 3)``.
        timestamps: ``(T,)`` seconds.
        num_video_frames: frames shown in the video (the first ones).
    """

    video_id: str
    kinds: list[str]
    colours: list[str]
    radii: np.ndarray
    positions: np.ndarray
    yaws: np.ndarray
    camera_poses: np.ndarray
    intrinsics: np.ndarray
    timestamps: np.ndarray
    num_video_frames: int

    @property
    def names(self) -> list[str]:
        """How questions call the objects: ``"the <colour> <kind>"``."""
        return [f"the {colour} {kind}" for colour, kind in zip(self.colours, self.kinds)]

    def nose_centres(self) -> np.ndarray:
        """``(N, T, 3)`` centres of the robots' noses (NaN for balls)."""
        offset = self.radii * (1 + NOSE_SCALE / 2)
        return self.positions + offset[:, None, None] * forward_from_yaw(self.yaws)

    def scene(self) -> DynamicScene:
        """The ground truth as question-template input."""
        tracks = [
            Track(name, self.positions[k], forward_from_yaw(self.yaws[k]) if kind == "robot" else None)
            for k, (name, kind) in enumerate(zip(self.names, self.kinds))
        ]
        return DynamicScene(tracks, self.camera_poses, self.timestamps, self.num_video_frames)


@dataclass
class WorldFrames:
    """A rendered clip: ``colors`` ``(T, H, W, 3)`` uint8, ``depths`` ``(T, H, W)`` float32 z-depth metres
    (0 = no hit), ``instances`` ``(T, H, W)`` int16 (``k``: object ``k``'s ball or body, ``N + k``: robot
    ``k``'s nose, -1: floor or sky), ``poses`` ``(T, 4, 4)`` camera-to-world, ``intrinsics`` ``(3, 3)``."""

    colors: np.ndarray
    depths: np.ndarray
    instances: np.ndarray
    poses: np.ndarray
    intrinsics: np.ndarray


def world_video_id(split: str, index: int) -> str:
    """The video id of world ``index`` of ``split``: ``dynamic_<split>_<index:05d>``."""
    return f"dynamic_{split}_{index:05d}"


# --- motion --------------------------------------------------------------------------------------------


def arc_positions(
    start: np.ndarray, heading: float, speed: float, turn_rate: float, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(positions (T, 2), headings (T,))`` of constant-speed, constant-turn-rate motion from ``start``
    ``(2,)`` at heading ``heading`` (radians): a straight line when ``turn_rate`` is 0, else a circular arc."""
    headings = heading + turn_rate * times
    if abs(turn_rate) < 1e-9:
        steps = speed * times[:, None] * np.array([np.cos(heading), np.sin(heading)])
    else:
        radius = speed / turn_rate
        steps = radius * np.stack([np.sin(headings) - np.sin(heading), np.cos(heading) - np.cos(headings)], axis=1)
    return start + steps, headings


def _outline_radius(kind: str, radius: float) -> float:
    """Horizontal reach of an object from its centre (a robot's nose sticks out)."""
    return radius * (1 + 1.5 * NOSE_SCALE) if kind == "robot" else radius


def _kinds(rng: np.random.Generator, count: int, config: DynamicWorldConfig) -> list[str]:
    """``count`` kinds with at least one robot and one ball."""
    kinds = ["robot", "ball"] + [
        "robot" if rng.random() < config.robot_probability else "ball" for _ in range(2, count)
    ]
    return [kinds[k] for k in rng.permutation(count)]


def _trajectories(
    rng: np.random.Generator, kinds: list[str], radii: np.ndarray, times: np.ndarray, config: DynamicWorldConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(xy (N, T, 2), headings (N, T))`` inside the arena and apart, or ``None`` when an object fits nowhere."""
    reach = np.array([_outline_radius(kind, radius) for kind, radius in zip(kinds, radii)])
    xy, headings = np.zeros((len(kinds), len(times), 2)), np.zeros((len(kinds), len(times)))
    for k, kind in enumerate(kinds):
        for _ in range(MAX_PLACEMENT_TRIES):
            start = rng.uniform(-START_RADIUS, START_RADIUS, size=2)
            static = kind == "ball" and rng.random() < config.static_probability
            speed = 0.0 if static else rng.uniform(*SPEED)
            path, heading = arc_positions(
                start, rng.uniform(-np.pi, np.pi), speed, rng.uniform(-MAX_TURN_RATE, MAX_TURN_RATE), times
            )
            inside = np.linalg.norm(path, axis=1).max() + reach[k] <= ARENA_RADIUS
            gaps = np.linalg.norm(path[None] - xy[:k], axis=-1) - reach[k] - reach[:k, None]  # (k, T)
            if inside and (k == 0 or gaps.min() >= OBJECT_GAP):
                xy[k], headings[k] = path, heading
                break
        else:
            return None
    return xy, headings


def look_at_poses(eyes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(T, 4, 4)`` camera-to-world poses (OpenCV axes, no roll) of cameras at ``eyes`` ``(T, 3)`` looking at
    ``targets`` ``(T, 3)``."""
    forward = targets - eyes
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    poses = np.tile(np.eye(4), (len(eyes), 1, 1))
    poses[:, :3, :3] = np.stack([right, np.cross(forward, right), forward], axis=2)
    poses[:, :3, 3] = eyes
    return poses


def _camera(rng: np.random.Generator, times: np.ndarray, config: DynamicWorldConfig) -> tuple[np.ndarray, ...]:
    """``(poses (T, 4, 4), intrinsics (3, 3))`` of the camera's sweep around the arena."""
    focal = config.width / 2 / np.tan(np.radians(config.fov_degrees) / 2)
    intrinsics = np.array([[focal, 0, (config.width - 1) / 2], [0, focal, (config.height - 1) / 2], [0, 0, 1]])
    progress = times / times[-1]
    sweep = np.radians(rng.uniform(*CAMERA_SWEEP)) * rng.choice([-1.0, 1.0])
    angles = rng.uniform(-np.pi, np.pi) + sweep * progress
    distance, height = rng.uniform(*CAMERA_DISTANCE), rng.uniform(*CAMERA_HEIGHT)
    eyes = np.stack([distance * np.cos(angles), distance * np.sin(angles), np.full_like(angles, height)], axis=1)
    ends = rng.uniform(-LOOK_AT_DRIFT, LOOK_AT_DRIFT, size=(2, 2))
    targets = np.concatenate(
        [ends[0] + progress[:, None] * (ends[1] - ends[0]), np.full((len(times), 1), LOOK_AT_HEIGHT)], axis=1
    )
    return look_at_poses(eyes, targets), intrinsics


def make_world(seed: int, split: str, index: int, config: DynamicWorldConfig | None = None) -> DynamicWorld:
    """World ``index`` of ``split``: objects, trajectories and camera (no rendering)."""
    config = config or DynamicWorldConfig()
    rng = room_rng(seed, split, index, 0)
    times = np.arange(config.num_frames + config.future_frames) / config.fps
    for _ in range(MAX_LAYOUTS):
        kinds = _kinds(rng, int(rng.integers(config.min_objects, config.max_objects + 1)), config)
        radii = np.array([rng.uniform(*(ROBOT_RADIUS if kind == "robot" else BALL_RADIUS)) for kind in kinds])
        placed = _trajectories(rng, kinds, radii, times, config)
        if placed is not None:
            break
    else:
        raise RuntimeError(f"world {index} of {split} (seed {seed}): no layout fits after {MAX_LAYOUTS} tries")
    xy, headings = placed
    positions = np.concatenate([xy, np.broadcast_to(radii[:, None, None], (*xy.shape[:2], 1))], axis=2)
    is_robot = np.array([kind == "robot" for kind in kinds])
    yaws = np.where(is_robot[:, None], headings, np.nan)
    colours = [str(name) for name in rng.choice(list(COLOURS), size=len(kinds), replace=False)]
    poses, intrinsics = _camera(rng, times, config)
    return DynamicWorld(
        world_video_id(split, index),
        kinds,
        colours,
        radii,
        positions,
        yaws,
        poses,
        intrinsics,
        times,
        config.num_frames,
    )


# --- rendering -----------------------------------------------------------------------------------------


def _cast_spheres(origin: np.ndarray, directions: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> tuple:
    """``(P, 3)`` rays from ``origin`` against ``(S, 3)`` spheres: ``(t (P,), sphere (P,))`` of the nearest hit
    in front of the camera (``t`` inf where none; the camera is outside every sphere)."""
    offsets = origin - centres  # (S, 3)
    a = np.einsum("pi,pi->p", directions, directions)[:, None]  # (P, 1)
    b = 2.0 * directions @ offsets.T  # (P, S)
    c = np.einsum("si,si->s", offsets, offsets) - radii**2  # (S,)
    discriminant = b**2 - 4.0 * a * c
    t = (-b - np.sqrt(np.clip(discriminant, 0.0, None))) / (2.0 * a)
    t = np.where((discriminant >= 0) & (t > 0) & (radii > 0), t, np.inf)
    sphere = t.argmin(axis=1)
    return t[np.arange(len(directions)), sphere], sphere


def render_world(
    world: DynamicWorld, config: DynamicWorldConfig, rng: np.random.Generator, num_frames: int | None = None
) -> WorldFrames:
    """Ray cast the first ``num_frames`` trajectory frames (default: the video's) of ``world`` (see the
    module docstring); ``rng`` draws the colour noise."""
    num_frames = world.num_video_frames if num_frames is None else num_frames
    count = len(world.kinds)
    is_robot = np.array([kind == "robot" for kind in world.kinds])
    noses = world.nose_centres()
    radii = np.concatenate([world.radii, np.where(is_robot, world.radii * NOSE_SCALE, 0.0)])
    palette = np.array([COLOURS[name] for name in world.colours] + [NOSE_COLOUR] * count, dtype=np.float64)
    poses = world.camera_poses[:num_frames]
    shape = (num_frames, config.height, config.width)
    colors, depths = np.zeros((*shape, 3), np.uint8), np.zeros(shape, np.float32)
    instances = np.full(shape, -1, np.int16)
    for t, pose in enumerate(poses):
        origin, directions = pose[:3, 3], _ray_directions(world.intrinsics, pose, config.height, config.width)
        centres = np.concatenate([world.positions[:, t], np.where(is_robot[:, None], noses[:, t], 1e6)])
        t_sphere, sphere = _cast_spheres(origin, directions, centres, radii)
        t_floor = np.where(directions[:, 2] < 0, -origin[2] / directions[:, 2], np.inf)
        floor_points = origin + np.where(np.isfinite(t_floor), t_floor, 0.0)[:, None] * directions
        t_floor = np.where(np.linalg.norm(floor_points[:, :2], axis=1) <= FLOOR_RADIUS, t_floor, np.inf)
        on_sphere = t_sphere < t_floor
        depth = np.where(on_sphere, t_sphere, t_floor)
        hit = np.isfinite(depth)
        points = origin + np.where(hit, depth, 0.0)[:, None] * directions
        normal = np.where(on_sphere[:, None], (points - centres[sphere]) / radii[sphere, None], [0.0, 0.0, 1.0])
        tile = (np.floor(floor_points[:, 0]) + np.floor(floor_points[:, 1])).astype(np.int64) % 2
        albedo = np.where(on_sphere[:, None], palette[sphere], np.array(FLOOR_COLOURS, dtype=np.float64)[tile])
        shade = AMBIENT + DIFFUSE * np.clip(normal @ LIGHT, 0.0, None)
        pixels = np.where(hit[:, None], albedo * shade[:, None], SKY_COLOUR)
        pixels = pixels + rng.uniform(-config.pixel_noise, config.pixel_noise, size=pixels.shape)
        colors[t] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(config.height, config.width, 3)
        depths[t] = np.where(hit, depth, 0.0).reshape(config.height, config.width)
        instances[t] = np.where(on_sphere, sphere, -1).reshape(config.height, config.width)
    return WorldFrames(colors, depths, instances, poses, world.intrinsics)

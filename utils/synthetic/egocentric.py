"""Synthetic egocentric kitchen frames: hands holding or touching named objects, written as HOI-QA.

A frame looks down at a kitchen counter (a textured counter top below a tiled wall) with a few distractor
objects on it. One or both hands enter from the bottom edge: a skin-coloured arm (partly in a sleeve), palm
and fingers, the left hand in the frame's left half and the right hand in its right half. A hand *holds* an
object (the object lies over the palm and the fingers wrap over it), *touches* one (the palm lies on it) or
is free. Objects belong to :data:`OBJECT_CLASSES` (cup, knife, bowl, sponge, ...: each its own shape and
colours), and a frame holds at most one object of a class, so a noun names one object.

Videos: frame ``index`` of a split belongs to video ``index // frames_per_video``; even videos are
EPIC-KITCHENS-style (16:9 frames, ``P<pp>_<split>_<vv>/frame_<n:010d>.jpg``), odd ones Ego4D-style (4:3
frames, ``<clip uid>/frame_<n>.jpg``). A video keeps its kitchen (counter, wall, skin tone, sleeves).
Everything is a function of ``(seed, split, index)``: the video's kitchen, the frame's layout, its noise
and its question wording each have their own random stream (:func:`frame_rng`), and splits use streams
keyed by their names, so the train and test splits share no stream, video or frame.

Frame sizes: frames are rendered ``config.height`` px high (default 108), ``16/9`` or ``4/3`` as wide
(EPIC 192x108, Ego4D 144x108). Ground-truth boxes are those of the drawn pixels (a region's visible pixels:
later layers occlude earlier ones), as pixel edges ``[x1, y1, x2, y2]`` (``x2`` = last column + 1) of the
rendered frame; the files hold them scaled by ``1080 / height`` to the frame sizes HOI-QA annotates on
(:data:`utils.data.hoi_qa.FRAME_SIZES`: EPIC 1920x1080, Ego4D 1440x1080), so the loader's ``Sample.boxes``
on the written frames are the drawn boxes again.

On disk (:func:`write_hoi_qa`), the layout :mod:`utils.data.hoi_qa` reads::

    <root>/epic-kitchens-train.json   one conversation per question, "image": "<video>/frame_<n>" (no suffix)
    <root>/ego4d-train.json           the same, "image_path": "Ego4D/v2/frames/<clip>/frame_<n>.jpg"
    <root>/epic-test.json             {id: {"noun", "bbox" (pixels), "image_path"}} per hand and object
    <root>/ego4d-test.json            the same for the Ego4D-style test videos
    <root>/epic-visor-test.json       hand-object questions on the EPIC-style test frames
    <root>/EPIC_Kitchens/frames/<video>/frame_<n:010d>.jpg
    <root>/Ego4D/v2/frames/<clip>/frame_<n>.jpg

Train questions cover all eight :data:`utils.data.hoi_qa.TASKS`, with HOI-QA's task tags and answers on
the 0-100 grid (identify boxes truncated as HOI-QA writes them); the test files cover them as the released
ones do: direct referral of objects and hands through the noun/box files of both sources, interaction
referral and both hands through the EPIC hand-object file. Every question is checked to classify as the
task it was written for.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from utils.data.box_text import format_grid_boxes, pixels_to_grid
from utils.data.hoi_qa import FRAME_FOLDERS, FRAME_SIZES, PARTS, classify_task, split_tag

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ObjectClass:
    """An object class: its size in frame heights, whether it lies at any angle (``elongated``: knives, spoons)
    or stands about upright, and its looks, each a ``(body, detail)`` colour pair."""

    size: float
    elongated: bool
    looks: tuple[tuple[Colour, Colour], ...]


OBJECT_CLASSES: dict[str, ObjectClass] = {
    "cup": ObjectClass(
        0.26,
        False,
        (((200, 40, 45), (140, 25, 30)), ((235, 235, 240), (150, 150, 165)), ((50, 90, 200), (25, 45, 120))),
    ),
    "bowl": ObjectClass(
        0.36,
        False,
        (((240, 140, 30), (255, 205, 110)), ((60, 160, 90), (150, 215, 160)), ((70, 110, 200), (160, 190, 240))),
    ),
    "knife": ObjectClass(0.5, True, (((195, 200, 210), (25, 25, 28)), ((195, 200, 210), (170, 30, 40)))),
    "spoon": ObjectClass(0.42, True, (((180, 185, 195), (180, 185, 195)), ((60, 140, 200), (60, 140, 200)))),
    "sponge": ObjectClass(0.3, False, (((245, 220, 40), (40, 140, 60)), ((90, 180, 230), (245, 245, 245)))),
    "bottle": ObjectClass(0.4, False, (((40, 130, 70), (220, 40, 40)), ((120, 170, 220), (30, 30, 160)))),
    "apple": ObjectClass(0.24, False, (((205, 25, 35), (60, 120, 40)), ((120, 190, 50), (90, 60, 30)))),
    "plate": ObjectClass(0.44, False, (((240, 240, 245), (205, 210, 220)), ((40, 90, 160), (230, 230, 235)))),
    "chopping board": ObjectClass(0.62, False, (((230, 230, 220), (200, 200, 190)), ((70, 150, 90), (50, 120, 70)))),
}
"""Class name (the noun questions use) -> its :class:`ObjectClass`."""

HELD_CLASSES = ("cup", "bowl", "knife", "spoon", "sponge", "bottle", "apple", "plate")
"""Classes a hand holds or touches (a chopping board only lies on the counter)."""

SKIN_TONES: tuple[Colour, ...] = ((236, 192, 160), (206, 156, 122), (166, 116, 84), (112, 76, 56))
SLEEVE_COLOURS: tuple[Colour, ...] = ((40, 50, 90), (105, 110, 118), (120, 35, 45), (40, 85, 55), (28, 28, 32))
COUNTER_COLOURS: tuple[Colour, ...] = ((120, 122, 128), (214, 214, 220), (48, 48, 54), (88, 128, 100), (88, 108, 150))
WALL_COLOURS: tuple[Colour, ...] = ((198, 204, 212), (228, 226, 204), (168, 190, 168), (150, 170, 205))
TEXTURES = ("granite", "grain", "tiles")
TEXTURE_AMPLITUDE = 10.0
"""Counter texture deviates at most this many grey levels from the counter's colour."""
GROUT_DARKENING = 45.0

HAND_SIDES = ("left", "right")
HAND_CHOICES = (("left", "right"), ("right",), ("left",))
HAND_CHOICE_P = (0.5, 0.3, 0.2)
CONTACTS = ("holding", "touching", None)
CONTACT_P = (0.55, 0.25, 0.2)
"""How a hand meets its object (``None``: the hand is free)."""

HOLD_REACH, TOUCH_REACH = (0.2, 0.3), (0.2, 0.45)
"""A held (touched) object's centre lies ``a * height + b * size`` ahead of the wrist for ``(a, b)``."""

MIN_REGION_PIXELS = 40
MIN_BOX_SIDE = 5
MIN_VISIBLE_FRACTION = 0.5
MIN_HELD_VISIBLE_FRACTION = 0.25
"""A region is named only with this many visible pixels, a box at least this many px wide and high and,
for an object, this fraction of its drawn shape visible (the smaller one for an object in a hand, which
its fingers or palm cover); a layout whose hand or hand-held object is not named is drawn again."""
MAX_TRIES = 200

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "objN2objBB": ("[refer] Where is the {noun}?", "[refer] Where is the {noun} in the image?"),
    "handN2handBB": ("[refer] Where is the {side} hand of the person?", "[refer] Where is the {side} hand?"),
    "bothhands": ("[refer] Where are the hands of the person?", "[refer] Where are the hands?"),
    "objBB2objN": ("[identify] {box}", "[identify] what is this {box}"),
    "handBB2handN": ("[identify] {box}", "[identify] what is this {box}"),
    "handN2objBB": (
        "[refer] Locate the object being manipulated by the {side} hand of the person",
        "[refer] Where is the object in the {side} hand?",
    ),
    "objN2handBB": ("[refer] Which hand is holding the {noun}?", "[refer] Which hand has the {noun}?"),
    "objN2handN": ("[vqa] What hand is holding the {noun}?", "[vqa] Which hand has the {noun}?"),
    "handN2objN": ("[vqa] What is the object in the {side} hand of the person?", "[vqa] What is in the {side} hand?"),
}
"""Template key (a task, or ``bothhands`` for ``handN2handBB`` with two boxes) -> wordings, tag included."""

STREAMS = {"kitchen": 0, "layout": 1, "noise": 2, "questions": 3, "numbering": 4}
"""Random streams: per video ``kitchen`` and ``numbering`` (its first frame number), per frame the others."""


@dataclass(frozen=True)
class EgoConfig:
    """How frames look.

    Attributes:
        height: frame height in px, a multiple of 9 (EPIC frames are ``16 * height / 9`` wide, Ego4D ones
            ``4 * height / 3``).
        frames_per_video: consecutive frames of a split that share a video (and its kitchen).
        min_distractors, max_distractors: objects on the counter besides the hand-held ones.
        pixel_noise: colour noise, uniform in +-this many grey levels.
        jpeg_quality: of the frames written.
    """

    height: int = 108
    frames_per_video: int = 4
    min_distractors: int = 2
    max_distractors: int = 4
    pixel_noise: float = 5.0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.height < 36 or self.height % 9:
            raise ValueError(f"height must be a multiple of 9 and at least 36 px, got {self.height}")
        if self.frames_per_video < 1:
            raise ValueError(f"frames_per_video must be positive, got {self.frames_per_video}")
        if not 0 <= self.min_distractors <= self.max_distractors <= len(OBJECT_CLASSES) - 2:
            raise ValueError(
                f"need 0 <= min_distractors <= max_distractors <= {len(OBJECT_CLASSES) - 2}, "
                f"got {self.min_distractors}, {self.max_distractors}"
            )

    def frame_size(self, source: str) -> tuple[int, int]:
        """``(width, height)`` of a ``source``'s rendered frames, with :data:`FRAME_SIZES`' aspect ratio."""
        width, height = FRAME_SIZES[source]
        return self.height * width // height, self.height


@dataclass(frozen=True)
class Region:
    """A named region of a frame: a hand (``"left hand"``) or an object (its class).

    Attributes:
        name: ``"left hand"`` / ``"right hand"`` or an :data:`OBJECT_CLASSES` name.
        box: ``(4,)`` float64 ``x1, y1, x2, y2`` pixel edges of its visible pixels in the rendered frame.
        side: for a hand its side; for an object the side of the hand holding or touching it, else ``None``.
        contact: ``"holding"`` / ``"touching"`` for an object in a hand (and for that hand), else ``None``.
    """

    name: str
    box: np.ndarray
    side: str | None = None
    contact: str | None = None

    @property
    def is_hand(self) -> bool:
        return self.name.endswith(" hand")


@dataclass
class EgoFrame:
    """One rendered frame and its ground truth.

    Attributes:
        split, index: where it comes from; source: ``"epic"`` / ``"ego4d"``.
        video: its video (EPIC video id or Ego4D clip uid); number: its frame number in that video.
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` int16, the :attr:`regions` position each pixel shows (-1: counter, wall, sleeve or
            an object too hidden to be named).
        regions: the named hands and objects.
        skin: the hands' ``(3,)`` skin colour before noise.
    """

    split: str
    index: int
    source: str
    video: str
    number: int
    image: np.ndarray
    labels: np.ndarray
    regions: list[Region]
    skin: Colour

    @property
    def relpath(self) -> str:
        """The frame file relative to its source's frame folder."""
        if self.source == "epic":
            return f"{self.video}/frame_{self.number:010d}.jpg"
        return f"{self.video}/frame_{self.number}.jpg"

    @property
    def scale(self) -> float:
        """Annotation-frame pixels (:data:`FRAME_SIZES`) per rendered pixel."""
        return FRAME_SIZES[self.source][1] / self.image.shape[0]

    def annotation_box(self, region: Region) -> np.ndarray:
        """``(4,)`` the region's box in pixels of the frame HOI-QA annotates on."""
        return region.box * self.scale

    def region(self, name: str) -> Region | None:
        """The region called ``name``, if the frame names one."""
        return next((region for region in self.regions if region.name == name), None)


def frame_rng(seed: int, split: str, index: int, stream: str) -> np.random.Generator:
    """The generator of ``stream`` (:data:`STREAMS`) of frame (or video) ``index`` of ``split``."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index, STREAMS[stream]])


def video_of(seed: int, split: str, index: int, config: EgoConfig) -> tuple[int, str, str, int]:
    """``(video index, source, video name, frame number)`` of frame ``index`` of ``split``."""
    video, position = divmod(index, config.frames_per_video)
    source = "epic" if video % 2 == 0 else "ego4d"
    ordinal = video // 2
    if source == "epic":
        name = f"P{ordinal // 100 + 1:02d}_{split}_{ordinal % 100 + 1:02d}"
    else:
        digest = hashlib.sha1(f"{seed}/{split}/{video}".encode()).hexdigest()
        name = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    first = int(frame_rng(seed, split, video, "numbering").integers(1, 1000))
    return video, source, name, first + 60 * position


# ---- shapes --------------------------------------------------------------------------------------


@dataclass
class Layer:
    """A painted shape: ``(H, W)`` bool mask, its colour and the region it belongs to (-1: none)."""

    mask: np.ndarray
    colour: np.ndarray
    region: int = -1


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(xs (1, W), ys (H, 1))`` float32."""
    return (np.arange(width, dtype=np.float32) + 0.5)[None], (np.arange(height, dtype=np.float32) + 0.5)[:, None]


def _local(xs: np.ndarray, ys: np.ndarray, centre: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` ``(H, W)``: coordinates along and across a shape turned by ``angle`` about ``centre``."""
    dx, dy = xs - centre[0], ys - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, -dx * sin + dy * cos


def capsule(xs: np.ndarray, ys: np.ndarray, start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``radius`` of the segment ``start``-``end`` (``(2,)`` x, y)."""
    direction = end - start
    along = ((xs - start[0]) * direction[0] + (ys - start[1]) * direction[1]) / max(direction @ direction, 1e-6)
    along = np.clip(along, 0.0, 1.0)
    return (xs - start[0] - along * direction[0]) ** 2 + (ys - start[1] - along * direction[1]) ** 2 < radius**2


def object_parts(name: str, u: np.ndarray, v: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """``(body, detail)`` ``(H, W)`` bool masks of an object of class ``name`` in its local ``(u, v)`` (px)."""
    s = size
    if name == "cup":
        body = (np.abs(u) < 0.32 * s + 0.06 * v) & (np.abs(v) < 0.42 * s)
        ring = (u - 0.34 * s) ** 2 + v**2
        handle = (ring < (0.22 * s) ** 2) & (ring > (0.12 * s) ** 2) & (u > 0.3 * s)
        return body | handle, body & (v < -0.33 * s)
    if name == "bowl":
        body = ((u / (0.5 * s)) ** 2 + (v / (0.42 * s)) ** 2 < 1) & (v > -0.08 * s)
        rim = (u / (0.5 * s)) ** 2 + ((v + 0.08 * s) / (0.1 * s)) ** 2 < 1
        return body | rim, rim & ((u / (0.44 * s)) ** 2 + ((v + 0.08 * s) / (0.07 * s)) ** 2 < 1)
    if name == "knife":
        blade = (u > 0) & (u < 0.6 * s) & (np.abs(v + 0.02 * s) < 0.08 * s * (1 - u / (0.7 * s)))
        handle = (u > -0.4 * s) & (u <= 0) & (np.abs(v) < 0.055 * s)
        return blade | handle, handle
    if name == "spoon":
        head = ((u - 0.38 * s) / (0.16 * s)) ** 2 + (v / (0.1 * s)) ** 2 < 1
        handle = (u > -0.5 * s) & (u < 0.3 * s) & (np.abs(v) < 0.035 * s)
        return head | handle, handle & (u < -0.3 * s)
    if name == "sponge":
        body = (np.abs(u) < 0.4 * s) & (np.abs(v) < 0.26 * s)
        return body, body & (v < -0.1 * s)
    if name == "bottle":
        body = (np.abs(u) < 0.2 * s) & (v > -0.18 * s) & (v < 0.5 * s)
        neck = (np.abs(u) < 0.08 * s) & (v > -0.5 * s) & (v <= -0.18 * s)
        return body | neck, neck & (v < -0.4 * s)
    if name == "apple":
        fruit = (u / (0.5 * s)) ** 2 + (v / (0.46 * s)) ** 2 < 1
        stem = (np.abs(u - 0.04 * s) < 0.05 * s) & (v > -0.62 * s) & (v < -0.3 * s)
        return fruit | stem, stem
    if name == "plate":
        plate = (u / (0.5 * s)) ** 2 + (v / (0.3 * s)) ** 2 < 1
        return plate, ((u / (0.34 * s)) ** 2 + (v / (0.2 * s)) ** 2 < 1)
    if name == "chopping board":
        board = (np.abs(u) < 0.5 * s) & (np.abs(v) < 0.32 * s)
        return board, board & (np.abs(u) > 0.44 * s)
    raise ValueError(f"unknown object class {name!r}; known: {', '.join(OBJECT_CLASSES)}")


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cell: float) -> np.ndarray:
    """``(H, W)`` float32 noise in about ``[-1, 1]``, bilinearly interpolated from a grid of ``cell`` px."""
    grid = rng.uniform(-1, 1, (int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    y, x = (np.arange(height) + 0.5) / cell, (np.arange(width) + 0.5) / cell
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None].astype(np.float32), (x - x0)[None].astype(np.float32)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


# ---- one frame -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kitchen:
    """A video's look: counter colour and texture, wall colour, tile size, skin tone and sleeve colour."""

    counter: Colour
    texture: str
    wall: Colour
    tile: float
    skin: Colour
    sleeve: Colour


def make_kitchen(rng: np.random.Generator, height: int) -> Kitchen:
    """A random :class:`Kitchen` for frames ``height`` px high."""

    def pick(options):
        return options[int(rng.integers(len(options)))]

    tile = float(rng.uniform(0.12, 0.2)) * height
    return Kitchen(
        pick(COUNTER_COLOURS), pick(TEXTURES), pick(WALL_COLOURS), tile, pick(SKIN_TONES), pick(SLEEVE_COLOURS)
    )


def background(kitchen: Kitchen, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` float32: the wall (tiles) above a horizon and the textured counter below it."""
    xs, ys = _grid(width, height)
    horizon = float(rng.uniform(0.15, 0.4)) * height
    fine = _smooth_noise(rng, width, height, 3.0)
    if kitchen.texture == "granite":
        texture = 0.6 * _smooth_noise(rng, width, height, 10.0) + 0.4 * fine
    elif kitchen.texture == "grain":
        slant = float(rng.uniform(-0.3, 0.3))
        texture = 0.7 * np.sin((xs + slant * ys) * (2 * np.pi / 9.0) + 3 * _smooth_noise(rng, width, height, 20.0))
        texture = texture + 0.3 * fine
    else:
        grout = ((xs % (1.4 * kitchen.tile)) < 1.0) | (((ys - horizon) % kitchen.tile) < 1.0)
        texture = np.where(grout, -1.0, 0.5 * fine)
    counter = np.asarray(kitchen.counter, np.float32) + TEXTURE_AMPLITUDE * texture[..., None]
    wall_grout = ((xs % kitchen.tile) < 1.0) | (((horizon - ys) % kitchen.tile) < 1.0)
    wall = np.asarray(kitchen.wall, np.float32) - GROUT_DARKENING * wall_grout[..., None] + 3 * fine[..., None]
    return np.where((ys < horizon)[..., None], wall, counter).astype(np.float32)


@dataclass
class HandPlan:
    """Where one hand is: its side, wrist ``(2,)`` px, pointing ``direction`` ``(2,)`` (unit), contact, the
    sleeve's cuff ``sleeve_gap`` frame heights behind the wrist, and the object it holds or touches."""

    side: str
    wrist: np.ndarray
    direction: np.ndarray
    contact: str | None
    sleeve_gap: float
    object_name: str | None = None
    object_angle: float = 0.0
    object_size: float = 0.0


def _plan_hand(
    rng: np.random.Generator, side: str, width: int, height: int, held: str | None, contact: str | None
) -> HandPlan:
    """A random hand of ``side`` meeting object ``held`` by ``contact``: the left one points up and to the
    right from the bottom left, the right one mirrors it."""
    sign = 1.0 if side == "left" else -1.0
    tilt = float(rng.uniform(-0.15, 0.6))
    direction = np.array([sign * np.sin(tilt), -np.cos(tilt)])
    x = float(rng.uniform(0.04 * width, max(0.06 * width, width / 2 - 0.32 * height)))
    wrist = np.array([x if side == "left" else width - x, float(rng.uniform(0.5, 0.8)) * height])
    plan = HandPlan(side, wrist, direction, contact, float(rng.uniform(0.12, 0.45)), held)
    if held:
        spec = OBJECT_CLASSES[held]
        plan.object_size = spec.size * height * float(rng.uniform(0.85, 1.1))
        arm_angle = float(np.arctan2(direction[1], direction[0]))
        plan.object_angle = (
            arm_angle + float(rng.uniform(-0.6, 0.6)) if spec.elongated else float(rng.uniform(-0.2, 0.2))
        )
    return plan


def _hand_layers(
    plan: HandPlan, xs: np.ndarray, ys: np.ndarray, height: int, kitchen: Kitchen, hand: int
) -> tuple[list[Layer], list[Layer]]:
    """``(under, over)`` layers of a hand: those under its object (arm, sleeve, palm) and those over it (fingers).

    Touching hands lie wholly over their object (the caller draws the object first).
    """
    h, d = float(height), plan.direction
    across = np.array([-d[1], d[0]])  # the hand's left-to-right axis (for the left hand, towards its thumb)
    inward = across if plan.side == "left" else -across
    skin, sleeve = np.asarray(kitchen.skin, np.float32), np.asarray(kitchen.sleeve, np.float32)
    entry = plan.wrist - d * 1.5 * h
    arm = capsule(xs, ys, entry, plan.wrist, 0.075 * h)
    cuff = capsule(xs, ys, entry, plan.wrist - d * plan.sleeve_gap * h, 0.09 * h)
    u, v = _local(xs, ys, plan.wrist + d * 0.1 * h, float(np.arctan2(d[1], d[0])))
    palm = (u / (0.12 * h)) ** 2 + (v / (0.09 * h)) ** 2 < 1
    tip = plan.wrist + d * 0.18 * h
    fingers = np.zeros_like(palm)
    for offset, turn in ((-0.055, -0.25), (-0.018, -0.08), (0.018, 0.08), (0.055, 0.25)):
        start = tip + across * offset * h
        finger_direction = d * np.cos(turn) + across * np.sin(turn)
        fingers |= capsule(xs, ys, start, start + finger_direction * 0.1 * h, 0.022 * h)
    thumb_start = plan.wrist + d * 0.08 * h + inward * 0.07 * h
    fingers |= capsule(xs, ys, thumb_start, thumb_start + (d + inward) / np.sqrt(2) * 0.09 * h, 0.025 * h)
    under = [Layer(arm, skin, hand), Layer(cuff, sleeve, -1), Layer(palm, skin, hand)]
    return under, [Layer(fingers, skin, hand)]


def _object_layers(
    name: str, look: int, centre: np.ndarray, angle: float, size: float, xs: np.ndarray, ys: np.ndarray, region: int
) -> list[Layer]:
    """Body then detail layer of an object."""
    body_colour, detail_colour = OBJECT_CLASSES[name].looks[look]
    u, v = _local(xs, ys, centre, angle)
    body, detail = object_parts(name, u, v, size)
    return [
        Layer(body, np.asarray(body_colour, np.float32), region),
        Layer(detail, np.asarray(detail_colour, np.float32), region),
    ]


def compose(base: np.ndarray, layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``layers`` in order over ``base`` ``(H, W, 3)``: ``(image (H, W, 3) float32, labels (H, W) int16)``."""
    image, labels = base.copy(), np.full(base.shape[:2], -1, np.int16)
    for layer in layers:
        image[layer.mask] = layer.colour
        labels[layer.mask] = layer.region
    return image, labels


def _box(mask: np.ndarray) -> np.ndarray:
    """``(4,)`` pixel edges ``x1, y1, x2, y2`` of a non-empty ``(H, W)`` bool mask."""
    columns, rows = np.nonzero(mask.any(axis=0))[0], np.nonzero(mask.any(axis=1))[0]
    return np.array([columns[0], rows[0], columns[-1] + 1, rows[-1] + 1], np.float64)


def _visible_enough(visible: np.ndarray, drawn: int = 0, fraction: float = 0.0) -> bool:
    """Whether a region with ``visible`` pixels, ``fraction`` of ``drawn``, may be named (:data:`MIN_REGION_PIXELS`)."""
    count = int(visible.sum())
    if count < MIN_REGION_PIXELS or count < fraction * drawn:
        return False
    box = _box(visible)
    return min(box[2] - box[0], box[3] - box[1]) >= MIN_BOX_SIDE


def _try_layout(
    rng: np.random.Generator, kitchen: Kitchen, base: np.ndarray, width: int, height: int, config: EgoConfig
) -> tuple[np.ndarray, np.ndarray, list[Region]] | None:
    """One random layout, painted: ``(image, labels, regions)``, or ``None`` if a hand or held object would be
    out of its half, too hidden or too small."""
    xs, ys = _grid(width, height)
    sides = HAND_CHOICES[int(rng.choice(len(HAND_CHOICES), p=HAND_CHOICE_P))]
    classes = [str(name) for name in rng.permutation(list(OBJECT_CLASSES))]
    holdable = [name for name in classes if name in HELD_CLASSES]
    plans = []
    for side in sides:
        contact = CONTACTS[int(rng.choice(len(CONTACTS), p=CONTACT_P))]
        plans.append(_plan_hand(rng, side, width, height, holdable.pop() if contact else None, contact))
    held = {plan.side: plan.object_name for plan in plans if plan.object_name}
    free = [name for name in classes if name not in held.values()]
    count = int(rng.integers(config.min_distractors, config.max_distractors + 1))
    names = [*(f"{plan.side} hand" for plan in plans), *(plan.object_name for plan in plans if plan.object_name)]
    layers: list[Layer] = []
    distractors = sorted(free[:count], key=lambda name: -OBJECT_CLASSES[name].size)  # flat, big ones lie under
    for name in distractors:  # on the counter, bigger nearer the camera
        centre = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.45, 0.9) * height])
        size = OBJECT_CLASSES[name].size * height * float(rng.uniform(0.6, 0.8) + 0.4 * centre[1] / height)
        angle = float(rng.uniform(-np.pi, np.pi)) if OBJECT_CLASSES[name].elongated else float(rng.uniform(-0.2, 0.2))
        look = int(rng.integers(len(OBJECT_CLASSES[name].looks)))
        layers += _object_layers(name, look, centre, angle, size, xs, ys, len(names))
        names.append(name)
    for hand, plan in enumerate(plans):
        under, over = _hand_layers(plan, xs, ys, height, kitchen, hand)
        hand_mask = np.logical_or.reduce([layer.mask for layer in under + over if layer.region >= 0])
        columns = np.nonzero(hand_mask.any(axis=0))[0]
        if (plan.side == "left" and columns[-1] >= width // 2) or (plan.side == "right" and columns[0] < width // 2):
            return None
        if plan.object_name is None:
            layers += under + over
            continue
        reach = HOLD_REACH if plan.contact == "holding" else TOUCH_REACH
        centre = plan.wrist + plan.direction * (reach[0] * height + reach[1] * plan.object_size)
        look = int(rng.integers(len(OBJECT_CLASSES[plan.object_name].looks)))
        held_layers = _object_layers(
            plan.object_name, look, centre, plan.object_angle, plan.object_size, xs, ys, names.index(plan.object_name)
        )
        layers += under + held_layers + over if plan.contact == "holding" else held_layers + under + over
    image, labels = compose(base, layers)
    regions, keep = [], np.full(len(names) + 1, -1, np.int16)  # label -> region position; keep[-1] = -1
    for index, name in enumerate(names):
        visible = labels == index
        shape = np.logical_or.reduce([layer.mask for layer in layers if layer.region == index])
        is_hand, in_hand = name.endswith(" hand"), name in held.values()
        fraction = 0.0 if is_hand else MIN_HELD_VISIBLE_FRACTION if in_hand else MIN_VISIBLE_FRACTION
        if not _visible_enough(visible, int(shape.sum()), fraction):
            if is_hand or in_hand:
                return None
            continue  # a hidden distractor stays unnamed
        side = name.split()[0] if is_hand else next((p.side for p in plans if p.object_name == name), None)
        contact = next((p.contact for p in plans if p.side == side), None) if side else None
        keep[index] = len(regions)
        regions.append(Region(name, _box(visible), side, contact))
    return image, keep[labels], regions


def make_frame(seed: int, split: str, index: int, config: EgoConfig) -> EgoFrame:
    """Frame ``index`` of ``split``; a function of ``(seed, split, index, config)`` only."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    video, source, name, number = video_of(seed, split, index, config)
    width, height = config.frame_size(source)
    kitchen = make_kitchen(frame_rng(seed, split, video, "kitchen"), height)
    rng = frame_rng(seed, split, index, "layout")
    for _ in range(MAX_TRIES):
        base = background(kitchen, rng, width, height)
        layout = _try_layout(rng, kitchen, base, width, height, config)
        if layout is not None:
            break
    else:
        raise RuntimeError(f"no valid layout in {MAX_TRIES} tries for frame {index} of {split} (seed {seed})")
    image, labels, regions = layout
    noise = frame_rng(seed, split, index, "noise").uniform(-1, 1, image.shape).astype(np.float32)
    pixels = np.clip(np.rint(image + config.pixel_noise * noise), 0, 255).astype(np.uint8)
    return EgoFrame(split, index, source, name, number, pixels, labels, regions, kitchen.skin)


# ---- questions -----------------------------------------------------------------------------------

INTERACTION_TASKS = ("handN2objBB", "objN2handBB", "objN2handN", "handN2objN")


@dataclass(frozen=True)
class HoiQuestion:
    """One question about a frame.

    Attributes:
        task: its :data:`utils.data.hoi_qa.TASKS` name.
        question: the text with its task tag (``"[refer] Where is the cup?"``).
        answer: the reference answer as a train file writes it (grid boxes, a noun or ``"left hand"``).
        boxes: ``(K, 4)`` the answer's boxes in pixels of the annotation frame (``(0, 4)`` for text answers).
    """

    task: str
    question: str
    answer: str
    boxes: np.ndarray


def frame_questions(frame: EgoFrame, rng: np.random.Generator) -> list[HoiQuestion]:
    """Every question a frame answers: per named region where it is and what a box shows (direct referral),
    both hands when both are named, and per hand with an object the four interaction questions.

    Wordings are drawn from :data:`QUESTION_TEMPLATES` with ``rng``; each question is checked to classify as
    its task (``RuntimeError`` otherwise).
    """
    size = FRAME_SIZES[frame.source]

    def ask(key: str, task: str, answer: str | None, regions: list[Region], **words: str) -> HoiQuestion:
        templates = QUESTION_TEMPLATES[key]
        boxes = np.stack([frame.annotation_box(region) for region in regions]) if regions else np.zeros((0, 4))
        if "box" in words:
            words["box"] = format_grid_boxes(pixels_to_grid(boxes, size, rounding="floor"))
            boxes = np.zeros((0, 4))
        text = templates[int(rng.integers(len(templates)))].format(**words)
        answer = format_grid_boxes(pixels_to_grid(boxes, size)) if answer is None else answer
        tag, bare = split_tag(text)
        found = classify_task(tag, bare, answer, f"synthetic frame {frame.split}/{frame.index}")
        if found != task:
            raise RuntimeError(f"{text!r} -> {answer!r} classifies as {found}, written as {task}")
        return HoiQuestion(task, text, answer, boxes)

    questions = []
    for region in frame.regions:
        if region.is_hand:
            questions.append(ask("handN2handBB", "handN2handBB", None, [region], side=region.side))
            questions.append(ask("handBB2handN", "handBB2handN", region.name, [region], box=""))
        else:
            questions.append(ask("objN2objBB", "objN2objBB", None, [region], noun=region.name))
            questions.append(ask("objBB2objN", "objBB2objN", region.name, [region], box=""))
    hands = [frame.region(f"{side} hand") for side in HAND_SIDES]
    if all(hands):
        questions.append(ask("bothhands", "handN2handBB", None, hands))
    for hand in filter(None, hands):
        held = next((r for r in frame.regions if not r.is_hand and r.side == hand.side), None)
        if held is None:
            continue
        questions += [
            ask("handN2objBB", "handN2objBB", None, [held], side=hand.side),
            ask("objN2handBB", "objN2handBB", None, [hand], noun=held.name),
            ask("objN2handN", "objN2handN", hand.name, [], noun=held.name),
            ask("handN2objN", "handN2objN", held.name, [], side=hand.side),
        ]
    return questions


# ---- the HOI-QA files ----------------------------------------------------------------------------


def _pixels(box: np.ndarray) -> list[float]:
    """A box as JSON numbers (integers where they are whole)."""
    return [int(v) if float(v).is_integer() else round(float(v), 3) for v in box]


def _conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def _save_frame(root: Path, frame: EgoFrame, quality: int) -> None:
    path = root / FRAME_FOLDERS[frame.source] / frame.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.image).save(path, quality=quality)


def _train_entries(frame: EgoFrame, questions: list[HoiQuestion]) -> list[dict]:
    """Conversation entries (one question each) as the source's train file writes them."""
    stem = frame.relpath.rsplit(".", 1)[0]
    where = {"image": stem} if frame.source == "epic" else {"image_path": f"{FRAME_FOLDERS['ego4d']}/{frame.relpath}"}
    return [
        {"id": f"{stem.replace('/', '_')}_{k}", **where, "conversations": _conversation(q.question, q.answer)}
        for k, q in enumerate(questions)
    ]


def _test_entries(frame: EgoFrame, questions: list[HoiQuestion]) -> tuple[dict[str, dict], list[dict]]:
    """``(noun/box entries, hand-object entries)`` of a test frame (the latter only for EPIC-style frames)."""
    stem = frame.relpath.rsplit(".", 1)[0].replace("/", "_")
    image_path = f"{FRAME_FOLDERS[frame.source]}/{frame.relpath}"
    nouns = {
        f"{stem}_{k}": {"noun": region.name, "bbox": _pixels(frame.annotation_box(region)), "image_path": image_path}
        for k, region in enumerate(frame.regions)
    }
    if frame.source != "epic":
        return nouns, []
    asked = [q for q in questions if q.task in INTERACTION_TASKS or (q.task == "handN2handBB" and len(q.boxes) == 2)]
    entries = []
    for k, q in enumerate(asked):
        if len(q.boxes) == 2:
            answer = "".join("{" + "".join(f"<{v}>" for v in _pixels(box)) + "}" for box in q.boxes)
        elif len(q.boxes):
            answer = _pixels(q.boxes[0])
        else:
            answer = q.answer
        entries.append(
            {"id": f"{stem}_{q.task}_{k}", "question": q.question, "answer": answer, "image_path": image_path}
        )
    return nouns, entries


def write_hoi_qa(
    root: str | Path, seed: int, num_train: int, num_test: int, config: EgoConfig | None = None, progress: bool = False
) -> dict[str, int]:
    """Write ``num_train`` train frames and ``num_test`` test frames as HOI-QA under ``root`` (module docstring).

    Returns ``{file name: entries}`` for the five JSON files. Re-running with the same arguments rewrites
    the same files.
    """
    config = config or EgoConfig()
    root = Path(root)
    train: dict[str, list[dict]] = {"epic": [], "ego4d": []}
    noun_box: dict[str, dict[str, dict]] = {"epic": {}, "ego4d": {}}
    hand_object: list[dict] = []
    for split, count in (("train", num_train), ("test", num_test)):
        for index in tqdm(range(count), desc=f"synthetic HOI-QA {split}", unit="frame", disable=not progress):
            frame = make_frame(seed, split, index, config)
            questions = frame_questions(frame, frame_rng(seed, split, index, "questions"))
            _save_frame(root, frame, config.jpeg_quality)
            if split == "train":
                train[frame.source] += _train_entries(frame, questions)
            else:
                nouns, entries = _test_entries(frame, questions)
                noun_box[frame.source].update(nouns)
                hand_object += entries
    files = {
        PARTS["epic_train"].file: train["epic"],
        PARTS["ego4d_train"].file: train["ego4d"],
        PARTS["epic_test"].file: noun_box["epic"],
        PARTS["ego4d_test"].file: noun_box["ego4d"],
        PARTS["epic_hoi_test"].file: hand_object,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (root / name).write_text(json.dumps(content))
    return {name: len(content) for name, content in files.items()}

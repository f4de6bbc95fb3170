"""A procedural "moving shapes" world written in MeViS's on-disk format.

Each video shows coloured shapes (red / green / blue / yellow squares, circles and triangles)
translating at constant speed (left / right / up / down) over a dark, mildly noisy background.
Every video holds a pair of look-alikes (same colour and shape, same size) that only their
direction of motion tells apart, and every object has a distractor sharing exactly one of its
colour and shape. Each object gets one referring expression that identifies exactly it:

* ``"attribute"``: a colour / shape description unique in the video (``"the red square"``,
  ``"the red object"``, ``"the circle"``);
* ``"motion"``: a look-alike told apart by its direction (``"the red square moving left"``).

Masks are the visible pixels: later-drawn objects occlude earlier ones, and an empty visible mask
(fully occluded or out of frame) is written as ``null``, as MeViS does for absent objects.

On disk (``<root>/<split>/``): ``meta_expressions.json`` (each expression carries an extra
``"type"`` key), ``mask_dict.json`` (COCO RLE per annotation per frame) and
``JPEGImages/<video_id>/<frame>.jpg``.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

GENERATOR_VERSION = 1
"""Bump when the generated data changes, so cached outputs are regenerated."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 195, 55),
    "blue": (45, 85, 240),
    "yellow": (240, 220, 35),
}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

REFERENCE_SIZE = 128
"""Object sizes and speeds below are in px at this frame size; they scale with ``min(H, W)``."""
SIZE_RANGE = (14.0, 24.0)
SPEED_RANGE = (2.0, 5.0)
MIN_VISIBLE_FRACTION = 0.5
"""Each object shows at least this fraction of its area in the first frame."""
BACKGROUND_LEVEL = 24.0
BACKGROUND_TEXTURE_STD = 5.0
PIXEL_NOISE_AMPLITUDE = 7.0
"""Per-pixel, per-frame noise is uniform in +-this many grey levels (uniform: cheaper than Gaussian)."""
MAX_TRIES = 1000

MOTION_TEMPLATES = (
    "the {colour} {shape} moving {direction}",
    "the {colour} {shape} that moves {direction}",
    "the {colour} {shape} going {direction}",
)


@dataclass(frozen=True)
class WorldConfig:
    """How the videos look: frame size in px, frames per video, objects per video, JPEG quality."""

    height: int = 128
    width: int = 128
    num_frames: int = 8
    min_objects: int = 3
    max_objects: int = 5
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 32:
            raise ValueError(f"frames must be at least 32x32 px, got {self.height}x{self.width}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {self.num_frames}")
        if not 3 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 3 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")

    @property
    def scale(self) -> float:
        """Frame size relative to :data:`REFERENCE_SIZE`."""
        return min(self.height, self.width) / REFERENCE_SIZE


@dataclass(frozen=True)
class ShapeObject:
    """One object: look, ``size`` (side / diameter / base, px), centre ``(x, y)`` at frame 0 (px),
    direction and ``speed`` (px/frame)."""

    colour: str
    shape: str
    size: float
    x: float
    y: float
    direction: str
    speed: float

    def centre(self, t: int) -> tuple[float, float]:
        """Centre ``(x, y)`` in px at frame ``t``."""
        dx, dy = DIRECTIONS[self.direction]
        return self.x + dx * self.speed * t, self.y + dy * self.speed * t


@dataclass(frozen=True)
class Expression:
    """A referring expression, its type (``"attribute"`` / ``"motion"``) and its target object index."""

    text: str
    type: str
    target: int


@dataclass
class Video:
    """One generated video: ``frames`` ``(T, H, W, 3)`` uint8 RGB, visible ``masks`` ``(N, T, H, W)`` bool."""

    video_id: str
    objects: list[ShapeObject]
    expressions: list[Expression]
    frames: np.ndarray
    masks: np.ndarray


def resolve_referents(
    objects: list[ShapeObject],
    colour: str | None = None,
    shape: str | None = None,
    direction: str | None = None,
) -> set[int]:
    """Indices of the objects matching every given attribute (``None`` matches anything)."""
    return {
        i
        for i, obj in enumerate(objects)
        if colour in (None, obj.colour) and shape in (None, obj.shape) and direction in (None, obj.direction)
    }


def parse_expression(text: str) -> dict[str, str]:
    """The attributes an expression's words name, e.g. ``{"colour": "red", "shape": "square"}``."""
    attributes: dict[str, str] = {}
    vocabularies = {"colour": COLOURS, "shape": SHAPES, "direction": DIRECTIONS}
    for word in re.findall(r"[a-z]+", text.lower()):
        for key, vocabulary in vocabularies.items():
            if word in vocabulary:
                if key in attributes:
                    raise ValueError(f"expression {text!r} names two {key}s")
                attributes[key] = word
    return attributes


def shape_mask(obj: ShapeObject, t: int, height: int, width: int) -> np.ndarray:
    """The in-frame pixels ``(H, W)`` bool that ``obj`` covers at frame ``t``, ignoring occlusion."""
    cx, cy = obj.centre(t)
    dy = (np.arange(height) + 0.5)[:, None] - cy
    dx = (np.arange(width) + 0.5)[None, :] - cx
    half = obj.size / 2
    if obj.shape == "square":
        return (np.abs(dx) < half) & (np.abs(dy) < half)
    if obj.shape == "circle":
        return dx**2 + dy**2 < half**2
    # Upward triangle: base = height = size; half-width grows linearly from the apex (dy = -half).
    return (np.abs(dy) < half) & (np.abs(dx) < (dy + half) / 2)


def label_map(objects: list[ShapeObject], t: int, height: int, width: int) -> np.ndarray:
    """``(H, W)`` int16: index of the front-most object at each pixel (later objects in front), -1 if none."""
    labels = np.full((height, width), -1, dtype=np.int16)
    for index, obj in enumerate(objects):
        labels[shape_mask(obj, t, height, width)] = index
    return labels


def render_video(
    objects: list[ShapeObject], config: WorldConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the video: frames ``(T, H, W, 3)`` uint8 RGB and visible masks ``(N, T, H, W)`` bool."""
    shape_hw = (config.height, config.width)
    background = BACKGROUND_LEVEL + BACKGROUND_TEXTURE_STD * rng.standard_normal((*shape_hw, 1), np.float32)
    palette = np.array([COLOURS[obj.colour] for obj in objects], dtype=np.float32)
    images = rng.random((config.num_frames, *shape_hw, 3), np.float32)
    images = (2 * images - 1) * PIXEL_NOISE_AMPLITUDE
    masks = np.empty((len(objects), config.num_frames, *shape_hw), dtype=bool)
    for t in range(config.num_frames):
        labels = label_map(objects, t, *shape_hw)
        masks[:, t] = labels[None] == np.arange(len(objects))[:, None, None]
        images[t] += np.where(labels[..., None] >= 0, palette[labels], background)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), masks


def _has_partial_distractors(looks: list[tuple[str, str]]) -> bool:
    """Whether every object has another sharing exactly one of its colour and shape."""
    return all(
        any((a[0] == b[0]) != (a[1] == b[1]) for j, b in enumerate(looks) if j != i) for i, a in enumerate(looks)
    )


def _motion_share(looks: list[tuple[str, str]]) -> float:
    """Fraction of objects with a look-alike, i.e. that get a motion expression."""
    return sum(looks.count(look) > 1 for look in looks) / len(looks)


def _sample_looks(rng: np.random.Generator, config: WorldConfig) -> list[tuple[str, str]]:
    """Colour and shape per object: one look-alike pair, every object with a partial distractor."""
    colours = list(COLOURS)
    for _ in range(MAX_TRIES):
        num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
        twin = (colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))])
        looks = [twin, twin] + [
            (colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))]) for _ in range(num_objects - 2)
        ]
        if (
            _has_partial_distractors(looks)
            and _motion_share(looks) >= 1 / 3
            and max(looks.count(look) for look in looks) <= len(DIRECTIONS)
        ):
            return [looks[i] for i in rng.permutation(num_objects)]
    raise RuntimeError(f"could not sample object looks for {config}")


def sample_objects(rng: np.random.Generator, config: WorldConfig) -> list[ShapeObject]:
    """Objects of one video in drawing order (back to front), meeting the distractor requirements.

    Look-alikes share their size and move in distinct directions; every object starts fully inside
    the frame and shows at least :data:`MIN_VISIBLE_FRACTION` of itself in frame 0.
    """
    looks = _sample_looks(rng, config)
    directions = list(DIRECTIONS)
    sizes = {look: float(rng.uniform(*SIZE_RANGE)) * config.scale for look in sorted(set(looks))}
    look_directions = {look: [directions[i] for i in rng.permutation(len(directions))] for look in sorted(set(looks))}
    # The k-th look-alike of a look takes that look's k-th direction, so look-alikes move differently.
    moves = [look_directions[look][looks[:i].count(look)] for i, look in enumerate(looks)]
    speeds = rng.uniform(*SPEED_RANGE, size=len(looks)) * config.scale
    for _ in range(MAX_TRIES):
        objects = []
        for (colour, shape), direction, speed in zip(looks, moves, speeds, strict=True):
            size = sizes[(colour, shape)]
            x = float(rng.uniform(size / 2, config.width - size / 2))
            y = float(rng.uniform(size / 2, config.height - size / 2))
            objects.append(ShapeObject(colour, shape, size, x, y, direction, float(speed)))
        labels = label_map(objects, 0, config.height, config.width)
        if all(
            (labels == i).sum() >= MIN_VISIBLE_FRACTION * shape_mask(obj, 0, config.height, config.width).sum()
            for i, obj in enumerate(objects)
        ):
            return objects
    raise RuntimeError(f"could not place {len(looks)} visible objects in {config}")


def describe_objects(objects: list[ShapeObject], rng: np.random.Generator) -> list[Expression]:
    """One expression per object, each checked to resolve to exactly that object.

    Objects with a look-alike get a motion expression; the others an attribute expression
    (colour + shape, or colour-only / shape-only when that alone is unique).
    """
    expressions = []
    for index, obj in enumerate(objects):
        if len(resolve_referents(objects, colour=obj.colour, shape=obj.shape)) > 1:
            kind = "motion"
            options = list(MOTION_TEMPLATES)
        else:
            kind = "attribute"
            options = ["the {colour} {shape}"]
            if len(resolve_referents(objects, colour=obj.colour)) == 1:
                options.append("the {colour} object")
            if len(resolve_referents(objects, shape=obj.shape)) == 1:
                options.append("the {shape}")
        text = options[rng.integers(len(options))].format(colour=obj.colour, shape=obj.shape, direction=obj.direction)
        referents = resolve_referents(objects, **parse_expression(text))
        if referents != {index}:
            raise RuntimeError(f"expression {text!r} refers to objects {sorted(referents)}, not just {index}")
        expressions.append(Expression(text, kind, index))
    return expressions


def video_id_for(seed: int, split: str, index: int) -> str:
    """A MeViS-like 12-hex-digit video id, stable for ``(seed, split, index)``."""
    return hashlib.sha1(f"{seed}/{split}/{index}".encode()).hexdigest()[:12]


def make_video(seed: int, split: str, index: int, config: WorldConfig) -> Video:
    """Video ``index`` of ``split``; a function of ``(seed, split, index, config)`` only."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
    objects = sample_objects(rng, config)
    expressions = describe_objects(objects, rng)
    frames, masks = render_video(objects, config, rng)
    return Video(video_id_for(seed, split, index), objects, expressions, frames, masks)


def encode_masks(masks: np.ndarray) -> list[list[dict[str, Any] | None]]:
    """COCO RLE per object per frame for ``(N, T, H, W)`` bool masks; ``None`` where a mask is empty."""
    encoded = []
    for object_masks in masks:
        rles = mask_utils.encode(np.asfortranarray(object_masks.transpose(1, 2, 0).astype(np.uint8)))
        encoded.append(
            [
                {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} if mask.any() else None
                for rle, mask in zip(rles, object_masks, strict=True)
            ]
        )
    return encoded


def generate_mevis_split(
    root: Path, split: str, num_videos: int, seed: int, *, progress: bool = False, **world_options: Any
) -> None:
    """Write ``num_videos`` videos as MeViS split ``root/split``.

    ``world_options`` are :class:`WorldConfig` fields (``height``, ``width``, ``num_frames``, ...).
    Anno ids are unique across the split; obj ids index the objects of a video.
    """
    config = WorldConfig(**world_options)
    split_dir = Path(root) / split
    frame_names = [f"{t:05d}" for t in range(config.num_frames)]
    videos: dict[str, dict[str, Any]] = {}
    mask_dict: dict[str, list[dict[str, Any] | None]] = {}
    for index in tqdm(range(num_videos), desc=f"{split}", unit="video", disable=not progress):
        video = make_video(seed, split, index, config)
        if video.video_id in videos:
            raise RuntimeError(f"video id {video.video_id} repeats in {split_dir}")
        anno_ids = [len(mask_dict) + i for i in range(len(video.objects))]
        for anno_id, rles in zip(anno_ids, encode_masks(video.masks), strict=True):
            mask_dict[str(anno_id)] = rles
        videos[video.video_id] = {
            "expressions": {
                str(k): {"exp": e.text, "obj_id": [e.target], "anno_id": [anno_ids[e.target]], "type": e.type}
                for k, e in enumerate(video.expressions)
            },
            "frames": frame_names,
        }
        video_dir = split_dir / "JPEGImages" / video.video_id
        video_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in zip(frame_names, video.frames, strict=True):
            Image.fromarray(frame).save(video_dir / f"{name}.jpg", quality=config.jpeg_quality)
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "meta_expressions.json").write_text(json.dumps({"videos": videos}))
    (split_dir / "mask_dict.json").write_text(json.dumps(mask_dict))


def generate_mevis(
    root: Path, num_train: int, num_valid: int, seed: int, *, progress: bool = False, **world_options: Any
) -> None:
    """Write the ``train`` and ``valid_u`` splits under ``root``.

    Each video's random stream is keyed by ``(seed, split name, index)``, so the splits never share one.
    """
    generate_mevis_split(root, "train", num_train, seed, progress=progress, **world_options)
    generate_mevis_split(root, "valid_u", num_valid, seed, progress=progress, **world_options)

"""Visual prompts drawn on pixels (ViP-LLaVA / RGA3 overlays) and the one wording that names them.

A user points at an object with a shape drawn in a colour on a frame; the question then names the
object by that drawing ("the object within the red ellipse"). The same :func:`overlay_phrase` words
every overlay at training, at evaluation and in the demo (RGA3 trained with "Look at the marked
region within the red ellipse ..." but evaluated VideoInfer with "Look at the marked region ...",
``utils/utils.py`` ``VISUAL_PROMPT`` vs ``REFERRING_VQA_PROMPT``; here both read this module).

Shapes (:data:`SHAPES`) and what each is drawn from. A prompt gives a mask, a box or points; the
first of those present is used (mask, then box, then points; negative points are ignored):

=============  ===========================================  =============================================
shape          from a mask (a box counts as its rectangle)  from points only
=============  ===========================================  =============================================
rectangle      the bounding box, up to 5 % larger             error
ellipse        the box's inscribed ellipse, 1.1-1.3x larger   error
triangle       three vertices inside the object               error
point          a filled disc deep inside the object           a disc at the first point
scribble       a Bézier stroke through the object's core      a stroke through the points (at least two)
mask_contour   the object's outline                           error
mask           the object filled (blended with ``alpha``)     error
arrow          from outside the box to a point in the object  from outside, to the first point
=============  ===========================================  =============================================

Strokes scale with the frame (widths are given at :data:`REFERENCE_SIZE` px, RGA3's
``image_size_anchor``), and every random choice (jitter, vertices, stroke path, arrow angle) is
drawn from the ``np.random.Generator`` passed in, so a seed fixes the drawing. A drawing is an RGBA
layer (:func:`render_overlay`, the form RGA3 ships VideoInfer's fixed test prompts in) composited on
the frame (:func:`composite`, as ``PIL.Image.alpha_composite`` on an opaque frame).

:func:`apply_overlays` turns a region-prompt :class:`~utils.data.schema.Sample` (``<object{k}><region>``
in the text, :class:`~utils.data.schema.RegionPrompt` s in ``regions``) into an overlay sample, for the
loaders' ``visual_prompt`` option (:data:`VISUAL_PROMPT_MODES`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from utils.data.prompts import REGION_PLACEHOLDER
from utils.data.schema import RegionPrompt, Sample

SHAPES = ("rectangle", "ellipse", "triangle", "point", "scribble", "mask_contour", "mask", "arrow")
"""Overlay shapes, as ViP-LLaVA / RGA3 draw them (RGA3 spells ``mask_contour`` ``"mask contour"``)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (128, 0, 128),
    "orange": (255, 165, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "lime": (0, 255, 0),
    "fuchsia": (255, 0, 255),
    "aqua": (0, 255, 255),
    "gold": (255, 215, 0),
}
"""Colour name -> RGB, CSS colour keywords. RGA3's overlay colours (``color_pool`` in
``utils/visual_prompt_generator.py``: red, lime, blue, yellow, fuchsia, aqua, orange, purple, gold) are
all here, so its VideoInfer test prompts can be worded; every value differs, so distinct names look distinct."""

VISUAL_PROMPT_MODES = ("region", "overlay", "both")
"""Loader option ``visual_prompt``: region tokens only, overlays drawn and worded, or both."""

OVERLAY_FRAMES = ("all", "first", "random")
"""Which of a region's prompted frames :func:`apply_overlays` draws on: every one, the first, or one at random."""

DEFAULT_ALPHA = {shape: (0.4 if shape == "mask" else 0.8) for shape in SHAPES}
"""Opacity of a style that gives none: strokes nearly opaque, a filled mask see-through."""

ALPHA_RANGES = {shape: ((0.28, 0.5) if shape == "mask" else (0.74, 0.88)) for shape in SHAPES}
"""Opacity drawn by :func:`random_styles` (RGA3: 72-128 / 255 for a mask, 188-224 / 255 for strokes)."""

REFERENCE_SIZE = 448
"""Frame size (longest side, px) at which :data:`STROKE_WIDTHS` are given; they scale with the frame."""

STROKE_WIDTHS = {
    "rectangle": (2.0, 8.0),
    "ellipse": (2.0, 8.0),
    "triangle": (2.0, 8.0),
    "point": (10.0, 15.0),
    "scribble": (12.0, 15.0),
    "mask_contour": (1.0, 2.0),
    "arrow": (2.0, 6.0),
}
"""Range of the stroke width (point: disc radius) at :data:`REFERENCE_SIZE`, after RGA3's ``image_blending``
(a filled mask has no stroke)."""

PREPOSITIONS = {
    "rectangle": "within",
    "ellipse": "within",
    "triangle": "marked by",
    "point": "marked by",
    "scribble": "marked by",
    "mask_contour": "outlined by",
    "mask": "covered by",
    "arrow": "pointed to by",
}
"""How the object relates to its overlay, in :func:`overlay_phrase`."""

SHAPE_WORDS = {shape: shape.replace("_", " ") for shape in SHAPES}
"""How a shape is written in text (``mask_contour`` -> ``"mask contour"``)."""

FROM_POINTS = ("point", "scribble", "arrow")
"""Shapes that can be drawn from points alone; the others need a mask or a box."""

REFERENCE = re.compile(r"(?:<object(\d+)>)?" + re.escape(REGION_PLACEHOLDER))
"""An object reference in a user turn: ``<object{k}><region>`` or a bare ``<region>``."""


@dataclass(frozen=True)
class OverlayStyle:
    """How one object's overlay looks: a shape of :data:`SHAPES`, a colour of :data:`COLOURS`, an opacity.

    ``alpha`` in ``(0, 1]``; ``None`` takes :data:`DEFAULT_ALPHA` of the shape.
    """

    shape: str
    colour: str
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown overlay shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown overlay colour {self.colour!r}; known: {', '.join(COLOURS)}")
        alpha = DEFAULT_ALPHA[self.shape] if self.alpha is None else self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 1:
            raise ValueError(f"overlay alpha must be in (0, 1], got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(alpha))

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour's RGB value."""
        return COLOURS[self.colour]


def overlay_phrase(style: OverlayStyle) -> str:
    """How a question names the object a ``style`` overlay marks: ``"the object within the red ellipse"``."""
    return f"the object {PREPOSITIONS[style.shape]} the {style.colour} {SHAPE_WORDS[style.shape]}"


def random_styles(
    num_regions: int,
    rng: np.random.Generator,
    *,
    shapes: Sequence[str] = SHAPES,
    colours: Sequence[str] | None = None,
) -> list[OverlayStyle]:
    """``num_regions`` styles with distinct colours (from ``colours``, default all of :data:`COLOURS`),
    random shapes (from ``shapes``, may repeat) and opacities (:data:`ALPHA_RANGES`)."""
    names = list(COLOURS if colours is None else colours)
    if num_regions < 0:
        raise ValueError(f"num_regions must be >= 0, got {num_regions}")
    if num_regions > len(names):
        raise ValueError(f"{num_regions} regions need distinct colours but only {len(names)} are allowed")
    if not shapes or any(shape not in SHAPES for shape in shapes):
        raise ValueError(f"random_styles needs shapes from {SHAPES}, got {list(shapes)}")
    picked = rng.choice(len(names), size=num_regions, replace=False)
    styles = []
    for colour_index in picked:
        shape = str(shapes[int(rng.integers(len(shapes)))])
        low, high = ALPHA_RANGES[shape]
        styles.append(OverlayStyle(shape, names[int(colour_index)], float(rng.uniform(low, high))))
    return styles


# --- drawing -----------------------------------------------------------------------------------------


@dataclass
class _Target:
    """What a shape is drawn from: the object's pixels and box, or bare points."""

    area: np.ndarray | None  # (H, W) bool
    box: np.ndarray  # (4,) float x1, y1, x2, y2 (pixel edges)
    points: np.ndarray | None  # (P, 2) float x, y

    def inner_pixels(self, depth_fraction: float) -> np.ndarray:
        """``(N, 2)`` x, y of the object's core: pixels at least ``depth_fraction`` as far from its edge as the
        deepest one."""
        depth = cv2.distanceTransform(self.area.astype(np.uint8), cv2.DIST_L2, 3)
        ys, xs = np.nonzero(depth >= depth_fraction * depth.max())
        return np.stack([xs, ys], axis=1).astype(np.float64)


def _check_box(box: object, height: int, width: int) -> np.ndarray:
    """``(4,)`` float box clipped to the frame; ``ValueError`` if it is not a box or misses the frame."""
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"a box must be 4 finite numbers x1, y1, x2, y2, got {box.tolist()}")
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box.tolist()} is empty (needs x1 < x2 and y1 < y2)")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ValueError(f"box {box.tolist()} lies outside the {height}x{width} frame")
    return np.clip(box, 0, [width, height, width, height])


def _target(
    shape: str,
    size: tuple[int, int],
    mask: np.ndarray | None,
    box: np.ndarray | None,
    points: np.ndarray | None,
    point_labels: np.ndarray | None,
) -> _Target:
    height, width = size
    if mask is not None:
        area = np.asarray(mask).astype(bool)
        if area.shape != (height, width):
            raise ValueError(f"mask {area.shape} does not match the {height}x{width} frame")
        if not area.any():
            raise ValueError(f"cannot draw a {shape} on an empty mask")
        ys, xs = np.nonzero(area)
        return _Target(area, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64), None)
    if box is not None:
        box = _check_box(box, height, width)
        area = np.zeros((height, width), dtype=bool)
        x1, y1, x2, y2 = box
        area[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = True
        return _Target(area, box, None)
    if points is None:
        raise ValueError(f"a {shape} overlay needs a mask, a box or points")
    if shape not in FROM_POINTS:
        raise ValueError(f"a {shape} overlay needs a mask or a box; points alone draw only {', '.join(FROM_POINTS)}")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if point_labels is not None:
        points = points[np.asarray(point_labels).reshape(-1) > 0]
    if len(points) == 0 or not np.all(np.isfinite(points)):
        raise ValueError(f"a {shape} overlay from points needs at least one finite positive point")
    if np.any(points < 0) or np.any(points[:, 0] >= width) or np.any(points[:, 1] >= height):
        raise ValueError(f"points {points.tolist()} lie outside the {height}x{width} frame")
    if shape == "scribble" and len(points) < 2:
        raise ValueError("a scribble from points needs at least two positive points")
    x, y = points[0]
    return _Target(None, np.array([x, y, x, y]), points)


def _stroke(shape: str, size: tuple[int, int], rng: np.random.Generator, minimum: int = 1) -> int:
    low, high = STROKE_WIDTHS[shape]
    return max(minimum, int(round(rng.uniform(low, high) * max(size) / REFERENCE_SIZE)))


def _pixel(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def _inner_point(target: _Target, rng: np.random.Generator) -> np.ndarray:
    """A point deep inside the object (or the first given point)."""
    if target.area is None:
        return target.points[0]
    inner = target.inner_pixels(0.5)
    return inner[int(rng.integers(len(inner)))]


def _draw_rectangle(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = target.box
    margin = rng.uniform(0.0, 0.05, size=2) * [x2 - x1, y2 - y1]
    top_left = _pixel(np.array([x1, y1]) - margin)
    bottom_right = _pixel(np.array([x2 - 1, y2 - 1]) + margin)
    cv2.rectangle(canvas, top_left, bottom_right, 255, _stroke("rectangle", canvas.shape, rng), cv2.LINE_8)


def _draw_ellipse(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = target.box
    ratio = rng.uniform(1.1, 1.3)
    centre = _pixel(np.array([(x1 + x2) / 2, (y1 + y2) / 2]))
    axes = (max(1, int(round((x2 - x1) / 2 * ratio))), max(1, int(round((y2 - y1) / 2 * ratio))))
    cv2.ellipse(canvas, centre, axes, 0, 0, 360, 255, _stroke("ellipse", canvas.shape, rng), cv2.LINE_8)


def _draw_triangle(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    ys, xs = np.nonzero(target.area)
    pixels = np.stack([xs, ys], axis=1).astype(np.float64)
    triples = pixels[rng.integers(len(pixels), size=(16, 3))]  # (16, 3, 2) candidate vertices
    edges_a, edges_b = triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0]
    areas = np.abs(edges_a[:, 0] * edges_b[:, 1] - edges_a[:, 1] * edges_b[:, 0]) / 2
    if areas.max() >= 1:
        vertices = triples[int(np.argmax(areas))]
    else:  # a line-like object: the triangle of its box
        x1, y1, x2, y2 = target.box
        vertices = np.array([[x1, y2 - 1], [x2 - 1, y2 - 1], [(x1 + x2 - 1) / 2, y1]])
    polygon = np.rint(vertices).astype(np.int32)[None]
    cv2.polylines(canvas, polygon, True, 255, _stroke("triangle", canvas.shape, rng), cv2.LINE_8)


def _draw_point(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    centre = _inner_point(target, rng)
    cv2.circle(canvas, _pixel(centre), _stroke("point", canvas.shape, rng, minimum=2), 255, -1, cv2.LINE_8)


def _draw_scribble(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    if target.area is None:
        path = target.points
    else:
        inner = target.inner_pixels(0.25)
        control = inner[rng.integers(len(inner), size=4)]  # (4, 2) cubic Bézier control points
        t = np.linspace(0.0, 1.0, 64)[:, None]
        basis = np.concatenate([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3], axis=1)  # (64, 4)
        path = basis @ control
    polyline = np.rint(path).astype(np.int32)[None]
    cv2.polylines(canvas, polyline, False, 255, _stroke("scribble", canvas.shape, rng), cv2.LINE_8)


def _draw_mask_contour(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    contours, _ = cv2.findContours(target.area.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, 255, _stroke("mask_contour", canvas.shape, rng), cv2.LINE_8)


def _draw_mask(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    canvas[target.area] = 255


def _draw_arrow(canvas: np.ndarray, target: _Target, rng: np.random.Generator) -> None:
    """An arrow from outside the object's box, in a random direction that starts inside the frame, to a
    point in the object; its tail reaches 8-20 % of the frame beyond the box."""
    height, width = canvas.shape
    tip = _inner_point(target, rng)
    x1, y1, x2, y2 = target.box
    angles = rng.uniform(0, 2 * np.pi) + np.arange(16) * (2 * np.pi / 16)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (16, 2)
    edges = np.where(directions > 0, [x2, y2], [x1, y1])  # the box edge each direction leaves through, per axis
    steps = np.abs(directions)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_edge = np.where(steps > 1e-9, np.abs(edges - tip) / steps, np.inf)  # (16, 2) distance to leave, per axis
    exit_distance = to_edge.min(axis=1)
    lengths = exit_distance + rng.uniform(0.08, 0.2) * max(height, width) + 1
    tails = tip + lengths[:, None] * directions  # (16, 2)
    inside = (tails[:, 0] >= 0) & (tails[:, 0] <= width - 1) & (tails[:, 1] >= 0) & (tails[:, 1] <= height - 1)
    tail = tails[int(np.argmax(inside))] if inside.any() else np.clip(tails[0], 0, [width - 1, height - 1])
    thickness = _stroke("arrow", canvas.shape, rng)
    cv2.arrowedLine(canvas, _pixel(tail), _pixel(tip), 255, thickness, cv2.LINE_8, 0, float(rng.uniform(0.2, 0.35)))


_DRAW = {
    "rectangle": _draw_rectangle,
    "ellipse": _draw_ellipse,
    "triangle": _draw_triangle,
    "point": _draw_point,
    "scribble": _draw_scribble,
    "mask_contour": _draw_mask_contour,
    "mask": _draw_mask,
    "arrow": _draw_arrow,
}


def render_overlay(
    size: tuple[int, int],
    style: OverlayStyle,
    *,
    mask: np.ndarray | None = None,
    box: np.ndarray | None = None,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA layer of one overlay on a frame of ``size`` ``(H, W)``: the style's colour with
    opacity ``alpha`` where drawn, ``(0, 0, 0, 0)`` elsewhere. Inputs as the module's table says; a mask
    ``(H, W)``, a box ``x1, y1, x2, y2`` in pixels (clipped to the frame), points ``(P, 2)`` x, y with
    optional labels (``0`` = negative, ignored). Bad or missing input is a ``ValueError``."""
    height, width = int(size[0]), int(size[1])
    target = _target(style.shape, (height, width), mask, box, points, point_labels)
    coverage = np.zeros((height, width), dtype=np.uint8)
    _DRAW[style.shape](coverage, target, rng)
    drawn = coverage > 0
    layer = np.zeros((height, width, 4), dtype=np.uint8)
    layer[drawn, :3] = style.rgb
    layer[drawn, 3] = int(round(style.alpha * 255))
    return layer


def composite(frame: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """A new ``(H, W, 3)`` uint8 frame: the ``(H, W, 4)`` RGBA ``layer`` alpha-blended over ``frame``."""
    _check_frame(frame)
    if layer.dtype != np.uint8 or layer.shape != (*frame.shape[:2], 4):
        raise ValueError(
            f"an overlay layer must be {(*frame.shape[:2], 4)} uint8 RGBA, got {layer.shape} {layer.dtype}"
        )
    alpha = layer[..., 3:].astype(np.float32) / 255.0
    blended = frame.astype(np.float32) * (1.0 - alpha) + layer[..., :3].astype(np.float32) * alpha
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be an (H, W, 3) uint8 array, got {getattr(frame, 'shape', type(frame))}")


def draw_overlay(
    frame: np.ndarray,
    style: OverlayStyle,
    *,
    mask: np.ndarray | None = None,
    box: np.ndarray | None = None,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    rng: np.random.Generator,
) -> np.ndarray:
    """A new ``(H, W, 3)`` uint8 frame with one overlay drawn on ``frame`` (see :func:`render_overlay`)."""
    _check_frame(frame)
    layer = render_overlay(
        frame.shape[:2], style, mask=mask, box=box, points=points, point_labels=point_labels, rng=rng
    )
    return composite(frame, layer)


# --- samples -----------------------------------------------------------------------------------------


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`VISUAL_PROMPT_MODES`, else ``ValueError``."""
    if mode not in VISUAL_PROMPT_MODES:
        raise ValueError(f"visual_prompt must be one of {VISUAL_PROMPT_MODES}, got {mode!r}")
    return mode


def referenced_objects(conversation: list[dict[str, str]]) -> list[int]:
    """Object index of each reference in the user turns, in order; a bare ``<region>`` is the
    placeholder's occurrence number (the k-th placeholder is object k)."""
    indices, occurrence = [], 0
    for turn in conversation:
        if turn["role"] != "user":
            continue
        for match in REFERENCE.finditer(turn["content"]):
            indices.append(int(match.group(1)) if match.group(1) is not None else occurrence)
            occurrence += 1
    return indices


def rewrite_conversation(
    conversation: list[dict[str, str]], styles: Sequence[OverlayStyle], mode: str
) -> list[dict[str, str]]:
    """The conversation with each object reference of the user turns worded by its overlay.

    ``"overlay"``: ``<object{k}><region>`` (or the k-th bare ``<region>``) becomes
    ``overlay_phrase(styles[k])``; ``"both"``: the phrase, a space, then the reference as written;
    ``"region"``: unchanged. Other turns are kept as they are.
    """
    check_mode(mode)
    if mode == "region":
        return [dict(turn) for turn in conversation]
    occurrence = 0

    def word(match: re.Match) -> str:
        nonlocal occurrence
        index = int(match.group(1)) if match.group(1) is not None else occurrence
        occurrence += 1
        if index >= len(styles):
            raise ValueError(f"object {index} is referenced but only {len(styles)} overlay styles were given")
        phrase = overlay_phrase(styles[index])
        return phrase if mode == "overlay" else f"{phrase} {match.group(0)}"

    return [
        {**turn, "content": REFERENCE.sub(word, turn["content"])} if turn["role"] == "user" else dict(turn)
        for turn in conversation
    ]


def _frames_to_draw(prompts: list[RegionPrompt], frames: str, rng: np.random.Generator) -> list[RegionPrompt]:
    """The prompts of one region on the frames ``frames`` (:data:`OVERLAY_FRAMES`) chooses."""
    if frames == "all":
        return prompts
    given = sorted({p.frame for p in prompts})
    chosen = given[0] if frames == "first" else given[int(rng.integers(len(given)))]
    return [p for p in prompts if p.frame == chosen]


def apply_overlays(
    sample: Sample,
    styles: list[OverlayStyle] | None,
    mode: str,
    rng: np.random.Generator,
    frames: str = "all",
) -> Sample:
    """``sample`` with its region prompts drawn on its frames and its object references worded.

    Region ``k``'s prompts (``sample.regions`` with ``region == k``) are drawn in ``styles[k]``
    (``None``: :func:`random_styles`, one distinct colour per object) on the frames ``frames`` picks
    (:data:`OVERLAY_FRAMES`: every prompted frame, the first, or one drawn from ``rng``), and the user
    turns are rewritten by :func:`rewrite_conversation`. ``"overlay"`` leaves no ``<region>`` in the
    text, so the returned sample has no region prompts; ``"both"`` keeps them; ``"region"`` returns
    ``sample`` itself. ``meta["overlays"]`` lists what was drawn (``region``, ``frame``, ``shape``,
    ``colour``, ``alpha``). A referenced object without prompts, or prompts of an object the text never
    names, is a ``ValueError`` naming the sample.
    """
    check_mode(mode)
    if frames not in OVERLAY_FRAMES:
        raise ValueError(f"frames must be one of {OVERLAY_FRAMES}, got {frames!r}")
    if mode == "region":
        return sample
    referenced = set(referenced_objects(sample.conversation))
    prompted = {p.region for p in sample.regions}
    if referenced != prompted:
        raise ValueError(
            f"{sample.sample_id}: the text names objects {sorted(referenced)} but region prompts are given "
            f"for {sorted(prompted)}"
        )
    if not referenced:
        return sample
    count = max(referenced) + 1
    styles = random_styles(count, rng) if styles is None else list(styles)
    if len(styles) < count:
        raise ValueError(f"{sample.sample_id}: {count} objects but {len(styles)} overlay styles")
    new_frames = sample.frames.copy()
    drawn = []
    for region in sorted(referenced):
        prompts = [p for p in sample.regions if p.region == region]
        for prompt in _frames_to_draw(prompts, frames, rng):
            style = styles[region]
            try:
                new_frames[prompt.frame] = draw_overlay(
                    new_frames[prompt.frame],
                    style,
                    mask=prompt.mask,
                    box=prompt.box,
                    points=prompt.points,
                    point_labels=prompt.point_labels,
                    rng=rng,
                )
            except ValueError as error:
                raise ValueError(f"{sample.sample_id}: region {region} on frame {prompt.frame}: {error}") from error
            drawn.append(
                {
                    "region": region,
                    "frame": prompt.frame,
                    "shape": style.shape,
                    "colour": style.colour,
                    "alpha": style.alpha,
                }
            )
    return dataclasses.replace(
        sample,
        frames=new_frames,
        conversation=rewrite_conversation(sample.conversation, styles, mode),
        regions=list(sample.regions) if mode == "both" else [],
        meta={**sample.meta, "overlays": drawn},
    )

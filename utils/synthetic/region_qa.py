"""Region questions over the moving-shapes world: what is the object the user points at, and where is it going?

Each video of :mod:`utils.synthetic.moving_shapes` yields multiple-choice questions about objects
given by their masks on every frame where they are visible (VideoRefer's multi-frame mode; one of
those frames is the item's ``frame_idx``), as VideoRefer-Bench-Q asks them:

* ``colour`` — "What colour is <object0><region>?" (red / green / blue / yellow);
* ``shape`` — "What shape is <object0><region>?" (square / circle / triangle);
* ``motion`` — "Which way is <object0><region> moving?" (left / right / up / down): the video holds
  look-alikes that only their motion tells apart, so one frame's look does not answer it;
* ``relation`` — "Where is <object0><region> relative to <object1><region>?" (left of / right of /
  above / below), asked only for pairs whose centres are clearly apart along one axis (twice as far
  as along the other, and more than the larger object's size) on every frame where both are visible.

The options list every value of the asked attribute in a fixed order (:data:`OPTIONS`), so chance is
1/4 (1/3 for shapes) and the letter alone never gives the answer away; which value is right follows
the world's uniform draws. Free-form answers (VideoInfer style) say the same in a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.data.prompts import object_reference
from utils.synthetic.moving_shapes import COLOURS, DIRECTIONS, SHAPES, Video

RELATIONS = ("left of", "right of", "above", "below")

OPTIONS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "motion": tuple(DIRECTIONS),
    "relation": RELATIONS,
}
"""Question type -> the values its options list, in order."""

CATEGORIES = {
    "colour": "Basic Questions",
    "shape": "Basic Questions",
    "motion": "Sequential Questions",
    "relation": "Relationship Questions",
}
"""Question type -> the VideoRefer-Bench-Q category it is scored under."""

MIN_ANNOTATED_PIXELS = 20
"""An object is pointed at on a frame where at least this many of its pixels are visible."""


@dataclass
class RegionQuestion:
    """One question: its objects' masks on the annotated frame, the question and both answer forms.

    Attributes:
        kind: ``colour`` / ``shape`` / ``motion`` / ``relation``.
        frame: the key frame (``frame_idx``), one where every pointed-at object is visible.
        frames: the frames each object is given on (where it is visible; for relations, both are).
        objects: indices of the pointed-at objects, ``<object0>`` first.
        question: the text, with ``<object{k}><region>`` for each object.
        options: ``["(A) red", ...]``; answer: the right option (``"(C) blue"``).
        sentence: the answer as a sentence (free-form QA).
    """

    kind: str
    frame: int
    frames: list[int]
    objects: list[int]
    question: str
    options: list[str]
    answer: str
    sentence: str

    @property
    def category(self) -> str:
        return CATEGORIES[self.kind]


def lettered(values: tuple[str, ...]) -> list[str]:
    """``["(A) v0", "(B) v1", ...]``."""
    return [f"({chr(ord('A') + i)}) {value}" for i, value in enumerate(values)]


def _question(
    kind: str, frame: int, frames: list[int], objects: list[int], text: str, value: str, sentence: str
) -> RegionQuestion:
    options = lettered(OPTIONS[kind])
    answer = options[OPTIONS[kind].index(value)]
    return RegionQuestion(kind, frame, frames, objects, text, options, answer, sentence)


def _centre(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def relation_of(first: np.ndarray, second: np.ndarray, min_gap: float) -> str | None:
    """Where mask ``first`` is relative to mask ``second``, or ``None`` when not clearly along one axis."""
    dx, dy = _centre(first) - _centre(second)
    if abs(dx) > 2 * abs(dy) and abs(dx) > min_gap:
        return "left of" if dx < 0 else "right of"
    if abs(dy) > 2 * abs(dx) and abs(dy) > min_gap:
        return "above" if dy < 0 else "below"
    return None


def region_questions(video: Video, rng: np.random.Generator) -> list[RegionQuestion]:
    """Questions about ``video``: colour, shape and motion for each object visible on some frame, and one
    relation question for a random pair that is clearly apart on every frame both show (if any)."""
    visible = video.masks.sum((2, 3)) >= MIN_ANNOTATED_PIXELS  # (N, T)
    questions = []
    ref = object_reference(0)
    for index, obj in enumerate(video.objects):
        frames = [int(t) for t in np.nonzero(visible[index])[0]]
        if not frames:
            continue
        key = frames[int(rng.integers(len(frames)))]
        asked = [
            ("colour", f"What colour is {ref}?", obj.colour, f"It is {obj.colour}."),
            ("shape", f"What shape is {ref}?", obj.shape, f"It is a {obj.shape}."),
            ("motion", f"Which way is {ref} moving?", obj.direction, f"It moves {obj.direction}."),
        ]
        questions += [_question(kind, key, frames, [index], *rest) for kind, *rest in asked]
    pairs = [(a, b) for a in range(len(video.objects)) for b in range(len(video.objects)) if a != b]
    for a, b in (pairs[i] for i in rng.permutation(len(pairs))):
        shared = [int(t) for t in np.nonzero(visible[a] & visible[b])[0]]
        if not shared:
            continue
        min_gap = max(video.objects[a].size, video.objects[b].size)
        relations = {relation_of(video.masks[a, t], video.masks[b, t], min_gap) for t in shared}
        if len(relations) != 1 or None in relations:
            continue
        key = shared[int(rng.integers(len(shared)))]
        text = f"Where is {object_reference(0)} relative to {object_reference(1)}?"
        relation = relations.pop()
        questions.append(
            _question("relation", key, shared, [a, b], text, relation, f"It is {relation} the other object.")
        )
        break
    return questions

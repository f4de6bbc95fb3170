"""Overlay visual prompts: every shape draws its colour at the object and nowhere far from it, alpha blends,
a seed fixes the drawing, bad input is refused, and samples are drawn and worded region by region."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from utils.data.prompts import object_reference
from utils.data.schema import RegionPrompt, Sample
from utils.visual_prompts.overlays import (
    COLOURS,
    SHAPES,
    OverlayStyle,
    apply_overlays,
    composite,
    draw_overlay,
    overlay_phrase,
    random_styles,
    referenced_objects,
    render_overlay,
    rewrite_conversation,
)

HEIGHT, WIDTH = 96, 128
BOX = (50, 35, 80, 60)  # x1, y1, x2, y2 of the object (pixel edges)
RANDOM_SHAPES = ("rectangle", "ellipse", "triangle", "point", "scribble", "arrow")


def textured_frame(seed: int = 0) -> np.ndarray:
    """A noisy frame that contains none of the overlay colours exactly (values in 40..200)."""
    return np.random.default_rng(seed).integers(40, 200, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def object_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    x1, y1, x2, y2 = BOX
    mask[y1:y2, x1:x2] = True
    return mask


def distance_from_box(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = BOX
    dx = np.maximum(np.maximum(x1 - x, x - (x2 - 1)), 0)
    dy = np.maximum(np.maximum(y1 - y, y - (y2 - 1)), 0)
    return np.hypot(dx, dy)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_draws_its_colour_at_the_object_and_leaves_far_pixels_unchanged(shape: str):
    frame, mask = textured_frame(), object_mask()
    out = draw_overlay(frame, OverlayStyle(shape, "blue", alpha=1.0), mask=mask, rng=np.random.default_rng(3))
    assert out.dtype == np.uint8 and out.shape == frame.shape and out is not frame
    changed = np.any(out != frame, axis=2)
    assert changed.any()
    assert np.all(out[changed] == COLOURS["blue"]), "an opaque overlay paints exactly its colour"
    ys, xs = np.nonzero(changed)
    reach = 0.2 * max(HEIGHT, WIDTH) + 10 if shape == "arrow" else 10  # the arrow's tail comes from outside
    assert distance_from_box(xs, ys).max() <= reach, f"{shape} drew far from the object"
    inside = mask[changed].mean()
    if shape in ("point", "scribble", "triangle", "mask"):
        assert inside >= 0.9, f"{shape} must lie on the object ({inside:.2f} inside)"
    if shape == "arrow":
        assert 0 < inside < 1, "the arrow ends on the object and comes from outside it"
    if shape == "mask":
        assert np.array_equal(changed, mask)


def test_arrow_tail_starts_outside_the_object_box():
    frame, mask = textured_frame(), object_mask()
    for seed in range(6):
        out = draw_overlay(frame, OverlayStyle("arrow", "red", 1.0), mask=mask, rng=np.random.default_rng(seed))
        ys, xs = np.nonzero(np.any(out != frame, axis=2))
        assert distance_from_box(xs, ys).max() >= 0.08 * max(HEIGHT, WIDTH)


def test_mask_overlay_alpha_blends_like_pil_alpha_composite():
    frame = textured_frame(1)
    style = OverlayStyle("mask", "yellow", alpha=0.4)
    layer = render_overlay(frame.shape[:2], style, mask=object_mask(), rng=np.random.default_rng(0))
    assert layer.shape == (HEIGHT, WIDTH, 4) and layer.dtype == np.uint8
    assert set(np.unique(layer[..., 3])) == {0, round(0.4 * 255)}
    out = composite(frame, layer)
    expected = np.rint(0.6 * frame[object_mask()] + 0.4 * np.array(COLOURS["yellow"]))
    assert np.abs(out[object_mask()].astype(int) - expected).max() <= 1
    assert np.array_equal(out[~object_mask()], frame[~object_mask()])
    pil = Image.alpha_composite(Image.fromarray(frame).convert("RGBA"), Image.fromarray(layer)).convert("RGB")
    assert np.abs(np.asarray(pil).astype(int) - out).max() <= 1


def test_default_alpha_is_see_through_for_a_mask_and_nearly_opaque_for_strokes():
    assert OverlayStyle("mask", "red").alpha < 0.5 < OverlayStyle("ellipse", "red").alpha <= 1


@pytest.mark.parametrize("shape", RANDOM_SHAPES)
def test_drawing_is_fixed_by_the_seed_and_varies_with_it(shape: str):
    frame, mask, style = textured_frame(), object_mask(), OverlayStyle(shape, "red")
    first = draw_overlay(frame, style, mask=mask, rng=np.random.default_rng(7))
    again = draw_overlay(frame, style, mask=mask, rng=np.random.default_rng(7))
    assert np.array_equal(first, again)
    others = [draw_overlay(frame, style, mask=mask, rng=np.random.default_rng(s)) for s in range(8)]
    assert any(not np.array_equal(first, other) for other in others)


def test_box_falls_back_to_its_rectangle_and_points_draw_point_shapes():
    frame = textured_frame()
    filled = draw_overlay(frame, OverlayStyle("mask", "green", 1.0), box=np.array(BOX), rng=np.random.default_rng(0))
    assert np.array_equal(np.any(filled != frame, axis=2), object_mask())
    outline = draw_overlay(
        frame, OverlayStyle("mask_contour", "green", 1.0), box=np.array(BOX), rng=np.random.default_rng(0)
    )
    assert np.any(outline != frame, axis=2)[BOX[1], BOX[0] + 5]  # the box's top edge
    dot = draw_overlay(
        frame, OverlayStyle("point", "red", 1.0), points=np.array([[20, 70]]), rng=np.random.default_rng(0)
    )
    ys, xs = np.nonzero(np.any(dot != frame, axis=2))
    assert np.hypot(xs - 20, ys - 70).max() <= 15 * WIDTH / 448 + 0.5  # the largest disc radius
    ignored = draw_overlay(
        frame,
        OverlayStyle("point", "red", 1.0),
        points=np.array([[100, 10], [20, 70]]),
        point_labels=np.array([0, 1]),
        rng=np.random.default_rng(0),
    )
    assert np.array_equal(ignored, dot), "negative points are not drawn"
    line = draw_overlay(
        frame, OverlayStyle("scribble", "red", 1.0), points=np.array([[10, 10], [60, 10]]), rng=np.random.default_rng(0)
    )
    assert np.any(line != frame, axis=2)[10, 10:61].all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs a mask, a box or points"),
        ({"mask": np.zeros((HEIGHT, WIDTH), bool)}, "empty mask"),
        ({"mask": np.ones((10, 10), bool)}, "does not match"),
        ({"box": np.array([200, 10, 230, 30])}, "outside"),
        ({"box": np.array([30, 10, 20, 30])}, "empty"),
        ({"box": np.array([1, 2, 3])}, "4 finite numbers"),
        ({"points": np.array([[10, 10]])}, "needs a mask or a box"),
    ],
)
def test_missing_or_bad_input_is_refused(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        draw_overlay(textured_frame(), OverlayStyle("rectangle", "red"), rng=np.random.default_rng(0), **kwargs)


def test_bad_styles_and_frames_are_refused():
    with pytest.raises(ValueError, match="unknown overlay shape 'hexagon'"):
        OverlayStyle("hexagon", "red")
    with pytest.raises(ValueError, match="unknown overlay colour 'mauve'"):
        OverlayStyle("ellipse", "mauve")
    for alpha in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="alpha"):
            OverlayStyle("ellipse", "red", alpha)
    with pytest.raises(ValueError, match="points"):
        draw_overlay(
            textured_frame(), OverlayStyle("point", "red"), points=np.array([[500, 5]]), rng=np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(
            textured_frame().astype(float),
            OverlayStyle("mask", "red"),
            mask=object_mask(),
            rng=np.random.default_rng(0),
        )
    with pytest.raises(ValueError, match="at least two"):
        draw_overlay(
            textured_frame(), OverlayStyle("scribble", "red"), points=np.array([[5, 5]]), rng=np.random.default_rng(0)
        )


def test_overlay_phrase_names_shape_and_colour_and_ignores_alpha():
    assert overlay_phrase(OverlayStyle("ellipse", "red")) == "the object within the red ellipse"
    assert overlay_phrase(OverlayStyle("arrow", "green")) == "the object pointed to by the green arrow"
    assert overlay_phrase(OverlayStyle("point", "blue")) == "the object marked by the blue point"
    assert overlay_phrase(OverlayStyle("mask", "yellow")) == "the object covered by the yellow mask"
    assert overlay_phrase(OverlayStyle("mask_contour", "purple")) == "the object outlined by the purple mask contour"
    phrases = {overlay_phrase(OverlayStyle(s, c)) for s in SHAPES for c in COLOURS}
    assert len(phrases) == len(SHAPES) * len(COLOURS), "every style is worded differently"
    # training draws random opacities, evaluation files carry theirs: the words must not depend on it
    assert overlay_phrase(OverlayStyle("ellipse", "red", 0.77)) == overlay_phrase(OverlayStyle("ellipse", "red"))


def test_random_styles_have_distinct_colours_and_follow_the_seed():
    styles = random_styles(6, np.random.default_rng(0))
    assert len({s.colour for s in styles}) == 6 and len({s.rgb for s in styles}) == 6
    assert styles == random_styles(6, np.random.default_rng(0))
    assert {s.shape for s in random_styles(len(COLOURS), np.random.default_rng(1))} <= set(SHAPES)
    assert random_styles(2, np.random.default_rng(0), shapes=("arrow",), colours=("red", "blue"))[0].shape == "arrow"
    with pytest.raises(ValueError, match="distinct colours"):
        random_styles(len(COLOURS) + 1, np.random.default_rng(0))


def region_sample() -> Sample:
    """4 frames; object 0 given by a mask on frame 1, object 1 by a box on frames 2 and 3."""
    frames = np.stack([textured_frame(s) for s in range(4)])
    question = f"What is {object_reference(0)} doing next to {object_reference(1)}?"
    return Sample(
        sample_id="toy/train/v/0",
        frames=frames,
        frame_names=[f"{t:05d}" for t in range(4)],
        conversation=[{"role": "user", "content": question}, {"role": "assistant", "content": "Waiting."}],
        regions=[
            RegionPrompt(frame=1, mask=object_mask(), region=0),
            RegionPrompt(frame=2, box=np.array([5.0, 5.0, 30.0, 25.0]), region=1),
            RegionPrompt(frame=3, box=np.array([8.0, 6.0, 32.0, 28.0]), region=1),
        ],
    )


STYLES = [OverlayStyle("ellipse", "red", 1.0), OverlayStyle("rectangle", "blue", 1.0)]


def painted(sample: Sample, out: Sample, t: int, colour: str) -> bool:
    changed = np.any(out.frames[t] != sample.frames[t], axis=2)
    return bool(changed.any()) and bool(np.all(out.frames[t][changed] == COLOURS[colour]))


def test_apply_overlays_draws_each_region_on_its_frames_and_words_it():
    sample = region_sample()
    before = sample.frames.copy()
    out = apply_overlays(sample, STYLES, "overlay", np.random.default_rng(0))
    assert np.array_equal(sample.frames, before), "the input sample is not modified"
    assert np.array_equal(out.frames[0], sample.frames[0]), "a frame without prompts stays as it is"
    assert painted(sample, out, 1, "red") and painted(sample, out, 2, "blue") and painted(sample, out, 3, "blue")
    assert out.conversation[0]["content"] == (
        "What is the object within the red ellipse doing next to the object within the blue rectangle?"
    )
    assert out.conversation[1] == sample.conversation[1]
    assert out.regions == [], "no <region> is left to fill"
    assert [(o["region"], o["frame"], o["colour"]) for o in out.meta["overlays"]] == [
        (0, 1, "red"),
        (1, 2, "blue"),
        (1, 3, "blue"),
    ]


def test_apply_overlays_both_keeps_placeholders_and_region_returns_the_sample():
    sample = region_sample()
    both = apply_overlays(sample, STYLES, "both", np.random.default_rng(0))
    assert both.conversation[0]["content"] == (
        "What is the object within the red ellipse <object0><region> doing next to "
        "the object within the blue rectangle <object1><region>?"
    )
    assert len(both.regions) == 3
    assert apply_overlays(sample, STYLES, "region", np.random.default_rng(0)) is sample


def test_apply_overlays_can_draw_on_one_prompted_frame_per_region():
    sample = region_sample()
    first = apply_overlays(sample, STYLES, "overlay", np.random.default_rng(0), frames="first")
    assert painted(sample, first, 2, "blue") and np.array_equal(first.frames[3], sample.frames[3])
    picks = {
        tuple(
            o["frame"]
            for o in apply_overlays(sample, STYLES, "overlay", np.random.default_rng(s), "random").meta["overlays"]
        )
        for s in range(12)
    }
    assert picks == {(1, 2), (1, 3)}


def test_apply_overlays_draws_random_distinct_styles_when_none_are_given():
    sample = region_sample()
    out = apply_overlays(sample, None, "overlay", np.random.default_rng(5))
    colours = [o["colour"] for o in out.meta["overlays"]]
    assert colours[1] == colours[2] != colours[0]
    again = apply_overlays(sample, None, "overlay", np.random.default_rng(5))
    assert np.array_equal(out.frames, again.frames) and out.conversation == again.conversation


def test_bare_region_placeholders_count_as_the_next_objects():
    conversation = [
        {"role": "user", "content": "Compare <region> with <region>."},
        {"role": "assistant", "content": "<region> is not rewritten here."},
        {"role": "user", "content": "And <region>?"},
    ]
    assert referenced_objects(conversation) == [0, 1, 2]
    styles = [OverlayStyle("point", c) for c in ("red", "blue", "gold")]
    rewritten = rewrite_conversation(conversation, styles, "overlay")
    assert (
        rewritten[0]["content"]
        == "Compare the object marked by the red point with the object marked by the blue point."
    )
    assert rewritten[1] == conversation[1]
    assert rewritten[2]["content"] == "And the object marked by the gold point?"


def test_apply_overlays_refuses_a_text_that_does_not_match_the_prompts():
    sample = region_sample()
    sample.conversation[0]["content"] = f"What is {object_reference(0)} doing?"
    with pytest.raises(ValueError, match="toy/train/v/0.*names objects \\[0\\].*\\[0, 1\\]"):
        apply_overlays(sample, STYLES, "overlay", np.random.default_rng(0))
    with pytest.raises(ValueError, match="2 objects but 1 overlay styles"):
        apply_overlays(region_sample(), STYLES[:1], "overlay", np.random.default_rng(0))
    with pytest.raises(ValueError, match="visual_prompt must be one of"):
        apply_overlays(region_sample(), STYLES, "tokens", np.random.default_rng(0))

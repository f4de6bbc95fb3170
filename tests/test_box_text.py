"""Boxes in text (utils/data/box_text.py): round trips as properties, and one example per kind of bad text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data.box_text import (
    GRID,
    format_grid_boxes,
    format_qwen_boxes,
    grid_to_pixels,
    parse_grid_boxes,
    parse_pixel_boxes,
    parse_qwen_boxes,
    pixels_to_grid,
    rescale_boxes,
)

sizes = st.tuples(st.integers(16, 4000), st.integers(16, 4000))
deterministic = settings(deadline=None, derandomize=True, database=None)
"""Same examples every run, nothing written to ``.hypothesis/``."""


@st.composite
def pixel_boxes(draw, size: tuple[int, int] | None = None, integer: bool = False):
    """``(size, (K, 4) boxes)`` inside an image of ``size`` (drawn when not given), corners in order."""
    width, height = size or draw(sizes)
    count = draw(st.integers(1, 4))
    number = st.integers if integer else (lambda lo, hi: st.floats(lo, hi, allow_nan=False))
    boxes = []
    for _ in range(count):
        xs = sorted([draw(number(0, width)), draw(number(0, width))])
        ys = sorted([draw(number(0, height)), draw(number(0, height))])
        boxes.append([xs[0], ys[0], xs[1], ys[1]])
    return (width, height), np.array(boxes, dtype=np.float64)


@settings(deterministic, max_examples=150)
@given(pixel_boxes(), st.sampled_from(["nearest", "floor"]))
def test_pixels_to_grid_text_and_back_is_within_one_grid_step(drawn, rounding):
    size, boxes = drawn
    text = format_grid_boxes(pixels_to_grid(boxes, size, rounding=rounding))
    parsed = parse_grid_boxes(text)
    back = grid_to_pixels(parsed.boxes, size)
    step = np.array(size * 2, dtype=np.float64) / GRID
    assert (parsed.dropped, parsed.reordered, parsed.clipped) == (0, 0, 0)
    assert back.shape == boxes.shape
    assert (np.abs(back - boxes) <= step + 1e-9).all()
    if rounding == "nearest":
        assert (np.abs(back - boxes) <= step / 2 + 1e-9).all()


@settings(deterministic, max_examples=150)
@given(pixel_boxes(integer=True), st.booleans(), st.lists(st.text(max_size=12), min_size=4, max_size=4))
def test_qwen_json_round_trip_is_exact(drawn, fenced, labels):
    size, boxes = drawn
    labels = labels[: len(boxes)]
    parsed = parse_qwen_boxes(format_qwen_boxes(boxes, labels, fenced=fenced), size)
    np.testing.assert_array_equal(parsed.boxes, boxes)
    assert parsed.labels == tuple(labels)
    assert (parsed.dropped, parsed.reordered, parsed.clipped) == (0, 0, 0)


@settings(deterministic, max_examples=100)
@given(pixel_boxes(), sizes)
def test_rescaling_to_another_size_and_back_is_the_identity(drawn, other):
    size, boxes = drawn
    np.testing.assert_allclose(rescale_boxes(rescale_boxes(boxes, size, other), other, size), boxes, atol=1e-6)


@settings(deterministic, max_examples=100)
@given(st.text(max_size=200))
def test_parsers_never_raise_and_return_ordered_boxes_in_range_on_any_text(text):
    for parsed in (parse_grid_boxes(text), parse_qwen_boxes(text, (640, 480))):
        assert parsed.boxes.shape == (len(parsed.labels), 4)
        assert (parsed.boxes[:, :2] <= parsed.boxes[:, 2:]).all()
        assert (parsed.boxes >= 0).all()


def test_several_grid_boxes_in_a_row_are_read_in_order_with_text_between():
    parsed = parse_grid_boxes("left {<1><2><30><40>} and right {<50><20><90><80>}{<0><0><100><100>}.")
    np.testing.assert_array_equal(parsed.boxes, [[1, 2, 30, 40], [50, 20, 90, 80], [0, 0, 100, 100]])
    assert parsed.dropped == 0


def test_garbage_gives_no_boxes_and_counts_nothing():
    for text in ("", "I cannot see a hand.", "{}", "{<a><b><c><d>}", "[refer] where", "<1><2><3><4>"):
        parsed = parse_grid_boxes(text)
        assert len(parsed) == 0 and parsed.dropped == 0, text
    assert len(parse_qwen_boxes("no json here")) == 0


def test_partial_grid_boxes_are_dropped_and_counted():
    parsed = parse_grid_boxes("{<1><2><3>} {<1><2><3><4><5>} {<10><20><30><40>} {<5><6><7><8>")
    np.testing.assert_array_equal(parsed.boxes, [[10, 20, 30, 40]])
    assert parsed.dropped == 3


def test_swapped_corners_are_reordered_and_counted():
    parsed = parse_grid_boxes("{<60><70><10><20>}{<10><70><60><20>}{<1><2><3><4>}")
    np.testing.assert_array_equal(parsed.boxes, [[10, 20, 60, 70], [10, 20, 60, 70], [1, 2, 3, 4]])
    assert parsed.reordered == 2
    qwen = parse_qwen_boxes('[{"bbox_2d": [300, 200, 100, 50], "label": "cup"}]', (640, 480))
    np.testing.assert_array_equal(qwen.boxes, [[100, 50, 300, 200]])
    assert qwen.reordered == 1


def test_out_of_range_values_are_clipped_and_counted():
    parsed = parse_grid_boxes("{<-5><10><120><50>}{<1><2><3><4>}")
    np.testing.assert_array_equal(parsed.boxes, [[0, 10, 100, 50], [1, 2, 3, 4]])
    assert parsed.clipped == 1
    qwen = parse_qwen_boxes('[{"bbox_2d": [-3, 10, 700, 500]}]', (640, 480))
    np.testing.assert_array_equal(qwen.boxes, [[0, 10, 640, 480]])
    assert qwen.clipped == 1
    unbounded = parse_qwen_boxes('[{"bbox_2d": [-3, 10, 700, 500]}]')
    np.testing.assert_array_equal(unbounded.boxes, [[0, 10, 700, 500]])


def test_qwen_items_whose_bbox_is_not_four_numbers_are_dropped_and_counted():
    text = (
        '```json\n[{"bbox_2d": [1, 2, 3], "label": "a"}, {"bbox_2d": ["x", 2, 3, 4]}, {"point_2d": [5, 5]}, '
        '{"bbox_2d": [10, 20, 30, 40], "label": "knife"}]\n```'
    )
    parsed = parse_qwen_boxes(text, (640, 480))
    np.testing.assert_array_equal(parsed.boxes, [[10, 20, 30, 40]])
    assert parsed.labels == ("knife",)
    assert parsed.dropped == 2


def test_qwen_json_cut_off_mid_answer_keeps_its_complete_boxes():
    text = '```json\n[\n  {"bbox_2d": [10, 20, 30, 40], "label": "left hand"},\n  {"bbox_2d": [50, 60, 7'
    parsed = parse_qwen_boxes(text, (640, 480))
    np.testing.assert_array_equal(parsed.boxes, [[10, 20, 30, 40]])
    assert parsed.labels == ("left hand",)


def test_a_single_qwen_object_without_a_list_is_read():
    parsed = parse_qwen_boxes('Here: {"bbox_2d": [1, 2, 3, 4], "label": "pan"}')
    np.testing.assert_array_equal(parsed.boxes, [[1, 2, 3, 4]])


def test_grid_formatting_refuses_non_integer_out_of_range_or_unordered_boxes():
    for bad in ([[1.5, 2, 3, 4]], [[0, 0, 101, 5]], [[10, 0, 5, 5]]):
        with pytest.raises(ValueError):
            format_grid_boxes(bad)
    assert format_grid_boxes([[1, 2, 3, 4], [5, 6, 7, 8]], separator=" ") == "{<1><2><3><4>} {<5><6><7><8>}"


def test_floor_rounding_is_hoi_qas_truncation():
    np.testing.assert_array_equal(pixels_to_grid([[19.19, 10.79, 1919, 1079]], (1920, 1080), "floor"), [[0, 0, 99, 99]])
    np.testing.assert_array_equal(pixels_to_grid([[19.19, 10.79, 1919, 1079]], (1920, 1080)), [[1, 1, 100, 100]])


def test_parse_pixel_boxes_prefers_grid_and_rescales_json_from_the_models_input_size():
    boxes, form = parse_pixel_boxes("{<10><20><30><40>}", (1920, 1080))
    assert form == "grid"
    np.testing.assert_allclose(boxes.boxes, [[192, 216, 576, 432]])
    boxes, form = parse_pixel_boxes('[{"bbox_2d": [28, 56, 112, 140]}]', (1440, 1080), json_size=(560, 420))
    assert form == "qwen"
    np.testing.assert_allclose(boxes.boxes, [[72, 144, 288, 360]])
    boxes, form = parse_pixel_boxes("nothing", (1440, 1080))
    assert form == "none" and len(boxes) == 0


def test_sizes_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        grid_to_pixels([[1, 2, 3, 4]], (0, 10))

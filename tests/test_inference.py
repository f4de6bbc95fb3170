"""Inference on a user's own media: reading it within limits, what the user points at, the files written, and
:class:`~inference.pipeline.UniGRInference` with the shipped tiny model (segmentation, region questions, streamed
answers that match the benchmark predictor, click masks and tracking on the model's own SAM2)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from sam2.sam2_video_predictor import SAM2VideoPredictor

from inference.media import Media, MediaError, MediaLimits, load_media
from inference.outputs import (
    index_masks,
    object_colours,
    overlay_masks,
    write_mask_pngs,
    write_overlay_video,
    zip_folder,
)
from inference.pipeline import UniGRInference, region_question, segmentation_question
from inference.region_prompt import OVERLAY_SHAPES, UserPrompt, read_region_file, region_from_dict
from utils.data.palette import davis_palette, read_index_mask
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.video.clip import read_clip
from utils.video.encode import write_video
from utils.visual_prompts.overlays import OverlayStyle, overlay_phrase
from utils.visual_prompts.tracking import SAM2Tracker

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "unigr_tiny_quickstart"
CAT = ROOT.parent / "shared" / "fixtures" / "video" / "cat.mp4"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def numbered_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames, each a different brightness with a horizontal ramp (so frames differ)."""
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    frames = [np.broadcast_to(20 + 8 * t + ramp, (height, width, 3)) for t in range(num_frames)]
    return np.stack(frames).round().astype(np.uint8)


def media_of(frames: np.ndarray, medium: str = "video", name: str = "shapes.mp4") -> Media:
    """Frames held in memory as if read from a file (10 fps)."""
    timestamps = np.arange(len(frames)) / 10.0 if medium == "video" else None
    names = [f"{t:05d}" for t in range(len(frames))]
    return Media(Path(name), frames, names, timestamps, medium, 10.0, [])


@pytest.fixture(scope="module")
def inference() -> UniGRInference:
    """The shipped tiny model (region encoder, tiny SAM2), loaded once for the module."""
    return UniGRInference(MODEL, max_new_tokens=8)


@pytest.fixture(scope="module")
def cat() -> Path:
    if not CAT.is_file():
        pytest.skip(f"the real clip {CAT} is not here")
    return CAT


@pytest.fixture(scope="module")
def shapes():
    """A synthetic moving-shapes video like those the tiny model was trained on (128 px, 8 frames); its first
    expression is "the green triangle" (object 0)."""
    video = make_video(0, "valid", 2, WorldConfig())
    assert video.expressions[0].text == "the green triangle" and video.expressions[0].target == 0
    return video


# --- inference.media ------------------------------------------------------------------------------------------------


def test_a_missing_path_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.mp4"
    with pytest.raises(MediaError, match=f"{path}: no such file or folder"):
        load_media(path)


@pytest.mark.parametrize("name", ["notes.txt", "README"])
def test_a_file_of_another_type_is_refused_listing_the_types_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("not a video")
    with pytest.raises(MediaError, match=r"is not a video or image type this reads \(\.mp4, .*\.png\)") as error:
        load_media(path)
    assert (".txt" if name.endswith(".txt") else "no extension") in str(error.value)


def test_random_bytes_named_mp4_are_refused_as_an_unreadable_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MediaError, match=r"not a readable video: .*noise\.mp4"):
        load_media(path)


def test_an_empty_mp4_is_refused_as_an_unreadable_video(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        load_media(path)


def test_a_truncated_copy_of_the_cat_clip_is_refused_as_an_unreadable_video(tmp_path: Path, cat: Path) -> None:
    data = cat.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # its index ('moov') is at the end: gone
    with pytest.raises(MediaError, match=r"not a readable video: .*cut\.mp4"):
        load_media(path)


def test_a_file_over_the_size_limit_is_refused_with_its_size(cat: Path) -> None:
    with pytest.raises(MediaError, match=r"cat\.mp4: 0\.2 MB is over the 0\.1 MB limit"):
        load_media(cat, MediaLimits(max_megabytes=0.1))


def test_a_video_longer_than_the_limit_is_refused_with_its_length(cat: Path) -> None:
    with pytest.raises(MediaError, match=r"cat\.mp4: the video is 4\.3 s long; the limit is 2 s"):
        load_media(cat, MediaLimits(max_seconds=2))


def test_a_video_within_the_limits_is_read_whole_at_its_frame_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", numbered_frames(6), fps=10)
    media = load_media(path)
    assert media.medium == "video" and media.source == path and media.notes == []
    assert media.frames.shape == (6, 48, 64, 3) and media.frames.dtype == np.uint8
    assert media.frame_names == [f"{t:05d}" for t in range(6)]
    np.testing.assert_allclose(media.timestamps, np.arange(6) / 10)
    assert media.fps == pytest.approx(10.0)
    brightness = media.frames.mean(axis=(1, 2, 3))
    assert np.all(np.diff(brightness) > 4)  # the frames in their order


def test_a_video_with_more_frames_than_the_limit_is_sampled_uniformly_and_says_so(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", numbered_frames(20), fps=10)
    everything = read_clip(path)
    media = load_media(path, MediaLimits(max_frames=5))
    assert media.notes == ["20 frames sampled uniformly down to 5"]
    indices = [int(name) for name in media.frame_names]
    assert len(indices) == 5 and indices == sorted(set(indices))
    assert indices[0] < 4 and indices[-1] > 15  # spread over the whole clip
    np.testing.assert_array_equal(media.frames, everything.frames[indices])  # each frame is the one it is named
    np.testing.assert_allclose(media.timestamps, everything.timestamps[indices])
    assert media.fps == pytest.approx(4 / (media.timestamps[-1] - media.timestamps[0]))


def test_the_cat_clip_is_sampled_down_to_12_frames_over_its_whole_length(cat: Path) -> None:
    media = load_media(cat, MediaLimits(max_frames=12))
    assert media.frames.shape == (12, 480, 368, 3)
    assert media.notes == ["87 frames sampled uniformly down to 12"]
    indices = [int(name) for name in media.frame_names]
    assert indices == sorted(set(indices)) and indices[0] < 8 and indices[-1] > 78
    np.testing.assert_allclose(media.timestamps, np.array(indices) / 20, atol=1e-6)


def test_frames_larger_than_max_side_are_scaled_down_keeping_their_aspect(cat: Path) -> None:
    media = load_media(cat, MediaLimits(max_frames=3, max_side=240))
    assert media.frames.shape == (3, 240, 184, 3)
    assert media.notes[-1] == "frames scaled from 368x480 to 184x240 (limit 240 px)"
    assert len(media.timestamps) == 3


def test_frames_within_max_side_are_left_as_they_are(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", numbered_frames(3), fps=10)
    media = load_media(path, MediaLimits(max_side=64))
    assert media.frames.shape == (3, 48, 64, 3) and media.notes == []


def test_a_video_suffix_in_capitals_is_read(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", numbered_frames(3), fps=10)
    path = path.rename(tmp_path / "CLIP.MP4")
    assert load_media(path).frames.shape == (3, 48, 64, 3)


def test_an_image_is_one_frame_with_no_timestamps(tmp_path: Path) -> None:
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 128
    path = tmp_path / "photo.png"
    Image.fromarray(rgba).save(path)
    media = load_media(path)
    assert media.medium == "image" and media.timestamps is None and media.fps == 1.0
    assert media.frame_names == ["photo"] and media.notes == []
    assert media.frames.shape == (1, 30, 40, 3)
    np.testing.assert_array_equal(media.frames[0, 0, 0], [200, 100, 50])


def test_a_photo_with_an_exif_rotation_is_read_upright_like_a_rotated_video(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the stored left edge
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to display, as phones write
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes())
    media = load_media(path)
    assert media.frames.shape == (1, 40, 20, 3)
    assert media.frames[0, :8].mean() > 200 and media.frames[0, -8:].mean() < 50  # the band is now on top


def test_a_large_image_is_scaled_down_to_max_side(tmp_path: Path) -> None:
    path = tmp_path / "wide.jpg"
    Image.fromarray(np.full((50, 100, 3), 90, np.uint8)).save(path)
    media = load_media(path, MediaLimits(max_side=40))
    assert media.frames.shape == (1, 20, 40, 3)
    assert media.notes == ["frames scaled from 100x50 to 40x20 (limit 40 px)"]


def test_a_corrupt_image_is_refused_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(MediaError, match=r"broken\.png: not a readable image"):
        load_media(path)


def test_a_frame_folder_is_read_in_numeric_order_at_folder_fps(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = numbered_frames(3, 20, 30)
    for number, frame in zip((2, 10, 4), frames[[0, 2, 1]]):  # written out of order, 2 < 4 < 10 numerically
        Image.fromarray(frame).save(folder / f"{number}.png")
    media = load_media(folder, MediaLimits(folder_fps=2.0))
    assert media.medium == "video" and media.source == folder
    assert media.frame_names == ["2", "4", "10"]
    np.testing.assert_array_equal(media.frames, frames)
    np.testing.assert_allclose(media.timestamps, [1.0, 2.0, 5.0])


def test_a_frame_folder_counts_all_its_frames_against_the_size_limit(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    noise = np.random.default_rng(2).integers(0, 256, (4, 100, 100, 3), dtype=np.uint8)
    for t, frame in enumerate(noise):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    total = sum(f.stat().st_size for f in folder.iterdir())
    one = (folder / "00000.png").stat().st_size
    limit = (one * 2) / 2**20  # above any single frame, below the folder
    assert total > 2 * one
    with pytest.raises(MediaError, match="MB is over the"):
        load_media(folder, MediaLimits(max_megabytes=limit))
    assert len(load_media(folder, MediaLimits(max_megabytes=total / 2**20 + 0.01)).frames) == 4


def test_a_folder_without_frames_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no frames here")
    with pytest.raises(MediaError, match="no frames"):
        load_media(folder)


# --- inference.region_prompt ----------------------------------------------------------------------------------------


def test_a_box_is_clipped_to_the_frame() -> None:
    prompt = UserPrompt(0, "box", box=[-10, 5, 30, 500]).check(1, 48, 64)
    np.testing.assert_array_equal(prompt.box, [0, 5, 30, 48])
    assert prompt.box.dtype == np.float32


def test_a_box_with_swapped_corners_is_put_in_order() -> None:
    prompt = UserPrompt(2, "box", box=[30, 40, 10, 20]).check(3, 48, 64)
    np.testing.assert_array_equal(prompt.box, [10, 20, 30, 40])


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([70, 10, 90, 20], "covers no pixel of the 64x48 frame"),  # entirely right of the frame
        ([10, 10, 10.5, 30], "covers no pixel"),  # no width
        ([1, 2, 3], "a box is four numbers"),
        ([1, 2, float("nan"), 4], "a box is four numbers"),
    ],
)
def test_a_box_that_covers_no_pixel_or_is_malformed_is_refused(box: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UserPrompt(0, "box", box=box).check(1, 48, 64)


def test_a_point_outside_the_frame_is_refused_naming_it() -> None:
    prompt = UserPrompt(0, "points", points=[[10, 10], [64, 5]], labels=[1, 1])
    with pytest.raises(ValueError, match=r"points \[\[64\.0, 5\.0\]\] are outside the 64x48 frame"):
        prompt.check(1, 48, 64)


def test_points_without_labels_are_all_on_the_object() -> None:
    prompt = UserPrompt(0, "points", points=[[10, 10], [20, 30]]).check(1, 48, 64)
    np.testing.assert_array_equal(prompt.labels, [1, 1])
    assert prompt.points.shape == (2, 2)


@pytest.mark.parametrize(
    ("points", "labels", "message"),
    [
        ([[10, 10], [20, 20]], [0, 0], "at least one point must be on the object"),
        ([[10, 10], [20, 20]], [1], "labels are one 0 or 1 per point"),
        ([[10, 10]], [2], "labels are one 0 or 1 per point"),
        ([], None, "points are a list of"),
        ([10, 10], None, "points are a list of"),
    ],
)
def test_points_with_bad_labels_or_shape_are_refused(points: list, labels: list | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UserPrompt(0, "points", points=points, labels=labels).check(1, 48, 64)


@pytest.mark.parametrize("frame", [-1, 3])
def test_a_prompt_on_a_frame_outside_the_input_is_refused(frame: int) -> None:
    with pytest.raises(ValueError, match=f"frame {frame} is outside the input's 3 frames"):
        UserPrompt(frame, "box", box=[1, 1, 9, 9]).check(3, 48, 64)


def test_an_unknown_prompt_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        UserPrompt(0, "lasso", box=[1, 1, 9, 9]).check(1, 48, 64)


def test_an_empty_mask_is_refused_and_the_message_starts_with_where() -> None:
    with pytest.raises(ValueError, match="^my region: the mask is empty"):
        UserPrompt(0, "mask", mask=np.zeros((48, 64), bool)).check(1, 48, 64, where="my region")


def test_a_mask_of_another_size_than_the_frame_is_refused() -> None:
    with pytest.raises(ValueError, match=r"must be a \(48, 64\) mask, got \(64, 48\)"):
        UserPrompt(0, "mask", mask=np.ones((64, 48), bool)).check(1, 48, 64)


def test_a_brushed_scribble_is_checked_as_a_mask() -> None:
    stroke = np.zeros((48, 64), np.uint8)
    stroke[10:12, 5:40] = 3
    prompt = UserPrompt(0, "scribble", mask=stroke).check(1, 48, 64)
    assert prompt.mask.dtype == bool and prompt.mask.sum() == 70
    with pytest.raises(ValueError, match="the scribble is empty"):
        UserPrompt(0, "scribble", mask=np.zeros((48, 64), bool)).check(1, 48, 64)


def test_a_drawn_box_is_the_box_filled() -> None:
    mask = UserPrompt(0, "box", box=[10, 20, 30, 40]).check(1, 48, 64).drawn_mask(48, 64)
    expected = np.zeros((48, 64), bool)
    expected[20:40, 10:30] = True
    np.testing.assert_array_equal(mask, expected)


def test_drawn_points_are_discs_at_the_positive_points_only() -> None:
    prompt = UserPrompt(0, "points", points=[[10, 10], [40, 30]], labels=[1, 0]).check(1, 48, 64)
    mask = prompt.drawn_mask(48, 64)
    assert mask[10, 10] and not mask[30, 40]
    assert not mask[10, 20]  # a disc, not a line between the points
    assert 5 <= mask.sum() <= 30


def test_a_drawn_scribble_is_a_stroke_through_its_points() -> None:
    prompt = UserPrompt(0, "scribble", points=[[5, 10], [50, 10], [50, 40]]).check(1, 48, 64)
    mask = prompt.drawn_mask(48, 64)
    assert mask[10, 5] and mask[10, 30] and mask[10, 50] and mask[25, 50] and mask[40, 50]
    assert not mask[20, 20]  # the stroke is open: a closing segment from (50, 40) back to (5, 10) would cross here


def test_a_drawn_mask_is_the_mask_itself() -> None:
    given = np.zeros((48, 64), bool)
    given[3:7, 8:9] = True
    np.testing.assert_array_equal(UserPrompt(0, "mask", mask=given).check(1, 48, 64).drawn_mask(48, 64), given)


def write_json(path: Path, spec: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


def test_a_box_region_file_gives_its_frame_and_box(tmp_path: Path) -> None:
    prompt = read_region_file(write_json(tmp_path / "box.json", {"frame": 2, "box": [1, 2, 30, 40]}))
    assert (prompt.frame, prompt.kind) == (2, "box")
    np.testing.assert_array_equal(prompt.check(3, 48, 64).box, [1, 2, 30, 40])


def test_a_points_region_file_keeps_its_labels(tmp_path: Path) -> None:
    spec = {"frame": 0, "points": [[5, 6], [7, 8]], "labels": [1, 0]}
    prompt = read_region_file(write_json(tmp_path / "clicks.json", spec)).check(1, 48, 64)
    assert prompt.kind == "points"
    np.testing.assert_array_equal(prompt.points, [[5, 6], [7, 8]])
    np.testing.assert_array_equal(prompt.labels, [1, 0])


def test_a_scribble_region_file_is_a_polyline_and_frame_defaults_to_zero(tmp_path: Path) -> None:
    prompt = read_region_file(write_json(tmp_path / "stroke.json", {"scribble": [[5, 6], [20, 6]]}))
    assert (prompt.frame, prompt.kind, prompt.mask) == (0, "scribble", None)
    assert prompt.check(1, 48, 64).drawn_mask(48, 64)[6, 12]


def test_a_mask_region_file_reads_its_png_relative_to_the_json_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "regions"
    ids = np.zeros((48, 64), np.uint8)
    ids[10:20, 30:35] = 255
    write_json(folder / "mask.json", {"frame": 1, "mask": "drawn.png"})
    Image.fromarray(ids).save(folder / "drawn.png")
    monkeypatch.chdir(tmp_path)  # elsewhere than the JSON's folder
    prompt = read_region_file(Path("regions") / "mask.json")
    assert (prompt.frame, prompt.kind) == (1, "mask")
    np.testing.assert_array_equal(prompt.mask, ids > 0)


def test_a_mask_png_as_the_region_file_is_a_mask_on_frame_zero(tmp_path: Path) -> None:
    values = np.zeros((48, 64), np.uint8)
    values[5:9, 5:9] = 1
    Image.fromarray(values).save(tmp_path / "object.png")
    prompt = read_region_file(tmp_path / "object.png")
    assert (prompt.frame, prompt.kind) == (0, "mask")
    np.testing.assert_array_equal(prompt.mask, values > 0)


def test_an_rgba_mask_png_is_read_from_its_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((48, 64, 4), np.uint8)  # black everywhere: only the alpha says where the object is
    rgba[20:30, 10:15, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "painted.png")
    prompt = read_region_file(tmp_path / "painted.png")
    assert prompt.mask.sum() == 50 and prompt.mask[25, 12]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("list.json", "[1, 2]", "a region is a JSON object, got list"),
        ("two.json", '{"box": [1, 2, 3, 4], "points": [[1, 2]]}', r"exactly one of .*got \['box', 'points'\]"),
        ("none.json", '{"frame": 0}', "exactly one of .*got none"),
        ("float.json", '{"frame": 1.0, "box": [1, 2, 3, 4]}', "frame must be an integer, got 1.0"),
        ("bool.json", '{"frame": true, "box": [1, 2, 3, 4]}', "frame must be an integer, got True"),
        ("text.json", '{"frame": "0", "box": [1, 2, 3, 4]}', "frame must be an integer, got '0'"),
        ("gone.json", '{"mask": "missing.png"}', "cannot read the mask image .*missing.png"),
    ],
)
def test_a_malformed_region_file_is_refused_naming_the_file(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_region_file(path)
    assert str(path) in str(error.value)


def test_a_missing_region_file_is_refused() -> None:
    with pytest.raises(ValueError, match="no such region file"):
        read_region_file(Path("/nonexistent/region.json"))


def test_a_region_dict_reads_a_mask_relative_to_the_base_folder(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 5), 9, np.uint8)).save(tmp_path / "m.png")
    prompt = region_from_dict({"mask": "m.png", "frame": 3}, tmp_path, "request 0")
    assert (prompt.frame, prompt.kind) == (3, "mask") and prompt.mask.shape == (4, 5) and prompt.mask.all()
    with pytest.raises(ValueError, match="^request 7: give exactly one"):
        region_from_dict({}, tmp_path, "request 7")


# --- inference.outputs ----------------------------------------------------------------------------------------------


def test_index_masks_numbers_objects_from_one_and_a_later_object_wins_an_overlap() -> None:
    masks = np.zeros((2, 1, 4, 4), bool)
    masks[0, 0, :2, :3] = True
    masks[1, 0, 1:3, 2:] = True
    ids = index_masks(masks)
    assert ids.dtype == np.uint8 and ids.shape == (1, 4, 4)
    expected = np.array([[1, 1, 1, 0], [1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(ids[0], expected)
    np.testing.assert_array_equal(index_masks(np.zeros((0, 3, 4, 4), bool)), np.zeros((3, 4, 4), np.uint8))


def test_mask_pngs_are_one_davis_indexed_png_per_frame_named_after_it(tmp_path: Path) -> None:
    masks = np.zeros((2, 3, 6, 7), bool)
    masks[0, 0, 1:3, 1:3] = True
    masks[1, 2, 4:, 5:] = True
    paths = write_mask_pngs(tmp_path / "masks", masks, ["00003", "00010", "00018"])
    assert paths == [tmp_path / "masks" / f"{name}.png" for name in ("00003", "00010", "00018")]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["00003.png", "00010.png", "00018.png"]
    for path, expected in zip(paths, index_masks(masks)):
        np.testing.assert_array_equal(read_index_mask(path), expected)
    with Image.open(paths[0]) as image:
        assert image.mode == "P" and image.getpalette()[3:6] == davis_palette()[3:6] == [128, 0, 0]


def test_an_overlay_blends_each_object_in_its_colour_and_outlines_it_in_white() -> None:
    frame = np.zeros((10, 12, 3), np.uint8)
    frame[:] = (100, 50, 200)
    masks = np.zeros((2, 10, 12), bool)
    masks[0, 2:8, 1:7] = True
    masks[1, 6:10, 8:12] = True
    out = overlay_masks(frame, masks)
    colours = object_colours(2)
    assert not np.array_equal(colours[0], colours[1])
    np.testing.assert_array_equal(out[0, 0], frame[0, 0])  # outside both masks: unchanged
    np.testing.assert_array_equal(out[0, 8:], frame[0, 8:])
    np.testing.assert_array_equal(out[4, 3], np.round(0.45 * frame[4, 3] + 0.55 * colours[0]))  # inside object 0
    np.testing.assert_array_equal(out[8, 9], np.round(0.45 * frame[8, 9] + 0.55 * colours[1]))  # inside object 1
    assert (out[2, 3] == 255).all() and (out[5, 1] == 255).all() and (out[6, 10] == 255).all()  # outlines


def test_an_overlay_video_is_h264_with_every_frame_and_odd_sizes_cropped_to_even(tmp_path: Path) -> None:
    frames = np.full((5, 33, 47, 3), 128, np.uint8)
    masks = np.zeros((1, 5, 33, 47), bool)
    masks[0, :, 8:26, 10:34] = True
    path = write_overlay_video(tmp_path / "overlay.mp4", frames, masks, fps=10)
    assert path == tmp_path / "overlay.mp4"
    clip = read_clip(path)
    assert clip.frames.shape == (5, 32, 46, 3)
    np.testing.assert_allclose(clip.timestamps, np.arange(5) / 10, atol=1e-3)
    tinted = np.round(0.45 * 128 + 0.55 * object_colours(1)[0])
    np.testing.assert_allclose(clip.frames[:, 17, 22].astype(float), np.broadcast_to(tinted, (5, 3)), atol=12)
    np.testing.assert_allclose(clip.frames[:, 2, 2].astype(float), 128, atol=8)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # index first: a browser plays it while it downloads


def test_zip_folder_archives_every_file_by_its_path_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    (folder / "masks").mkdir(parents=True)
    (folder / "masks" / "00000.png").write_bytes(b"png bytes")
    (folder / "result.json").write_text("{}")
    archive = zip_folder(folder, tmp_path / "out.zip")
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["masks/00000.png", "result.json"]
        assert opened.read("masks/00000.png") == b"png bytes"


# --- inference.pipeline: wording --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "medium", "kind", "expected"),
    [
        ("the cat", "video", "auto", "Please segment the cat in this video."),
        ("  the cat  ", "image", "auto", "Please segment the cat in this image."),
        (
            "Which animal could catch a mouse?",
            "video",
            "auto",
            "Which animal could catch a mouse? Please answer with a segmentation mask of the video.",
        ),
        ("the cat", "video", "reasoning", "the cat Please answer with a segmentation mask of the video."),
        ("Is it a cat?", "image", "referring", "Please segment Is it a cat? in this image."),
    ],
)
def test_a_segmentation_request_is_worded_with_the_training_templates(
    text: str, medium: str, kind: str, expected: str
) -> None:
    assert segmentation_question(text, medium, kind) == expected


def test_an_empty_segmentation_request_or_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="say what to segment"):
        segmentation_question("   ", "video")
    with pytest.raises(ValueError, match="kind must be one of"):
        segmentation_question("the cat", "video", "grounding")


@pytest.mark.parametrize(
    ("question", "medium", "expected"),
    [
        ("What is it doing?", "video", "There is <object0><region> in the video. What is it doing?"),
        ("What colour is it?", "image", "There is <object0><region> in the image. What colour is it?"),
        ("What is <region> doing?", "video", "What is <object0><region> doing?"),
        ("What is <object0><region> doing? ", "video", "What is <object0><region> doing?"),
    ],
)
def test_a_region_question_names_the_object_once_as_object_zero(question: str, medium: str, expected: str) -> None:
    assert region_question(question, medium) == expected


def test_a_region_question_naming_another_object_number_leaves_no_stray_object_tag() -> None:
    try:
        worded = region_question("Is <object1><region> red?", "video")
    except ValueError:
        return  # refusing it is as good as renumbering it
    assert "<object1>" not in worded and worded.count("<object0><region>") == 1


def test_a_question_about_two_regions_is_refused_saying_to_write_region_once() -> None:
    with pytest.raises(ValueError, match="write <region> once"):
        region_question("Is <region> bigger than <region>?", "video")


def test_an_empty_region_question_is_refused() -> None:
    with pytest.raises(ValueError, match="the question is empty"):
        region_question(" ", "video")


# --- inference.pipeline: the model ------------------------------------------------------------------------------------


def test_segmenting_a_named_shape_gives_one_track_per_seg_that_follows_it(inference: UniGRInference, shapes) -> None:
    result = inference.segment(media_of(shapes.frames), "the green triangle")
    assert "[SEG]" in result.answer  # the answer keeps its [SEG] tokens
    assert result.masks.shape == (result.answer.count("[SEG]"), 8, 128, 128) and result.masks.dtype == bool
    overlaps = [iou(result.masks[0, t], shapes.masks[0][t]) for t in range(8)]
    assert min(overlaps) > 0.6, overlaps


def test_segmenting_an_image_gives_masks_of_its_one_frame(inference: UniGRInference, shapes) -> None:
    result = inference.segment(media_of(shapes.frames[:1], "image", "shapes.png"), "the green triangle")
    assert result.masks.shape == (result.answer.count("[SEG]"), 1, 128, 128)


def test_a_model_without_a_segmentation_head_refuses_to_segment(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert inference.can_segment
    monkeypatch.setattr(inference, "segmenter", None)
    assert not inference.can_segment
    with pytest.raises(ValueError, match="no segmentation head; it can only answer"):
        inference.segment(media_of(shapes.frames), "the green triangle")


def test_a_region_sample_gives_region_tokens_on_the_frames_where_the_object_is(
    inference: UniGRInference, shapes
) -> None:
    assert inference.region_encoder  # the shipped model has the region encoder
    masks = shapes.masks[0].copy()
    masks[:3] = False  # not pointed at on the first three frames
    media = media_of(shapes.frames)
    sample = inference.region_sample(media, "What shape is it?", masks, "box")
    assert sample.conversation == [
        {"role": "user", "content": "There is <object0><region> in the video. What shape is it?"}
    ]
    assert [p.frame for p in sample.regions] == [3, 4, 5, 6, 7]
    assert all(p.region == 0 and np.array_equal(p.mask, masks[p.frame]) for p in sample.regions)
    np.testing.assert_array_equal(sample.frames, shapes.frames)  # nothing drawn
    assert sample.medium == "video" and sample.frame_names == media.frame_names


def test_a_region_empty_on_every_frame_is_refused(inference: UniGRInference, shapes) -> None:
    with pytest.raises(ValueError, match="empty on every frame"):
        inference.region_sample(media_of(shapes.frames), "What is it?", np.zeros((8, 128, 128), bool))


@pytest.mark.parametrize("kind", sorted(OVERLAY_SHAPES))
def test_without_a_region_encoder_the_region_is_drawn_and_named_by_its_overlay_phrase(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(inference, "region_encoder", False)
    masks = shapes.masks[0].copy()
    masks[:3] = False
    sample = inference.region_sample(media_of(shapes.frames), "What shape is <region>?", masks, kind)
    phrase = overlay_phrase(OverlayStyle(OVERLAY_SHAPES[kind], "red"))
    assert sample.conversation[0]["content"] == f"What shape is {phrase}?"
    assert "<region>" not in sample.conversation[0]["content"] and sample.regions == []
    changed = (sample.frames != shapes.frames).any(axis=3)  # (T, H, W)
    assert not changed[:3].any()  # no overlay where the object is not pointed at
    for t in range(3, 8):
        assert changed[t].any()
        ys, xs = np.nonzero(masks[t])
        cy, cx = np.nonzero(changed[t])
        margin = 16  # strokes and the slightly enlarged rectangle stay near the object
        assert cy.min() >= ys.min() - margin and cy.max() <= ys.max() + margin
        assert cx.min() >= xs.min() - margin and cx.max() <= xs.max() + margin


def question_samples(inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch, which: str):
    media = media_of(shapes.frames)
    if which == "plain":
        return inference.sample(media, "What shapes are in the video?")
    if which == "image":
        return inference.sample(media_of(shapes.frames[:1], "image", "shapes.png"), "What colour is the triangle?")
    if which == "segmentation":
        return inference.sample(media, segmentation_question("the green triangle", "video"))
    if which == "overlay":
        monkeypatch.setattr(inference, "region_encoder", False)
    return inference.region_sample(media, "What colour is <region>?", shapes.masks[0], "mask")


@pytest.mark.parametrize("which", ["plain", "image", "segmentation", "region", "overlay"])
def test_the_streamed_answer_grows_and_ends_with_the_benchmark_predictor_s_answer(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    sample = question_samples(inference, shapes, monkeypatch, which)
    items = list(inference.ask(sample))
    assert items and all(isinstance(item, str) for item in items)
    assert all(later.startswith(earlier) for earlier, later in zip(items, items[1:]))
    expected = inference.answerer.predict(sample)[1]
    assert items[-1] == expected
    assert inference.answer(sample) == expected


def test_an_error_while_generating_reaches_the_caller_of_the_stream(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_generate(*args, **kwargs):
        raise RuntimeError("out of memory while generating")

    monkeypatch.setattr(inference.model, "generate", broken_generate)
    with pytest.raises(RuntimeError, match="out of memory while generating"):
        list(inference.ask(inference.sample(media_of(shapes.frames), "What is there?")))


class RecordingPredictor:
    """Stands in for SAM2's image predictor: records what it is given and returns set masks and scores."""

    def __init__(self, masks: np.ndarray, scores: list[float]):
        self.masks, self.scores = masks, np.array(scores, np.float32)
        self.images: list[np.ndarray] = []
        self.calls: list[dict] = []

    def set_image(self, image: np.ndarray) -> None:
        self.images.append(image)

    def predict(self, point_coords, point_labels, box, multimask_output):
        self.calls.append({"points": point_coords, "labels": point_labels, "box": box, "multi": multimask_output})
        return self.masks.astype(np.float32), self.scores, None


def three_masks() -> np.ndarray:
    masks = np.zeros((3, 128, 128), bool)
    masks[0, :10, :10] = masks[1, 50:60, 50:70] = masks[2, 100:, 100:] = True
    return masks


def test_a_box_is_given_to_sam2_on_its_frame_checked_and_sam2_s_mask_returned(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RecordingPredictor(three_masks()[1:2], [0.7])
    monkeypatch.setattr(inference, "_clicks", fake)
    mask = inference.prompt_mask(media_of(shapes.frames), UserPrompt(5, "box", box=[90, 70, 20, 140]))
    np.testing.assert_array_equal(mask, three_masks()[1])
    assert len(fake.images) == 1 and np.array_equal(fake.images[0], shapes.frames[5])
    (call,) = fake.calls
    np.testing.assert_array_equal(call["box"], [20, 70, 90, 128])  # sorted and clipped before SAM2 sees it
    assert call["points"] is None and call["labels"] is None and call["multi"] is False


def test_one_click_asks_sam2_for_several_masks_and_keeps_the_best_scored(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RecordingPredictor(three_masks(), [0.2, 0.3, 0.9])
    monkeypatch.setattr(inference, "_clicks", fake)
    mask = inference.prompt_mask(media_of(shapes.frames), UserPrompt(0, "points", points=[[40, 50]]))
    np.testing.assert_array_equal(mask, three_masks()[2])
    (call,) = fake.calls
    np.testing.assert_array_equal(call["points"], [[40, 50]])
    np.testing.assert_array_equal(call["labels"], [1])
    assert call["box"] is None and call["multi"] is True


def test_several_clicks_ask_sam2_for_one_mask_with_their_labels(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RecordingPredictor(three_masks()[:1], [0.5])
    monkeypatch.setattr(inference, "_clicks", fake)
    prompt = UserPrompt(1, "points", points=[[40, 50], [60, 70]], labels=[1, 0])
    inference.prompt_mask(media_of(shapes.frames), prompt)
    (call,) = fake.calls
    np.testing.assert_array_equal(call["labels"], [1, 0])
    assert call["multi"] is False


def test_a_scribble_becomes_positive_clicks_along_its_stroke(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RecordingPredictor(three_masks()[:1], [0.5])
    monkeypatch.setattr(inference, "_clicks", fake)
    prompt = UserPrompt(0, "scribble", points=[[10, 60], [110, 60]])
    inference.prompt_mask(media_of(shapes.frames), prompt)
    (call,) = fake.calls
    stroke = prompt.drawn_mask(128, 128)
    points = call["points"].astype(int)
    assert len(points) == 8 and all(stroke[y, x] for x, y in points)
    assert points[:, 0].max() - points[:, 0].min() > 50  # spread along the stroke, not bunched at one end
    np.testing.assert_array_equal(call["labels"], np.ones(8))
    assert call["box"] is None and call["multi"] is False


def test_when_sam2_finds_nothing_the_drawn_shape_stands_for_the_object(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "_clicks", RecordingPredictor(np.zeros((1, 128, 128), bool), [0.1]))
    prompt = UserPrompt(0, "box", box=[10, 20, 30, 40])
    mask = inference.prompt_mask(media_of(shapes.frames), prompt)
    np.testing.assert_array_equal(mask, prompt.drawn_mask(128, 128))


def test_a_mask_prompt_is_used_as_drawn_without_sam2(
    inference: UniGRInference, shapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = RecordingPredictor(three_masks(), [1, 1, 1])
    monkeypatch.setattr(inference, "_clicks", fake)
    drawn = shapes.masks[0][4]
    mask = inference.prompt_mask(media_of(shapes.frames), UserPrompt(4, "mask", mask=drawn.astype(np.uint8)))
    np.testing.assert_array_equal(mask, drawn)
    assert fake.calls == [] and fake.images == []


def test_a_prompt_outside_the_media_is_refused_before_sam2(inference: UniGRInference, shapes) -> None:
    with pytest.raises(ValueError, match=r"points \[\[130\.0, 5\.0\]\] are outside the 128x128 frame"):
        inference.prompt_mask(media_of(shapes.frames), UserPrompt(0, "points", points=[[130, 5]]))
    with pytest.raises(ValueError, match="frame 8 is outside the input's 8 frames"):
        inference.prompt_mask(media_of(shapes.frames), UserPrompt(8, "box", box=[1, 1, 20, 20]))


def test_clicks_on_the_cat_run_sam2_s_image_predictor_on_the_model_s_own_sam2(
    inference: UniGRInference, cat: Path
) -> None:
    media = load_media(cat, MediaLimits(max_frames=4))
    for prompt in (UserPrompt(1, "box", box=[100, 150, 300, 400]), UserPrompt(2, "points", points=[[180, 250]])):
        mask = inference.prompt_mask(media, prompt)
        assert mask.shape == (480, 368) and mask.dtype == bool and mask.any()
    assert inference._click_predictor().model is inference.model.seg_head.sam2


def test_tracking_on_an_image_returns_its_mask_as_the_one_frame(inference: UniGRInference, shapes) -> None:
    mask = shapes.masks[0][0].copy()
    tracked = inference.track(media_of(shapes.frames[:1], "image"), 0, mask)
    assert tracked.shape == (1, 128, 128)
    np.testing.assert_array_equal(tracked[0], mask)
    tracked[0] = False
    assert mask.any()  # a copy: the caller's mask is untouched


def test_tracking_a_video_gives_a_mask_per_frame_and_keeps_the_users_mask_on_its_frame(
    inference: UniGRInference, shapes
) -> None:
    truth = shapes.masks[0]
    tracked = inference.track(media_of(shapes.frames), 2, truth[2])
    assert tracked.shape == (8, 128, 128) and tracked.dtype == bool
    np.testing.assert_array_equal(tracked[2], truth[2])  # the prompt frame is the user's, not SAM2's re-segmentation
    tracker = inference._track_with()
    assert isinstance(tracker, SAM2Tracker) and inference._track_with() is tracker  # built once


def test_a_tracker_from_the_model_s_sam2_has_its_weights_in_a_separate_float32_video_predictor(
    inference: UniGRInference,
) -> None:
    sam2 = inference.model.seg_head.sam2
    seg = inference.model.seg_head.config
    tracker = SAM2Tracker.from_sam2(sam2, seg.sam2_config, seg.sam2_overrides)
    assert isinstance(tracker.predictor, SAM2VideoPredictor) and not tracker.predictor.training
    assert tracker.predictor.binarize_mask_from_pts_for_mem_enc  # SAM2's video post-processing overrides
    ours, theirs = tracker.predictor.state_dict(), sam2.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor.to(ours[name].dtype)), name
        assert ours[name].data_ptr() != tensor.data_ptr() or tensor.numel() == 0, name  # copied, not shared
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in tracker.predictor.parameters())
    assert any(not torch.equal(p, torch.zeros_like(p)) for p in tracker.predictor.parameters())

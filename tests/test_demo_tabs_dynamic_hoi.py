"""The demo's *Dynamic reasoning* and *Hand-object* tabs: their logic on the quick start's tiny model and a tiny
random Grounding DINO, then each tab driven in headless Chromium (``python app.py --detector``) as a person uses it.

The browser tests reuse :mod:`tests.test_demo_browser`'s browser fixture and helpers; their app is started here
with ``--detector``. Screenshots go to each test's output folder (and to ``$UNIGR_DEMO_SHOTS`` if set).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import app
from demo.app import build_demo
from demo.context import DemoContext
from demo.tabs import registered_tabs
from demo.tabs.dynamic_reasoning import (
    answering_with,
    chosen_option,
    draw_tracks,
    dsr_question,
    load_detector,
    mask_boxes,
    objects_in_question,
    parse_object_names,
    track_objects,
    tracking_unavailable,
    write_tracks_video,
)
from demo.tabs.hand_object import (
    FREE_QUESTION,
    PRESETS,
    HoiSession,
    answer_boxes,
    boxes_summary,
    draw_boxes,
    hoi_question,
    model_image_size,
)
from inference.media import Media, MediaLimits, load_media
from inference.pipeline import UniGRInference
from scripts.infer import DEFAULT_MODEL
from tests.test_demo_browser import CHROMIUM, UNSEEN_SEED, WAIT_MS, _wait_uploaded, browser, serve_app  # noqa: F401
from tests.test_dynamic_pipeline import save_tiny_detector
from utils.data.box_text import format_grid_boxes
from utils.data.dsr_bench import DSR_NUM_FRAMES, VideoQuestion, VideoQuestionDataset
from utils.data.hoi_qa import TASKS, classify_task
from utils.synthetic.egocentric import EgoConfig, make_frame
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.video.encode import write_video

ROOT = Path(__file__).resolve().parents[1]
MAX_FRAMES = 6
"""Frames the app decodes per upload here (its --max-frames): SAM2 tracks every one on a CPU."""
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "the", "red", "blue", "green", "square", "circle"]


@pytest.fixture(scope="module")
def detector_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_detector(tmp_path_factory.mktemp("gdino") / "gdino", VOCABULARY)


@pytest.fixture(scope="module")
def inference() -> UniGRInference:
    return UniGRInference(DEFAULT_MODEL, max_new_tokens=8)


@pytest.fixture(scope="module")
def shapes_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unseen synthetic clip of moving shapes, 3x upscaled, as an MP4."""
    video = make_video(UNSEEN_SEED, "valid_u", 0, WorldConfig())
    frames = np.repeat(np.repeat(video.frames, 3, 1), 3, 2)
    return write_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", frames, fps=4)


# ---- dynamic reasoning: the logic ------------------------------------------------------------------------------


def test_object_names_are_split_on_commas_stripped_and_kept_once() -> None:
    assert parse_object_names(" red car ,man,, Red  Car, the dog ") == ["red car", "man", "the dog"]
    assert parse_object_names(None) == [] and parse_object_names(" , ") == []


def test_the_objects_a_dsr_question_names_are_found_without_its_viewpoint_and_measure_words() -> None:
    question = (
        "Following the perspective of the red car as it moves, how does the distance to the man in black change "
        "between 1.0s and 3.0s?"
    )
    assert objects_in_question(question) == ["red car", "man"]
    templated = "From the perspective of the blue robot at 1.5 s, how does the average speed of a red ball compare?"
    assert objects_in_question(templated) == ["blue robot", "red ball"]
    assert objects_in_question("How does the distance between the red square and the blue circle change?") == [
        "red square",
        "blue circle",
    ]
    assert objects_in_question("In which direction does the camera move?") == []


def test_a_question_with_options_is_the_user_turn_dsr_bench_asks() -> None:
    options = "left\nright\n(C) forward"
    turn, lettered = dsr_question("  Which way does the red ball move? ", options)
    item = VideoQuestion(
        "dsr_bench/test/0", Path("v.mp4"), "Which way does the red ball move?", tuple(lettered), ("A",), "x"
    )
    assert turn == VideoQuestionDataset([item], DSR_NUM_FRAMES).user_turn(item)
    assert lettered == ["(A) left", "(B) right", "(C) forward"]
    assert dsr_question("How fast is it?", "  ") == ("How fast is it?", [])
    with pytest.raises(ValueError, match="empty"):
        dsr_question("  ", "a\nb")
    with pytest.raises(ValueError, match="the options"):
        dsr_question("Which way?", "only one")


def test_the_chosen_option_is_read_as_the_benchmark_reads_it() -> None:
    options = ["(A) left", "(B) right"]
    assert chosen_option("The answer is (B).", options) == "The model chose **(B) right**."
    assert chosen_option("I cannot tell", options) == "No option can be read from the answer."


def test_the_model_answers_with_dsr_benchs_32_frames_without_loading_it_again(inference: UniGRInference) -> None:
    assert inference.answerer.num_frames != DSR_NUM_FRAMES  # the tiny model's own count (8)
    dsr = answering_with(inference, DSR_NUM_FRAMES)
    assert dsr.answerer.model is inference.model and dsr.answerer.num_frames == DSR_NUM_FRAMES
    assert inference.answerer.num_frames != DSR_NUM_FRAMES and answering_with(inference, 8) is inference
    media = Media(Path("v.mp4"), np.zeros((40, 28, 28, 3), np.uint8), [f"{t:05d}" for t in range(40)],
                  np.arange(40) / 4.0, "video", 4.0, [])  # fmt: skip
    assert len(dsr.answerer.llm_frames(inference.sample(media, "Where?"))) == DSR_NUM_FRAMES


def test_mask_boxes_are_pixel_edges_and_nan_where_the_object_is_not_seen() -> None:
    masks = np.zeros((2, 3, 10, 12), dtype=bool)
    masks[0, 0, 2:5, 3:7] = True
    masks[1, 2, 9, 11] = True
    boxes = mask_boxes(masks)
    assert boxes.shape == (2, 3, 4)
    np.testing.assert_array_equal(boxes[0, 0], [3, 2, 7, 5])
    np.testing.assert_array_equal(boxes[1, 2], [11, 9, 12, 10])
    assert np.isnan(boxes[0, 1:]).all() and np.isnan(boxes[1, :2]).all()


def test_tracks_are_drawn_with_their_mask_box_and_name_and_written_as_a_video(tmp_path: Path) -> None:
    frames = np.full((2, 60, 81, 3), 40, dtype=np.uint8)
    masks = np.zeros((1, 2, 60, 81), dtype=bool)
    masks[0, 0, 30:50, 20:60] = True
    drawn = draw_tracks(frames, masks, ["ball"])
    assert (drawn[0, 40, 40] != 40).any()  # inside the mask: coloured
    assert (drawn[0, 30:50, 20] != 40).any(axis=-1).all()  # the box's left edge
    assert (drawn[0, 20:29, 20:40] != 40).any()  # the name's label above the box
    np.testing.assert_array_equal(drawn[1], frames[1])  # not seen on frame 1: nothing drawn
    path = write_tracks_video(tmp_path / "tracked.mp4", frames, masks, ["ball"], fps=4.0)
    assert load_media(path).frames.shape == (2, 60, 80, 3)  # even width


def test_named_objects_are_detected_masked_and_tracked_through_every_frame(
    inference: UniGRInference, detector_folder: Path, shapes_clip: Path
) -> None:
    media = load_media(shapes_clip, MediaLimits(max_frames=4))
    detector = load_detector(detector_folder, torch.device("cpu"))
    tracked = track_objects(inference, detector, media, ["red square", "blue circle"], box_threshold=0.0)
    assert tracked.names == ["red square", "blue circle"] and tracked.missing == []
    assert tracked.masks.shape == (2, *media.frames.shape[:3]) and tracked.masks[:, 0].any(axis=(1, 2)).all()
    nothing = track_objects(inference, detector, media, ["red square"], box_threshold=1.0)
    assert nothing.names == [] and nothing.missing == ["red square"] and nothing.masks.shape[0] == 0


def test_without_a_detector_the_tab_answers_and_says_tracking_needs_one(
    inference: UniGRInference, tmp_path: Path, detector_folder: Path
) -> None:
    without = DemoContext(inference, MediaLimits(), tmp_path)
    assert "--detector" in tracking_unavailable(without)
    assert tracking_unavailable(DemoContext(inference, MediaLimits(), tmp_path, detector=detector_folder)) is None
    titles = [spec.title for spec in registered_tabs()]
    assert {"Dynamic reasoning", "Hand-object"} <= set(titles)
    assert all(spec.available(without) is None for spec in registered_tabs() if spec.title in titles[-2:])
    build_demo(without)  # both tabs build without a detector


def test_a_detector_that_is_not_a_folder_stops_the_app_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=f"--detector {tmp_path / 'gdino'} is not a folder"):
        app.main(["--detector", str(tmp_path / "gdino")])
    assert app.parse_args([]).detector is None


# ---- hand-object: the logic ------------------------------------------------------------------------------------


def test_preset_questions_are_worded_as_hoi_qa_and_classify_as_their_task() -> None:
    assert hoi_question("Where is the left hand?") == "Where is the left hand of the person?"
    assert hoi_question("Which hand holds the <noun>?", " knife ") == "Which hand is holding the knife?"
    answers = {"box": "{<10><20><30><40>}", "noun": "knife", "hand": "left hand"}
    for label, preset in PRESETS.items():
        question = hoi_question(label, "knife")
        assert not question.startswith("["), question  # HOI-QA's loader strips the task tag
        kind = TASKS[preset.task][1]
        assert classify_task(None, question, answers[kind], label) == preset.task, question


def test_a_noun_question_without_a_noun_and_an_empty_free_question_are_refused() -> None:
    with pytest.raises(ValueError, match="needs the object's name"):
        hoi_question("Where is the <noun>?", "  ")
    with pytest.raises(ValueError, match="empty"):
        hoi_question(FREE_QUESTION, free=" ")
    assert hoi_question(FREE_QUESTION, free=" What is cut? ") == "What is cut?"


def test_grid_boxes_of_an_answer_are_put_in_frame_pixels_labelled_and_drawn() -> None:
    question = hoi_question("Where are both hands?")
    answer = format_grid_boxes(np.array([[10, 20, 30, 40], [60, 20, 90, 100]]))
    boxes, form = answer_boxes(answer, question, "handN2handBB", (200, 100), (140, 84))
    assert form == "grid" and boxes.labels == ("hand", "hand")
    np.testing.assert_allclose(boxes.boxes, [[20, 20, 60, 40], [120, 20, 180, 100]])
    frame = np.zeros((100, 200, 3), np.uint8)
    drawn = draw_boxes(frame, boxes)
    assert drawn[30, 20].any() and drawn[60, 120].any() and not drawn[60, 100].any() and not frame.any()
    assert "2 box(es) from HOI-QA grid boxes" in boxes_summary(boxes, form)


def test_qwen_json_boxes_are_rescaled_from_the_image_the_model_saw_and_keep_their_labels() -> None:
    answer = '```json\n[{"bbox_2d": [10, 5, 50, 25], "label": "cup"}, {"bbox_2d": [0, 0, 20, 20]}]\n```'
    boxes, form = answer_boxes(answer, "Where is the cup?", "objN2objBB", (200, 100), (100, 50))
    assert form == "qwen" and boxes.labels == ("cup", "cup")
    np.testing.assert_allclose(boxes.boxes[0], [20, 10, 100, 50])
    none, form = answer_boxes("a knife", "What is in the left hand?", "handN2objN", (200, 100), (100, 50))
    assert form == "none" and len(none) == 0 and boxes_summary(none, form) == "The answer gives no box."


def test_a_video_frame_is_asked_about_as_one_image_of_the_size_the_model_sees(inference: UniGRInference) -> None:
    frames = np.arange(3 * 108 * 192 * 3, dtype=np.uint32).reshape(3, 108, 192, 3).astype(np.uint8)
    media = Media(Path("v.mp4"), frames, ["00000", "00001", "00002"], np.arange(3) / 4.0, "video", 4.0, [])
    one = HoiSession(media, frame=2).frame_media()
    assert one.medium == "image" and one.frame_names == ["00002"] and one.timestamps is None
    np.testing.assert_array_equal(one.frames[0], frames[2])
    width, height = model_image_size(inference, one, "Where is the left hand of the person?")
    assert width % 28 == 0 and height % 28 == 0 and abs(width / height - 192 / 108) < 0.2


# ---- both tabs in a browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_app_url(tmp_path_factory: pytest.TempPathFactory, detector_folder: Path) -> Iterator[str]:
    """``python app.py --detector <tiny Grounding DINO>`` on a free port with a small frame budget."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup_env.sh)")
    log = tmp_path_factory.mktemp("app") / "app.log"
    yield from serve_app(log, MAX_FRAMES, "--max-new-tokens", "8", "--detector", str(detector_folder))


def _open_tab(browser, url: str, title: str, upload_id: str):  # noqa: F811 (the imported fixture)
    page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
    page.goto(url)
    page.get_by_role("tab", name=title).click()
    page.wait_for_selector(f"#{upload_id} input[type=file]", state="attached", timeout=WAIT_MS)
    return page


def _screenshot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("UNIGR_DEMO_SHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def test_a_video_question_is_answered_and_the_named_objects_are_tracked_and_drawn(
    browser,  # noqa: F811 (the imported fixture)
    detector_app_url: str,
    shapes_clip: Path,
    tmp_path: Path,
) -> None:
    page = _open_tab(browser, detector_app_url, "Dynamic reasoning", "dyn-input")
    page.locator("#dyn-input input[type=file]").set_input_files(str(shapes_clip))
    _wait_uploaded(page, "#dyn-input", shapes_clip.name)
    page.wait_for_function("document.querySelector('#dyn-info').innerText.includes('frames')", timeout=WAIT_MS)
    page.locator("#dyn-question textarea").fill(
        "How does the distance between the red square and the blue circle change?"
    )
    page.locator("#dyn-options textarea").fill("It grows\nIt shrinks")
    threshold = page.locator("#dyn-threshold input[type=number]")
    threshold.fill("0")
    threshold.press("Enter")
    page.locator("#dyn-ask").click()
    page.wait_for_function("document.querySelector('#dyn-answer textarea').value.length > 0", timeout=WAIT_MS)
    page.wait_for_selector("#dyn-video video", timeout=WAIT_MS)
    status = page.locator("#dyn-status").inner_text()
    assert "Tracked red square (" in status.replace("*", "") and "blue circle (" in status.replace("*", "")
    assert f"of {MAX_FRAMES} frames" in status
    assert page.locator("#dyn-video video").get_attribute("src").endswith("tracked.mp4")
    _screenshot(page, tmp_path, "demo_dynamic_reasoning")


def test_a_hand_preset_is_asked_about_an_image_and_the_answer_drawn_on_it(
    browser,  # noqa: F811 (the imported fixture)
    detector_app_url: str,
    tmp_path: Path,
) -> None:
    frame = make_frame(UNSEEN_SEED, "demo", 0, EgoConfig())
    image = tmp_path / "kitchen.png"
    Image.fromarray(frame.image).save(image)
    page = _open_tab(browser, detector_app_url, "Hand-object", "hoi-input")
    page.locator("#hoi-input input[type=file]").set_input_files(str(image))
    page.wait_for_selector("#hoi-frame img", timeout=WAIT_MS)
    page.locator("#hoi-preset").get_by_text("Which hand holds the <noun>?").click()
    page.locator("#hoi-noun textarea").fill("cup")
    page.locator("#hoi-ask").click()
    page.wait_for_function("document.querySelector('#hoi-answer textarea').value.length > 0", timeout=WAIT_MS)
    page.wait_for_selector("#hoi-drawn img", timeout=WAIT_MS)
    assert "Which hand is holding the cup?" in page.locator("#hoi-asked").inner_text()
    assert page.locator("#hoi-boxes").inner_text().strip()
    _screenshot(page, tmp_path, "demo_hand_object")

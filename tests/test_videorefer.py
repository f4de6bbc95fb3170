"""VideoRefer-700K and VideoRefer-Bench-Q / -D loaders read what :mod:`utils.synthetic.videorefer_format` writes.

A tiny world of two moving squares is written in each released layout (JPEG frame folders for Bench-Q,
MP4s for Bench-D, both for 700K); the loaders must give back the questions, answers, options and
categories, and region prompts on exactly the frames whose masks were written, through frame subsampling.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from utils.data.catalog import EVALUATED_SPLITS, LOADERS
from utils.data.mixture import DataConfigError, check_training_data
from utils.data.prompts import MULTIPLE_CHOICE_INSTRUCTION, multiple_choice_question, object_reference
from utils.data.videorefer import BENCH_Q_FILE, DESCRIPTION_QUESTION, number_objects
from utils.synthetic.videorefer_format import (
    RegionQARecord,
    write_videorefer_700k,
    write_videorefer_bench_d,
    write_videorefer_bench_q,
)
from utils.video.errors import MissingVideoError

T, H, W = 8, 32, 48
QA_FILE, CAPTION_FILE = "videorefer-qa-75k.json", "videorefer-detailed-caption-125k.json"


def _world() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames, red, blue)``: a red square moving right and a blue one moving down, ``(T, H, W)`` masks each."""
    frames = np.full((T, H, W, 3), 40, np.uint8)
    red, blue = np.zeros((T, H, W), bool), np.zeros((T, H, W), bool)
    for t in range(T):
        red[t, 4:12, 2 + 4 * t : 10 + 4 * t] = True
        blue[t, 2 + 3 * t : 10 + 3 * t, 36:44] = True
    frames[red] = (220, 30, 30)
    frames[blue] = (30, 30, 220)
    return frames, red, blue


FRAMES, RED, BLUE = _world()
NAMES = [f"{t:05d}" for t in range(T)]
EMPTY = np.zeros((H, W), bool)


def _record(video: str, objects: list[dict[int, np.ndarray]], question: str, answer: str, **fields) -> RegionQARecord:
    fields = {"options": None, "category": "Basic Questions", "id": 0, **fields}
    return RegionQARecord(video, FRAMES, NAMES, objects, question, answer=answer, **fields)


BENCH_Q = [
    _record(
        "DAVIS/JPEGImages/480p/shapes",
        [{t: RED[t] for t in (1, 3, 5, 7)}],
        "Where does <object3><region> go?",
        "(B) To the right",
        options=["(A) To the left", "(B) To the right", "(C) Back to where <object3> started"],
        category="Sequential Questions",
        id=10,
        frame_idx=3,
    ),
    _record(
        "MeViS/valid_u/JPEGImages/shapes",
        [{t: RED[t] for t in (0, 2, 6)}, {2: BLUE[2], 4: EMPTY, 6: BLUE[6]}],
        "Is <object0><region> above <object1><region>?",
        "(A) Yes",
        options=["(A) Yes", "(B) No"],
        category="Relationship Questions",
        id=11,
        frame_idx=2,
    ),
]
BENCH_D = [
    _record(
        "clip_0:00:01.000_0:00:02.000.mp4",
        [{t: RED[t] for t in (0, 4, 7)}],
        "",
        "A red square slides right.",
        frame_idx=4,
    )
]
TRAIN_QA = [
    _record("mevis/shapes", [{2: RED[2], 5: RED[5]}], "What is <region> doing?", "Moving to the right."),
    _record(
        "mevis/shapes",
        [{1: BLUE[1]}, {6: RED[6]}],
        "Which of <object0><region> and <object1><region> moves down?",
        "(A) <object0>",
        options=["(A) <object0>", "(B) <object1>"],
        id=1,
    ),
]
TRAIN_CAPTION = [_record("panda/clip.mp4", [{3: BLUE[3]}], "Describe <region> in detail.", "A blue square falls.")]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every layout written once under ``<root>/{bench_q, bench_d, train}``."""
    root = tmp_path_factory.mktemp("videorefer")
    write_videorefer_bench_q(root / "bench_q", BENCH_Q)
    write_videorefer_bench_d(root / "bench_d", BENCH_D)
    write_videorefer_700k(root / "train", TRAIN_QA, QA_FILE)
    write_videorefer_700k(root / "train", TRAIN_CAPTION, CAPTION_FILE)
    return root


@pytest.fixture
def data(source: Path, tmp_path: Path) -> Path:
    """A private copy of the written sets, free to corrupt."""
    shutil.copytree(source, tmp_path / "data")
    return tmp_path / "data"


def build(root: Path, loader: str, num_frames: int | None = None, train: bool = False, seed: int = 0, **options):
    folder = {"videorefer_bench_q": "bench_q", "videorefer_bench_d": "bench_d", "videorefer": "train"}[loader]
    split = "train" if loader == "videorefer" else "test"
    return LOADERS[loader].build(root / folder, split, num_frames=num_frames, train=train, seed=seed, **options)


def written_masks(record: RegionQARecord, k: int) -> dict[int, np.ndarray]:
    """Object ``k``'s masks with pixels, by frame index (empty ones mark absence)."""
    return {frame: mask for frame, mask in record.objects[k].items() if mask.any()}


def check_regions(sample, record: RegionQARecord) -> None:
    """Every sampled frame where an object has a written mask has one prompt of it, equal to that mask."""
    indices = sample.meta["frame_indices"]
    for k in range(len(record.objects)):
        expected = written_masks(record, k)
        prompts = [p for p in sample.regions if p.region == k]
        assert sorted(indices[p.frame] for p in prompts) == sorted(i for i in indices if i in expected)
        for prompt in prompts:
            np.testing.assert_array_equal(prompt.mask, expected[indices[prompt.frame]])


def assert_frames_close(frames: np.ndarray, indices: list[int], tolerance: float) -> None:
    """Lossy (JPEG / H.264) frames stay close to the written ones."""
    assert frames.shape == (len(indices), H, W, 3)
    assert np.abs(frames.astype(float) - FRAMES[indices].astype(float)).mean() < tolerance


# --- round trips ---------------------------------------------------------------------------------------


def test_bench_q_round_trip_gives_the_question_options_answer_and_region_masks(source: Path) -> None:
    dataset = build(source, "videorefer_bench_q")
    assert len(dataset) == 2
    first, second = dataset[0], dataset[1]
    options = ["(A) To the left", "(B) To the right", "(C) Back to where <object0> started"]
    assert first.conversation == [
        {"role": "user", "content": multiple_choice_question("Where does <object0><region> go?", options)},
        {"role": "assistant", "content": "(B) To the right"},
    ]
    assert first.meta["answer"] == "(B) To the right" and first.meta["options"] == options
    assert first.meta["category"] == "Sequential Questions" and first.meta["id"] == 10 and first.meta["frame_idx"] == 3
    assert first.meta["raw_question"] == "Where does <object3><region> go?"
    assert first.frame_names == NAMES and first.meta["frame_indices"] == list(range(T))
    np.testing.assert_allclose(first.timestamps, np.arange(T) / 24.0)  # a DAVIS folder: 24 fps
    np.testing.assert_allclose(second.timestamps, np.arange(T) / 5.0)  # a MeViS folder: 5 fps
    assert_frames_close(first.frames, list(range(T)), tolerance=4.0)
    for sample, record in ((first, BENCH_Q[0]), (second, BENCH_Q[1])):
        check_regions(sample, record)
    assert [p.frame for p in second.regions if p.region == 1] == [2, 6]  # the empty mask on frame 4 gives no prompt
    assert second.conversation[0]["content"].startswith(f"Is {object_reference(0)} above {object_reference(1)}?")


def test_bench_d_round_trip_reads_the_mp4_and_asks_for_a_description(source: Path) -> None:
    dataset = build(source, "videorefer_bench_d")
    sample = dataset[0]
    assert sample.conversation == [
        {"role": "user", "content": DESCRIPTION_QUESTION.format(object=object_reference(0))},
        {"role": "assistant", "content": "A red square slides right."},
    ]
    assert sample.meta["answer"] == "A red square slides right." and sample.meta["category"] == "description"
    assert sample.meta["video"] == BENCH_D[0].video and sample.meta["frame_idx"] == 4
    assert sample.frame_names == NAMES
    np.testing.assert_allclose(sample.timestamps, np.arange(T) / 30.0, atol=1e-3)
    assert_frames_close(sample.frames, list(range(T)), tolerance=10.0)
    check_regions(sample, BENCH_D[0])
    assert [p.frame for p in sample.regions] == [0, 4, 7]


def test_700k_round_trip_reads_the_chosen_files_folders_and_mp4s(source: Path) -> None:
    qa = build(source, "videorefer", json_files=[QA_FILE])
    both = build(source, "videorefer", json_files=[QA_FILE, CAPTION_FILE])
    assert len(qa) == 2 and len(both) == 3
    free, choice = qa[0], qa[1]
    assert free.conversation == [
        {"role": "user", "content": f"What is {object_reference(0)} doing?"},
        {"role": "assistant", "content": "Moving to the right."},
    ]
    assert free.meta["category"] == "qa" and free.meta["answer"] == "Moving to the right."
    question = "Which of <object0><region> and <object1><region> moves down?"
    assert choice.conversation[0]["content"] == multiple_choice_question(question, ["(A) <object0>", "(B) <object1>"])
    assert choice.conversation[1]["content"] == choice.meta["answer"] == "(A) <object0>"
    caption = both[2]
    assert caption.meta["category"] == "detailed_caption" and caption.meta["video"] == "panda/clip.mp4"
    assert caption.conversation[0]["content"] == f"Describe {object_reference(0)} in detail."
    for sample, record in ((free, TRAIN_QA[0]), (choice, TRAIN_QA[1]), (caption, TRAIN_CAPTION[0])):
        check_regions(sample, record)
    with pytest.raises(FileNotFoundError, match="videorefer-short-caption-500k.json"):
        build(source, "videorefer")  # the default reads all three released files


# --- frames and prompts ----------------------------------------------------------------------------------


def test_region_prompts_follow_frame_subsampling_and_keep_the_key_frame(source: Path) -> None:
    sample = build(source, "videorefer_bench_q", num_frames=3)[0]
    indices = sample.meta["frame_indices"]
    assert len(indices) == 3 and 3 in indices  # frame_idx 3 is forced in among uniform frames
    assert sample.frame_names == [NAMES[i] for i in indices]
    assert_frames_close(sample.frames, indices, tolerance=4.0)
    check_regions(sample, BENCH_Q[0])
    assert all(0 <= p.frame < 3 for p in sample.regions) and sample.regions


def test_training_jitter_is_seeded_per_item_and_keeps_every_object_prompted(source: Path) -> None:
    draws = []
    for seed in range(6):
        sample = build(source, "videorefer_bench_q", num_frames=2, train=True, seed=seed)[1]
        check_regions(sample, BENCH_Q[1])
        assert {p.region for p in sample.regions} == {0, 1}
        assert (
            sample.meta["frame_indices"] == build(source, "videorefer_bench_q", 2, True, seed)[1].meta["frame_indices"]
        )
        draws.append(tuple(sample.meta["frame_indices"]))
    assert len(set(draws)) > 1


def test_single_mask_mode_prompts_only_on_frame_idx(source: Path) -> None:
    sample = build(source, "videorefer_bench_q", mask_mode="single")[1]
    assert [(p.region, p.frame) for p in sample.regions] == [(0, 2), (1, 2)]


def test_objects_are_numbered_by_their_first_region_and_labels_follow() -> None:
    users, others = number_objects(
        ["<object3><region> beside <object1><region>, near <region>"], ["<object1>, <object3>, <object7>"], 3, "here"
    )
    assert users == [f"{object_reference(0)} beside {object_reference(1)}, near {object_reference(2)}"]
    assert others == ["<object1>, <object0>, <object3>"]  # an unknown label takes the next free number
    with pytest.raises(ValueError, match="here: the text points at 1 objects"):
        number_objects(["<region>"], [], 2, "here")


def test_multiple_choice_prompt_lists_every_option_and_asks_for_the_letter() -> None:
    prompt = multiple_choice_question("What is it?", ["(A) A cat", "A dog", "(C)A fox"])
    assert prompt.splitlines() == [
        "What is it?",
        "Options:",
        "(A) A cat",
        "(B) A dog",
        "(C) A fox",
        MULTIPLE_CHOICE_INSTRUCTION,
    ]
    with pytest.raises(ValueError, match=r"lettered \(C\), expected \(B\)"):
        multiple_choice_question("What is it?", ["(A) A cat", "(C) A dog"])
    with pytest.raises(ValueError, match="2 to 26 options"):
        multiple_choice_question("What is it?", ["(A) A cat"])


def test_overlay_mode_words_the_objects_and_draws_on_the_prompted_frames(source: Path) -> None:
    plain = build(source, "videorefer_bench_q")[0]
    overlay = build(source, "videorefer_bench_q", visual_prompt="overlay")[0]
    both = build(source, "videorefer_bench_q", visual_prompt="both")[0]
    text = overlay.conversation[0]["content"]
    assert "<region>" not in text and "<object" not in text and "the object" in text
    assert not any("<object" in option for option in overlay.meta["options"]) and overlay.regions == []
    prompted = sorted({p.frame for p in plain.regions})
    changed = [t for t in range(T) if not np.array_equal(plain.frames[t], overlay.frames[t])]
    assert changed == prompted
    assert object_reference(0) in both.conversation[0]["content"] and len(both.regions) == len(plain.regions)
    assert both.conversation[0]["content"].index("the object") < both.conversation[0]["content"].index("<object0>")


# --- bad input -----------------------------------------------------------------------------------------------


def _edit(path: Path, change) -> None:
    items = json.loads(path.read_text())
    change(items)
    path.write_text(json.dumps(items))


def test_malformed_rle_error_names_the_sample_and_the_file(data: Path) -> None:
    def corrupt(items: list) -> None:
        items[0]["annotation"][0]["3"]["segmentation"]["counts"] = "~~not RLE"

    _edit(data / "bench_q" / BENCH_Q_FILE, corrupt)
    with pytest.raises(
        ValueError, match=r"videorefer_bench_q/test/0 .*VideoRefer-Bench-Q\.json.*frame 3: malformed RLE"
    ):
        build(data, "videorefer_bench_q")[0]


def test_missing_video_error_names_the_sample_and_the_path(data: Path) -> None:
    shutil.rmtree(data / "bench_q" / "DAVIS")
    with pytest.raises(MissingVideoError, match=r"DAVIS/JPEGImages/480p/shapes: sample videorefer_bench_q/test/0"):
        build(data, "videorefer_bench_q")[0]
    (data / "bench_d" / "Panda-70M-part" / BENCH_D[0].video).unlink()
    with pytest.raises(
        FileNotFoundError, match=r"clip_0:00:01\.000_0:00:02\.000\.mp4: sample videorefer_bench_d/test/0"
    ):
        build(data, "videorefer_bench_d")[0]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda item: item["annotation"][0].update({"99": item["annotation"][0]["1"]}), "annotated on frame 99"),
        (
            lambda item: [frame.update(segmentation=None) for frame in item["annotation"][0].values()],
            "object 0 has no mask with pixels",
        ),
        (lambda item: item.update(Question="Is <region> near <region>?"), "points at 2 objects"),
        (lambda item: item.update(annotation=[]), "'annotation' must be a non-empty list"),
    ],
)
def test_bad_annotations_are_errors_naming_the_sample_and_the_file(data: Path, change, message: str) -> None:
    _edit(data / "bench_q" / BENCH_Q_FILE, lambda items: change(items[0]))
    with pytest.raises(ValueError, match=f"videorefer_bench_q/test/0 .*{BENCH_Q_FILE}.*{message}"):
        build(data, "videorefer_bench_q")[0]


def test_writer_refuses_an_answer_outside_the_options() -> None:
    with pytest.raises(ValueError, match="not one of the options"):
        _record("v", [{0: RED[0]}], "Is <region> red?", "(C) Maybe", options=["(A) Yes", "(B) No"])


# --- ids and splits ------------------------------------------------------------------------------------------


def test_sample_ids_are_unique_stable_and_listed_without_reading_videos(source: Path) -> None:
    for loader, options in (
        ("videorefer_bench_q", {}),
        ("videorefer_bench_d", {}),
        ("videorefer", {"json_files": [QA_FILE, CAPTION_FILE]}),
    ):
        dataset = build(source, loader, **options)
        ids = dataset.sample_ids()
        assert len(set(ids)) == len(ids) == len(dataset)
        assert (
            ids == build(source, loader, **options).sample_ids() == [dataset[i].sample_id for i in range(len(dataset))]
        )
    assert build(source, "videorefer", json_files=[QA_FILE, CAPTION_FILE]).sample_ids() == [
        "videorefer/train/videorefer-qa-75k/0",
        "videorefer/train/videorefer-qa-75k/1",
        "videorefer/train/videorefer-detailed-caption-125k/0",
    ]


def test_benchmark_splits_are_evaluated_and_refused_in_a_training_mix(source: Path) -> None:
    assert {("videorefer_bench_q", "test"), ("videorefer_bench_d", "test")} <= EVALUATED_SPLITS
    assert ("videorefer", "train") not in EVALUATED_SPLITS
    assert {LOADERS[name].family for name in ("videorefer", "videorefer_bench_q", "videorefer_bench_d")} == {
        "ref_videoqa"
    }

    def mix(loader: str, folder: str, split: str, **options) -> dict:
        entry = {"loader": loader, "root": str(source / folder), "split": split, "weight": 1, "options": options}
        return {"num_frames": 4, "samples_per_epoch": 8, "datasets": {"refer": entry}}

    assert [spec.loader for spec in check_training_data(mix("videorefer", "train", "train", json_files=[QA_FILE]))] == [
        "videorefer"
    ]
    for loader, folder in (("videorefer_bench_q", "bench_q"), ("videorefer_bench_d", "bench_d")):
        with pytest.raises(DataConfigError, match=f"{loader} split 'test' is evaluated"):
            check_training_data(mix(loader, folder, "test"))

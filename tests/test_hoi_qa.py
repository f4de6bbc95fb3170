"""HOI-QA: the loader (utils/data/hoi_qa.py), its scorer (evaluation/hoi_scoring.py) and the frame extractor
(scripts/extract_hoi_frames.py), on a tiny tree in the released layout with small frames of the sources'
aspect ratios (EPIC 192x108 for 1920x1080, Ego4D 144x108 for 1440x1080)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation import run_eval
from evaluation.benchmarks import BENCHMARKS, Benchmark
from evaluation.hoi_scoring import COLUMNS, box_iou, box_result, hand_side_correct, noun_correct, score_hoi
from evaluation.prediction_store import IncompletePredictions, PredictionStore
from scripts import extract_hoi_frames
from utils.data.box_text import format_grid_boxes, grid_to_pixels, pixels_to_grid
from utils.data.collate import IGNORE_INDEX, SampleCollator
from utils.data.hoi_qa import HoiQADataset, classify_task, overlapping_images
from utils.data.registry import LOADERS
from utils.video.encode import write_video

EPIC_IMAGE = (192, 108)
EGO4D_IMAGE = (144, 108)


def turn(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


EPIC_TRAIN = [
    ("e1", "P01_01/frame_0000000002", "[refer] Where is the left hand of the person?", "{<10><20><30><40>}"),
    (
        "e2",
        "P01_01/frame_0000000003",
        "[refer] Where are the hands of the person?",
        "{<10><20><30><40>}{<50><20><70><40>}",
    ),
    ("e3", "P01_01/frame_0000000002", "[vqa] What is the object in the right hand of the person?", "knife"),
    ("e4", "P01_01/frame_0000000003", "[refer] Which hand has the cup?", "{<50><20><70><40>}"),
    ("e5", "P01_01/frame_0000000003", "[refer] Locate the object being manipulated by the left hand", "{<5><5><9><9>}"),
    ("e6", "P01_01/frame_0000000002", "[identify] what is this {<10><20><30><40>}", "right hand"),
    ("e7", "P01_01/frame_0000000003", "[vqa] What hand is holding the cup?", "left hand"),
    ("e8", "P01_01/frame_0000000003", "[refer] Where is the spoon?", "{<60><60><80><90>}"),
    ("e9", "P01_01/frame_0000000003", "[identify] {<1><2><3><4>}", "plate"),
]
TRAIN_TASKS = {
    "e1": "handN2handBB",
    "e2": "handN2handBB",
    "e3": "handN2objN",
    "e4": "objN2handBB",
    "e5": "handN2objBB",
    "e6": "handBB2handN",
    "e7": "objN2handN",
    "e8": "objN2objBB",
    "e9": "objBB2objN",
}


def write_frame(path: Path, size: tuple[int, int], value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def write_tree(root: Path, tests: bool = True) -> Path:
    """A tiny HOI-QA root: both train files, (optionally) the three test files and their frames."""
    epic, ego4d = root / "EPIC_Kitchens" / "frames", root / "Ego4D" / "v2" / "frames"
    for number in (2, 3, 4):
        write_frame(epic / "P01_01" / f"frame_{number:010d}.jpg", EPIC_IMAGE)
    for number in (5, 6):
        write_frame(ego4d / "clipA" / f"frame_{number}.jpg", EGO4D_IMAGE)
    epic_train = [{"id": i, "image": image, "conversations": turn(q, a)} for i, image, q, a in EPIC_TRAIN]
    ego4d_train = [
        {
            "id": "g1",
            "image_path": "/authors/Ego4D/v2/frames/clipA/frame_5.jpg",
            "conversations": turn("[refer] Where is the bowl?", "{<10><10><50><50>}"),
        }
    ]
    (root / "epic-kitchens-train.json").write_text(json.dumps(epic_train))
    (root / "ego4d-train.json").write_text(json.dumps(ego4d_train))
    if not tests:
        return root
    epic_test = {
        "t1": {"noun": "right hand", "bbox": [192, 108, 576, 432], "image_path": "/x/P01_01/frame_0000000002.jpg"},
        "t2": {"noun": "pan", "bbox": [960, 540, 1440, 1000], "image_path": "/x/P01_01/frame_0000000004.jpg"},
    }
    ego4d_test = {"q1": {"noun": "bowl", "bbox": [900, 108, 1300, 540], "image_path": "/x/clipA/frame_6.jpg"}}
    hoi_test = [
        {
            "id": "h1",
            "question": "[refer] Where are the hands of the person?",
            "answer": "{<100><200><300><400>}{<500><200><700><400>}",
            "image_path": "/x/P01_01/frame_0000000004.jpg",
        },
        {
            "id": "h2",
            "question": "[vqa] What hand is holding the pan?",
            "answer": "right hand",
            "image_path": "/x/P01_01/frame_0000000004.jpg",
        },
        {
            "id": "h3",
            "question": "[refer] Locate the object being manipulated by the right hand of the person",
            "answer": [100, 100, 500, 400],
            "image_path": "/x/P01_01/frame_0000000004.jpg",
        },
        {
            "id": "h4",
            "question": "[vqa] What is the object in the left hand of the person?",
            "answer": "chopping board",
            "image_path": "/x/P01_01/frame_0000000004.jpg",
        },
    ]
    (root / "epic-test.json").write_text(json.dumps(epic_test))
    (root / "ego4d-test.json").write_text(json.dumps(ego4d_test))
    (root / "epic-visor-test.json").write_text(json.dumps(hoi_test))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "hoi_qa")


def by_entry(dataset: HoiQADataset) -> dict[str, object]:
    return {dataset[i].meta["entry_id"] + dataset.items[i].kind: dataset[i] for i in range(len(dataset))}


# ---- the loader ----------------------------------------------------------------------------------


def test_every_train_task_type_is_classified_from_tag_question_and_answer(tree):
    samples = by_entry(HoiQADataset(tree, "epic_train", test_overlap="keep"))
    assert {entry: sample.meta["task"] for entry, sample in samples.items()} == TRAIN_TASKS
    assert samples["e1"].meta["referral"] == "direct" and samples["e5"].meta["referral"] == "interaction"
    assert samples["e7"].meta["hand"] == "left" and samples["e3"].meta["gt_text"] == "knife"


def test_task_tags_are_stripped_by_default_and_kept_on_request(tree):
    stripped = by_entry(HoiQADataset(tree, "epic_train", test_overlap="keep"))["e1"]
    kept = by_entry(HoiQADataset(tree, "epic_train", task_tags="keep", test_overlap="keep"))["e1"]
    assert stripped.conversation[0]["content"] == "Where is the left hand of the person?"
    assert kept.conversation[0]["content"] == "[refer] Where is the left hand of the person?"
    assert stripped.meta["tag"] == kept.meta["tag"] == "refer"
    assert stripped.conversation[1]["content"] == "{<10><20><30><40>}"


def test_grid_answers_become_pixels_of_the_annotation_frame_and_of_the_loaded_frame(tree):
    sample = by_entry(HoiQADataset(tree, "epic_train", test_overlap="keep"))["e2"]
    assert sample.meta["frame_size"] == (1920, 1080) and sample.meta["image_size"] == EPIC_IMAGE
    np.testing.assert_allclose(sample.meta["gt_boxes"], [[192, 216, 576, 432], [960, 216, 1344, 432]])
    assert sample.boxes.shape == (2, 1, 4)
    np.testing.assert_allclose(sample.boxes[:, 0], [[19.2, 21.6, 57.6, 43.2], [96, 21.6, 134.4, 43.2]], rtol=1e-6)
    assert sample.frames.shape == (1, 108, 192, 3) and sample.medium == "image"
    assert sample.sample_id == "hoi_qa/epic_train/0000001"


def test_ego4d_items_use_the_1440x1080_frame_and_the_last_two_parts_of_image_path(tree):
    sample = HoiQADataset(tree, "ego4d_train", test_overlap="keep")[0]
    assert sample.meta["source"] == "ego4d" and sample.meta["image"] == "clipA/frame_5.jpg"
    np.testing.assert_allclose(sample.meta["gt_boxes"], [[144, 108, 720, 540]])


def test_noun_box_test_entries_give_a_refer_and_an_identify_question(tree):
    dataset = HoiQADataset(tree, "epic_test")
    assert dataset.sample_ids()[:2] == ["hoi_qa/epic_test/t1/refer", "hoi_qa/epic_test/t1/identify"]
    samples = by_entry(dataset)
    refer, identify = samples["t2refer"], samples["t2identify"]
    assert refer.conversation[0]["content"] == "Where is the pan"
    assert refer.meta["task"] == "objN2objBB"
    np.testing.assert_array_equal(refer.meta["gt_boxes"], [[960, 540, 1440, 1000]])
    assert identify.conversation[0]["content"] == "{<50><50><75><92>}"  # HOI-QA truncates onto the grid
    assert identify.meta["task"] == "objBB2objN" and identify.meta["gt_text"] == "pan"
    assert samples["t1refer"].meta["task"] == "handN2handBB"
    assert samples["t1identify"].meta["task"] == "handBB2handN"


def test_hand_object_test_answers_in_pixels_are_kept_exactly(tree):
    samples = by_entry(HoiQADataset(tree, "epic_hoi_test"))
    np.testing.assert_array_equal(samples["h1"].meta["gt_boxes"], [[100, 200, 300, 400], [500, 200, 700, 400]])
    np.testing.assert_array_equal(samples["h3"].meta["gt_boxes"], [[100, 100, 500, 400]])
    assert samples["h3"].meta["task"] == "handN2objBB" and samples["h2"].meta["task"] == "objN2handN"
    assert samples["h1"].conversation[0]["content"] == "Where are the hands of the person?"


def test_train_frames_shared_with_test_files_are_listed_skipped_and_counted_or_refused(tree):
    assert overlapping_images(tree) == ["epic:P01_01/2"]
    with pytest.warns(UserWarning, match="left out 3 train items on 1 frames"):
        dataset = HoiQADataset(tree, "train")
    assert dataset.skipped_test_images == 3
    assert {dataset[i].meta["entry_id"] for i in range(len(dataset))} == {"e2", "e4", "e5", "e7", "e8", "e9", "g1"}
    with pytest.raises(ValueError, match="1 train frames are also test frames: epic:P01_01/2"):
        HoiQADataset(tree, "train", test_overlap="refuse")
    assert len(HoiQADataset(tree, "train", test_overlap="keep")) == 10


def test_checking_the_overlap_needs_the_test_files(tmp_path):
    root = write_tree(tmp_path / "hoi_qa", tests=False)
    with pytest.raises(FileNotFoundError, match="epic-test.json"):
        HoiQADataset(root, "train")
    assert len(HoiQADataset(root, "train", test_overlap="keep")) == 10


def test_pixels_format_writes_qwen_json_in_pixels_of_the_loaded_frame(tree):
    samples = by_entry(HoiQADataset(tree, "epic_train", box_format="pixels", test_overlap="keep"))
    answer = samples["e1"].conversation[1]["content"]
    assert answer.startswith("```json")
    items = json.loads(answer.strip("`").removeprefix("json"))
    assert items == [{"bbox_2d": [19, 22, 58, 43], "label": "left hand"}]
    assert json.loads(samples["e8"].conversation[1]["content"].strip("`").removeprefix("json"))[0]["label"] == "spoon"
    assert samples["e6"].conversation[0]["content"] == "what is this [19, 22, 58, 43]"


def test_a_frame_of_another_aspect_ratio_is_an_error_naming_it(tree):
    write_frame(tree / "EPIC_Kitchens" / "frames" / "P01_01" / "frame_0000000003.jpg", (100, 100))
    dataset = HoiQADataset(tree, "epic_train", test_overlap="keep")
    with pytest.raises(ValueError, match=r"entry 'e2'.*100x100, not the 1920x1080 aspect ratio"):
        dataset[1]


def test_a_missing_frame_names_the_entry(tree):
    (tree / "Ego4D" / "v2" / "frames" / "clipA" / "frame_6.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"ego4d_test entry 'q1'.*frame_6.jpg"):
        HoiQADataset(tree, "ego4d_test")[0]


def test_questions_worded_otherwise_are_classified_by_their_words_and_answers():
    assert classify_task("refer", "Where is the object in the left hand?", "{<1><2><3><4>}", "x") == "handN2objBB"
    assert classify_task("refer", "What hand holds the knife?", "{<1><2><3><4>}", "x") == "objN2handBB"
    assert classify_task("refer", "Find both hands", "{<1><2><3><4>}{<5><6><7><8>}", "x") == "handN2handBB"
    assert classify_task(None, "{<1><2><3><4>}", "left glove", "x") == "objBB2objN"  # gloves are objects here
    assert classify_task("vqa", "Which hand holds the pan?", "the left glove", "x") == "objN2handN"
    assert classify_task(None, "Where is the pan", "{<1><2><3><4>}", "x") == "objN2objBB"


def test_an_unknown_task_tag_is_an_error():
    with pytest.raises(ValueError, match=r"unknown task tag \[grounding\]"):
        classify_task("grounding", "describe", "{<1><2><3><4>}", "sample x")


def test_a_box_answer_without_a_whole_box_is_an_error(tmp_path):
    root = write_tree(tmp_path / "hoi_qa", tests=False)
    entry = {
        "id": "bad",
        "image": "P01_01/frame_0000000002",
        "conversations": turn("[refer] Where is the cup?", "{<1><2>}"),
    }
    (root / "epic-kitchens-train.json").write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match="entry 'bad'.*without a whole"):
        HoiQADataset(root, "epic_train", test_overlap="keep")[0]


def test_the_loader_is_registered_with_its_test_splits_evaluated(tree):
    loader = LOADERS["hoi_qa"]
    assert loader.missing_paths(tree, "test") == []
    assert loader.missing_paths(tree / "nowhere", "epic_test")
    assert len(loader.build(tree, "test", num_frames=None, train=False, seed=0)) == 2 * 2 + 2 + 4


def test_samples_collate_through_qwens_image_path_with_the_box_answer_as_the_target(tree, tiny_parts):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_parts["backbone"])
    sample = by_entry(HoiQADataset(tree, "epic_train", test_overlap="keep"))["e2"]
    batch = SampleCollator(processor, None)([sample])
    assert batch["image_grid_thw"].shape == (1, 3) and "pixel_values_videos" not in batch
    labels = batch["labels"][0]
    assert processor.tokenizer.decode(labels[labels != IGNORE_INDEX]).startswith("{<10><20><30><40>}{<50><20><70><40>}")


# ---- the scorer ----------------------------------------------------------------------------------


def test_iou_counts_the_extra_pixel():
    assert box_iou([[0, 0, 9, 9]], [[0, 0, 9, 9]])[0, 0] == 1.0
    np.testing.assert_allclose(box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]]), [[50 / 150]])
    np.testing.assert_allclose(box_iou([[0, 0, 0, 0]], [[1, 1, 1, 1]]), [[0.0]])


def test_two_box_answers_need_exactly_two_boxes_each_hitting_its_own_target():
    gt = np.array([[0, 0, 99, 99], [200, 0, 299, 99]], float)
    assert box_result(gt, gt[::-1])[1] == 2
    assert box_result(gt, gt[:1])[1] == 0
    assert box_result(gt, np.concatenate([gt, [[500, 500, 600, 600]]]))[1] == 0
    ious, hits = box_result(gt, np.array([[0, 0, 99, 99], [0, 0, 99, 99]], float))
    assert hits == 0 and sorted(ious.round(3).tolist()) == [0.0, 1.0]  # one box cannot answer both hands
    assert box_result(gt[:1], np.concatenate([[[500, 500, 600, 600]], gt]))[1] == 1  # one target: best of several


def test_nouns_match_by_words_and_hands_by_side():
    assert noun_correct("knife", "It is a knife.") and noun_correct("knife", "knife, I think")
    assert not noun_correct("knife", "knives")
    assert noun_correct("chopping board", "the chopping board") and not noun_correct("chopping board", "a board")
    assert noun_correct("right hand", "the left hand and the right hand")
    assert not hand_side_correct("right", "the left hand and the right hand")
    assert hand_side_correct("right", "The right hand.") and not hand_side_correct("right", "left hand")
    assert noun_correct("left glove", "a glove")


def store_with(tmp_path: Path, answers: dict[str, str]) -> PredictionStore:
    store = PredictionStore(tmp_path / "pred")
    for sample_id, answer in answers.items():
        store.write(sample_id, ["x"], None, {"answer": answer})
    return store


def test_ego4d_grid_boxes_are_scored_in_its_1440x1080_frame(tree, tmp_path):
    dataset = HoiQADataset(tree, "ego4d_test")
    gt = np.array([[900, 108, 1300, 540]], float)
    grid = pixels_to_grid(gt, (1440, 1080))
    store = store_with(
        tmp_path, {"hoi_qa/ego4d_test/q1/refer": format_grid_boxes(grid), "hoi_qa/ego4d_test/q1/identify": "a bowl"}
    )
    result = score_hoi(dataset, store)
    assert result["overall"]["box acc"] == 1.0 and result["overall"]["noun acc"] == 1.0
    assert box_iou(gt, grid_to_pixels(grid, (1920, 1080)))[0, 0] < 0.5  # the reference's 1920x1080 would miss it


def test_scores_are_reported_per_source_referral_and_task(tree, tmp_path):
    dataset = HoiQADataset(tree, "test")
    answers = {
        "hoi_qa/epic_test/t1/refer": "{<10><10><30><40>}",
        "hoi_qa/epic_test/t1/identify": "left hand",
        "hoi_qa/epic_test/t2/refer": "nothing here",
        "hoi_qa/epic_test/t2/identify": "pan.",
        "hoi_qa/ego4d_test/q1/refer": '```json\n[{"bbox_2d": [900, 108, 1300, 540], "label": "bowl"}]\n```',
        "hoi_qa/ego4d_test/q1/identify": "bowl",
        "hoi_qa/epic_hoi_test/h1": "{<5><19><16><37>}{<26><19><36><37>}",
        "hoi_qa/epic_hoi_test/h2": "The right hand",
        "hoi_qa/epic_hoi_test/h3": "{<5><9><26><37>}{<1><2>",
        "hoi_qa/epic_hoi_test/h4": "board",
    }
    ego4d = HoiQADataset(tree, "ego4d_test")[0]
    store = store_with(tmp_path, answers)
    # the JSON answer is in pixels of the frame as loaded (144x108) unless the record gives the model's input size
    store.write(
        "hoi_qa/ego4d_test/q1/refer",
        ["x"],
        None,
        {"answer": answers["hoi_qa/ego4d_test/q1/refer"], "input_size": [1440, 1080]},
    )
    result = score_hoi(dataset, store)
    overall, groups = result["overall"], result["groups"]
    assert ego4d.meta["image_size"] == EGO4D_IMAGE
    assert overall["box targets"] == 6 and overall["text questions"] == 5 and overall["count"] == 10
    assert overall["unparsed"] == 1
    assert result["per_sample"]["hoi_qa/epic_hoi_test/h3"]["dropped"] == 1
    assert result["per_sample"]["hoi_qa/ego4d_test/q1/refer"]["format"] == "qwen"
    assert groups["source=ego4d"]["box acc"] == 1.0
    assert groups["task=handN2handBB"]["box targets"] == 3  # t1 (one hand) + h1 (both hands)
    assert groups["task=handBB2handN"]["noun acc"] == 0.0 and groups["task=objN2handN"]["hand side"] == 1.0
    assert groups["task=handN2objN"]["noun acc"] == 0.0
    assert set(groups) >= {"source=epic", "referral=direct", "referral=interaction", "task=objN2objBB"}
    assert 0 < overall["mean IoU"] < 1 and set(COLUMNS) <= set(overall)


def test_scoring_refuses_an_incomplete_store(tree, tmp_path):
    with pytest.raises(IncompletePredictions):
        score_hoi(HoiQADataset(tree, "ego4d_test"), store_with(tmp_path, {}))


def test_the_scorer_plugs_into_run_eval_as_a_benchmark(tree, tmp_path, monkeypatch):
    benchmark = Benchmark("hoi_qa", "test", score_hoi, COLUMNS, predicts="text")
    monkeypatch.setitem(BENCHMARKS, "hoi_qa", benchmark)
    store_with(tmp_path, {"hoi_qa/ego4d_test/q1/refer": "{<62><10><90><50>}", "hoi_qa/ego4d_test/q1/identify": "bowl"})
    result = run_eval.main(
        ["--benchmark", "hoi_qa", "--data-root", str(tree), "--pred", str(tmp_path / "pred"), "--split", "ego4d_test"]
    )
    assert result["overall"]["box acc"] == 1.0
    assert (tmp_path / "pred" / "metrics_hoi_qa_ego4d_test.json").is_file()


# ---- frame extraction ----------------------------------------------------------------------------


def shades(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Frame ``i`` is a flat grey of ``30 * i + 20``, so a decoded frame tells which one it is."""
    return [np.full((size[1], size[0], 3), 30 * i + 20, np.uint8) for i in range(count)]


def test_frames_are_extracted_by_number_resumably_and_bad_videos_are_reported(tmp_path, capsys):
    root = write_tree(tmp_path / "hoi_qa")
    out = tmp_path / "frames"
    epic, ego4d = tmp_path / "EPIC-KITCHENS", tmp_path / "clips"
    (epic / "P01" / "videos").mkdir(parents=True)
    ego4d.mkdir()
    write_video(epic / "P01" / "videos" / "P01_01.MP4", shades(3, EPIC_IMAGE), fps=10, options={"crf": "0"})
    write_video(ego4d / "clipA.mp4", shades(7, EGO4D_IMAGE), fps=10, options={"crf": "0"})
    args = ["--root", str(root), "--out", str(out), "--epic", str(epic), "--ego4d", str(ego4d)]
    assert extract_hoi_frames.main(args) == 1  # P01_01 has 3 frames: frame 4 is past its end
    report = json.loads((out / "extract_hoi_frames.json").read_text())
    assert report["frames_not_found"] == {"epic:P01_01": [4]} and report["frames_written"] == 4
    epic_frame = np.asarray(Image.open(out / "EPIC_Kitchens/frames/P01_01/frame_0000000002.jpg"))
    ego4d_frame = np.asarray(Image.open(out / "Ego4D/v2/frames/clipA/frame_5.jpg"))
    assert abs(int(epic_frame.mean()) - 50) <= 3  # EPIC counts from 1: frame 2 is the video's second (index 1)
    assert abs(int(ego4d_frame.mean()) - 170) <= 3  # Ego4D counts from 0: frame 5 is index 5
    (ego4d / "clipA.mp4").unlink()
    (out / "Ego4D/v2/frames/clipA/frame_6.jpg").unlink()
    assert extract_hoi_frames.main(args) == 1
    report = json.loads((out / "extract_hoi_frames.json").read_text())
    assert report["frames_written"] == 0 and report["frames_already_there"] == 3
    assert report["missing_videos"] == ["ego4d:clipA"]
    assert "missing: ego4d:clipA" in capsys.readouterr().out


def test_epic_frames_are_copied_from_rgb_frame_tars_byte_for_byte(tmp_path):
    root = write_tree(tmp_path / "hoi_qa")
    frames_dir = tmp_path / "tar_src"
    for number in (2, 3, 4):
        write_frame(frames_dir / f"frame_{number:010d}.jpg", (456, 256), value=number * 30)
    (tmp_path / "EPIC-KITCHENS" / "P01" / "rgb_frames").mkdir(parents=True)
    with tarfile.open(tmp_path / "EPIC-KITCHENS" / "P01" / "rgb_frames" / "P01_01.tar", "w") as archive:
        for path in sorted(frames_dir.iterdir()):
            archive.add(path, arcname=f"./{path.name}")
    out = tmp_path / "frames"
    code = extract_hoi_frames.main(
        ["--root", str(root), "--out", str(out), "--epic", str(tmp_path / "EPIC-KITCHENS"), "--epic-from", "tar"]
    )
    assert code == 0
    for number in (2, 3, 4):
        name = f"frame_{number:010d}.jpg"
        assert (out / "EPIC_Kitchens/frames/P01_01" / name).read_bytes() == (frames_dir / name).read_bytes()


def test_check_overlap_prints_the_count_and_the_frames(tree, capsys):
    assert extract_hoi_frames.main(["--root", str(tree), "--check-overlap"]) == 0
    assert capsys.readouterr().out.splitlines() == ["1 frames are in both a train and a test file:", "epic:P01_01/2"]

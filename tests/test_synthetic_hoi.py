"""Synthetic egocentric HOI-QA (utils/synthetic/egocentric.py, scripts/generate_synthetic_hoi.py): the files load
with the real HOI-QA loader, boxes are the drawn pixels, and ground truth scores full marks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from evaluation.hoi_scoring import score_hoi
from evaluation.prediction_store import PredictionStore
from scripts import generate_synthetic_hoi
from scripts.generate_synthetic_hoi import chance_baselines
from utils.data.box_text import grid_to_pixels, parse_grid_boxes
from utils.data.hoi_qa import FRAME_FOLDERS, FRAME_SIZES, PARTS, TASKS, HoiQADataset, overlapping_images
from utils.synthetic.egocentric import EgoConfig, make_frame, write_hoi_qa

CONFIG = EgoConfig(frames_per_video=2)
SEED, NUM_TRAIN, NUM_TEST = 0, 16, 12


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_hoi")
    write_hoi_qa(root, SEED, NUM_TRAIN, NUM_TEST, CONFIG)
    return root


def samples(root: Path, split: str) -> list:
    dataset = HoiQADataset(root, split, test_overlap="refuse" if split == "train" else "skip")
    return [dataset[i] for i in range(len(dataset))]


def frames(split: str, count: int, seed: int = SEED) -> list:
    return [make_frame(seed, split, index, CONFIG) for index in range(count)]


def test_every_task_type_of_both_sources_loads_with_the_real_loader(root):
    for split in ("train", "test"):
        loaded = samples(root, split)
        assert {s.meta["task"] for s in loaded} == set(TASKS), split
        assert {s.meta["source"] for s in loaded} == {"epic", "ego4d"}, split
    for split in ("train", "epic_train", "ego4d_train"):
        tasks = {s.meta["task"] for s in samples(root, split)}
        assert tasks == set(TASKS), split
    hand_object = {s.meta["task"] for s in samples(root, "epic_hoi_test")}
    assert hand_object == {"handN2handBB", "handN2objBB", "objN2handBB", "objN2handN", "handN2objN"}


def test_frames_have_their_sources_aspect_ratio_and_frame_size(root):
    for sample in samples(root, "test"):
        source = sample.meta["source"]
        assert sample.meta["frame_size"] == FRAME_SIZES[source]
        assert sample.meta["image_size"] == {"epic": (192, 108), "ego4d": (144, 108)}[source]
    assert (root / FRAME_FOLDERS["epic"]).is_dir() and (root / FRAME_FOLDERS["ego4d"]).is_dir()


def skin_coloured(frame) -> np.ndarray:
    """``(H, W)`` bool: pixels within the noise of the frame's skin colour."""
    difference = np.abs(frame.image.astype(np.int16) - np.array(frame.skin, np.int16))
    return (difference <= CONFIG.pixel_noise).all(axis=-1)


def bounding_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_hand_boxes_are_the_bounding_boxes_of_skin_coloured_pixels():
    for frame in frames("skin", 24):
        skin = skin_coloured(frame)
        hands = [k for k, region in enumerate(frame.regions) if region.is_hand]
        np.testing.assert_array_equal(skin, np.isin(frame.labels, hands))  # nothing else is skin-coloured
        half = frame.image.shape[1] // 2
        for k in hands:
            region = frame.regions[k]
            side = np.zeros_like(skin)
            if region.side == "left":
                side[:, :half] = True
            else:
                side[:, half:] = True
            np.testing.assert_array_equal(region.box, bounding_box(skin & side))


def test_every_region_box_is_the_bounding_box_of_its_labelled_pixels():
    for frame in frames("boxes", 16):
        assert frame.labels.shape == frame.image.shape[:2] and frame.regions
        for k, region in enumerate(frame.regions):
            np.testing.assert_array_equal(region.box, bounding_box(frame.labels == k))
        names = [region.name for region in frame.regions]
        assert len(names) == len(set(names))  # a noun names one object


def test_test_files_hold_the_drawn_boxes_exactly(root):
    drawn = {}
    for frame in frames("test", NUM_TEST):
        for region in frame.regions:
            drawn[frame.source, frame.relpath, region.name] = region.box
    checked = 0
    for sample in samples(root, "test"):
        meta = sample.meta
        if meta["part"] == "epic_hoi_test" or sample.sample_id.endswith("/identify"):
            continue
        noun = meta["question"].removeprefix("Where is the ")
        np.testing.assert_allclose(sample.boxes[:, 0], [drawn[meta["source"], meta["image"], noun]], atol=1e-4)
        checked += 1
    assert checked == sum(len(f.regions) for f in frames("test", NUM_TEST))


def test_train_grid_answers_are_within_half_a_grid_step_of_the_drawn_boxes(root):
    drawn = {(f.source, f.relpath): f for f in frames("train", NUM_TRAIN)}
    for sample in samples(root, "train"):
        if sample.meta["task"] != "objN2objBB":
            continue
        frame = drawn[sample.meta["source"], sample.meta["image"]]
        noun = sample.meta["question"].removeprefix("Where is the ").rstrip("?").removesuffix(" in the image")
        step = np.array(sample.meta["image_size"] * 2) / 100
        error = np.abs(sample.boxes[0, 0] - frame.region(noun).box)
        assert (error <= step / 2 + 1e-4).all()  # Sample.boxes are float32


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_frames_and_files_are_a_function_of_the_seed(tmp_path):
    write_hoi_qa(tmp_path / "a", 5, 4, 4, CONFIG)
    write_hoi_qa(tmp_path / "b", 5, 4, 4, CONFIG)
    write_hoi_qa(tmp_path / "c", 6, 4, 4, CONFIG)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    other = digest(tmp_path / "c")
    assert other[PARTS["epic_test"].file] != digest(tmp_path / "a")[PARTS["epic_test"].file]
    first, again, reseeded = (
        make_frame(5, "train", 3, CONFIG),
        make_frame(5, "train", 3, CONFIG),
        make_frame(6, "train", 3, CONFIG),
    )
    np.testing.assert_array_equal(first.image, again.image)
    assert not np.array_equal(first.image, reseeded.image)


def test_train_and_test_share_no_video_frame_or_image(root):
    assert overlapping_images(root) == []
    train, test = frames("train", NUM_TRAIN), frames("test", NUM_TEST)
    assert not {f.video for f in train} & {f.video for f in test}
    assert not {f.image.tobytes() for f in train} & {f.image.tobytes() for f in test}
    assert HoiQADataset(root, "train", test_overlap="refuse").skipped_test_images == 0


def store_of(tmp_path: Path, loaded: list) -> PredictionStore:
    store = PredictionStore(tmp_path)
    for sample in loaded:
        store.write(sample.sample_id, sample.frame_names, None, {"answer": sample.meta["answer"]})
    return store


@pytest.mark.parametrize("split", ["test", "train"])
def test_ground_truth_answers_score_full_marks(root, tmp_path, split):
    dataset = HoiQADataset(root, split, test_overlap="refuse" if split == "train" else "skip")
    result = score_hoi(dataset, store_of(tmp_path / split, [dataset[i] for i in range(len(dataset))]))
    overall = result["overall"]
    assert overall["box acc"] == 1.0 and overall["noun acc"] == 1.0 and overall["hand side"] == 1.0
    assert overall["unparsed"] == 0 and overall["count"] == len(dataset)
    assert {f"task={task}" for task in TASKS} <= set(result["groups"])


def test_chance_baselines_cover_every_test_task_far_below_full_marks(root):
    chance = chance_baselines(HoiQADataset(root, "train", test_overlap="refuse"), HoiQADataset(root, "test"))
    assert set(chance) == set(TASKS)
    for task, row in chance.items():
        assert row["questions"] > 0 and 0 <= row["random"] <= 1 and 0 <= row["prior"] <= 1
        assert row["random"] < 0.6, task
    assert chance["objN2handN"]["random"] == 0.5 and chance["objN2objBB"]["random"] < 0.1


def test_the_script_writes_both_splits_and_reports_chance(tmp_path, capsys):
    chance = generate_synthetic_hoi.main(["--out", str(tmp_path), "--train", "8", "--test", "8", "--seed", "3"])
    assert (tmp_path / generate_synthetic_hoi.CHANCE_FILE).is_file() and set(chance) <= set(TASKS)
    assert all((tmp_path / part.file).is_file() for part in PARTS.values())
    assert "| objN2objBB | box |" in capsys.readouterr().out


def test_a_frame_height_without_the_sources_aspect_ratios_is_refused():
    with pytest.raises(ValueError, match="multiple of 9"):
        EgoConfig(height=100)
    with pytest.raises(ValueError, match="non-negative"):
        make_frame(-1, "train", 0, CONFIG)


def test_identify_questions_give_the_box_on_the_grid_as_hoi_qa_truncates_it(root):
    frame = make_frame(SEED, "train", 0, CONFIG)
    for sample in samples(root, "epic_train"):
        if sample.meta["task"] in ("objBB2objN", "handBB2handN") and sample.meta["image"] == frame.relpath:
            box = grid_to_pixels(parse_grid_boxes(sample.meta["question"]).boxes, sample.meta["image_size"])[0]
            drawn = frame.region(sample.meta["gt_text"]).box
            step = np.array(sample.meta["image_size"] * 2) / 100
            assert ((drawn - box >= -1e-6) & (drawn - box < step + 1e-6)).all()

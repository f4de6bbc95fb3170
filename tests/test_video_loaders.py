"""Video segmentation loaders read Ref-YouTube-VOS, Ref-DAVIS17, YouTube-VOS 2019 and ReasonVOS as released.

Synthetic sets written by :mod:`utils.synthetic.video_formats` check items, ids, masks and frames
against what was written; the shared real fixtures check the Ref-YouTube-VOS expression file and
DAVIS PNG conventions.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.data.palette import (
    VOID_ID,
    davis_palette,
    object_ids,
    read_binary_mask,
    read_index_mask,
    split_index_mask,
    write_index_mask,
)
from utils.data.prompts import SEG_TOKEN
from utils.data.reasonvos import REASONVOS_FPS, ReasonVOSDataset
from utils.data.ref_youtube_vos import DAVIS_FPS, DAVIS_RUNS, YOUTUBE_VOS_FPS
from utils.data.registry import EVALUATED_SPLITS, LOADERS
from utils.synthetic.video_formats import (
    DAVIS_TEMPLATES,
    SENTENCE_TEMPLATE,
    write_reasonvos,
    write_ref_davis17,
    write_ref_youtube_vos,
    write_youtube_vos,
)
from utils.video.clip import read_annotated_frames
from utils.video.sampling import FrameSampling

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
REF_YTVOS_META = FIXTURES / "annotations" / "ref_youtube_vos" / "meta_expressions.json"
DAVIS = FIXTURES / "davis"
SAFE_SAMPLE_ID = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")

ANNOTATED = [("ref_youtube_vos", "train"), ("ref_davis17", "valid"), ("youtube_vos", "train"), ("reasonvos", "test")]
ALL_SPLITS = [*ANNOTATED, ("ref_youtube_vos", "valid")]
WRITERS = {
    "ref_youtube_vos": write_ref_youtube_vos,
    "ref_davis17": write_ref_davis17,
    "youtube_vos": write_youtube_vos,
    "reasonvos": write_reasonvos,
}
META_FILES = {
    "ref_youtube_vos": "meta_expressions/train/meta_expressions.json",
    "ref_davis17": "meta_expressions/valid/meta_expressions.json",
    "youtube_vos": "train/meta.json",
    "reasonvos": "meta_expressions.json",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Every format written once: ``(root, {loader: {split: {video: WrittenVideo}}})``, ``<root>/<loader>/``."""
    root = tmp_path_factory.mktemp("video_formats")
    return root, {name: write(root / name, seed=0) for name, write in WRITERS.items()}


@pytest.fixture
def data(source: tuple[Path, dict], tmp_path: Path) -> Path:
    """A private copy of the written sets, free to corrupt."""
    shutil.copytree(source[0], tmp_path / "data")
    return tmp_path / "data"


FRAME_RATES = {"ref_youtube_vos": 6.0, "ref_davis17": 24.0, "youtube_vos": 6.0, "reasonvos": 5.0}
"""Each loader's default frame rate: YouTube-VOS folders hold every 5th frame of 30 fps video, DAVIS every
frame at 24 fps, ReasonVOS takes MeViS's 5 fps."""


def build(
    root: Path, name: str, split: str, num_frames: int | None = None, train: bool = False, seed: int = 0, **options
):
    return LOADERS[name].build(root / name, split, num_frames=num_frames, train=train, seed=seed, **options)


def target_ids(meta: dict) -> list[int]:
    """The object ids a sample's mask is the union of (YouTube-VOS: all objects of the category)."""
    return meta.get("obj_ids") or [int(meta["obj_id"])]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data["videos"])
    path.write_text(json.dumps(data))


def first_video(root: Path, name: str, split: str) -> str:
    return build(root, name, split).items[0].video


# --- palette PNGs -------------------------------------------------------------------------------------


def test_index_mask_round_trips_as_indexed_png_with_davis_palette(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 2], [3, VOID_ID, 0]], dtype=np.uint8)
    write_index_mask(tmp_path / "m.png", ids)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        palette = image.getpalette()
    assert palette[3:9] == [128, 0, 0, 0, 128, 0] and palette[3 * VOID_ID : 3 * VOID_ID + 3] == [224, 224, 192]
    np.testing.assert_array_equal(read_index_mask(tmp_path / "m.png"), ids)


def test_read_index_mask_takes_greyscale_and_refuses_colour(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 2]], dtype=np.uint8)).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_index_mask(tmp_path / "grey.png"), [[0, 2]])
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png.*'RGB'"):
        read_index_mask(tmp_path / "rgb.png")
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_index_mask(tmp_path / "nothing.png")


def test_split_index_mask_gives_one_mask_per_id_and_void_apart() -> None:
    ids = np.array([[0, 1, 1], [3, VOID_ID, 3]], dtype=np.uint8)
    assert object_ids(ids) == [1, 3]
    masks, void = split_index_mask(ids)
    np.testing.assert_array_equal(masks, [[[0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 0, 1]]])
    np.testing.assert_array_equal(void, [[0, 0, 0], [0, 1, 0]])
    absent, _ = split_index_mask(ids, [2])
    assert absent.shape == (1, 2, 3) and not absent.any()
    with pytest.raises(ValueError, match="1..254"):
        split_index_mask(ids, [VOID_ID])


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared fixture {path} is absent")
    return path


def test_davis2016_ground_truth_reads_as_void_not_as_an_object() -> None:
    """The 2016 GT (mode L, {0, 255}) through the 2017 convention is all void and no object: binarise it instead."""
    path = _require(DAVIS / "Annotations" / "480p" / "car-shadow" / "00000.png")
    ids = read_index_mask(path)
    masks, void = split_index_mask(ids)
    assert ids.shape == (480, 854) and set(np.unique(ids)) == {0, VOID_ID}
    assert masks.shape == (0, 480, 854) and void.any()
    np.testing.assert_array_equal(read_binary_mask(path), void)


def test_osvos_predictions_are_object_ids_with_the_davis_palette() -> None:
    folder = _require(DAVIS / "predictions" / "osvos")
    with Image.open(folder / "car-shadow" / "00000.png") as image:
        assert image.mode == "P" and image.getpalette() == davis_palette()
    masks, void = split_index_mask(read_index_mask(folder / "car-shadow" / "00000.png"))
    gt = read_binary_mask(DAVIS / "Annotations" / "480p" / "car-shadow" / "00000.png")
    iou = (masks[0] & gt).sum() / (masks[0] | gt).sum()
    assert masks.shape[0] == 1 and not void.any() and 0.9 < iou < 1  # OSVOS frame 0 is the 2017 annotation
    assert object_ids(read_index_mask(folder / "drift-straight" / "00049.png")) == []  # a real empty prediction


# --- every loader ------------------------------------------------------------------------------------------


def test_loaders_are_registered_with_family_splits_and_required_paths(source: tuple[Path, dict]) -> None:
    root, _ = source
    families = {"ref_youtube_vos": "ref_vos", "ref_davis17": "ref_vos", "youtube_vos": "vos", "reasonvos": "reason_vos"}
    for name, family in families.items():
        assert LOADERS[name].family == family
    assert {("ref_youtube_vos", "valid"), ("ref_davis17", "valid"), ("reasonvos", "test")} <= EVALUATED_SPLITS
    assert not any(name == "youtube_vos" for name, _ in EVALUATED_SPLITS)
    for name, split in ALL_SPLITS:
        paths = LOADERS[name].required_paths(root / name, split)
        assert paths and all(path.exists() for path in paths), (name, split)
    assert root / "ref_youtube_vos" / "meta_expressions" / "test" / "meta_expressions.json" in LOADERS[
        "ref_youtube_vos"
    ].required_paths(root / "ref_youtube_vos", "valid")


@pytest.mark.parametrize(("name", "split"), ALL_SPLITS)
def test_sample_ids_are_unique_safe_and_those_of_the_items(source: tuple[Path, dict], name: str, split: str) -> None:
    dataset = build(source[0], name, split, num_frames=2)
    ids = dataset.sample_ids()
    assert len(ids) == len(dataset) > 0 and len(set(ids)) == len(ids)
    assert all(SAFE_SAMPLE_ID.fullmatch(i) and i.startswith(f"{name}/{split}/") for i in ids)
    assert ids == [dataset[i].sample_id for i in range(len(dataset))]
    assert ids == build(source[0], name, split).sample_ids()  # stable across builds


@pytest.mark.parametrize(("name", "split"), ANNOTATED)
def test_frames_names_and_masks_are_what_was_written(source: tuple[Path, dict], name: str, split: str) -> None:
    root, written = source
    dataset = build(root, name, split)
    for index in range(len(dataset)):
        sample = dataset[index]
        video = written[name][split][sample.meta["video"]]
        indices = sample.meta["frame_indices"]
        assert sample.frame_names == [video.frame_names[t] for t in indices] == video.frame_names
        assert sample.frames.shape == video.video.frames.shape and sample.frames.dtype == np.uint8
        assert np.abs(sample.frames.astype(int) - video.video.frames).mean() < 8  # JPEG of a noisy world
        expected = np.isin(video.ids[indices], target_ids(sample.meta))
        assert sample.masks.shape == (1, *expected.shape) and sample.masks.dtype == bool
        np.testing.assert_array_equal(sample.masks[0], expected)
        assert sample.masks.any()
        assert sample.conversation[1] == {"role": "assistant", "content": f"Sure, {SEG_TOKEN}."}


@pytest.mark.parametrize(("name", "split"), ANNOTATED)
def test_training_items_depend_only_on_seed_and_index(source: tuple[Path, dict], name: str, split: str) -> None:
    draws = {
        seed: [build(source[0], name, split, num_frames=2, train=True, seed=seed)[i] for i in range(4)]
        for seed in (0, 1, 2)
    }
    again = build(source[0], name, split, num_frames=2, train=True, seed=0)
    for i, sample in enumerate(draws[0]):
        repeat = again[i]
        assert repeat.frame_names == sample.frame_names and np.array_equal(repeat.masks, sample.masks)
        assert len(sample.frame_names) == 2
    frame_sets = {tuple(s.meta["frame_indices"]) for samples in draws.values() for s in samples}
    assert len(frame_sets) > 1


# --- frame rates and timestamps -------------------------------------------------------------------------


def test_frame_rate_constants_are_the_datasets_rates() -> None:
    assert (YOUTUBE_VOS_FPS, DAVIS_FPS, REASONVOS_FPS) == (6.0, 24.0, 5.0)


@pytest.mark.parametrize(("name", "split"), ALL_SPLITS)
def test_timestamps_are_frame_index_over_the_datasets_frame_rate(
    source: tuple[Path, dict], name: str, split: str
) -> None:
    for train in (False, True):
        dataset = build(source[0], name, split, num_frames=3, train=train, seed=1)
        for sample in (dataset[i] for i in range(len(dataset))):
            expected = np.asarray(sample.meta["frame_indices"], dtype=np.float64) / FRAME_RATES[name]
            assert sample.medium == "video" and sample.timestamps.dtype == np.float64
            np.testing.assert_allclose(sample.timestamps, expected)


def test_ref_youtube_vos_timestamps_count_list_positions_not_frame_numbers(source: tuple[Path, dict]) -> None:
    """Written frame names step by 5, 10 or 3 from 5 x the video index; the time line is the list position."""
    dataset = build(source[0], "ref_youtube_vos", "train")
    for sample in (dataset[i] for i in range(len(dataset))):
        positions = np.arange(len(sample.frame_names))
        np.testing.assert_allclose(sample.timestamps, positions / YOUTUBE_VOS_FPS)
    assert any(int(dataset[i].frame_names[1]) - int(dataset[i].frame_names[0]) != 1 for i in range(len(dataset)))


@pytest.mark.parametrize(("name", "split"), ALL_SPLITS)
def test_fps_option_overrides_the_frame_rate(source: tuple[Path, dict], name: str, split: str) -> None:
    dataset = build(source[0], name, split, num_frames=2, fps=12.5)
    sample = dataset[0]
    np.testing.assert_allclose(sample.timestamps, np.asarray(sample.meta["frame_indices"]) / 12.5)
    assert build(source[0], name, split, fps=30)[0].timestamps[1] == 1 / 30  # an integer rate from a config


@pytest.mark.parametrize("fps", [0, -6.0, "6", True])
def test_a_bad_fps_option_is_refused_naming_the_dataset(source: tuple[Path, dict], fps: object) -> None:
    with pytest.raises(ValueError, match=r"ref_davis17 valid: fps must be a positive number"):
        build(source[0], "ref_davis17", "valid", fps=fps)
    with pytest.raises(ValueError, match=r"reasonvos test: fps must be a positive number"):
        ReasonVOSDataset(source[0] / "reasonvos", fps=fps)


def test_read_annotated_frames_needs_the_frame_rate(source: tuple[Path, dict]) -> None:
    dataset = build(source[0], "ref_davis17", "valid")
    folder, names = dataset.image_dir / dataset.items[0].video, dataset.frames[dataset.items[0].video]
    with pytest.raises(TypeError, match="fps"):
        read_annotated_frames(folder, names, FrameSampling(num_frames=2), "sample x")
    with pytest.raises(ValueError, match="sample x: fps must be positive"):
        read_annotated_frames(folder, names, FrameSampling(num_frames=2), "sample x", fps=0.0)
    clip = read_annotated_frames(folder, names, FrameSampling("fps", fps=12.0), "sample x", fps=24.0)
    assert clip.indices == list(range(0, len(names), 2))  # time-based sampling runs on the same time line
    np.testing.assert_allclose(clip.timestamps, np.asarray(clip.indices) / 24.0)


# --- Ref-YouTube-VOS ------------------------------------------------------------------------------------


def test_ref_youtube_vos_valid_drops_the_test_videos_and_has_no_masks(source: tuple[Path, dict]) -> None:
    root, written = source
    dataset = build(root, "ref_youtube_vos", "valid")
    test_meta = json.loads((root / "ref_youtube_vos/meta_expressions/test/meta_expressions.json").read_text())
    public = sorted(set(written["ref_youtube_vos"]["valid"]) - set(test_meta["videos"]))
    assert len(test_meta["videos"]) == 1 and sorted({item.video for item in dataset.items}) == public
    sample = dataset[0]
    assert sample.masks is None and "obj_id" not in sample.meta
    assert sample.conversation[0]["content"] == f"Please segment {sample.meta['exp']} in this video."


def test_ref_youtube_vos_valid_needs_the_test_expression_file(data: Path) -> None:
    (data / "ref_youtube_vos/meta_expressions/test/meta_expressions.json").unlink()
    with pytest.raises(FileNotFoundError, match="test/meta_expressions.json"):
        build(data, "ref_youtube_vos", "valid")


def test_ref_youtube_vos_frame_names_come_from_the_meta_list(source: tuple[Path, dict]) -> None:
    root, written = source
    dataset = build(root, "ref_youtube_vos", "train", num_frames=2)
    strides = set()
    for video, names in dataset.frames.items():
        assert names == written["ref_youtube_vos"]["train"][video].frame_names
        strides.add(int(names[1]) - int(names[0]))
    assert strides == {3, 5, 10}
    assert dataset[len(dataset) - 1].frame_names[0] != "00000"


def test_real_valid_expression_file_has_202_public_videos_once_test_videos_are_dropped(tmp_path: Path) -> None:
    """The real valid file lists 507 videos (2096 expressions) incl. the withheld ones; no image is read."""
    meta = json.loads(_require(REF_YTVOS_META).read_text())["videos"]
    (tmp_path / "meta_expressions/valid").mkdir(parents=True)
    shutil.copy(REF_YTVOS_META, tmp_path / "meta_expressions/valid/meta_expressions.json")
    withheld = sorted(meta)[:305]  # stands in for the real test list (not in the fixtures)
    (tmp_path / "meta_expressions/test").mkdir(parents=True)
    test_meta = {"videos": {video: meta[video] for video in withheld}}
    (tmp_path / "meta_expressions/test/meta_expressions.json").write_text(json.dumps(test_meta))
    dataset = LOADERS["ref_youtube_vos"].build(tmp_path, "valid", num_frames=None, train=False, seed=0)
    assert (len(meta), sum(len(v["expressions"]) for v in meta.values())) == (507, 2096)
    videos = {sample_id.split("/")[2] for sample_id in dataset.sample_ids()}
    assert len(videos) == 202 and not videos & set(withheld)
    assert len(dataset) == sum(len(meta[video]["expressions"]) for video in videos)
    for video in videos:
        assert dataset.frames[video] == meta[video]["frames"]
    irregular = [v for v in videos if dataset.frames[v][0] != "00000" or int(dataset.frames[v][1]) % 5]
    assert irregular


# --- Ref-DAVIS17 ----------------------------------------------------------------------------------------


def test_ref_davis17_follows_referformers_object_major_annotator_order(source: tuple[Path, dict]) -> None:
    root, written = source
    dataset = build(root, "ref_davis17", "valid")
    assert len(DAVIS_RUNS) == len(DAVIS_TEMPLATES) == 4
    for index in range(len(dataset)):
        sample = dataset[index]
        video = written["ref_davis17"]["valid"][sample.meta["video"]]
        exp_id, annotator = int(sample.meta["exp_id"]), sample.meta["annotator"]
        assert annotator == exp_id % 4
        obj_id = sample.meta["obj_id"]
        assert obj_id == exp_id // 4 + 1  # the k-th object in obj_id order
        world_text = video.video.expressions[obj_id - 1].text
        assert sample.meta["exp"] == DAVIS_TEMPLATES[annotator].format(text=world_text)
        void = sample.meta["void"]
        np.testing.assert_array_equal(void, video.ids[sample.meta["frame_indices"]] == VOID_ID)
        assert void.any() and not (void & sample.masks[0]).any()


def test_ref_davis17_refuses_a_video_without_four_expressions_per_object(data: Path) -> None:
    path = data / "ref_davis17" / META_FILES["ref_davis17"]
    video = first_video(data, "ref_davis17", "valid")
    edit_json(path, lambda videos: videos[video]["expressions"].pop("3"))
    with pytest.raises(ValueError, match=rf"{video}: 15 expressions .* not 4 per object"):
        build(data, "ref_davis17", "valid")


def test_ref_davis17_refuses_mixed_objects_within_one_object_group(data: Path) -> None:
    path = data / "ref_davis17" / META_FILES["ref_davis17"]
    video = first_video(data, "ref_davis17", "valid")
    edit_json(path, lambda videos: videos[video]["expressions"]["2"].update(obj_id="2"))
    with pytest.raises(ValueError, match=rf"{video}/2: obj_id 2 .* first expression has obj_id 1"):
        build(data, "ref_davis17", "valid")


# --- YouTube-VOS 2019 -------------------------------------------------------------------------------------


def test_youtube_vos_asks_for_a_category_and_targets_all_its_objects(source: tuple[Path, dict]) -> None:
    root, written = source
    dataset = build(root, "youtube_vos", "train")
    meta = json.loads((root / "youtube_vos/train/meta.json").read_text())["videos"]
    for sample in (dataset[i] for i in range(len(dataset))):
        objects = meta[sample.meta["video"]]["objects"]
        category = sample.meta["exp_id"]
        assert sample.meta["obj_ids"] == [int(k) for k, o in objects.items() if o["category"] == category]
        assert sample.conversation[0]["content"] == f"Please segment the {category} in this video."
        annotated = sorted({name for o in objects.values() for name in o["frames"]})
        assert dataset.frames[sample.meta["video"]] == annotated
    assert any(len(dataset[i].meta["obj_ids"]) > 1 for i in range(len(dataset)))  # look-alikes share a category
    with pytest.raises(ValueError, match="only the 'train' split"):
        build(root, "youtube_vos", "valid")


# --- ReasonVOS ------------------------------------------------------------------------------------------------


def test_reasonvos_asks_sentences_as_reasoning_and_descriptions_as_referring(source: tuple[Path, dict]) -> None:
    root, written = source
    dataset = build(root, "reasonvos", "test")
    raw_ids = {}
    for sample in (dataset[i] for i in range(len(dataset))):
        text, question = sample.meta["exp"], sample.conversation[0]["content"]
        if sample.meta["is_sent"]:
            assert question.startswith(text) and "segmentation mask" in question
            assert text.startswith(SENTENCE_TEMPLATE.split("{")[0])
        else:
            assert question == f"Please segment the {text.lower()} in this video."
        assert sample.meta["source"] in ("burst", "mevis", "mose", "vipseg")
        raw_ids.setdefault(sample.meta["video"], []).append(sample.meta["raw_exp_id"])
    assert all(ids.count(0) == 2 for ids in raw_ids.values())  # repeated exp_id, still unique sample ids


def test_reasonvos_reads_videolisas_numbered_mapping_layout(data: Path) -> None:
    before = build(data, "reasonvos", "test")

    def to_mapping(videos: dict) -> None:
        for entry in videos.values():
            entry["expressions"] = {str(k): e for k, e in enumerate(entry["expressions"])}

    edit_json(data / "reasonvos" / META_FILES["reasonvos"], to_mapping)
    after = build(data, "reasonvos", "test")
    assert after.sample_ids() == before.sample_ids()
    assert np.array_equal(after[1].masks, before[1].masks) and after[1].conversation == before[1].conversation


def test_reasonvos_refuses_a_string_is_sent_and_other_splits(data: Path) -> None:
    with pytest.raises(ValueError, match="one split, 'test'"):
        ReasonVOSDataset(data / "reasonvos", "valid")
    video = first_video(data, "reasonvos", "test")
    edit_json(
        data / "reasonvos" / META_FILES["reasonvos"], lambda v: v[video]["expressions"][0].update(is_sent="False")
    )
    with pytest.raises(ValueError, match=rf"{video}/0: is_sent 'False'"):
        build(data, "reasonvos", "test")


def test_reasonvos_names_a_missing_mask_folder(data: Path) -> None:
    dataset = build(data, "reasonvos", "test")
    folder = data / "reasonvos" / "Annotations" / dataset.items[0].target
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match=rf"reasonvos/test/{dataset.items[0].video}/0: missing annotation .*"):
        dataset[0]


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "split"), ANNOTATED)
def test_a_missing_frame_names_the_sample_and_the_file(data: Path, name: str, split: str) -> None:
    dataset = build(data, name, split)
    sample_id, video = dataset.sample_ids()[0], dataset.items[0].video
    missing = dataset.image_dir / video / f"{dataset.frames[video][2]}.jpg"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{sample_id}: missing frame .*{re.escape(missing.name)}"):
        dataset[0]


@pytest.mark.parametrize("name", ["ref_youtube_vos", "ref_davis17", "youtube_vos"])
def test_a_missing_or_colour_annotation_names_the_sample_and_the_file(data: Path, name: str) -> None:
    split = "valid" if name == "ref_davis17" else "train"
    dataset = build(data, name, split)
    video = dataset.items[0].video
    png = dataset.annotation_dir / video / f"{dataset.frames[video][1]}.png"
    Image.open(png).convert("RGB").save(png)
    with pytest.raises(ValueError, match=rf"{dataset.sample_ids()[0]}: .*{re.escape(png.name)}.*'RGB'"):
        dataset[0]
    png.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{dataset.sample_ids()[0]}: missing annotation .*{png.name}"):
        dataset[0]


def test_an_annotation_of_another_size_is_refused(data: Path) -> None:
    dataset = build(data, "ref_youtube_vos", "train")
    video = dataset.items[0].video
    write_index_mask(dataset.annotation_dir / video / f"{dataset.frames[video][0]}.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="is 8x8, the frame 64x64"):
        dataset[0]


def _erase_object(dataset, video: str, obj_id: int, frames: list[int]) -> None:
    for t in frames:
        png = dataset.annotation_dir / video / f"{dataset.frames[video][t]}.png"
        ids = read_index_mask(png)
        write_index_mask(png, np.where(ids == obj_id, np.uint8(0), ids))


def test_an_object_missing_from_the_chosen_frames_gives_an_empty_track(data: Path) -> None:
    """As in ReferFormer's loaders: the object is just not visible there (it is in other frames)."""
    dataset = build(data, "ref_youtube_vos", "train", num_frames=1)
    item = dataset.items[0]
    _erase_object(dataset, item.video, item.target[0], [2])  # the centre frame, the one num_frames=1 picks
    sample = dataset[0]
    assert sample.meta["frame_indices"] == [2] and sample.masks.shape == (1, 1, 64, 64) and not sample.masks.any()


def test_an_object_absent_from_the_whole_video_is_an_error(data: Path) -> None:
    """Official loaders would silently train on empty targets; an expression whose object never appears is broken."""
    dataset = build(data, "ref_youtube_vos", "train", num_frames=2)
    item = dataset.items[0]
    _erase_object(dataset, item.video, item.target[0], list(range(len(dataset.frames[item.video]))))
    with pytest.raises(ValueError, match=rf"{dataset.sample_ids()[0]} \(obj_id {item.target[0]} in .*appears in none"):
        dataset[0]


@pytest.mark.parametrize("name", list(WRITERS))
def test_malformed_json_is_a_value_error_naming_the_file(data: Path, name: str) -> None:
    split = {"ref_davis17": "valid", "reasonvos": "test"}.get(name, "train")
    path = data / name / META_FILES[name]
    path.write_text(path.read_text()[:-7])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not valid JSON"):
        build(data, name, split)


def test_a_train_expression_without_obj_id_is_a_key_error(data: Path) -> None:
    video = first_video(data, "ref_youtube_vos", "train")
    path = data / "ref_youtube_vos" / META_FILES["ref_youtube_vos"]
    edit_json(path, lambda videos: videos[video]["expressions"]["1"].pop("obj_id"))
    with pytest.raises(KeyError, match=rf"ref_youtube_vos/train/{video}/1: no 'obj_id'"):
        build(data, "ref_youtube_vos", "train")


@pytest.mark.parametrize(
    ("obj_id", "message"), [("255", "outside 1..254"), ("0", "outside 1..254"), ("x", "not an int")]
)
def test_out_of_range_obj_ids_are_refused(data: Path, obj_id: str, message: str) -> None:
    video = first_video(data, "ref_youtube_vos", "train")
    path = data / "ref_youtube_vos" / META_FILES["ref_youtube_vos"]
    edit_json(path, lambda videos: videos[video]["expressions"]["0"].update(obj_id=obj_id))
    with pytest.raises(ValueError, match=rf"{video}/0: obj_id .* {message}"):
        build(data, "ref_youtube_vos", "train")


def test_a_video_id_unsafe_in_a_path_is_refused(data: Path) -> None:
    path = data / "ref_youtube_vos" / META_FILES["ref_youtube_vos"]
    edit_json(path, lambda videos: videos.update({"a b": next(iter(videos.values()))}))
    with pytest.raises(ValueError, match="'a b' cannot be part of a sample id"):
        build(data, "ref_youtube_vos", "train")

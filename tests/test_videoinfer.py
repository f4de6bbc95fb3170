"""VideoInfer reads RGA3's released layout: writer -> loader round trips, region prompts follow the sampled
frames, test prompts come from the fixed ``.npz`` files only, training and test word the overlay alike,
bad files are named, and a training split sharing a video with the test split is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import utils.data.videoinfer as videoinfer
import utils.visual_prompts.overlays as overlays
from utils.data.catalog import EVALUATED_SPLITS, LOADERS
from utils.data.prompts import object_reference
from utils.data.videoinfer import VIDEOINFER_QUESTION, VideoInferDataset, check_no_test_videos, shape_name
from utils.synthetic.videoinfer_format import VideoInferRecord, write_tiny_videoinfer, write_videoinfer
from utils.visual_prompts.overlays import OverlayStyle, composite, overlay_phrase

JPEG_TOLERANCE = 12.0
"""Mean absolute difference allowed between written and read frames (JPEG at quality 95)."""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[VideoInferRecord]]]:
    """Both splits written once: ``(root, {split: records})``."""
    root = tmp_path_factory.mktemp("videoinfer")
    return root, {split: write_tiny_videoinfer(root, split, seed=0) for split in ("train", "test")}


@pytest.fixture
def data(source: tuple[Path, dict], tmp_path: Path) -> Path:
    """A private copy of the written set, free to corrupt."""
    shutil.copytree(source[0], tmp_path / "data")
    return tmp_path / "data"


def record_of(records: list[VideoInferRecord], video: str, exp_id: str, qa_id: str) -> VideoInferRecord:
    return next(r for r in records if (r.video, r.exp_id, r.qa_id) == (video, exp_id, qa_id))


@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip_gives_every_question_with_its_frames_answer_and_region(source, split: str):
    root, written = source
    records = written[split]
    dataset = VideoInferDataset(root, split, visual_prompt="region")
    assert len(dataset) == len(records) == len(set(dataset.sample_ids()))
    for index, (video, exp_id, qa_id) in enumerate(dataset.keys()):
        record, sample = record_of(records, video, exp_id, qa_id), dataset[index]
        assert sample.sample_id == f"videoinfer/{split}/{video}/{exp_id}/{qa_id}" == dataset.sample_ids()[index]
        assert sample.frame_names == record.frame_names
        assert np.abs(sample.frames.astype(float) - record.frames).mean() < JPEG_TOLERANCE
        question = VIDEOINFER_QUESTION.format(object=object_reference(0), question=record.question)
        assert sample.conversation == [
            {"role": "user", "content": question},
            {"role": "assistant", "content": record.answer},
        ]
        assert sample.meta["answer"] == record.answer and "category" not in sample.meta
        assert (sample.meta["video"], sample.meta["exp_id"], sample.meta["qa_id"]) == (video, exp_id, qa_id)
        assert sample.masks is None and len(sample.regions) == 1
        region = sample.regions[0]
        frame = sample.meta["prompt_frame_indices"][0]
        assert region.region == 0 and region.frame == frame
        assert np.array_equal(region.mask, record.objects[0][frame])
        ys, xs = np.nonzero(region.mask)
        assert region.box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if split == "test":
            expression = json.loads((root / "test.json").read_text())[video]["expressions"][exp_id]
            assert frame == expression["overlayed_frame_idx"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_region_prompts_follow_the_subsampled_frames(source, split: str):
    root, written = source
    dataset = VideoInferDataset(root, split, num_frames=3, train=split == "train", visual_prompt="region")
    for index, (video, exp_id, qa_id) in enumerate(dataset.keys()):
        sample, record = dataset[index], record_of(written[split], video, exp_id, qa_id)
        assert len(sample.frames) == 3
        assert sample.frame_names == [record.frame_names[t] for t in sample.meta["frame_indices"]]
        [frame] = sample.meta["prompt_frame_indices"]
        assert frame in sample.meta["frame_indices"], "the prompt frame is always sampled"
        region = sample.regions[0]
        assert sample.frame_names[region.frame] == record.frame_names[frame]
        assert np.array_equal(region.mask, record.objects[0][frame])


def test_training_gives_the_object_on_several_frames_where_it_is_visible(source):
    root, written = source
    dataset = VideoInferDataset(root, "train", num_frames=4, visual_prompt="region", prompt_frames=2)
    for index in range(len(dataset)):
        sample = dataset[index]
        record = record_of(written["train"], *dataset.keys()[index])
        assert len({r.frame for r in sample.regions}) == 2
        for region, frame in zip(sample.regions, sample.meta["prompt_frame_indices"], strict=True):
            assert sample.meta["frame_indices"][region.frame] == frame and record.objects[0][frame].any()


def test_training_overlays_are_random_styles_drawn_on_the_prompt_frames_only(source):
    root, _ = source
    plain = VideoInferDataset(root, "train", num_frames=4, visual_prompt="region", seed=3)
    drawn = VideoInferDataset(root, "train", num_frames=4, visual_prompt="overlay", seed=3)
    styles = set()
    for index in range(len(plain)):
        before, after = plain[index], drawn[index]
        assert after.meta["frame_indices"] == before.meta["frame_indices"]
        [prompt] = before.regions
        changed = [t for t in range(len(before.frames)) if not np.array_equal(before.frames[t], after.frames[t])]
        assert changed == [prompt.frame]
        assert after.regions == [] and "<region>" not in after.conversation[0]["content"]
        [overlay] = after.meta["overlays"]
        styles.add((overlay["shape"], overlay["colour"]))
        again = drawn[index]
        assert np.array_equal(again.frames, after.frames) and again.conversation == after.conversation
    assert len(styles) > 1, "styles are drawn per item"
    other_seed = VideoInferDataset(root, "train", num_frames=4, visual_prompt="overlay", seed=4)
    assert any(other_seed[i].meta["overlays"] != drawn[i].meta["overlays"] for i in range(len(drawn)))


def test_test_overlays_are_the_fixed_npz_layers(source, monkeypatch: pytest.MonkeyPatch):
    root, _ = source

    def no_fresh_prompts(*args, **kwargs):
        raise AssertionError("a test sample must not draw a new visual prompt")

    for name in ("render_overlay", "draw_overlay", "apply_overlays", "random_styles"):
        monkeypatch.setattr(overlays, name, no_fresh_prompts)
    monkeypatch.setattr(videoinfer, "apply_overlays", no_fresh_prompts)
    plain = VideoInferDataset(root, "test", num_frames=3, visual_prompt="region")
    drawn = [VideoInferDataset(root, "test", num_frames=3, visual_prompt="overlay", seed=seed) for seed in (0, 9)]
    test_json = json.loads((root / "test.json").read_text())
    for index, (video, exp_id, _) in enumerate(plain.keys()):
        before, after, other = plain[index], drawn[0][index], drawn[1][index]
        expression = test_json[video]["expressions"][exp_id]
        layer = np.load(root / "visual_prompts" / video / exp_id / f"{expression['shape']}.npz")["arr_0"]
        [prompt] = before.regions
        expected = before.frames.copy()
        expected[prompt.frame] = composite(before.frames[prompt.frame], layer)
        assert np.array_equal(after.frames, expected)
        assert np.array_equal(other.frames, after.frames), "the seed does not change a test prompt"


def test_changing_a_fixed_prompt_file_changes_the_test_frames(data: Path):
    dataset = VideoInferDataset(data, "test", visual_prompt="overlay")
    before = dataset[0]
    video, exp_id, _ = dataset.keys()[0]
    expression = json.loads((data / "test.json").read_text())[video]["expressions"][exp_id]
    path = data / "visual_prompts" / video / exp_id / f"{expression['shape']}.npz"
    layer = np.zeros_like(np.load(path)["arr_0"])
    layer[:8, :8] = (0, 255, 0, 255)
    np.savez_compressed(path, layer)
    after = dataset[0]
    frame = after.meta["overlays"][0]["frame"]
    assert not np.array_equal(after.frames[frame], before.frames[frame])
    assert np.all(after.frames[frame][:8, :8] == (0, 255, 0))
    layer[:] = 0
    np.savez_compressed(path, layer)
    with pytest.warns(UserWarning, match="fully transparent"):
        empty = dataset[0]
    assert empty.meta["empty_prompt"] is True


@pytest.mark.parametrize("mode", ["overlay", "both"])
def test_training_and_test_word_an_overlay_the_same_way(source, mode: str):
    root, written = source
    train = VideoInferDataset(root, "train", num_frames=3, visual_prompt=mode)
    test = VideoInferDataset(root, "test", num_frames=3, visual_prompt=mode)
    for dataset, records in ((train, written["train"]), (test, written["test"])):
        for index in range(len(dataset)):
            sample = dataset[index]
            record = record_of(records, *dataset.keys()[index])
            [overlay] = sample.meta["overlays"]
            phrase = overlay_phrase(OverlayStyle(overlay["shape"], overlay["colour"]))
            named = phrase if mode == "overlay" else f"{phrase} {object_reference(0)}"
            assert sample.conversation[0]["content"] == VIDEOINFER_QUESTION.format(
                object=named, question=record.question
            )
            if dataset is test:
                assert OverlayStyle(overlay["shape"], overlay["colour"]) == OverlayStyle(
                    record.styles[0].shape, record.styles[0].colour
                )
            assert (len(sample.regions) == 1) == (mode == "both")


def test_test_split_names_mask_contours_as_rga3_does(tmp_path: Path):
    records = write_tiny_videoinfer(tmp_path, "test", seed=0, num_videos=4)
    styles = {r.styles[0].shape for r in records}
    assert styles == set(overlays.SHAPES)
    test_json = json.loads((tmp_path / "test.json").read_text())
    shapes = {e["shape"] for v in test_json.values() for e in v["expressions"].values()}
    assert "mask contour" in shapes and shape_name("mask_contour") == "mask contour"
    dataset = VideoInferDataset(tmp_path, "test", num_frames=2)
    contour = [i for i, s in enumerate(dataset.items) if s.style.shape == "mask_contour"]
    assert "outlined by the" in dataset[contour[0]].conversation[0]["content"]


def corrupt_first_rle(root: Path, split: str) -> str:
    """Truncate the RLE counts of the split's first expression on its first visible frame (train) or its
    prompt frame (test); returns its anno_id."""
    annotation = json.loads((root / f"{split}.json").read_text())
    expression = annotation[sorted(annotation)[0]]["expressions"]["0"]
    anno_id = expression["anno_id"]
    anno_id = str(anno_id[0] if isinstance(anno_id, list) else anno_id)
    mask_dict = json.loads((root / "mask_dict.json").read_text())
    visible = [t for t, rle in enumerate(mask_dict[anno_id]) if rle is not None]
    frame = expression["overlayed_frame_idx"] if split == "test" else visible[0]
    mask_dict[anno_id][frame]["counts"] = mask_dict[anno_id][frame]["counts"][:-2]
    (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    return anno_id


@pytest.mark.parametrize("split", ["train", "test"])
def test_malformed_rle_names_the_mask_file(data: Path, split: str):
    anno_id = corrupt_first_rle(data, split)
    dataset = VideoInferDataset(data, split, visual_prompt="region")
    with pytest.raises(ValueError, match=f"malformed RLE in .*mask_dict.json \\(anno_id {anno_id}, frame"):
        for index in range(2):  # the first expression's questions
            dataset[index]


def test_missing_frame_names_the_file(data: Path):
    dataset = VideoInferDataset(data, "train", visual_prompt="overlay")
    video = dataset.keys()[0][0]
    missing = data / "frames" / video / f"{dataset.frames[video][2]}.jpg"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        dataset[0]


def test_bad_test_prompts_and_styles_name_their_file(data: Path):
    dataset = VideoInferDataset(data, "test")
    path = dataset.items[0].prompt_file
    np.savez_compressed(path, np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=f"{path}.*RGBA layer"):
        dataset[0]
    path.unlink()
    with pytest.raises(FileNotFoundError, match=str(path)):
        dataset[0]
    test_json = json.loads((data / "test.json").read_text())
    next(iter(next(iter(test_json.values()))["expressions"].values()))["color"] = "mauve"
    (data / "test.json").write_text(json.dumps(test_json))
    with pytest.raises(ValueError, match="'mauve'.*test.json"):
        VideoInferDataset(data, "test")


def test_unsorted_frame_lists_and_short_mask_tracks_are_refused(data: Path):
    train_json = json.loads((data / "train.json").read_text())
    video = sorted(train_json)[0]
    train_json[video]["frames"] = train_json[video]["frames"][::-1]
    (data / "train.json").write_text(json.dumps(train_json))
    with pytest.raises(ValueError, match="not sorted"):
        VideoInferDataset(data, "train")
    train_json[video]["frames"] = train_json[video]["frames"][::-1][:-1]
    (data / "train.json").write_text(json.dumps(train_json))
    with pytest.raises(ValueError, match="mask_dict.json is 6 entries, expected 5 frames"):
        VideoInferDataset(data, "train")


def test_a_training_split_sharing_a_test_video_is_refused(data: Path):
    test_json = json.loads((data / "test.json").read_text())
    train_json = json.loads((data / "train.json").read_text())
    shared = sorted(test_json)[0]
    assert videoinfer.test_videos(data) == set(test_json)
    assert not set(train_json) & set(test_json)
    check_no_test_videos(train_json, data, "train mix")  # disjoint: passes
    with pytest.raises(ValueError, match=f"revos train: 1 videos .*test split.*{shared}"):
        check_no_test_videos([*train_json, shared], data, "revos train")
    train_json[shared] = test_json[shared]
    (data / "train.json").write_text(json.dumps(train_json))
    with pytest.raises(ValueError, match=f"videoinfer train .*{shared}.*leaks the benchmark"):
        VideoInferDataset(data, "train")


def test_registered_as_a_ref_videoqa_benchmark_on_test(source, data: Path):
    loader = LOADERS["videoinfer"]
    assert loader.family == "ref_videoqa"
    assert ("videoinfer", "test") in EVALUATED_SPLITS and ("videoinfer", "train") not in EVALUATED_SPLITS
    assert loader.missing_paths(source[0], "test") == [] and loader.missing_paths(source[0], "train") == []
    shutil.rmtree(data / "visual_prompts")
    assert loader.missing_paths(data, "test") == [data / "visual_prompts"]
    dataset = loader.build(source[0], "test", num_frames=2, train=False, seed=0)
    assert dataset.visual_prompt == "overlay" and len(dataset[0].frames) == 2
    with pytest.raises(ValueError, match="visual_prompt must be one of"):
        loader.build(source[0], "test", num_frames=2, train=False, seed=0, visual_prompt="tokens")


def test_writer_refuses_records_that_do_not_fit_the_released_layout(tmp_path: Path, source):
    record = source[1]["test"][0]
    two_objects = VideoInferRecord(**{**record.__dict__, "objects": record.objects * 2, "styles": record.styles * 2})
    with pytest.raises(ValueError, match="exactly one object"):
        write_videoinfer(tmp_path, "test", [two_objects])
    restyled = VideoInferRecord(**{**record.__dict__, "qa_id": "9", "styles": [OverlayStyle("arrow", "red")]})
    with pytest.raises(ValueError, match="differs from its expression"):
        write_videoinfer(tmp_path, "test", [record, restyled])
    with pytest.raises(ValueError, match="qa_id '0' repeats"):
        write_videoinfer(tmp_path, "test", [record, record])

"""MeViSDataset reads the official MeViS format; frame sampling picks sorted, distinct, in-segment frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from utils.data.catalog import LOADERS
from utils.data.mevis import MEVIS_FPS, REVOS_FPS, MeViSDataset
from utils.data.prompts import SEG_TOKEN, reasoning_seg_question, referring_seg_answer, referring_seg_question
from utils.synthetic.moving_shapes import generate_mevis_split
from utils.synthetic.video_formats import write_revos
from utils.video.sampling import uniform_indices as sample_frame_indices

SIZE = 64
NUM_FRAMES = 8


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mevis")
    generate_mevis_split(root, "train", 4, seed=0, height=SIZE, width=SIZE, num_frames=NUM_FRAMES)
    return root


@pytest.fixture
def root(source: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset, free to corrupt."""
    shutil.copytree(source, tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="module")
def revos_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic ReVOS root (``train`` split): attribute expressions referring, motion ones reasoning."""
    return write_revos(tmp_path_factory.mktemp("ReVOS"), split="train", num_videos=4, num_frames=NUM_FRAMES)


@pytest.fixture
def revos_root(revos_source: Path, tmp_path: Path) -> Path:
    """A private copy of the ReVOS set, free to edit."""
    shutil.copytree(revos_source, tmp_path / "ReVOS")
    return tmp_path / "ReVOS"


def _meta(root: Path) -> dict:
    return json.loads((root / "train" / "meta_expressions.json").read_text())


def _revos_expressions(root: Path) -> dict:
    return json.loads((root / "meta_expressions_train_.json").read_text())["videos"]


def _edit_revos_expression(root: Path, video_id: str, exp_id: str, change) -> None:
    path = root / "meta_expressions_train_.json"
    data = json.loads(path.read_text())
    change(data["videos"][video_id]["expressions"][exp_id])
    path.write_text(json.dumps(data))


def _revos(root: Path, **options) -> MeViSDataset:
    options = {"num_frames": None, "train": False, "seed": 0, **options}
    return LOADERS["revos"].build(root, "train", **options)


def _decode(rle: dict | None) -> np.ndarray:
    return np.zeros((SIZE, SIZE), bool) if rle is None else mask_utils.decode(rle).astype(bool)


# --- frame sampling -------------------------------------------------------------------------------


def test_sampling_keeps_all_frames_when_none_or_too_many() -> None:
    assert sample_frame_indices(5, None) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(5, 5) == sample_frame_indices(5, 9) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(1, 3, jitter=True, rng=np.random.default_rng(0)) == [0]


def test_sampling_uses_segment_centres() -> None:
    assert sample_frame_indices(8, 4) == [1, 3, 5, 7]
    assert sample_frame_indices(10, 2) == [2, 7]
    assert sample_frame_indices(100, 1) == [50]


@pytest.mark.parametrize("jitter", [False, True])
def test_sampling_is_sorted_distinct_and_one_per_segment(jitter: bool) -> None:
    rng = np.random.default_rng(0)
    for total in range(1, 40):
        for count in range(1, total):
            indices = sample_frame_indices(total, count, jitter=jitter, rng=rng)
            assert len(indices) == count and len(set(indices)) == count and indices == sorted(indices)
            for i, index in enumerate(indices):
                # Segment i is [i * total / count, (i + 1) * total / count); a centre pick's pixel
                # centre (index + 0.5) lies in it, a jittered index itself does.
                position = 2 * index if jitter else 2 * index + 1
                assert 2 * i * total <= position * count < 2 * (i + 1) * total


def test_sampling_jitter_is_seeded_and_varies() -> None:
    draws = [sample_frame_indices(30, 4, jitter=True, rng=np.random.default_rng(s)) for s in range(10)]
    assert draws[0] == sample_frame_indices(30, 4, jitter=True, rng=np.random.default_rng(0))
    assert len({tuple(d) for d in draws}) > 1


def test_sampling_rejects_empty_video() -> None:
    with pytest.raises(ValueError, match="num_total"):
        sample_frame_indices(0, 4)
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(4, 0)


# --- loader ---------------------------------------------------------------------------------------


def test_items_are_sorted_video_expression_pairs(source: Path) -> None:
    meta = _meta(source)
    dataset = MeViSDataset(source, "train")
    expected = [(v, e) for v in sorted(meta["videos"]) for e in sorted(meta["videos"][v]["expressions"], key=int)]
    assert dataset.items == expected and len(dataset) == len(expected)


def test_sample_has_schema_shapes_prompts_and_meta(source: Path) -> None:
    meta = _meta(source)
    mask_dict = json.loads((source / "train" / "mask_dict.json").read_text())
    dataset = MeViSDataset(source, "train", num_frames=4)
    for index in range(len(dataset)):
        sample = dataset[index]
        video_id, exp_id = dataset.items[index]
        exp = meta["videos"][video_id]["expressions"][exp_id]
        assert sample.sample_id == f"mevis/train/{video_id}/{exp_id}"
        assert sample.frames.shape == (4, SIZE, SIZE, 3) and sample.frames.dtype == np.uint8
        assert sample.masks.shape == (1, 4, SIZE, SIZE) and sample.masks.dtype == bool
        assert sample.frame_names == ["00001", "00003", "00005", "00007"]
        assert sample.conversation == [
            {"role": "user", "content": referring_seg_question([exp["exp"]])},
            {"role": "assistant", "content": referring_seg_answer(1)},
        ]
        assert sample.meta == {
            "video": video_id,
            "exp_id": exp_id,
            "exp": exp["exp"],
            "exp_ids": [exp_id],
            "type": exp["type"],
            "frame_indices": [1, 3, 5, 7],
        }
        track = mask_dict[str(exp["anno_id"][0])]
        expected = np.stack([_decode(track[t]) for t in (1, 3, 5, 7)])
        np.testing.assert_array_equal(sample.masks[0], expected)


def test_all_frames_when_num_frames_is_none(source: Path) -> None:
    sample = MeViSDataset(source, "train", num_frames=None)[0]
    assert sample.frames.shape[0] == sample.masks.shape[1] == NUM_FRAMES
    assert sample.meta["frame_indices"] == list(range(NUM_FRAMES))


def test_multi_anno_expression_mask_is_union(root: Path) -> None:
    meta = _meta(root)
    video_id = sorted(meta["videos"])[0]
    expressions = meta["videos"][video_id]["expressions"]
    anno_ids = [expressions["0"]["anno_id"][0], expressions["1"]["anno_id"][0]]
    expressions["99"] = {"exp": "both shapes", "obj_id": [0, 1], "anno_id": anno_ids}
    (root / "train" / "meta_expressions.json").write_text(json.dumps(meta))
    mask_dict = json.loads((root / "train" / "mask_dict.json").read_text())

    dataset = MeViSDataset(root, "train", num_frames=None)
    sample = dataset[dataset.items.index((video_id, "99"))]
    union = np.stack([_decode(a) | _decode(b) for a, b in zip(*(mask_dict[str(i)] for i in anno_ids), strict=True)])
    assert sample.masks.shape == (1, NUM_FRAMES, SIZE, SIZE)
    np.testing.assert_array_equal(sample.masks[0], union)
    assert "type" not in sample.meta


def test_train_jitter_is_deterministic_per_seed_and_index(source: Path) -> None:
    def indices(seed: int) -> list[list[int]]:
        dataset = MeViSDataset(source, "train", num_frames=3, train=True, seed=seed)
        return [dataset[i].meta["frame_indices"] for i in range(len(dataset))]

    assert indices(0) == indices(0)
    assert indices(0) != indices(1)
    assert len({tuple(i) for i in indices(0)}) > 1
    assert all(i == sorted(set(i)) and len(i) == 3 for i in indices(0))
    assert MeViSDataset(source, "train", num_frames=3)[0].meta["frame_indices"] == sample_frame_indices(8, 3)


def test_packing_several_expressions_of_one_video(source: Path) -> None:
    meta = _meta(source)
    mask_dict = json.loads((source / "train" / "mask_dict.json").read_text())
    single = MeViSDataset(source, "train", num_frames=4, train=True, seed=3)
    packed = MeViSDataset(source, "train", num_frames=4, train=True, seed=3, expressions_per_sample=2)
    for index in range(len(packed)):
        sample = packed[index]
        video_id, exp_id = packed.items[index]
        exp_ids = sample.meta["exp_ids"]
        assert exp_ids[0] == exp_id and len(set(exp_ids)) == 2
        texts = [meta["videos"][video_id]["expressions"][e]["exp"] for e in exp_ids]
        assert sample.conversation[0]["content"] == referring_seg_question(texts)
        assert sample.conversation[1]["content"].count(SEG_TOKEN) == 2
        assert sample.masks.shape == (2, 4, SIZE, SIZE)
        assert sample.meta["frame_indices"] == single[index].meta["frame_indices"]
        np.testing.assert_array_equal(sample.masks[0], single[index].masks[0])
        track = mask_dict[str(meta["videos"][video_id]["expressions"][exp_ids[1]]["anno_id"][0])]
        expected = np.stack([_decode(track[t]) for t in sample.meta["frame_indices"]])
        np.testing.assert_array_equal(sample.masks[1], expected)
    assert [packed[i].meta["exp_ids"] for i in range(3)] == [packed[i].meta["exp_ids"] for i in range(3)]
    # Packing asks for more expressions than a video has: it takes them all.
    everything = MeViSDataset(source, "train", train=True, expressions_per_sample=50)[0]
    assert everything.masks.shape[0] == len(meta["videos"][everything.meta["video"]]["expressions"])
    # Evaluation never packs.
    assert MeViSDataset(source, "train", expressions_per_sample=2)[0].masks.shape[0] == 1


# --- frame rate ---------------------------------------------------------------------------------------


def test_mevis_timestamps_are_frame_index_over_5_fps(source: Path) -> None:
    assert MEVIS_FPS == 5.0
    sample = MeViSDataset(source, "train", num_frames=4)[0]
    assert sample.medium == "video" and sample.meta["frame_indices"] == [1, 3, 5, 7]
    np.testing.assert_allclose(sample.timestamps, np.array([1, 3, 5, 7]) / 5.0)
    for sample in (MeViSDataset(source, "train", num_frames=3, train=True, seed=2)[i] for i in range(4)):
        np.testing.assert_allclose(sample.timestamps, np.asarray(sample.meta["frame_indices"]) / MEVIS_FPS)


def test_fps_option_overrides_the_mevis_frame_rate(source: Path) -> None:
    built = LOADERS["mevis"].build(source, "train", num_frames=4, train=False, seed=0, fps=30.0)
    np.testing.assert_allclose(built[0].timestamps, np.array([1, 3, 5, 7]) / 30.0)
    np.testing.assert_allclose(MeViSDataset(source, "train", fps=2.5)[0].timestamps, np.arange(NUM_FRAMES) / 2.5)
    with pytest.raises(ValueError, match="mevis train: fps must be a positive number"):
        MeViSDataset(source, "train", fps=0.0)


def test_revos_timestamps_are_frame_index_over_6_fps(revos_source: Path) -> None:
    assert REVOS_FPS == 6.0
    dataset = _revos(revos_source, num_frames=3, train=True, seed=1)
    for sample in (dataset[i] for i in range(len(dataset))):
        np.testing.assert_allclose(sample.timestamps, np.asarray(sample.meta["frame_indices"]) / 6.0)
    np.testing.assert_allclose(_revos(revos_source, fps=24.0)[0].timestamps, np.arange(NUM_FRAMES) / 24.0)


# --- ReVOS referring and reasoning expressions --------------------------------------------------------


def test_revos_reasoning_expressions_get_the_reasoning_question_and_referring_ones_the_referring_question(
    revos_source: Path,
) -> None:
    videos = _revos_expressions(revos_source)
    dataset = _revos(revos_source, num_frames=2)
    seen = set()
    for index, (video_id, exp_id) in enumerate(dataset.items):
        expression = videos[video_id]["expressions"][exp_id]
        sample = dataset[index]
        question = sample.conversation[0]["content"]
        if expression["type_id"] == 1:
            assert question == reasoning_seg_question(expression["exp"])
        else:
            assert expression["type_id"] == 0 and question == referring_seg_question([expression["exp"]])
        assert sample.meta["type_id"] == expression["type_id"]
        assert sample.conversation[1]["content"] == referring_seg_answer(1)
        seen.add(expression["type_id"])
    assert seen == {0, 1}


@pytest.mark.parametrize(
    "edit",
    [lambda expression: expression.pop("type_id"), lambda expression: expression.update(type_id=2)],
    ids=["no-type_id", "type_id-2"],
)
def test_revos_expression_without_type_id_or_of_type_2_is_asked_as_referring(revos_root: Path, edit) -> None:
    video_id, exp_id = next(
        (v, e)
        for v, entry in _revos_expressions(revos_root).items()
        for e, x in entry["expressions"].items()
        if x["type_id"] == 1
    )
    _edit_revos_expression(revos_root, video_id, exp_id, edit)
    dataset = _revos(revos_root)
    sample = dataset[dataset.items.index((video_id, exp_id))]
    assert sample.conversation[0]["content"] == referring_seg_question([sample.meta["exp"]])
    assert sample.meta.get("type_id") == _revos_expressions(revos_root)[video_id]["expressions"][exp_id].get("type_id")


@pytest.mark.parametrize("type_id", [3, -1, "1", True])
def test_revos_unknown_type_id_is_an_error_naming_the_sample_and_the_file(revos_root: Path, type_id) -> None:
    video_id = sorted(_revos_expressions(revos_root))[1]
    _edit_revos_expression(revos_root, video_id, "0", lambda expression: expression.update(type_id=type_id))
    with pytest.raises(ValueError, match="type_id") as error:
        _revos(revos_root)
    message = str(error.value)
    assert f"revos/train/{video_id}/0" in message and str(revos_root / "meta_expressions_train_.json") in message
    assert "0 (referring), 1 (reasoning)" in message


def test_revos_packing_asks_reasoning_queries_alone_and_packs_referring_ones(revos_source: Path) -> None:
    videos = _revos_expressions(revos_source)
    packed = _revos(revos_source, num_frames=2, train=True, expressions_per_sample=3)
    for index, (video_id, exp_id) in enumerate(packed.items):
        sample = packed[index]
        expressions = videos[video_id]["expressions"]
        exp_ids = sample.meta["exp_ids"]
        assert exp_ids[0] == exp_id and sample.masks.shape[0] == len(exp_ids)
        if expressions[exp_id]["type_id"] == 1:
            assert exp_ids == [exp_id]
            assert sample.conversation[0]["content"] == reasoning_seg_question(expressions[exp_id]["exp"])
        else:
            referring = [e for e, x in expressions.items() if x["type_id"] == 0]
            assert set(exp_ids) <= set(referring) and len(exp_ids) == min(3, len(referring))
            texts = [expressions[e]["exp"] for e in exp_ids]
            assert sample.conversation[0]["content"] == referring_seg_question(texts)


def test_mevis_keeps_the_referring_template_whatever_type_id_says(root: Path) -> None:
    meta = _meta(root)
    video_id = sorted(meta["videos"])[0]
    meta["videos"][video_id]["expressions"]["0"]["type_id"] = 1
    (root / "train" / "meta_expressions.json").write_text(json.dumps(meta))
    dataset = MeViSDataset(root, "train")
    sample = dataset[dataset.items.index((video_id, "0"))]
    assert sample.conversation[0]["content"] == referring_seg_question([sample.meta["exp"]])


# --- bad input ------------------------------------------------------------------------------------------


def test_valid_split_without_mask_dict_has_no_masks(root: Path) -> None:
    (root / "train").rename(root / "valid")
    (root / "valid" / "mask_dict.json").unlink()
    sample = MeViSDataset(root, "valid")[0]
    assert sample.masks is None and sample.frames.shape == (NUM_FRAMES, SIZE, SIZE, 3)
    assert sample.sample_id.startswith("mevis/valid/")


def test_missing_frame_error_names_video_expression_and_file(root: Path) -> None:
    dataset = MeViSDataset(root, "train", num_frames=None)
    video_id, exp_id = dataset.items[0]
    path = root / "train" / "JPEGImages" / video_id / "00002.jpg"
    path.unlink()
    with pytest.raises(FileNotFoundError) as error:
        dataset[0]
    assert video_id in str(error.value) and f"expression {exp_id}" in str(error.value)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda rle: rle.update(counts=""),
        lambda rle: rle.update(counts=rle["counts"][:-1]),
        lambda rle: rle.update(counts=rle["counts"][:2] + "~" + rle["counts"][3:]),
        lambda rle: rle.update(size=[SIZE, SIZE + 1]),
        lambda rle: rle.pop("counts"),
    ],
    ids=["empty", "truncated", "bad-char", "wrong-size", "no-counts"],
)
def test_malformed_rle_error_names_video_expression_and_file(root: Path, corrupt) -> None:
    dataset = MeViSDataset(root, "train", num_frames=None)
    video_id, exp_id = dataset.items[0]
    anno_id = _meta(root)["videos"][video_id]["expressions"][exp_id]["anno_id"][0]
    mask_path = root / "train" / "mask_dict.json"
    mask_dict = json.loads(mask_path.read_text())
    frame = next(t for t, rle in enumerate(mask_dict[str(anno_id)]) if rle is not None)
    corrupt(mask_dict[str(anno_id)][frame])
    mask_path.write_text(json.dumps(mask_dict))
    with pytest.raises(ValueError, match="malformed RLE") as error:
        MeViSDataset(root, "train", num_frames=None)[0]
    message = str(error.value)
    assert video_id in message and f"expression {exp_id}" in message and str(mask_path) in message
    assert f"anno_id {anno_id}, frame {frame}" in message


def test_meta_without_videos_raises_naming_file(root: Path) -> None:
    path = root / "train" / "meta_expressions.json"
    path.write_text(json.dumps({"expressions": {}}))
    with pytest.raises(ValueError, match="videos") as error:
        MeViSDataset(root, "train")
    assert str(path) in str(error.value)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        MeViSDataset(root, "train")

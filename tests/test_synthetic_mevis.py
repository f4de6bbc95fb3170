"""The moving-shapes generator writes MeViS's format and meets the world's product requirements."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from utils.synthetic.moving_shapes import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    ShapeObject,
    WorldConfig,
    encode_masks,
    generate_mevis,
    generate_mevis_split,
    make_video,
    parse_expression,
    render_video,
    resolve_referents,
)

SIZE = 64
NUM_FRAMES = 6
NUM_VIDEOS = 4
CONFIG = WorldConfig(height=SIZE, width=SIZE, num_frames=NUM_FRAMES)
WORLD = {"height": SIZE, "width": SIZE, "num_frames": NUM_FRAMES}
MANY = 60  # in-memory videos for the statistical requirements


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mevis")
    generate_mevis(root, NUM_VIDEOS, 2, seed=7, **WORLD)
    return root


@pytest.fixture(scope="module")
def videos() -> list:
    return [make_video(3, "train", i, CONFIG) for i in range(MANY)]


def _load(root: Path, split: str) -> tuple[dict, dict]:
    meta = json.loads((root / split / "meta_expressions.json").read_text())
    return meta, json.loads((root / split / "mask_dict.json").read_text())


def test_format_written_exactly(dataset: Path) -> None:
    for split in ("train", "valid_u"):
        meta, mask_dict = _load(dataset, split)
        assert set(meta) == {"videos"}
        anno_ids = []
        for video_id, video in meta["videos"].items():
            assert len(video_id) == 12 and int(video_id, 16) >= 0
            assert set(video) == {"expressions", "frames"}
            assert video["frames"] == [f"{t:05d}" for t in range(NUM_FRAMES)]
            assert sorted(video["expressions"], key=int) == [str(k) for k in range(len(video["expressions"]))]
            for exp in video["expressions"].values():
                assert set(exp) == {"exp", "obj_id", "anno_id", "type"}
                assert isinstance(exp["exp"], str) and exp["type"] in ("attribute", "motion")
                assert len(exp["obj_id"]) == len(exp["anno_id"]) == 1
                anno_ids += exp["anno_id"]
            for name in video["frames"]:
                with Image.open(dataset / split / "JPEGImages" / video_id / f"{name}.jpg") as image:
                    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (SIZE, SIZE)
        assert len(anno_ids) == len(set(anno_ids)), "anno_ids must be unique within a split"
        assert set(mask_dict) == {str(a) for a in anno_ids}
        for rles in mask_dict.values():
            assert len(rles) == NUM_FRAMES
            for rle in rles:
                if rle is not None:
                    assert set(rle) == {"size", "counts"} and isinstance(rle["counts"], str)
                    decoded = mask_utils.decode(rle)
                    assert decoded.shape == (SIZE, SIZE) and decoded.any()
        assert not (dataset / split / "generation.json").exists()


def test_splits_have_disjoint_videos(dataset: Path) -> None:
    train, _ = _load(dataset, "train")
    valid, _ = _load(dataset, "valid_u")
    assert len(train["videos"]) == NUM_VIDEOS and len(valid["videos"]) == 2
    assert not set(train["videos"]) & set(valid["videos"])


def test_files_match_generated_videos(dataset: Path) -> None:
    meta, mask_dict = _load(dataset, "train")
    for index in range(NUM_VIDEOS):
        video = make_video(7, "train", index, CONFIG)
        entry = meta["videos"][video.video_id]
        assert [e["exp"] for e in entry["expressions"].values()] == [e.text for e in video.expressions]
        for exp, expression in zip(entry["expressions"].values(), video.expressions, strict=True):
            rles = mask_dict[str(exp["anno_id"][0])]
            for t, rle in enumerate(rles):
                expected = video.masks[expression.target, t]
                got = np.zeros_like(expected) if rle is None else mask_utils.decode(rle).astype(bool)
                np.testing.assert_array_equal(got, expected)


def test_every_video_has_at_least_three_objects(dataset: Path, videos: list) -> None:
    meta, _ = _load(dataset, "train")
    assert all(len(v["expressions"]) >= 3 for v in meta["videos"].values())
    counts = {len(v.objects) for v in videos}
    assert min(counts) >= 3 and counts == {3, 4, 5}


def test_object_attributes_in_range(videos: list) -> None:
    scale = SIZE / 128
    for video in videos:
        for obj in video.objects:
            assert obj.colour in COLOURS and obj.shape in SHAPES and obj.direction in DIRECTIONS
            assert 14 * scale <= obj.size <= 24 * scale
            assert 2 * scale <= obj.speed <= 5 * scale


def test_every_expression_text_resolves_to_exactly_one_object(videos: list) -> None:
    for video in videos:
        for expression in video.expressions:
            assert resolve_referents(video.objects, **parse_expression(expression.text)) == {expression.target}


def test_resolver_returns_every_match() -> None:
    objects = [
        ShapeObject("red", "square", 16, 20, 20, "left", 2),
        ShapeObject("red", "square", 16, 40, 40, "right", 2),
        ShapeObject("blue", "square", 16, 40, 20, "left", 2),
    ]
    assert resolve_referents(objects, colour="red") == {0, 1}
    assert resolve_referents(objects, shape="square") == {0, 1, 2}
    assert resolve_referents(objects, direction="left") == {0, 2}
    assert resolve_referents(objects, colour="red", shape="square", direction="right") == {1}
    assert parse_expression("the red square moving right") == {
        "colour": "red",
        "shape": "square",
        "direction": "right",
    }


def test_motion_share_at_least_one_third(dataset: Path, videos: list) -> None:
    meta, _ = _load(dataset, "train")
    types = [e["type"] for v in meta["videos"].values() for e in v["expressions"].values()]
    assert types.count("motion") >= len(types) / 3
    types = [e.type for v in videos for e in v.expressions]
    assert types.count("motion") >= len(types) / 3 and types.count("attribute") > 0


def test_motion_expressions_have_same_look_twin_moving_differently(videos: list) -> None:
    for video in videos:
        assert any(e.type == "motion" for e in video.expressions)
        for expression in video.expressions:
            target = video.objects[expression.target]
            twins = [
                obj
                for i, obj in enumerate(video.objects)
                if i != expression.target and (obj.colour, obj.shape) == (target.colour, target.shape)
            ]
            if expression.type == "motion":
                assert target.direction in expression.text
                assert twins and all(t.direction != target.direction and t.size == target.size for t in twins)
            else:
                assert not twins
                assert not any(d in expression.text.split() for d in DIRECTIONS)


def test_every_target_has_colour_or_shape_distractor(videos: list) -> None:
    for video in videos:
        for expression in video.expressions:
            target = video.objects[expression.target]
            assert any(
                (obj.colour == target.colour) != (obj.shape == target.shape)
                for i, obj in enumerate(video.objects)
                if i != expression.target
            ), f"{video.video_id}: {expression.text!r} has no distractor sharing only colour or shape"


def test_occlusion_gives_disjoint_visible_masks(videos: list) -> None:
    config = WorldConfig(height=SIZE, width=SIZE, num_frames=2)
    back = ShapeObject("red", "square", 20, 30, 30, "right", 0)
    front = ShapeObject("blue", "circle", 20, 36, 30, "left", 0)
    frames, masks = render_video([back, front], config, np.random.default_rng(0))
    full_back = np.zeros((SIZE, SIZE), bool)
    full_back[20:40, 20:40] = True
    assert not (masks[0] & masks[1]).any()
    assert (masks[0, 0] | masks[1, 0])[full_back].all() and 0 < masks[0, 0].sum() < full_back.sum()
    np.testing.assert_array_equal(masks[0, 0], full_back & ~masks[1, 0])
    # The front object's colour shows where the two overlap.
    overlap_pixel = frames[0][masks[1, 0] & full_back].mean(axis=0)
    assert overlap_pixel[2] > 200 and overlap_pixel[0] < 100
    for video in videos:
        assert video.masks.sum(axis=0).max() <= 1


def test_object_leaving_the_frame_gets_null() -> None:
    config = WorldConfig(height=SIZE, width=SIZE, num_frames=5)
    objects = [
        ShapeObject("green", "triangle", 10, 58, 30, "right", 6),  # partly out at t=1, gone from t=2
        ShapeObject("yellow", "circle", 10, 20, 20, "down", 2),
    ]
    _, masks = render_video(objects, config, np.random.default_rng(0))
    rles = encode_masks(masks)
    assert rles[0][0] is not None and rles[0][1] is not None
    assert masks[0, 1].sum() < masks[0, 0].sum()
    assert rles[0][2:] == [None, None, None]
    assert all(rle is not None for rle in rles[1])


def test_generated_videos_include_objects_leaving_the_frame(videos: list) -> None:
    absent = sum(bool((~video.masks.any(axis=(2, 3))).any()) for video in videos)
    assert absent > 0


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        generate_mevis_split(tmp_path / name, "train", 2, seed, **WORLD)

    def contents(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    assert contents(tmp_path / "a") != contents(tmp_path / "c")


def _load_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "generate_synthetic_mevis.py"
    spec = importlib.util.spec_from_file_location("generate_synthetic_mevis", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_skips_when_settings_match_and_regenerates_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _load_script()
    argv = ["--out", str(tmp_path), "--num-train", "2", "--num-valid", "1", "--seed", "0", "--size", "48"]
    script.main([*argv, "--num-frames", "3"])
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["complete"] and record["num_train"] == 2 and record["size"] == 48
    stamp = (tmp_path / "train" / "meta_expressions.json").stat().st_mtime_ns
    capsys.readouterr()
    script.main([*argv, "--num-frames", "3"])
    assert "skipping" in capsys.readouterr().out
    assert (tmp_path / "train" / "meta_expressions.json").stat().st_mtime_ns == stamp
    script.main([*argv, "--num-frames", "4"])
    meta, _ = _load(tmp_path, "train")
    assert all(len(v["frames"]) == 4 for v in meta["videos"].values())
    assert json.loads((tmp_path / "generation.json").read_text())["num_frames"] == 4


def test_cli_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit):
        _load_script().main(["--out", str(tmp_path), "--num-train", "1", "--num-valid", "1", "--seed", "0"])
    assert (tmp_path / "train").is_dir()


def test_the_stream_draws_the_worlds_train_videos_as_the_files_hold_them(tmp_path: Path) -> None:
    from utils.data.catalog import LOADERS
    from utils.data.mevis import MeViSDataset

    generate_mevis(tmp_path, 3, 1, seed=0)  # the quick start's world at its size: 128 px, 8 frames
    files = MeViSDataset(tmp_path, "train", num_frames=8)
    stream = LOADERS["moving_shapes"].build(tmp_path, "train", num_frames=8, train=True, seed=0, num_videos=3)
    for index in range(3):
        sample = stream[index]
        video_id, exp_id = sample.meta["video"], sample.sample_id.rsplit("/", 1)[1]
        on_disk = files[files.keys().index((video_id, exp_id))]
        assert sample.conversation == on_disk.conversation
        assert np.array_equal(sample.frames, on_disk.frames)  # the same JPEG round trip
        assert np.array_equal(sample.masks, on_disk.masks) and np.allclose(sample.timestamps, on_disk.timestamps)
        assert stream[index].sample_id == sample.sample_id  # item i is fixed for a seed
    with pytest.raises(ValueError, match="only the 'train' split"):
        LOADERS["moving_shapes"].build(tmp_path, "valid_u", num_frames=8, train=True, seed=0)

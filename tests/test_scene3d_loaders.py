"""ScanRefer / Multi3DRefer / Scan2Cap / ScanQA / SQA3D loaders read what :mod:`utils.synthetic.scene3d_formats` writes.

Two tiny synthetic rooms are written as scene folders, with every benchmark in its official layout and in
Video-3D LLM's LLaVA layout (grounding also GPT4Scene-style, ``<OBJ###>`` answers). Both layouts must give
the same turns, answers must follow the rooms' ground truth and proposals, and bad items must become
errors that name their file.
"""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from utils.data import scan2cap, scanqa, scanrefer  # noqa: F401  (registers the loaders)
from utils.data.mixture import DataConfigError, check_training_data
from utils.data.prompts import object_reference
from utils.data.registry import EVALUATED_SPLITS, LOADERS
from utils.data.robust import BadSample, SkipBadSamples, skipping_collate
from utils.data.scan2cap import projected_box_prompt
from utils.data.scene3d import NO_OBJECT_ANSWER
from utils.data.schema import RegionPrompt
from utils.scene3d.object_ids import format_object_id, parse_object_ids
from utils.scene3d.proposal_views import box_pixel_masks
from utils.scene3d.scene_folder import Scene, read_scene
from utils.synthetic.rooms import Room, RoomConfig
from utils.synthetic.scene3d_formats import BENCHMARKS, NUMBERS, generate_scene_benchmarks, write_llava

CONFIG = RoomConfig(height=64, width=80, num_frames=8, miss_rate=0.3, spurious_rate=0.0)
"""Tiny rooms; no spurious boxes, so a missed target has no proposal at all."""
SPLIT = "val"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("scene3d")
    rooms = generate_scene_benchmarks(root / "official", SPLIT, 2, seed=0, layout="official", config=CONFIG)
    for benchmark in BENCHMARKS:
        write_llava(root / "llava", benchmark, SPLIT, rooms)
    for benchmark in ("scanrefer", "multi3drefer"):
        write_llava(root / "obj", benchmark, SPLIT, rooms, target="obj")
    layouts = {name: root / name for name in ("official", "llava", "obj")}
    return {"rooms": {room.scene_id: room for room in rooms}, "scenes": str(root / "official" / "scenes"), **layouts}


def _load(data: dict, benchmark: str, layout: str = "official", **options):
    options = {"num_frames": 4, "train": False, "seed": 0, "scene_root": data["scenes"], **options}
    return LOADERS[benchmark].build(data[layout], SPLIT, **options)


def _turns(dataset) -> set[tuple[str, str]]:
    return {tuple(turn["content"] for turn in dataset[i].conversation) for i in range(len(dataset))}


def _position(room: Room, object_id: int) -> int:
    return int(np.flatnonzero(room.object_ids == object_id)[0])


def _proposals_of(room: Room, positions: list[int]) -> list[int]:
    """The proposals jittered from ground-truth ``positions`` (missed ones have none)."""
    return [int(np.flatnonzero(room.proposal_sources == k)[0]) for k in positions if k in room.proposal_sources]


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_both_layouts_of_each_benchmark_give_the_same_turns(data: dict, benchmark: str) -> None:
    official, llava = _load(data, benchmark, "official"), _load(data, benchmark, "llava")
    assert (official.layout, llava.layout) == ("official", "llava")
    assert len(official) > 0
    if benchmark == "scanqa":  # Video-3D LLM writes one item per answer; the official item has them all
        assert _turns(official) <= _turns(llava)
    else:
        assert _turns(official) == _turns(llava)


def test_a_sample_holds_the_frames_geometry_and_proposals_of_its_scene(data: dict) -> None:
    dataset = _load(data, "scanrefer", num_frames=4)
    sample = dataset[0]
    room, indices = data["rooms"][sample.meta["scene_id"]], sample.meta["frame_indices"]
    scene = read_scene(Path(data["scenes"]) / room.scene_id)
    assert indices == [1, 3, 5, 7] and sample.frames.shape == (4, CONFIG.height, CONFIG.width, 3)
    assert sample.frame_names == [scene.frame_names[i] for i in indices]
    np.testing.assert_array_equal(sample.scene.depth, scene.geometry(indices).depth)
    np.testing.assert_array_equal(sample.scene.poses, scene.poses[indices])
    np.testing.assert_allclose(sample.proposals, room.proposals.boxes)
    assert sample.sample_id == "scanrefer/val/0" and dataset.sample_ids()[0] == sample.sample_id
    assert [turn["role"] for turn in sample.conversation] == ["user", "assistant"]


@pytest.mark.parametrize("layout", ["official", "llava", "obj"])
def test_scanrefer_answer_names_the_target_s_proposal_or_says_none(data: dict, layout: str) -> None:
    dataset, named, missed = _load(data, "scanrefer", layout), 0, 0
    for i in range(len(dataset)):
        sample = dataset[i]
        room = data["rooms"][sample.meta["scene_id"]]
        k = _position(room, sample.meta["object_id"])
        np.testing.assert_allclose(sample.meta["gt_boxes"], room.boxes[[k]], atol=1e-5)
        proposals = _proposals_of(room, [k])
        if proposals:
            assert sample.conversation[1]["content"] == f"{format_object_id(proposals[0])}."
            named += 1
        else:
            assert sample.conversation[1]["content"] == NO_OBJECT_ANSWER
            missed += 1
    assert named and missed


@pytest.mark.parametrize(
    ("benchmark", "layout"), [("scanrefer", "official"), ("scanrefer", "llava"), ("scan2cap", "official")]
)
def test_unique_means_the_only_object_of_its_class(data: dict, benchmark: str, layout: str) -> None:
    dataset = _load(data, benchmark, layout)
    seen = set()
    for i in range(len(dataset)):
        meta = dataset[i].meta
        room = data["rooms"][meta["scene_id"]]
        assert meta["unique"] == room.is_unique(_position(room, meta["object_id"]))
        assert meta["category"] == ("unique" if meta["unique"] else "multiple")
        seen.add(meta["unique"])
    assert seen == {True, False}


@pytest.mark.parametrize("layout", ["official", "llava", "obj"])
def test_multi3drefer_answers_name_every_found_target_and_none_for_zero_targets(data: dict, layout: str) -> None:
    dataset = _load(data, "multi3drefer", layout)
    eval_types = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        room, meta = data["rooms"][sample.meta["scene_id"]], sample.meta
        positions = [_position(room, object_id) for object_id in meta["object_ids"]]
        assert meta["gt_boxes"].shape == (len(positions), 6)
        expected, answer = sorted(_proposals_of(room, positions)), sample.conversation[1]["content"]
        assert list(parse_object_ids(answer).ids) == expected and (answer == NO_OBJECT_ANSWER) == (not expected)
        assert (len(positions) == 0) == meta["eval_type"].startswith("zt")
        assert (len(positions) > 1) == (meta["eval_type"] == "mt")
        eval_types.add(meta["eval_type"])
    assert eval_types == {"zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt"}


def test_scan2cap_groups_references_per_object_and_names_its_proposal(data: dict) -> None:
    dataset = _load(data, "scan2cap")
    assert len(dataset) == sum(len(room.labels) for room in data["rooms"].values())
    for i in range(len(dataset)):
        sample = dataset[i]
        room = data["rooms"][sample.meta["scene_id"]]
        k = _position(room, sample.meta["object_id"])
        assert len(sample.meta["answers"]) == 2 and sample.meta["answers"][0].startswith("this is a")
        proposals = _proposals_of(room, [k])
        if proposals:
            assert format_object_id(proposals[0]) in sample.conversation[0]["content"]


@pytest.mark.parametrize("layout", ["official", "llava"])
def test_scan2cap_region_prompt_marks_the_named_proposal_on_every_frame_that_shows_it(data: dict, layout: str) -> None:
    by_id, by_region = _load(data, "scan2cap", layout), _load(data, "scan2cap", layout, object_prompt="region")
    assert by_id[0].regions == []
    for i in range(len(by_region)):
        sample = by_region[i]
        name = format_object_id(sample.meta["proposal_id"])
        assert f"{name} {object_reference(0)}" in sample.conversation[0]["content"]
        assert (
            sample.conversation[0]["content"].replace(f" {object_reference(0)}", "")
            == (by_id[i].conversation[0]["content"])
        )
        box = read_scene(Path(data["scenes"]) / sample.meta["scene_id"]).proposals.boxes
        expected = box_pixel_masks(sample.scene, box[sample.meta["proposal_id"]][None], size=sample.frames.shape[1:3])
        shown = [t for t in range(len(sample.frames)) if expected[0, t].any()]
        if not shown:  # hidden on every sampled frame: its projected box, inside the frame
            (prompt,) = sample.regions
            height, width = sample.frames.shape[1:3]
            assert prompt.mask is None and 0 <= prompt.box[0] < prompt.box[2] <= width
            assert 0 <= prompt.box[1] < prompt.box[3] <= height
            continue
        assert [prompt.frame for prompt in sample.regions] == shown
        assert all(
            prompt.region == 0 and np.array_equal(prompt.mask, expected[0, prompt.frame]) for prompt in sample.regions
        )
    assert any(sample_regions for sample_regions in (by_region[i].regions for i in range(len(by_region))))
    with pytest.raises(ValueError, match="object_prompt must be one of"):
        _load(data, "scan2cap", object_prompt="box")
    with pytest.raises(ValueError, match="needs view='video'"):
        _load(data, "scan2cap", object_prompt="region", view="gpt4scene")


def test_an_object_hidden_on_every_frame_is_prompted_by_its_projected_box(data: dict) -> None:
    sample = _load(data, "scan2cap", object_prompt="region")[0]
    box = read_scene(Path(data["scenes"]) / sample.meta["scene_id"]).proposals.boxes[sample.meta["proposal_id"]]
    hidden = replace(sample.scene, depth=np.zeros_like(sample.scene.depth))  # no depth pixel lies in any box
    prompt = projected_box_prompt(hidden, box, sample.frames.shape[1:3], "here")
    height, width = sample.frames.shape[1:3]
    assert prompt.mask is None and prompt.region == 0 and 0 <= prompt.frame < len(sample.frames)
    assert 0 <= prompt.box[0] < prompt.box[2] <= width and 0 <= prompt.box[1] < prompt.box[3] <= height
    behind = np.concatenate([sample.scene.poses[:, :3, 3].mean(0) + [0, 0, 50], [0.1, 0.1, 0.1]])  # above the walls
    with pytest.raises(ValueError, match="here: the object's box covers a pixel of no sampled frame"):
        projected_box_prompt(sample.scene, behind, sample.frames.shape[1:3], "here")
    # A box that projects to a sliver thinner than a pixel on every frame is no prompt either.
    sliver = np.concatenate([box[:3], [1e-4, 1e-4, 1e-4]])
    with pytest.raises(ValueError, match="here: the object's box covers a pixel of no sampled frame"):
        projected_box_prompt(hidden, sliver, sample.frames.shape[1:3], "here")


def _can_read(dataset, index: int) -> bool:
    try:
        dataset.item(index)
    except ValueError:
        return False
    return True


def test_training_samples_ask_several_questions_about_one_room_in_turn(data: dict) -> None:
    single = _load(data, "scanrefer", grounding="head", train=True)
    grouped = _load(data, "scanrefer", grounding="head", train=True, questions_per_sample=3)
    valid = [single.item(i).sample_id for i in range(len(single)) if _can_read(single, i)]
    asked = []
    for g in range(len(grouped)):
        sample = grouped[g]
        users = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
        answers = [turn["content"] for turn in sample.conversation if turn["role"] == "assistant"]
        questions = sample.meta.get("questions", [sample.sample_id])
        assert 1 <= len(users) == len(answers) == len(questions) <= 3
        assert len(sample.boxes_3d) == sum(answer.count("[GRD]") for answer in answers) == len(users)
        for sample_id, user, boxes in zip(questions, users, sample.boxes_3d):
            item = single.item(single.ids.index(sample_id))
            assert item.scene.scene_id == sample.meta["scene_id"] and item.user == user
            assert np.allclose(boxes, single[single.ids.index(sample_id)].boxes_3d[0])
        asked += questions
    assert sorted(asked) == sorted(valid)
    with pytest.raises(ValueError, match="for training only"):
        _load(data, "scanqa", questions_per_sample=2)


def test_grouped_region_prompts_are_renumbered_after_the_previous_questions(data: dict) -> None:
    with pytest.warns(UserWarning, match="items left out of the question groups"):
        grouped = _load(data, "scan2cap", train=True, object_prompt="region", questions_per_sample=3)
    samples = [grouped[g] for g in range(len(grouped)) if len(grouped.groups[g]) == 3]
    assert samples
    uncovered = [i for i in range(len(grouped.dataset)) if not _can_read(grouped.dataset, i)]
    assert uncovered  # objects the fixture's detector missed: left out of every group, counted and named
    assert len(grouped.skipped) == len(uncovered) and all("no proposal covers" in e for e in grouped.skipped)
    assert not {i for group in grouped.groups for i in group} & set(uncovered)
    for sample in samples:
        users = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
        assert [f"<object{k}><region>" in user for k, user in enumerate(users)] == [True] * 3
        assert {prompt.region for prompt in sample.regions} <= {0, 1, 2}


def test_scan2cap_training_makes_one_sample_per_description_and_skips_uncovered_objects(data: dict) -> None:
    dataset = SkipBadSamples(_load(data, "scan2cap", train=True))
    items = [dataset[i] for i in range(len(dataset))]
    rooms = data["rooms"].values()
    assert len(items) == 2 * sum(len(room.labels) for room in rooms)
    missed = sum(len(room.labels) - int((room.proposal_sources >= 0).sum()) for room in rooms)
    bad = [item for item in items if isinstance(item, BadSample)]
    assert missed > 0 and len(bad) == 2 * missed
    assert all("no proposal covers the object" in item.error for item in bad)


def test_qa_answers_follow_the_room(data: dict) -> None:
    counted = 0
    for benchmark in ("scanqa", "sqa3d"):
        dataset = _load(data, benchmark)
        for i in range(len(dataset)):
            sample = dataset[i]
            room, question = data["rooms"][sample.meta["scene_id"]], sample.conversation[0]["content"]
            assert sample.meta["answers"][0] == sample.conversation[1]["content"]
            for label in set(room.labels):
                if f"How many {label}s are in the room?" in question:
                    assert sample.meta["answers"] == [NUMBERS[room.labels.count(label)]]
                    counted += 1
    assert counted > 0
    categories = {_load(data, "sqa3d")[i].meta["category"] for i in range(len(_load(data, "sqa3d")))}
    assert categories == {"what", "is", "how", "which"}


def test_a_malformed_official_item_is_a_counted_skip_naming_its_file(data: dict, tmp_path: Path) -> None:
    name = "ScanRefer_filtered_val.json"
    items = json.loads((data["official"] / name).read_text())
    del items[1]["description"]
    (tmp_path / name).write_text(json.dumps(items))
    dataset = SkipBadSamples(
        LOADERS["scanrefer"].build(tmp_path, SPLIT, num_frames=2, train=True, seed=0, scene_root=data["scenes"])
    )
    batch = skipping_collate(lambda good: {"count": len(good)})([dataset[i] for i in range(4)])
    assert batch["count"] == 3 and len(batch["skipped"]) == 1
    index, error = batch["skipped"][0]
    assert index == 1 and str(tmp_path / name) in error and "description" in error


def test_a_sample_the_collator_refuses_is_skipped_by_its_id_and_the_rest_batched(data: dict) -> None:
    samples = [_load(data, "scan2cap", object_prompt="region")[i] for i in range(3)]
    bad = replace(samples[1], regions=[RegionPrompt(frame=0, box=np.array([0.0, 0.0, 0.3, 5.0], np.float32))])

    def collate(batch: list) -> dict:
        for sample in batch:
            for prompt in sample.regions or []:
                if prompt.box is not None and prompt.box[2] - prompt.box[0] < 1:
                    raise ValueError(f"{sample.sample_id}: region 0 on frame 0: box covers no pixel")
        return {"ids": [sample.sample_id for sample in batch]}

    batch = skipping_collate(collate)([samples[0], bad, samples[2]])
    assert batch["ids"] == [samples[0].sample_id, samples[2].sample_id]
    ((which, error),) = batch["skipped"]
    assert which == bad.sample_id and "covers no pixel" in error


def test_a_malformed_llava_item_is_a_counted_skip_naming_its_file(data: dict, tmp_path: Path) -> None:
    name = "sqa3d_val_llava_style.json"
    items = json.loads((data["llava"] / name).read_text())
    items[0]["conversations"] = [{"from": "gpt", "value": "left"}]
    (tmp_path / name).write_text(json.dumps(items))
    dataset = SkipBadSamples(
        LOADERS["sqa3d"].build(tmp_path, SPLIT, num_frames=2, train=True, seed=0, scene_root=data["scenes"])
    )
    skipped = [item for item in (dataset[i] for i in range(len(dataset))) if isinstance(item, BadSample)]
    assert len(skipped) == 1 and str(tmp_path / name) in skipped[0].error


def test_a_missing_scene_folder_is_named(data: dict, tmp_path: Path) -> None:
    item = {
        "scene_id": "scene_val_0099",
        "object_id": "1",
        "object_name": "chair",
        "ann_id": "0",
        "description": "the red chair.",
        "token": ["the", "red", "chair", "."],
    }
    (tmp_path / "ScanRefer_filtered_val.json").write_text(json.dumps([item]))
    dataset = LOADERS["scanrefer"].build(tmp_path, SPLIT, num_frames=2, train=False, seed=0, scene_root=data["scenes"])
    with pytest.raises(FileNotFoundError, match=str(Path(data["scenes"]) / "scene_val_0099")):
        dataset[0]


def test_layout_is_detected_and_never_guessed(data: dict, tmp_path: Path) -> None:
    build = LOADERS["scanrefer"].build
    options = {"num_frames": 2, "train": False, "seed": 0, "scene_root": data["scenes"]}
    with pytest.raises(FileNotFoundError, match="neither .*ScanRefer_filtered_val.json.* nor .*llava_style.json"):
        build(tmp_path, SPLIT, **options)
    shutil.copy(data["official"] / "ScanRefer_filtered_val.json", tmp_path)
    assert build(tmp_path, SPLIT, **options).layout == "official"
    with pytest.raises(FileNotFoundError, match="scanrefer_vg_val_llava_style.json"):
        build(tmp_path, SPLIT, layout="llava", **options)
    shutil.copy(data["llava"] / "scanrefer_vg_val_llava_style.json", tmp_path)
    with pytest.raises(ValueError, match="both"):
        build(tmp_path, SPLIT, **options)
    assert build(tmp_path, SPLIT, layout="llava", **options).layout == "llava"
    with pytest.raises(FileNotFoundError, match="ScanRefer_filtered_train.json"):
        build(tmp_path, "train", layout="official", **options)


def test_a_llava_turn_in_no_known_template_is_kept_as_written(data: dict, tmp_path: Path) -> None:
    items = json.loads((data["llava"] / "scanrefer_vg_val_llava_style.json").read_text())[:1]
    items[0]["conversations"][0]["value"] = "<image>\nWhich object is the red chair? Answer with its id."
    (tmp_path / "scanrefer_vg_val_llava_style.json").write_text(json.dumps(items))
    sample = LOADERS["scanrefer"].build(tmp_path, SPLIT, num_frames=2, train=False, seed=0, scene_root=data["scenes"])[
        0
    ]
    assert sample.conversation[0]["content"] == "Which object is the red chair? Answer with its id."
    assert sample.meta["prompt_source"] == "file"


def test_frame_sampling_strategy_is_an_option(data: dict) -> None:
    sample = _load(data, "sqa3d", num_frames=3, frame_sampling="mc-ratio90")[0]
    assert 1 <= len(sample.meta["frame_indices"]) <= 3
    assert len(sample.scene.depth) == len(sample.frames) == len(sample.meta["frame_indices"])
    with pytest.raises(ValueError, match="sqa3d/val/0.*no_such_strategy"):
        _load(data, "sqa3d", frame_sampling="no_such_strategy")[0]


def test_an_item_reads_no_frame_or_depth_and_its_sample_adds_only_the_frames(
    data: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_image(*args, **kwargs):
        raise AssertionError("an item read a frame or a depth map")

    with monkeypatch.context() as patch:
        patch.setattr(Scene, "read_colors", no_image)
        patch.setattr(Scene, "read_depths", no_image)
        item = _load(data, "multi3drefer", "llava").item(2)
    sample = _load(data, "multi3drefer", "llava")[2]
    assert (item.sample_id, item.user, item.answer) == (sample.sample_id, *(t["content"] for t in sample.conversation))
    assert item.scene.scene_id == item.annotation.scene_id == sample.meta["scene_id"] and item.sample_id in item.where
    assert set(sample.meta) - set(item.meta) == {"frame_indices"} and set(item.meta) <= set(sample.meta)
    for key, value in item.meta.items():
        np.testing.assert_equal(value, sample.meta[key], err_msg=key)


def test_each_loader_takes_its_own_options_and_refuses_others_by_name(data: dict) -> None:
    taken = {name: set(inspect.signature(LOADERS[name].build).parameters) for name in BENCHMARKS}
    shared = {"num_frames", "train", "seed", "layout", "scene_root", "frame_sampling", "sampling_options", "view"}
    assert all(shared <= options for options in taken.values())
    assert {name for name, options in taken.items() if "grounding" in options} == {"scanrefer", "multi3drefer"}
    assert {name for name, options in taken.items() if "match_iou" in options} == {
        "scanrefer",
        "multi3drefer",
        "scan2cap",
    }
    entry = {"loader": "scanqa", "root": str(data["official"]), "split": "train", "weight": 1.0}
    config = {"num_frames": 2, "samples_per_epoch": 1, "datasets": {"qa": {**entry, "options": {"grounding": "head"}}}}
    with pytest.raises(DataConfigError, match="qa: options .*grounding"):
        check_training_data(config)
    with pytest.raises(TypeError, match="grounding"):
        _load(data, "scanqa", grounding="head")
    head = _load(data, "scanrefer", grounding="head", match_iou=0.5)
    assert (head.grounding, head.match_iou, head.view) == ("head", 0.5, "video")


def test_loaders_are_registered_with_their_evaluated_splits() -> None:
    assert {"scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d"} <= set(LOADERS)
    assert {(name, "val") for name in ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d")} <= EVALUATED_SPLITS
    assert ("sqa3d", "test") in EVALUATED_SPLITS and ("scanrefer", "train") not in EVALUATED_SPLITS

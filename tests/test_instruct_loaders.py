"""Instruction-data loaders read ViP-LLaVA-Instruct, Osprey-724K, LLaVA-Instruct-150K and LLaVA-Video-178K as
released (written by :mod:`utils.synthetic.instruct_formats`): every turn kept, region tags mapped to
``<object{k}><region>`` with their boxes and masks, the configured frame count honoured, bad files named."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from utils.data.catalog import EVALUATED_SPLITS, LOADERS
from utils.data.collate import IGNORE_INDEX, SampleCollator
from utils.data.llava_conversation import chat_turns
from utils.data.osprey import SHORT_ANSWER
from utils.data.region_references import reference_objects
from utils.data.robust import BadSample, SkipBadSamples
from utils.synthetic.instruct_formats import write_llava_instruct, write_llava_video, write_osprey, write_vip_llava
from utils.video.clip import read_clip
from utils.video.errors import MissingVideoError, VideoError
from utils.video.sampling import FrameSampling, uniform_indices

FAMILIES = {"llava_instruct": "vqa", "vip_llava": "ref_vqa", "osprey": "ref_vqa", "llava_video": "videoqa"}
ROOTS = {
    "llava_instruct": "llava/llava_dataset",
    "vip_llava": "vip",
    "osprey": "osprey/Osprey-724K",
    "llava_video": "video/LLaVA-Video-178K",
}
SAFE_SAMPLE_ID = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")
REFERENCE = re.compile(r"<object(\d+)><region>")
VIDEO_FRAMES = 12


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format written once under one folder (:data:`ROOTS` are the loaders' roots in it)."""
    base = tmp_path_factory.mktemp("instruct_formats")
    write_llava_instruct(base / "llava")
    write_vip_llava(base / "vip")
    write_osprey(base / "osprey")
    write_llava_video(base / "video", num_frames=VIDEO_FRAMES)
    return base


@pytest.fixture
def data(source: Path, tmp_path: Path) -> Path:
    """A private copy of the written sets, free to corrupt."""
    shutil.copytree(source, tmp_path / "data")
    return tmp_path / "data"


def build(base: Path, name: str, num_frames: int | None = 4, train: bool = False, seed: int = 0, **options):
    return LOADERS[name].build(base / ROOTS[name], "train", num_frames=num_frames, train=train, seed=seed, **options)


def items_of(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def decode(segmentation: object, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, dict):
        return mask_utils.decode({**segmentation, "counts": segmentation["counts"].encode()}).astype(bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))).astype(bool)


def user_text(sample) -> str:
    return "\n".join(turn["content"] for turn in sample.conversation if turn["role"] == "user")


def all_text(sample) -> str:
    return "\n".join(turn["content"] for turn in sample.conversation)


# --- every loader ---------------------------------------------------------------------------------------


def test_loaders_are_registered_with_family_and_required_paths(source: Path, tmp_path: Path) -> None:
    for name, family in FAMILIES.items():
        assert LOADERS[name].family == family
        assert not LOADERS[name].missing_paths(source / ROOTS[name], "train")
        assert LOADERS[name].missing_paths(tmp_path / "absent", "train")
        assert not any(loader == name for loader, _ in EVALUATED_SPLITS)


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_ids_are_unique_safe_and_those_of_the_items(source: Path, name: str) -> None:
    dataset = build(source, name)
    ids = dataset.sample_ids()
    assert len(ids) == len(dataset) > 0 and len(set(ids)) == len(ids)
    assert all(SAFE_SAMPLE_ID.fullmatch(i) and i.startswith(f"{name}/train/") for i in ids)
    assert ids == [dataset[i].sample_id for i in range(len(dataset))]


@pytest.mark.parametrize("name", FAMILIES)
def test_turns_alternate_without_media_tags_and_the_answer_is_the_last_turn(source: Path, name: str) -> None:
    dataset = build(source, name)
    for index in range(len(dataset)):
        sample = dataset[index]
        roles = [turn["role"] for turn in sample.conversation]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
        assert "<image>" not in all_text(sample) and "<video>" not in all_text(sample)
        assert sample.meta["answer"] == sample.conversation[-1]["content"]
        assert sample.medium == ("video" if name == "llava_video" else "image")


@pytest.mark.parametrize("name", FAMILIES)
def test_other_splits_are_refused(source: Path, name: str) -> None:
    with pytest.raises(ValueError, match="one split, 'train'"):
        LOADERS[name].build(source / ROOTS[name], "val", num_frames=4, train=False, seed=0)


def test_every_loaders_samples_collate_and_train_on_every_answer(source: Path, tiny_parts) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_parts["backbone"])
    samples = [
        build(source, "llava_instruct")[0],
        build(source, "vip_llava", visual_prompt="region")[6],
        build(source, "osprey")[0],
        build(source, "llava_video", num_frames=4)[0],
    ]
    batch = SampleCollator(processor, 128)(samples)
    for row, sample in enumerate(samples):
        labels = batch["labels"][row]
        answers = [turn["content"] + "<|im_end|>" for turn in sample.conversation if turn["role"] == "assistant"]
        assert processor.tokenizer.decode(labels[labels != IGNORE_INDEX]) == "".join(answers)
    prompts = batch["region_prompts"]
    assert prompts[0] is None and prompts[3] is None
    assert [p["regions"].tolist() for p in prompts[1:3]] == [[0, 1, 2], [0, 1, 2, 3]]
    assert batch["image_grid_thw"].shape[0] == 3 and batch["video_grid_thw"].shape[0] == 1


FIRST_IMAGES = {
    "llava_instruct": "../coco/train2017/000000000001.jpg",
    "vip_llava": "gqa/images/000000.jpg",
    "osprey": "../coco/imgs/000000000001.jpg",
}
"""The image of each loader's item 0, relative to its root."""


@pytest.mark.parametrize("name", FIRST_IMAGES)
def test_a_missing_or_corrupt_image_names_the_item_and_the_file(data: Path, name: str) -> None:
    dataset = build(data, name)
    sample_id = dataset.sample_ids()[0]
    image = data / ROOTS[name] / FIRST_IMAGES[name]
    image.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=rf"{re.escape(sample_id)} .*cannot decode image .*{image.name}"):
        dataset[0]
    skipped = SkipBadSamples(dataset)[0]
    assert isinstance(skipped, BadSample) and sample_id in skipped.error and image.name in skipped.error
    image.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(sample_id)} .*missing image .*{image.name}"):
        dataset[0]


def test_chat_turns_drop_a_leading_answer_and_name_broken_conversations() -> None:
    turns = [
        {"from": "gpt", "value": "Hi."},
        {"from": "human", "value": "What is this?\n<image>"},
        {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "<image>\nAnd that?"},
        {"from": "gpt", "value": "A dog."},
    ]
    assert chat_turns(turns, "item") == [
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And that?"},
        {"role": "assistant", "content": "A dog."},
    ]
    with pytest.raises(ValueError, match="item 7: turn 1 is from .human. but the turns must alternate"):
        chat_turns(turns[1:2] * 2 + turns[2:3], "item 7")
    with pytest.raises(ValueError, match="item 7: .*end with an assistant"):
        chat_turns(turns[1:4], "item 7")
    with pytest.raises(ValueError, match="item 7: turn 0 is not"):
        chat_turns([{"from": "system", "value": "x"}], "item 7")
    with pytest.raises(ValueError, match="item 7: turn 1 is empty"):
        chat_turns([turns[1], {"from": "gpt", "value": "<image>"}], "item 7")


# --- LLaVA-Instruct-150K ------------------------------------------------------------------------------------


def test_llava_instruct_keeps_every_turn_and_the_coco_image(source: Path) -> None:
    dataset = build(source, "llava_instruct")
    written = items_of(source / ROOTS["llava_instruct"] / "llava_instruct_150k.json")
    assert len(dataset) == len(written)
    for index, item in enumerate(written):
        sample = dataset[index]
        expected = [turn["value"].replace("<image>", "").strip() for turn in item["conversations"]]
        assert [turn["content"] for turn in sample.conversation] == expected
        image = np.asarray(Image.open(source / "llava" / "coco" / "train2017" / item["image"]).convert("RGB"))
        np.testing.assert_array_equal(sample.frames, image[None])
        assert sample.frame_names == [item["image"][:-4]] and sample.timestamps is None and not sample.regions
    assert max(len(dataset[i].conversation) for i in range(len(dataset))) == 4  # multi-turn kept


def test_llava_instruct_image_dir_option_and_missing_folder(source: Path, tmp_path: Path) -> None:
    moved = tmp_path / "images"
    shutil.copytree(source / "llava" / "coco" / "train2017", moved)
    dataset = build(source, "llava_instruct", image_dir=str(moved))
    assert dataset[0].frames.shape == (1, 64, 64, 3)
    with pytest.raises(FileNotFoundError, match="missing image folder .*nowhere"):
        build(source, "llava_instruct", image_dir="nowhere")


# --- ViP-LLaVA-Instruct -------------------------------------------------------------------------------------


def test_vip_llava_keeps_rga3s_sources_from_both_stages(source: Path) -> None:
    dataset = build(source, "vip_llava")
    kept = {(stage, item["id"]) for stage, _, _, item in dataset.items}
    assert kept == {
        (2, "gqa_0"),
        (2, "ocr_0"),
        (2, "refcocog-0"),
        (2, "vg_rel-1"),
        (2, "pointQA_twice-2"),
        (3, "refcocog-gpt4v-0"),
        (3, "vg_rel-gpt4v-1"),
        (3, "VG_100K/7"),
    }
    assert dataset.excluded == {"text-only": 1, "source coco": 2, "source v7w": 1}
    assert [item["id"] for *_, item in build(source, "vip_llava", stages=[3]).items] == [
        "refcocog-gpt4v-0",
        "vg_rel-gpt4v-1",
        "VG_100K/7",
    ]
    assert {item["id"] for *_, item in build(source, "vip_llava", sources=["coco"]).items} == {
        "000000000001",
        "000000000009",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sources": ["vcr"]}, "not read by this loader"),
        ({"stages": [1]}, "stages must be"),
        ({"sources": ["x"]}, "no item"),
    ],
)
def test_vip_llava_refuses_options_it_cannot_honour(source: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(source, "vip_llava", **options)


def _vip_item(dataset, item_id: str) -> tuple[int, dict]:
    return next((i, item) for i, (*_, item) in enumerate(dataset.items) if item["id"] == item_id)


def test_vip_llava_maps_bbox_tags_to_one_reference_per_object_with_its_box_and_mask(source: Path) -> None:
    dataset = build(source, "vip_llava", visual_prompt="region")
    index, item = _vip_item(dataset, "vg_rel-gpt4v-1")
    sample = dataset[index]
    # <bbox1> and <bbox0> are asked about; <bbox2> is named only by the answer, so it is declared first.
    assert sample.meta["objects"] == [2, 1, 0]
    assert sample.conversation[0]["content"] == (
        "Regions: <object0><region>.\nWhich is further right, <object1><region> or <object2><region>?"
    )
    assert sample.conversation[1]["content"] == "<object1>, which is right of <object0> too."
    assert [int(k) for k in REFERENCE.findall(user_text(sample))] == [0, 1, 2]
    for prompt in sample.regions:
        assert prompt.frame == 0 and prompt.mask is None
        np.testing.assert_array_equal(prompt.box, item["bboxes"][sample.meta["objects"][prompt.region]])

    index, item = _vip_item(dataset, "refcocog-gpt4v-0")
    sample = dataset[index]
    assert sample.conversation[0]["content"].startswith("What colour is <object0><region>?")
    assert sample.conversation[1]["content"].startswith("<object0> is ")
    (prompt,) = sample.regions
    np.testing.assert_array_equal(prompt.box, item["bboxes"][0])
    np.testing.assert_array_equal(prompt.mask, decode(item["segmentations"][0], 64, 64))


def test_vip_llava_asks_the_answer_items_about_their_boxes(source: Path) -> None:
    dataset = build(source, "vip_llava", visual_prompt="region")
    for item_id, objects in (("refcocog-0", 1), ("vg_rel-1", 2), ("pointQA_twice-2", 1)):
        index, item = _vip_item(dataset, item_id)
        sample = dataset[index]
        assert [int(k) for k in REFERENCE.findall(user_text(sample))] == list(range(objects))
        assert sample.conversation[1]["content"] == item["answer"] and len(sample.regions) == objects
        assert item.get("general_question", "") in sample.conversation[0]["content"]


def test_vip_llava_overlays_by_default_and_names_objects_by_their_drawing(source: Path) -> None:
    region = build(source, "vip_llava", visual_prompt="region")
    overlay = build(source, "vip_llava")
    index, _ = _vip_item(overlay, "vg_rel-gpt4v-1")
    plain, drawn = region[index], overlay[index]
    assert not drawn.regions and "<region>" not in all_text(drawn) and "<object" not in all_text(drawn)
    assert "the object within the" in user_text(drawn)  # vg_rel overlays are rectangles or ellipses
    assert {d["shape"] for d in drawn.meta["overlays"]} <= {"rectangle", "ellipse"}
    assert sorted(d["region"] for d in drawn.meta["overlays"]) == [0, 1, 2]
    assert drawn.conversation[1]["content"][0].isupper()  # a wording that starts the answer is capitalised
    assert (drawn.frames != plain.frames).any()
    again = build(source, "vip_llava")[index]
    assert np.array_equal(again.frames, drawn.frames) and again.conversation == drawn.conversation
    other_seed = build(source, "vip_llava", seed=1)[index]
    assert other_seed.conversation != drawn.conversation or not np.array_equal(other_seed.frames, drawn.frames)


def test_vip_llava_refuses_a_box_outside_the_image_and_a_tag_naming_no_box(data: Path) -> None:
    path = data / "vip" / "vip-llava_stage3_mix.json"
    items = items_of(path)
    items[0]["bboxes"] = [[100, 100, 120, 130]]
    items[1]["conversations"][0]["value"] += " And <bbox7>?"
    path.write_text(json.dumps(items))
    dataset = build(data, "vip_llava", stages=[3])
    with pytest.raises(ValueError, match=r"vip_llava/train/stage3/0 .*box 0 .* no area inside the 64x64 image"):
        dataset[0]
    with pytest.raises(ValueError, match=r"vip_llava/train/stage3/1 .*'<bbox7>' names annotation 7 but the item has 3"):
        dataset[1]


# --- Osprey-724K ----------------------------------------------------------------------------------------------


def test_osprey_reads_every_subset_and_maps_region_tags_to_their_masks(source: Path) -> None:
    dataset = build(source, "osprey")
    assert [subset for subset, _, _ in dataset.items] == [
        "conversation",
        "detail_description",
        "short_form",
        "part_level",
        "lvis_positive_negative",
    ]
    for index, (subset, _, item) in enumerate(dataset.items):
        sample = dataset[index]
        assert sample.meta["category"] == subset and len(sample.regions) == len(item["annotation"])
        assert [int(k) for k in REFERENCE.findall(user_text(sample))] == list(range(len(item["annotation"])))
        for prompt in sample.regions:
            annotation = item["annotation"][sample.meta["objects"][prompt.region]]
            np.testing.assert_array_equal(prompt.mask, decode(annotation["segmentation"], 64, 64))
            x, y, w, h = annotation["bbox"]
            np.testing.assert_array_equal(prompt.box, [x, y, x + w, y + h])
        short = subset in ("short_form", "part_level")
        assert all(t["content"].endswith(SHORT_ANSWER) == short for t in sample.conversation if t["role"] == "user")
        image = np.asarray(Image.open(source / "osprey" / "coco" / "imgs" / item["file_name"][-16:]).convert("RGB"))
        np.testing.assert_array_equal(sample.frames[0], image)


def test_osprey_conversation_declares_the_unasked_region_and_keeps_mentions(source: Path) -> None:
    dataset = build(source, "osprey")
    sample = dataset[0]
    # <region4> is never asked about; <region2>, <region3>, <region1> are, in that order.
    assert sample.meta["objects"] == [3, 1, 2, 0]
    assert sample.conversation[0]["content"].startswith(
        "Regions: <object0><region>.\nWhat colour is <object1><region>?"
    )
    assert sample.conversation[2]["content"] == "Which is further left, <object2><region> or <object3><region>?"
    assert sample.conversation[3]["content"] == "<object3> is further left."


def test_osprey_detail_descriptions_are_one_turn_per_region(source: Path) -> None:
    dataset = build(source, "osprey", subsets=["detail_description"])
    item, sample = dataset.items[0][2], dataset[0]
    answers = [turn["content"] for turn in sample.conversation if turn["role"] == "assistant"]
    assert answers == [description.split(": ", 1)[1] for description in item["description"]]
    assert [turn["content"] for turn in sample.conversation if turn["role"] == "user"] == [
        "Describe <object0><region> in detail.",
        "Describe <object1><region> in detail.",
    ]


def test_osprey_reads_either_spelling_of_the_renamed_files(data: Path) -> None:
    folder = data / ROOTS["osprey"]
    (folder / "osprey_conversation.json").rename(folder / "osprey_conversations.json")
    (folder / "osprey_detailed_description.json").rename(folder / "osprey_detail_description.json")
    assert len(build(data, "osprey")) == 5
    (folder / "osprey_short_form.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing .*osprey_short_form.json"):
        build(data, "osprey")
    assert len(build(data, "osprey", subsets=["conversation"])) == 1


def test_osprey_both_mode_draws_and_keeps_the_region_prompts(source: Path) -> None:
    plain, both = build(source, "osprey")[0], build(source, "osprey", visual_prompt="both")[0]
    assert len(both.regions) == len(plain.regions) and (both.frames != plain.frames).any()
    assert [int(k) for k in REFERENCE.findall(user_text(both))] == [0, 1, 2, 3]
    assert "the object " in user_text(both)


def test_osprey_refuses_a_tag_naming_no_region_and_a_wrong_image_size(data: Path) -> None:
    path = data / ROOTS["osprey"] / "osprey_short_form.json"
    items = items_of(path)
    items[0]["conversations"][0]["value"] = "What is <region3>?"
    path.write_text(json.dumps(items))
    with pytest.raises(
        ValueError, match=r"osprey/train/short_form/0 .*'<region3>' names annotation 2 but the item has 1"
    ):
        build(data, "osprey", subsets=["short_form"])[0]
    items[0]["height"] = 65
    path.write_text(json.dumps(items))
    with pytest.raises(
        ValueError, match=r"osprey/train/short_form/0 .*000000000003.jpg is 64x64, its annotation says 65x64"
    ):
        build(data, "osprey", subsets=["short_form"])[0]


# --- reference numbering ------------------------------------------------------------------------------------


def test_reference_numbering_puts_one_placeholder_per_object_in_object_order() -> None:
    tag = re.compile(r"<r(\d)>")
    conversation = [
        {"role": "user", "content": "Compare <r2> and <r0>."},
        {"role": "assistant", "content": "<r0> is bigger than <r2> and <r3>."},
        {"role": "user", "content": "And <r3>, <r2>?"},
        {"role": "assistant", "content": "Same."},
    ]
    result = reference_objects(conversation, tag, lambda m: int(m.group(1)), 5, "item")
    # <r1> and <r4> are never named and <r3> is named first by an answer: all three are declared first.
    assert result.annotations == [1, 3, 4, 2, 0]
    assert [turn["content"] for turn in result.conversation] == [
        "Regions: <object0><region>, <object1><region>, <object2><region>.\n"
        "Compare <object3><region> and <object4><region>.",
        "<object4> is bigger than <object3> and <object1>.",
        "And <object1>, <object3>?",
        "Same.",
    ]
    with pytest.raises(ValueError, match="item: '<r7>' names annotation 7 but the item has 5"):
        reference_objects([{"role": "user", "content": "<r7>"}], tag, lambda m: int(m.group(1)), 5, "item")


# --- LLaVA-Video-178K -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("num_frames", [1, 3, 8])
def test_llava_video_honours_the_configured_frame_count(source: Path, num_frames: int, train: bool) -> None:
    """RGA3's general video-QA reader decodes 32 frames whatever ``num_frames_mllm`` says; this one does not."""
    dataset = build(source, "llava_video", num_frames=num_frames, train=train)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.frames.shape == (num_frames, 64, 64, 3) and len(sample.frame_names) == num_frames
        assert sample.timestamps.shape == (num_frames,) and np.all(np.diff(sample.timestamps) > 0)
        indices = [int(name) for name in sample.frame_names]
        if not train:
            assert indices == uniform_indices(VIDEO_FRAMES, num_frames)
        path, *_ = dataset.items[index]
        clip = read_clip(path.parent / sample.meta["video"], FrameSampling("indices", indices=tuple(indices)))
        np.testing.assert_array_equal(sample.frames, clip.frames)


def test_llava_video_all_frames_when_num_frames_is_none_and_training_jitters(source: Path) -> None:
    assert len(build(source, "llava_video", num_frames=None)[0].frames) == VIDEO_FRAMES
    draws = {tuple(build(source, "llava_video", 3, train=True, seed=s)[0].frame_names) for s in range(4)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        build(source, "llava_video", num_frames=0)


def test_llava_video_reads_rga3s_sources_by_default_and_others_on_request(source: Path) -> None:
    def files(**options) -> set[str]:
        return {path.name for path, *_ in build(source, "llava_video", **options).items}

    assert files() == {
        "0_30_s_activitynetqa_oe_qa_processed.json",
        "0_30_s_nextqa_oe_qa_processed.json",
        "0_30_s_nextqa_mc_qa_processed.json",
        "30_60_s_perceptiontest_mc_qa_processed.json",
    }
    assert files(sources=["academic_v0_1"]) == {"0_30_s_academic_v0_1_cap_processed.json"}
    assert files(kinds=["multi_choice"], durations=["30_60_s"]) == {"30_60_s_perceptiontest_mc_qa_processed.json"}
    with pytest.raises(FileNotFoundError, match="no .* JSON file of sources"):
        build(source, "llava_video", sources=["youtube_v0_1"])


def test_llava_video_multiple_choice_items_list_their_options(source: Path) -> None:
    dataset = build(source, "llava_video", kinds=["multi_choice"])
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.meta["category"] == "multi_choice"
        assert sample.meta["options"] == ["(A) left", "(B) right", "(C) up", "(D) down"]
        assert sample.meta["answer"] in ("A.", "B.", "C.", "D.")
    assert "options" not in build(source, "llava_video", kinds=["open_ended"])[0].meta


def test_llava_video_a_missing_or_corrupt_video_names_the_item_and_the_file(data: Path) -> None:
    dataset = build(data, "llava_video")
    sample_id, (path, *_) = dataset.sample_ids()[0], dataset.items[0]
    video = path.parent / dataset[0].meta["video"]
    video.write_bytes(video.read_bytes()[:200])
    with pytest.raises(VideoError, match=rf"{re.escape(video.name)}.*{re.escape(sample_id)}"):
        dataset[0]
    assert isinstance(SkipBadSamples(dataset)[0], BadSample)
    video.unlink()
    with pytest.raises(MissingVideoError, match=rf"{re.escape(video.name)}: {re.escape(sample_id)}"):
        dataset[0]

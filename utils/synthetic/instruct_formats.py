"""Small synthetic instruction data in the released layouts of ViP-LLaVA-Instruct, Osprey-724K,
LLaVA-Instruct-150K and LLaVA-Video-178K (the loaders :mod:`utils.data.vip_llava`, :mod:`utils.data.osprey`,
:mod:`utils.data.llava_instruct`, :mod:`utils.data.llava_video` describe each layout).

Images are one frame of the moving-shapes world (:mod:`utils.synthetic.moving_shapes`), videos are
its clips encoded as MP4 (:func:`utils.video.encode.write_video`). Questions ask about the objects'
colours, shapes, positions and motion, and every answer is what the pixels show; boxes, polygons and
RLEs are the objects' visible masks. Each writer is deterministic from ``seed``, writes a few items of
every kind its loader tells apart (image-level and region items, every tag form, the subsets and
sources a default selection keeps and those it leaves out) and returns the loader's ``root``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from utils.synthetic.image_formats import bbox, compressed_rle, mask_polygons, write_jpeg, write_json
from utils.synthetic.moving_shapes import Video, WorldConfig, make_video, render_video, sample_objects
from utils.video.encode import write_video

MIN_PIXELS = 12
"""An object is asked about only if this many of its pixels are visible."""


def _scene(seed: int, stream: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Image ``index`` of ``stream``: ``(H, W, 3)`` pixels, ``(N, H, W)`` visible masks and ``(colour, shape)``
    per object, keeping only objects with at least :data:`MIN_PIXELS` visible pixels, ordered left to right."""
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode()), index])
    config = WorldConfig(height=size, width=size, num_frames=1)
    objects = sample_objects(rng, config)
    frames, masks = render_video(objects, config, rng)
    keep = [i for i in range(len(objects)) if masks[i, 0].sum() >= MIN_PIXELS]
    keep.sort(key=lambda i: np.nonzero(masks[i, 0])[1].mean())
    return frames[0], masks[keep, 0], [(objects[i].colour, objects[i].shape) for i in keep]


def _xyxy(mask: np.ndarray) -> list[float]:
    """``[x1, y1, x2, y2]`` pixel box of a non-empty mask (ViP-LLaVA's ``bboxes``)."""
    x, y, w, h = bbox(mask)
    return [x, y, x + w, y + h]


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [turn for q, a in pairs for turn in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]


# ---- LLaVA-Instruct-150K -------------------------------------------------------------------------


def write_llava_instruct(root: Path, num_items: int = 3, seed: int = 0, size: int = 64) -> Path:
    """``<root>/llava_dataset/llava_instruct_150k.json`` and ``<root>/coco/train2017/<id>.jpg``; returns
    the ``llava_dataset`` folder. Items alternate ``<image>`` before and after the first question; every
    other item is multi-turn."""
    items = []
    for index in range(num_items):
        image, masks, looks = _scene(seed, "llava_instruct", index, size)
        name = f"{index + 1:012d}.jpg"
        write_jpeg(root / "coco" / "train2017" / name, image)
        colour, shape = looks[0]
        first = "How many objects are in the image?"
        first = f"<image>\n{first}" if index % 2 == 0 else f"{first}\n<image>"
        pairs = [(first, f"There are {len(looks)} objects.")]
        if index % 2 == 0:
            pairs.append(("What is the leftmost object?", f"The leftmost object is a {colour} {shape}."))
        items.append({"id": name[:-4], "image": name, "conversations": _turns(*pairs)})
    write_json(root / "llava_dataset" / "llava_instruct_150k.json", items)
    return root / "llava_dataset"


# ---- ViP-LLaVA-Instruct --------------------------------------------------------------------------


def write_vip_llava(root: Path, seed: int = 0, size: int = 64) -> Path:
    """``<root>/vip-llava_stage{2,3}_mix.json`` and their images under ``<root>``; returns ``root``.

    Stage 2: a GQA, an OCR-VQA and a COCO image-level item, a text-only item, a ``refcocog`` item
    (``answer``, box + polygons), a ``vg_rel`` item (``answer``, two boxes), a ``pointQA_twice`` item
    and a ``v7w`` item. Stage 3: a ``refcocog-gpt4v`` item (``<bbox>`` in a question and an answer), a
    ``vg_rel-gpt4v`` item (``<bbox1>`` before ``<bbox0>``, a third box named only by the answer), a
    Visual Genome image-level item and a COCO one.
    """
    counter = iter(range(1000))

    def image(folder: str) -> tuple[str, np.ndarray, list[tuple[str, str]]]:
        index = next(counter)
        pixels, masks, looks = _scene(seed, "vip_llava", index, size)
        relative = f"{folder}/{index:06d}.jpg"
        write_jpeg(root / relative, pixels)
        return relative, masks, looks

    def plain(item_id: str, folder: str) -> dict:
        relative, _, looks = image(folder)
        pairs = [
            ("<image>\nHow many objects are there?", f"{len(looks)}."),
            ("What colour is the leftmost object?", f"{looks[0][0].capitalize()}."),
        ]
        return {"id": item_id, "image": relative, "conversations": _turns(*pairs)}

    stage2 = [plain("gqa_0", "gqa/images"), plain("ocr_0", "ocr_vqa/images"), plain("000000000001", "coco/train2017")]
    stage2.append({"id": "sharegpt_0", "conversations": _turns(("Say hello.", "Hello."))})
    relative, masks, looks = image("coco/train2017")
    stage2.append(
        {
            "id": "refcocog-0",
            "image": relative,
            "bboxes": [_xyxy(masks[1])],
            "segmentations": [mask_polygons(masks[1])],
            "answer": f"the {looks[1][0]} {looks[1][1]}",
        }
    )
    relative, masks, looks = image("vg/VG_100K")
    stage2.append(
        {
            "id": "vg_rel-1",
            "image": relative,
            "bboxes": [_xyxy(masks[0]), _xyxy(masks[-1])],
            "answer": f"({looks[0][1]}, left of, {looks[-1][1]})",
        }
    )
    relative, masks, looks = image("vg/VG_100K_2")
    stage2.append(
        {
            "id": "pointQA_twice-2",
            "image": relative,
            "bboxes": [_xyxy(masks[0])],
            "general_question": "What colour is this object?",
            "answer": looks[0][0],
        }
    )
    relative, masks, looks = image("v7w/images")
    stage2.append({"id": "v7w-3", "image": relative, "bboxes": [_xyxy(masks[0])], "question": "Which one?"})

    relative, masks, looks = image("coco/train2017")
    pairs = [
        ("<image>\nWhat colour is <bbox>?", f"<bbox> is {looks[0][0]}."),
        ("What shape is it?", f"A {looks[0][1]}."),
    ]
    stage3 = [
        {
            "id": "refcocog-gpt4v-0",
            "image": relative,
            "bboxes": [_xyxy(masks[0])],
            "segmentations": [mask_polygons(masks[0])],
            "conversations": _turns(*pairs),
        }
    ]
    relative, masks, looks = image("vg/VG_100K")
    pairs = [("<image>\nWhich is further right, <bbox1> or <bbox0>?", "<bbox1>, which is right of <bbox2> too.")]
    stage3.append(
        {
            "id": "vg_rel-gpt4v-1",
            "image": relative,
            "bboxes": [_xyxy(masks[0]), _xyxy(masks[-1]), _xyxy(masks[1])],
            "conversations": _turns(*pairs),
        }
    )
    stage3 += [plain("VG_100K/7", "vg/VG_100K"), plain("000000000009", "coco/train2017")]
    write_json(root / "vip-llava_stage2_mix.json", stage2)
    write_json(root / "vip-llava_stage3_mix.json", stage3)
    return root


# ---- Osprey-724K ---------------------------------------------------------------------------------


def write_osprey(root: Path, seed: int = 0, size: int = 64) -> Path:
    """Osprey's ``data/`` layout under ``root``: ``Osprey-724K/<subset>.json`` (the conversation and detailed
    description files under the names of Osprey's training config) and ``coco/imgs/<train2017 name>``;
    returns the ``Osprey-724K`` folder. Conversation, short-form, part-level and LVIS items name regions
    ``<region{n}>`` (the conversation item leaves one region unnamed); LVIS segmentations are RLEs and
    its ``file_name`` a train2017 name, the others COCO 2014 names and polygons."""
    annotations_dir = root / "Osprey-724K"
    counter = iter(range(1000))

    def image(coco2014: bool) -> tuple[dict, np.ndarray, list[tuple[str, str]]]:
        index = next(counter) + 1
        pixels, masks, looks = _scene(seed, "osprey", index, size)
        name = f"{index:012d}.jpg"
        write_jpeg(root / "coco" / "imgs" / name, pixels)
        file_name = f"COCO_train2014_{name}" if coco2014 else name
        return {"file_name": file_name, "height": size, "width": size}, masks, looks

    def regions(masks: np.ndarray, rle: bool = False) -> list[dict]:
        return [
            {"bbox": bbox(mask), "segmentation": compressed_rle(mask) if rle else mask_polygons(mask)} for mask in masks
        ]

    info, masks, looks = image(True)
    pairs = [
        ("What colour is <region2>?", f"<region2> is {looks[1][0]}."),
        ("Which is further left, <region3> or <region1>?", "<region1> is further left."),
    ]
    conversation = [{**info, "annotation": regions(masks[:4]), "conversations": _turns(*pairs)}]
    info, masks, looks = image(True)
    descriptions = [f"<region{n + 1}>: A {colour} {shape}." for n, (colour, shape) in enumerate(looks[:2])]
    detailed = [{**info, "annotation": regions(masks[:2]), "description": descriptions}]
    info, masks, looks = image(True)
    short_turns = _turns(("What shape is <region1>?", looks[0][1]))
    short = [{**info, "annotation": regions(masks[:1]), "conversations": short_turns}]
    info, masks, looks = image(True)
    part_turns = _turns(("What colour is <region1>?", looks[0][0]))
    part = [{**info, "annotation": regions(masks[:1]), "conversations": part_turns}]
    info, masks, looks = image(False)
    pairs = [(f"Is <region1> a {looks[0][1]}?", "Yes."), (f"Is <region2> a {looks[0][1]}?", "Unknown.")]
    lvis = [{**info, "annotation": regions(masks[:2], rle=True), "conversations": _turns(*pairs)}]
    write_json(annotations_dir / "osprey_conversation.json", conversation)
    write_json(annotations_dir / "osprey_detailed_description.json", detailed)
    write_json(annotations_dir / "osprey_short_form.json", short)
    write_json(annotations_dir / "osprey_part_level.json", part)
    write_json(annotations_dir / "osprey_lvis_positive_negative.json", lvis)
    return annotations_dir


# ---- LLaVA-Video-178K ----------------------------------------------------------------------------

VIDEO_SUBSETS = {
    "0_30_s_activitynetqa": ("ActivityNet-QA/activitynet", ("oe",)),
    "0_30_s_nextqa": ("NextQA/NExTVideo", ("oe", "mc")),
    "30_60_s_perceptiontest": ("PerceptionTest/videos", ("mc",)),
    "0_30_s_academic_v0_1": ("academic_source/youcook2", ("cap",)),
}
"""Subset folder -> where its videos lie inside it and the kinds of files it has."""

DIRECTION_OPTIONS = ("left", "right", "up", "down")


def _video_items(subset: str, kind: str, videos: list[tuple[str, Video]]) -> list[dict]:
    """The items of one ``<subset>_<kind>`` file about ``videos`` ``[(relative path, Video)]``."""
    items = []
    for relative, video in videos:
        target = video.objects[0]
        if kind == "mc":
            options = "\n".join(f"{chr(65 + i)}. {d}" for i, d in enumerate(DIRECTION_OPTIONS))
            question = f"<image>\nWhich way does the {target.colour} {target.shape} move?\n{options}\n"
            question += "Answer with the option's letter from the given choices directly."
            pairs = [(question, f"{chr(65 + DIRECTION_OPTIONS.index(target.direction))}.")]
        elif kind == "oe":
            pairs = [
                ("<image>\nHow many objects are in the video?", f"{len(video.objects)}."),
                (f"Which way does the {target.colour} {target.shape} move?", f"It moves {target.direction}."),
            ]
        else:
            pairs = [("<image>\nDescribe the video.", f"{len(video.objects)} shapes move over a dark background.")]
        item_id = Path(relative).stem
        items.append({"id": item_id, "conversations": _turns(*pairs), "data_source": subset, "video": relative})
    return items


def write_llava_video(root: Path, seed: int = 0, num_frames: int = 12, size: int = 64, fps: float = 6.0) -> Path:
    """``<root>/LLaVA-Video-178K/<subset>/<subset>_<kind>..._processed.json`` with MP4 videos extracted
    inside each subset folder, for :data:`VIDEO_SUBSETS` (two videos each); returns the
    ``LLaVA-Video-178K`` folder."""
    dataset = root / "LLaVA-Video-178K"
    config = WorldConfig(height=size, width=size, num_frames=num_frames)
    for number, (subset, (folder, kinds)) in enumerate(VIDEO_SUBSETS.items()):
        videos = []
        for index in range(2):
            video = make_video(seed, subset, index, config)
            relative = f"{folder}/v_{number}_{index}.mp4"
            (dataset / subset / relative).parent.mkdir(parents=True, exist_ok=True)
            write_video(dataset / subset / relative, video.frames, fps=fps)
            videos.append((relative, video))
        for kind in kinds:
            name = f"{subset}_{kind}_processed.json" if kind == "cap" else f"{subset}_{kind}_qa_processed.json"
            write_json(dataset / subset / name, _video_items(subset, kind, videos))
    return dataset

"""ViP-LLaVA-Instruct (ViP-LLaVA's stage-2 and stage-3 instruction data), as released, as RGA3 trains on it.

On disk (``<root>`` is the ``ViP-LLaVA-Instruct`` folder, ViP-LLaVA's ``playground/data``; README
"Visual Instruction Tuning", ``scripts/finetune_stage2.sh`` passes it as both ``--data_path`` folder
and ``--image_folder``; RGA3 ``utils/refer_vqa_datatset.py`` reads both from one folder too):

* ``vip-llava_stage2_mix.json`` and ``vip-llava_stage3_mix.json`` (huggingface.co/datasets/mucai/ViP-LLaVA-Instruct):
  LLaVA-style lists of ``{"id", "image", "conversations": [{"from": "human" | "gpt", "value"}]}``;
* images under ``<root>``, by the item's relative ``image`` path: ``coco/train2017/``, ``gqa/images/``,
  ``ocr_vqa/images/``, ``textvqa/train_images/``, ``vg/VG_100K{,_2}/``, ``flickr30k-images/``, ``v7w/``,
  ``vcr1images/``.

Which items carry visual prompts (ViP-LLaVA ``llava/train/train.py``): those whose string ``id`` starts
with a region data set, ``id.split('-')[0]`` in ``refcocog``, ``vcr``, ``vg_rel``, ``flickr30k``, ``v7w``,
``pointQA_twice``; ``id.split('-')[1] == "gpt4v"`` marks the GPT-4V conversations of stage 3. The
others are LLaVA-1.5's image-level data, kept as written. Region items hold (``llava/visual_prompt_organizer.py``,
``vip_processor``):

* ``bboxes``: per object ``[x1, y1, x2, y2]`` in pixels (``draw_rectangle`` draws ``(left, top), (right, bottom)``);
* ``segmentations`` (optional, aligned with ``bboxes``): per object COCO polygons ``[[x, y, ...], ...]`` or ``null``;
* ``*-gpt4v`` items: ``conversations`` that name the objects ``<bbox>`` (one object, refcocog) or
  ``<bbox0>``, ``<bbox1>``, ... (``vg_rel``), in questions and answers alike;
* ``refcocog`` items otherwise: ``answer``, the referring phrase of the one boxed object (ViP-LLaVA
  asks for a short description of the marked object);
* ``vg_rel`` items otherwise: ``answer``, the (subject, relation, object) triplet of the two boxes;
* ``pointQA_twice`` items: ``general_question`` and ``answer`` (LookTwice-QA), one box;
* ``vcr``, ``flickr30k``, ``v7w`` items need other fields (VCR's per-image ``meta_dir`` files, Flickr30k's
  ``grounding``, Visual7W's answer boxes); this loader does not read them.

Sources. An item's source is its region data set (above), else the first folder of its ``image`` path
(``coco``, ``gqa``, ``ocr_vqa``, ``textvqa``, ``vg``); text-only items (no ``image``) are left out. RGA3
keeps the items whose ``image`` path contains ``vg``, ``ocr_vqa`` or ``gqa`` or whose ``id`` contains
``refcoco`` (``ViPLLaVADataset.prepare_metas``). ViP-LLaVA's folder layout puts ``vg_rel`` and LookTwice-QA
(``pointQA_twice``, Visual Genome images) under ``vg/`` and Visual7W, Flickr30k and VCR elsewhere, so
that is :data:`RGA3_SOURCES`, the default ``sources``. ``dataset.excluded`` counts the rest by reason.

Conversion: turns as :mod:`utils.data.llava_conversation`; each object is referenced
``<object{k}><region>`` (:mod:`utils.data.region_references`) with a box :class:`RegionPrompt`
(its polygon mask too, when given) on the one frame. ``visual_prompt`` (default ``"overlay"``, ViP-LLaVA's
own way) then draws the objects with ViP-LLaVA's shapes for the item's data set
(:data:`VIP_SHAPES`, its ``visual_prompt_config``) and names them by their overlay. Boxes are clipped
to the image; a box with no area inside it is an error. Items that do not convert (malformed fields,
missing or corrupt images) raise errors naming the item and file, which training counts as skips
(:mod:`utils.data.robust`). Differences from RGA3: it prefixes every first question with "Look at the
marked region and then answer the question." even where nothing is marked, and retries a random
item on an ``IndexError``; here questions are as written and errors are reported.

Items: the selected items of each stage's file in file order; ``sample_id``
``vip_llava/train/stage<s>/<position in the file>``. ``meta``: ``answer``, ``category`` (the source),
``id``, ``image``, ``stage``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.coco_format import segmentation_mask
from utils.data.llava_conversation import chat_turns, final_answer, media_path, read_image, read_items
from utils.data.region_references import apply_visual_prompt, reference_objects
from utils.data.registry import register_dataset
from utils.data.schema import RegionPrompt, Sample
from utils.visual_prompts.overlays import SHAPES, check_mode

SPLIT = "train"
STAGE_FILES = {2: "vip-llava_stage2_mix.json", 3: "vip-llava_stage3_mix.json"}
"""ViP-LLaVA's instruction files by training stage."""

REGION_SOURCES = ("refcocog", "vcr", "vg_rel", "flickr30k", "v7w", "pointQA_twice")
"""``id`` prefixes of ViP-LLaVA's visual-prompt items (``visual_prompt_config``)."""

SUPPORTED_REGION_SOURCES = ("refcocog", "vg_rel", "pointQA_twice")
"""The region sources this loader converts."""

RGA3_SOURCES = ("vg", "ocr_vqa", "gqa", "refcocog", "vg_rel", "pointQA_twice")
"""The sources RGA3 trains on (its ``vg`` / ``ocr_vqa`` / ``gqa`` image filter and ``refcoco`` id filter)."""

VIP_SHAPES = {
    "refcocog": SHAPES,
    "vg_rel": ("rectangle", "ellipse"),
    "pointQA_twice": ("rectangle",),
}
"""Overlay shapes ViP-LLaVA draws per region data set (``visual_prompt_config``)."""

BBOX_TAG = re.compile(r"<bbox(\d*)>")
"""ViP-LLaVA's object tags: ``<bbox>`` (object 0) or ``<bbox{i}>``."""

DESCRIBE_QUESTION = "Describe {ref} in a short phrase."
RELATION_QUESTION = "How is {subject} related to {object}? Answer with a short (subject, relation, object) triplet."
POINT_QUESTION = "{question} Look at {ref}. Answer with a single word or phrase."
"""Questions of the region items whose conversation ViP-LLaVA builds from ``answer`` (our wording)."""


def _annotation_of(match: re.Match) -> int:
    return int(match.group(1) or 0)


def item_source(item: dict) -> str | None:
    """The item's source (module docstring), or ``None`` for a text-only item."""
    item_id = item.get("id")
    if isinstance(item_id, str) and item_id.split("-")[0] in REGION_SOURCES:
        return item_id.split("-")[0]
    image = item.get("image")
    if not isinstance(image, str) or not image:
        return None
    return Path(image).parts[0]


def _boxes(item: dict, size: tuple[int, int], where: str) -> list[np.ndarray]:
    """The item's ``bboxes`` as ``(4,)`` float boxes clipped to the image."""
    boxes = item.get("bboxes")
    if not isinstance(boxes, list) or not boxes:
        raise ValueError(f"{where}: 'bboxes' must be a non-empty list of [x1, y1, x2, y2]")
    height, width = size
    clipped = []
    for index, box in enumerate(boxes):
        numbers = np.asarray(box, dtype=np.float64) if isinstance(box, list) else np.empty(0)
        if numbers.shape != (4,) or not np.all(np.isfinite(numbers)):
            raise ValueError(f"{where}: box {index} is not [x1, y1, x2, y2]: {box!r}")
        x1, y1, x2, y2 = np.clip(numbers, 0, [width, height, width, height])
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"{where}: box {index} {box!r} has no area inside the {height}x{width} image")
        clipped.append(np.array([x1, y1, x2, y2]))
    return clipped


def _masks(item: dict, count: int, size: tuple[int, int], where: str) -> list[np.ndarray | None]:
    """The item's ``segmentations`` as ``(H, W)`` masks (``None`` where an object has none)."""
    segmentations = item.get("segmentations")
    if segmentations is None:
        return [None] * count
    if not isinstance(segmentations, list) or len(segmentations) != count:
        raise ValueError(f"{where}: 'segmentations' must list one entry (polygons or null) per box, {count} boxes")
    return [
        None if seg is None else segmentation_mask(seg, *size, f"{where} segmentation {index}")
        for index, seg in enumerate(segmentations)
    ]


def _text(item: dict, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def region_conversation(item: dict, source: str, where: str) -> list[dict[str, str]]:
    """The conversation of a region item, objects still tagged ``<bbox{i}>`` (see the module docstring)."""
    item_id = item["id"]
    if item_id.split("-")[1:2] == ["gpt4v"]:
        return chat_turns(item.get("conversations"), where)
    answer = _text(item, "answer", where)
    if source == "refcocog":
        question = DESCRIBE_QUESTION.format(ref="<bbox0>")
    elif source == "vg_rel":
        question = RELATION_QUESTION.format(subject="<bbox0>", object="<bbox1>")
    else:
        question = POINT_QUESTION.format(question=_text(item, "general_question", where), ref="<bbox0>")
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


class ViPLLaVADataset(Dataset):
    """ViP-LLaVA-Instruct (stage 2 and / or 3), single images (``T = 1``).

    Args:
        root: the ``ViP-LLaVA-Instruct`` folder (instruction files and image folders).
        stages: which stage files to read, of ``2`` and ``3``.
        sources: which sources to keep (module docstring; default :data:`RGA3_SOURCES`).
        visual_prompt: ``"overlay"`` (default), ``"region"`` or ``"both"``.
        seed: seeds each item's overlay styles and drawing, with its index.
    """

    def __init__(
        self,
        root: str | Path,
        stages: tuple[int, ...] | list[int] = (2, 3),
        sources: tuple[str, ...] | list[str] = RGA3_SOURCES,
        visual_prompt: str = "overlay",
        seed: int = 0,
    ):
        self.root, self.visual_prompt, self.seed = Path(root), check_mode(visual_prompt), seed
        stages, sources = list(stages), list(sources)
        if not stages or any(stage not in STAGE_FILES for stage in stages) or len(set(stages)) != len(stages):
            raise ValueError(f"vip_llava: stages must be distinct values of {sorted(STAGE_FILES)}, got {stages}")
        unsupported = sorted(set(sources) & (set(REGION_SOURCES) - set(SUPPORTED_REGION_SOURCES)))
        if unsupported:
            raise ValueError(f"vip_llava: sources {unsupported} are not read by this loader (it reads the others)")
        if not sources:
            raise ValueError("vip_llava: sources must name at least one source")
        self.items: list[tuple[int, int, str, dict]] = []  # (stage, position, source, item)
        self.excluded: Counter[str] = Counter()
        for stage in stages:
            for position, item in enumerate(read_items(self.root / STAGE_FILES[stage])):
                source = item_source(item)
                if source is None:
                    self.excluded["text-only"] += 1
                elif source not in sources:
                    self.excluded[f"source {source}"] += 1
                else:
                    self.items.append((stage, position, source, item))
        if not self.items:
            files = [STAGE_FILES[stage] for stage in stages]
            raise ValueError(f"vip_llava: no item of {files} in {self.root} has sources {sources}")

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``vip_llava/train/stage<s>/<position in the file>``."""
        return [f"vip_llava/{SPLIT}/stage{stage}/{position}" for stage, position, _, _ in self.items]

    def __getitem__(self, index: int) -> Sample:
        stage, position, source, item = self.items[index]
        sample_id = f"vip_llava/{SPLIT}/stage{stage}/{position}"
        where = f"{sample_id} (id {item.get('id')!r} in {self.root / STAGE_FILES[stage]})"
        image_path = media_path(self.root, item.get("image"), where)
        image = read_image(image_path, where)
        meta = {"category": source, "id": item.get("id"), "image": item["image"], "stage": stage}
        if source not in REGION_SOURCES:
            conversation = chat_turns(item.get("conversations"), where)
            return Sample(
                sample_id,
                image[None],
                [image_path.stem],
                conversation,
                medium="image",
                meta={**meta, "answer": final_answer(conversation)},
            )
        size = image.shape[:2]
        boxes = _boxes(item, size, where)
        masks = _masks(item, len(boxes), size, where)
        conversation = region_conversation(item, source, where)
        referenced = reference_objects(conversation, BBOX_TAG, _annotation_of, len(boxes), where)
        regions = [
            RegionPrompt(frame=0, mask=masks[annotation], box=boxes[annotation], region=k)
            for k, annotation in enumerate(referenced.annotations)
        ]
        sample = Sample(
            sample_id,
            image[None],
            [image_path.stem],
            referenced.conversation,
            medium="image",
            regions=regions,
            meta={**meta, "objects": referenced.annotations},
        )
        rng = np.random.default_rng([self.seed, index])
        sample = apply_visual_prompt(sample, self.visual_prompt, rng, shapes=VIP_SHAPES[source])
        sample.meta["answer"] = final_answer(sample.conversation)
        return sample


def _vip_llava_paths(root: Path, split: str) -> list[Path]:
    return [root]


@register_dataset("vip_llava", family="ref_vqa", required_paths=_vip_llava_paths)
def build_vip_llava(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    stages: tuple[int, ...] | list[int] = (2, 3),
    sources: tuple[str, ...] | list[str] = RGA3_SOURCES,
    visual_prompt: str = "overlay",
) -> ViPLLaVADataset:
    """ViP-LLaVA-Instruct as released (``root`` = the ``ViP-LLaVA-Instruct`` folder); one split, ``train``.

    Images are one frame (``num_frames`` is unused). Options: ``stages`` (of 2, 3), ``sources``
    (default RGA3's), ``visual_prompt`` (``overlay`` | ``region`` | ``both``).
    """
    if split != SPLIT:
        raise ValueError(f"vip_llava has one split, {SPLIT!r}; got {split!r}")
    return ViPLLaVADataset(root, stages, sources, visual_prompt, seed)

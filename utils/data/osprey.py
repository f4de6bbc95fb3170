"""Osprey-724K (Osprey's mask-level instruction data), as released.

On disk (CircleRadon/Osprey ``dataset.md``; huggingface.co/datasets/AntGroup-MI/Osprey-724K), ``<root>``
is the ``Osprey-724K`` folder of Osprey's ``data/`` layout:

* one JSON list per subset (:data:`SUBSETS`). ``dataset.md`` and Osprey's ``osprey/configs/stage3.json``
  spell two of the names differently (``osprey_conversations.json`` / ``osprey_conversation.json``,
  ``osprey_detail_description.json`` / ``osprey_detailed_description.json``); either is read;
* COCO images, by default in ``<root>/../coco/imgs`` (``dataset.md``: ``data/coco/imgs`` holds the
  train2017 and val2017 images); option ``image_dir`` (relative to ``<root>``, or absolute).

Items (``osprey/datasets/osprey_724k.py``): ``{"file_name", "height", "width", "annotation": [{"bbox": [x,
y, w, h], "segmentation": COCO polygons or RLE, ...}], ...}``. Osprey opens ``file_name.split('_')[-1]``
in its train2017 folder, so ``COCO_train2014_000000123456.jpg`` is ``000000123456.jpg`` there (a
train2017 name has no ``_``); the LVIS subset's names are opened as written, which the same rule keeps.

* ``conversation``, ``short_form``, ``part_level``, ``lvis_positive_negative``: LLaVA-style
  ``conversations`` whose turns name the k-th annotation ``<region{k+1}>`` (Osprey's generation
  examples, ``osprey/data_generation/conversation/res_example.txt``; ``OspreyLVISPosNeg`` replaces
  ``<region\\d+>``). Osprey asks ``short_form`` and ``part_level`` questions with a request for a
  single word or phrase appended (``self.limit``); so does this loader (:data:`SHORT_ANSWER`).
* ``detail_description``: ``"description"``, one ``"<region{k}>: text"`` per annotation; Osprey asks a
  detailed description of each region in turn and answers with the text after ``": "``; so does this
  loader, one turn per region (:data:`DESCRIBE_QUESTION`).

Conversion: each annotation is one object, referenced ``<object{k}><region>`` with a mask
:class:`RegionPrompt` (with the mask's bounding box) on the one frame, numbered by
:mod:`utils.data.region_references`: annotations named first by a question keep their place, the rest
are declared in the first question, as Osprey lists every region of an item before the first
question (a count and ``region1<mask><pos>, region2<mask><pos>, ...``; the tags' angle brackets are
then dropped from its text). ``visual_prompt`` defaults to ``"region"`` (Osprey's own way: mask-pooled
region tokens); ``"overlay"`` draws the masks instead, as RGA3's ``NewOspreyDataset`` does. An
annotation's ``height``/``width`` must match its image; a tag naming no annotation, an empty mask, a missing or
corrupt image are errors naming the item and file.

Items: the subsets' items in :data:`SUBSETS` order, then file order; ``sample_id``
``osprey/train/<subset>/<position in the file>``. ``meta``: ``answer``, ``category`` (the subset),
``image``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.coco_format import segmentation_mask
from utils.data.image_io import check_size
from utils.data.llava_conversation import chat_turns, final_answer, media_path, read_image, read_items
from utils.data.region_references import apply_visual_prompt, reference_objects
from utils.data.registry import register_dataset
from utils.data.schema import RegionPrompt, Sample
from utils.visual_prompts.overlays import check_mode

SPLIT = "train"

SUBSETS: dict[str, tuple[str, ...]] = {
    "conversation": ("osprey_conversation.json", "osprey_conversations.json"),
    "detail_description": ("osprey_detail_description.json", "osprey_detailed_description.json"),
    "short_form": ("osprey_short_form.json",),
    "part_level": ("osprey_part_level.json",),
    "lvis_positive_negative": ("osprey_lvis_positive_negative.json",),
}
"""Subset -> its file name(s) in ``<root>``, as released."""

SHORT_ANSWER_SUBSETS = ("short_form", "part_level")
SHORT_ANSWER = " Answer with a single word or phrase."
DESCRIBE_QUESTION = "Describe <region{number}> in detail."

REGION_TAG = re.compile(r"<region(\d+)>")
"""Osprey's object tag, 1-based: ``<region1>`` is the first annotation."""

DESCRIPTION = re.compile(r"^\s*<[^>]*>\s*:\s*(.*)$", re.DOTALL)
"""A detail description ``"<region1>: text"``; group 1 is the text."""

COCO_NAME = re.compile(r"^COCO_[a-z]+\d{4}_(\d+\.\w+)$")
"""A COCO 2014 file name; group 1 is the train2017 name Osprey opens."""


def _annotation_of(match: re.Match) -> int:
    return int(match.group(1)) - 1


def image_name(file_name: str) -> str:
    """The file Osprey opens for ``file_name``: the train2017 name of a COCO 2014 name, else ``file_name``."""
    match = COCO_NAME.match(file_name)
    return match.group(1) if match else file_name


def _positive_int(item: dict, key: str, where: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    return value


def _conversation(item: dict, subset: str, where: str) -> list[dict[str, str]]:
    """The item's turns, regions still tagged ``<region{n}>``."""
    if subset == "detail_description":
        descriptions = item.get("description")
        if not isinstance(descriptions, list) or len(descriptions) != len(item["annotation"]):
            raise ValueError(f"{where}: 'description' must list one '<region>: text' per annotation")
        turns = []
        for number, description in enumerate(descriptions, start=1):
            match = DESCRIPTION.match(description) if isinstance(description, str) else None
            if match is None or not match.group(1).strip():
                raise ValueError(f"{where}: description {number} is not '<region{number}>: text': {description!r}")
            turns.append({"role": "user", "content": DESCRIBE_QUESTION.format(number=number)})
            turns.append({"role": "assistant", "content": match.group(1).strip()})
        return turns
    turns = chat_turns(item.get("conversations"), where)
    if subset in SHORT_ANSWER_SUBSETS:
        turns = [{**t, "content": t["content"] + SHORT_ANSWER} if t["role"] == "user" else t for t in turns]
    return turns


class OspreyDataset(Dataset):
    """Osprey-724K subsets, single COCO images (``T = 1``) with mask region prompts.

    Args:
        root: the ``Osprey-724K`` folder.
        subsets: which of :data:`SUBSETS` to read (default all five).
        image_dir: the COCO image folder, relative to ``root`` or absolute.
        visual_prompt: ``"region"`` (default), ``"overlay"`` or ``"both"``.
        seed: seeds each item's overlay styles and drawing, with its index.
    """

    def __init__(
        self,
        root: str | Path,
        subsets: tuple[str, ...] | list[str] = tuple(SUBSETS),
        image_dir: str = "../coco/imgs",
        visual_prompt: str = "region",
        seed: int = 0,
    ):
        self.root, self.visual_prompt, self.seed = Path(root), check_mode(visual_prompt), seed
        self.image_dir = self.root / image_dir
        unknown = sorted(set(subsets) - set(SUBSETS))
        if unknown or not subsets:
            raise ValueError(f"osprey: subsets must be some of {list(SUBSETS)}, got {list(subsets)}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"osprey: missing image folder {self.image_dir} (option image_dir)")
        self.files: dict[str, Path] = {}
        self.items: list[tuple[str, int, dict]] = []  # (subset, position, item)
        for subset in (s for s in SUBSETS if s in subsets):
            path = next((self.root / name for name in SUBSETS[subset] if (self.root / name).is_file()), None)
            if path is None:
                raise FileNotFoundError(f"osprey: missing {' or '.join(str(self.root / n) for n in SUBSETS[subset])}")
            self.files[subset] = path
            self.items += [(subset, position, item) for position, item in enumerate(read_items(path))]

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``osprey/train/<subset>/<position in the file>``."""
        return [f"osprey/{SPLIT}/{subset}/{position}" for subset, position, _ in self.items]

    def __getitem__(self, index: int) -> Sample:
        subset, position, item = self.items[index]
        sample_id = f"osprey/{SPLIT}/{subset}/{position}"
        where = f"{sample_id} ({self.files[subset]})"
        file_name = item.get("file_name")
        if not isinstance(file_name, str):
            raise ValueError(f"{where}: 'file_name' must be a string, got {file_name!r}")
        image_path = media_path(self.image_dir, image_name(file_name), where, "file_name")
        image = read_image(image_path, where)
        height, width = _positive_int(item, "height", where), _positive_int(item, "width", where)
        check_size(image, height, width, where, image_path)
        annotations = item.get("annotation")
        if not isinstance(annotations, list) or not annotations:
            raise ValueError(f"{where}: 'annotation' must be a non-empty list of regions")
        masks, boxes = [], []
        for number, annotation in enumerate(annotations, start=1):
            if not isinstance(annotation, dict) or "segmentation" not in annotation:
                raise ValueError(f"{where}: annotation {number} has no 'segmentation'")
            mask = segmentation_mask(annotation["segmentation"], height, width, f"{where} region {number}")
            ys, xs = np.nonzero(mask)
            masks.append(mask)
            boxes.append(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64))
        conversation = _conversation(item, subset, where)
        referenced = reference_objects(conversation, REGION_TAG, _annotation_of, len(annotations), where)
        regions = [
            RegionPrompt(frame=0, mask=masks[a], box=boxes[a], region=k) for k, a in enumerate(referenced.annotations)
        ]
        sample = Sample(
            sample_id,
            image[None],
            [image_path.stem],
            referenced.conversation,
            medium="image",
            regions=regions,
            meta={"category": subset, "image": file_name, "objects": referenced.annotations},
        )
        sample = apply_visual_prompt(sample, self.visual_prompt, np.random.default_rng([self.seed, index]))
        sample.meta["answer"] = final_answer(sample.conversation)
        return sample


def _osprey_paths(root: Path, split: str) -> list[Path]:
    return [root]


@register_dataset("osprey", family="ref_vqa", required_paths=_osprey_paths)
def build_osprey(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    subsets: tuple[str, ...] | list[str] = tuple(SUBSETS),
    image_dir: str = "../coco/imgs",
    visual_prompt: str = "region",
) -> OspreyDataset:
    """Osprey-724K as released (``root`` = the ``Osprey-724K`` folder); one split, ``train``.

    Images are one frame (``num_frames`` is unused). Options: ``subsets``, ``image_dir`` (COCO images,
    relative to ``root``), ``visual_prompt`` (``region`` | ``overlay`` | ``both``).
    """
    if split != SPLIT:
        raise ValueError(f"osprey has one split, {SPLIT!r}; got {split!r}")
    return OspreyDataset(root, subsets, image_dir, visual_prompt, seed)

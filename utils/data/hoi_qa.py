"""HOI-QA (HOI-Ref, Bansal et al. 2024): hand-object referral questions on EPIC-KITCHENS and Ego4D frames.

On disk (``<root>``; the JSON files as released in the reference's ``hoiqa_dataset/``, the frames where its
README extracts them, :mod:`scripts.extract_hoi_frames` writes them)::

    <root>/epic-kitchens-train.json   [{"id", "image": "<video>/<frame stem>", "conversations"}]
    <root>/ego4d-train.json           [{"id", "image" | "image_path", "conversations"}]
    <root>/epic-test.json             {id: {"noun", "bbox": [x1, y1, x2, y2] pixels, "image_path"}}  (VISOR)
    <root>/ego4d-test.json            the same for Ego4D
    <root>/epic-visor-test.json       [{"id", "question", "answer", "image_path"}]  (hand-object questions)
    <root>/EPIC_Kitchens/frames/<video_id>/frame_<n>.jpg
    <root>/Ego4D/v2/frames/<clip_uid>/frame_<n>.jpg

An item's frame is its ``image`` (relative to the source's frame folder, ``.jpg`` added when it has no image
suffix, as the reference's EPIC loader does) or, for ``image_path`` (absolute paths on the authors' disks),
its last two parts ``<video>/<file>`` under the frame folder.

Parts and splits: :data:`PARTS` names each file; a split is a part or :data:`SPLITS` ``train`` / ``test``.
Items of the part files:

* ``*_train``: one per entry, its ``conversations`` (LLaVA format, :func:`~utils.data.llava_conversation.chat_turns`);
  the assistant answers hold boxes on the 0-100 grid already.
* ``epic_test`` / ``ego4d_test``: two per entry, as the reference's test loaders build them: ``/refer``
  asks ``"Where is the <noun>"`` (answer: the box) and ``/identify`` asks with the box alone, written on
  the grid with HOI-QA's truncation (answer: the noun).
* ``epic_hoi_test``: one per entry; its ``answer`` is a pixel box ``[x1, y1, x2, y2]`` or a string of
  ``{<..>}`` boxes (two hands, in pixels: the reference's scorer compares them with pixel boxes) for a
  ``[refer]`` question, the noun or hand for a ``[vqa]`` one.

Task tags: each question starts with MiniGPT-v2's task identifier (``[refer]``, ``[vqa]``, ``[identify]``).
The reference trains with it in the prompt, but strips it (``re.sub(r'\\[.*?\\] ', '', q)``) from the
hand-object test questions and asks the noun/box test questions without one. Option ``task_tags``:
``"strip"`` (default: no tag anywhere, train and test alike) or ``"keep"`` (the tag where the file has one).
The tag is ``meta["tag"]`` either way and, with the answer, decides the task.

Tasks (:data:`TASKS`, the reference scorer's subset names) and referral types: *direct* referral of hands
and objects (where is the noun ``objN2objBB`` / the left, right or both hands ``handN2handBB``; the noun
``objBB2objN`` or the hand ``handBB2handN`` of a box) and *interaction* referral (the object a hand
manipulates ``handN2objBB``; the hand holding an object ``objN2handBB``; what that hand is ``objN2handN``;
the object in a hand ``handN2objN``). :func:`classify_task` decides by tag, question words and answer.

Frame sizes (:data:`FRAME_SIZES`): test boxes are pixels of EPIC/VISOR's 1920x1080 and Ego4D's 1440x1080
frames; ``meta["frame_size"]`` is that size and ``meta["gt_boxes"]`` are pixels of it (from the grid
for the train parts). ``Sample.boxes`` are the same boxes in pixels of the frame as loaded, which must
have that aspect ratio (within 1 %) or the item is a ``ValueError``.

Answers: ``box_format="grid"`` (default) writes boxes as HOI-QA does (:func:`~utils.data.box_text.
format_grid_boxes`); ``"pixels"`` writes every box answer as Qwen2.5-VL's JSON in pixels of the frame as
loaded (labels from the question) and an identify question's box as ``[x1, y1, x2, y2]`` in those pixels.
Qwen2.5-VL reads absolute pixels of the image it is given after its resize, so use ``"pixels"`` with
frames the processor does not resize, or rescale (:func:`~utils.data.box_text.rescale_boxes`).

Train/test overlap: the released train files share frames with the test files (72 images by the count this
module was written against; not re-counted here, the files are not in the repository).
Option ``test_overlap`` of a split with train parts: ``"skip"`` (default) leaves those train items out,
counts them in ``skipped_test_images`` and warns; ``"refuse"`` raises ``ValueError`` listing them;
``"keep"`` trains on them. ``skip`` and ``refuse`` need the three test files. :func:`overlapping_images`
lists the shared frames (``python scripts/extract_hoi_frames.py --root R --check-overlap``).

``Sample.meta``: ``source`` (``epic`` | ``ego4d``), ``part``, ``entry_id``, ``image``, ``tag``, ``task``,
``category`` (= task), ``referral`` (``direct`` | ``interaction``), ``question``, ``answer`` (the last
assistant turn), ``frame_size`` / ``image_size`` ``(width, height)``, and ``gt_boxes`` ``(K, 4)`` float32
(box tasks) or ``gt_text`` (noun and hand tasks; ``hand`` = ``left`` | ``right`` for hand answers).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from torch.utils.data import Dataset

from utils.data.box_text import (
    format_grid_boxes,
    format_qwen_boxes,
    grid_to_pixels,
    parse_grid_boxes,
    pixels_to_grid,
    rescale_boxes,
)
from utils.data.image_io import read_json, safe_id_part
from utils.data.llava_conversation import chat_turns, read_image
from utils.data.registry import register_dataset
from utils.data.schema import Sample

FRAME_SIZES = {"epic": (1920, 1080), "ego4d": (1440, 1080)}
"""Source -> ``(width, height)`` of the frames its pixel boxes are annotated on (EPIC: VISOR's)."""

FRAME_FOLDERS = {"epic": "EPIC_Kitchens/frames", "ego4d": "Ego4D/v2/frames"}
"""Source -> its frame folder under ``<root>`` (the reference README's layout)."""


@dataclass(frozen=True)
class Part:
    """One released file: its name, source and layout (``conversation``, ``noun_box`` or ``question``)."""

    file: str
    source: str
    layout: str


PARTS = {
    "epic_train": Part("epic-kitchens-train.json", "epic", "conversation"),
    "ego4d_train": Part("ego4d-train.json", "ego4d", "conversation"),
    "epic_test": Part("epic-test.json", "epic", "noun_box"),
    "ego4d_test": Part("ego4d-test.json", "ego4d", "noun_box"),
    "epic_hoi_test": Part("epic-visor-test.json", "epic", "question"),
}
"""Part name -> its file."""

TRAIN_PARTS = ("epic_train", "ego4d_train")
TEST_PARTS = ("epic_test", "ego4d_test", "epic_hoi_test")
SPLITS = {"train": TRAIN_PARTS, "test": TEST_PARTS, **{name: (name,) for name in PARTS}}
"""Split -> the parts it reads, in item order."""

TASKS = {
    "objN2objBB": ("direct", "box"),
    "handN2handBB": ("direct", "box"),
    "objBB2objN": ("direct", "noun"),
    "handBB2handN": ("direct", "hand"),
    "handN2objBB": ("interaction", "box"),
    "objN2handBB": ("interaction", "box"),
    "objN2handN": ("interaction", "hand"),
    "handN2objN": ("interaction", "noun"),
}
"""Task -> (referral type, answer kind: ``box``, ``noun`` or ``hand``)."""

TASK_TAGS = ("strip", "keep")
BOX_FORMATS = ("grid", "pixels")
TEST_OVERLAP = ("skip", "refuse", "keep")
ASPECT_TOLERANCE = 0.01
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

TAG = re.compile(r"^\s*\[(\w+)\]\s*")
HAND_ANSWER = re.compile(r"^\s*(?:the\s+)?(left|right)\s+(hand|glove)s?\W*$", re.IGNORECASE)
FRAME_NUMBER = re.compile(r"(\d+)$")
WHERE_IS = re.compile(r"^where (?:is|are) the (.+?)(?: of the person)?\W*$")


def hand_answer(text: str, gloves: bool = True) -> str | None:
    """``"left"`` / ``"right"`` if ``text`` is a hand answer such as ``"right hand"`` (or, with ``gloves``,
    ``"left glove"``), else ``None``."""
    match = HAND_ANSWER.match(text)
    if match is None or (not gloves and match.group(2).lower() == "glove"):
        return None
    return match.group(1).lower()


def split_tag(question: str) -> tuple[str | None, str]:
    """``(tag, question without it)`` for a question starting ``[tag]``; ``(None, question)`` otherwise."""
    match = TAG.match(question)
    if match is None:
        return None, question.strip()
    return match.group(1).lower(), question[match.end() :].strip()


def classify_task(tag: str | None, question: str, answer: str, where: str) -> str:
    """The :data:`TASKS` name of a question (tag removed) and its reference answer.

    A box in the question (or ``[identify]``) asks for its name: a hand answer (not a glove: the reference
    scores those as objects) is ``handBB2handN``, else ``objBB2objN``. ``[vqa]``: a hand or glove answer is
    ``objN2handN``, else ``handN2objN``. ``[refer]`` (or no tag and boxes in the answer): ``manipulat...`` or
    an object with a hand -> ``handN2objBB``, ``which/what hand`` -> ``objN2handBB``, a left/right hand or
    ``hands`` -> ``handN2handBB``, else ``objN2objBB``. Other tags are a ``ValueError``.
    """
    text = question.lower()
    if tag == "identify" or (tag is None and len(parse_grid_boxes(question))):
        return "handBB2handN" if hand_answer(answer, gloves=False) else "objBB2objN"
    if tag == "vqa" or (tag is None and not len(parse_grid_boxes(answer))):
        return "objN2handN" if hand_answer(answer) else "handN2objN"
    if tag not in ("refer", None):
        raise ValueError(f"{where}: unknown task tag [{tag}] (known: [refer], [vqa], [identify])")
    hand = re.search(r"\b(?:left|right) hand\b|\bhands?\b", text)
    if re.search(r"\b(?:which|what) hand\b", text):
        return "objN2handBB"
    if "manipulat" in text or (hand and re.search(r"\bobject\b", text)):
        return "handN2objBB"
    if hand:
        return "handN2handBB"
    return "objN2objBB"


def box_labels(task: str, question: str, count: int) -> list[str]:
    """Qwen JSON labels for ``count`` boxes answering ``question``: the hand side or noun it names, if any."""
    text = question.lower()
    if task in ("handN2handBB", "objN2handBB"):
        sides = re.findall(r"\b(left|right) hand\b", text) if task == "handN2handBB" else []
        return [f"{sides[0]} hand" if count == 1 and len(sides) == 1 else "hand"] * count
    match = WHERE_IS.match(text)
    return [match.group(1) if task == "objN2objBB" and match else "object"] * count


# ---- frames --------------------------------------------------------------------------------------


def image_relpath(entry: dict, where: str) -> str:
    """The entry's frame relative to its source's frame folder (see the module docstring)."""
    if "image" in entry:
        relative = entry["image"]
        if not isinstance(relative, str) or not relative.strip():
            raise ValueError(f"{where}: 'image' must be a non-empty relative path, got {relative!r}")
        path = PurePosixPath(relative.strip())
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"{where}: 'image' must stay inside the frame folder, got {relative!r}")
        return str(path) if path.suffix.lower() in IMAGE_SUFFIXES else f"{path}.jpg"
    absolute = entry.get("image_path")
    if not isinstance(absolute, str) or len(PurePosixPath(absolute).parts) < 2:
        raise ValueError(f"{where}: needs 'image' or an 'image_path' ending <video>/<frame file>, got {absolute!r}")
    path = PurePosixPath(absolute)
    return f"{path.parent.name}/{path.name}"


def frame_number(relpath: str) -> int | None:
    """The frame number a file stem ends in (``frame_0000002150`` -> 2150), or ``None``."""
    match = FRAME_NUMBER.search(PurePosixPath(relpath).stem)
    return int(match.group(1)) if match else None


def image_key(source: str, relpath: str) -> str:
    """``"<source>:<video>/<frame number>"``: the same frame whatever zero padding or suffix names it."""
    folder, _, name = relpath.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    match = FRAME_NUMBER.search(stem)
    return f"{source}:{folder}/{int(match.group(1)) if match else stem}"


# ---- the files -----------------------------------------------------------------------------------


def read_part(root: Path, part: str) -> list[tuple[str, dict]]:
    """``[(entry id, entry), ...]`` of one part file, in file order; ``ValueError`` naming the file for a bad layout."""
    spec = PARTS[part]
    path = root / spec.file
    data = read_json(path)
    if spec.layout == "noun_box":
        if not isinstance(data, dict):
            raise ValueError(
                f"{path}: expected an object {{id: {{noun, bbox, image_path}}}}, got {type(data).__name__}"
            )
        entries = list(data.items())
    else:
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
        entries = []
        for index, entry in enumerate(data):
            if not isinstance(entry, dict) or "id" not in entry:
                raise ValueError(f"{path}: entry {index} is not an object with an 'id': {str(entry)[:200]}")
            entries.append((str(entry["id"]), entry))
    for entry_id, entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {entry_id!r} is not an object")
    return entries


def part_image_keys(part: str, entries: list[tuple[str, dict]]) -> list[str]:
    """:func:`image_key` of every entry of a part (as :func:`read_part` gives them), in order."""
    source, file = PARTS[part].source, PARTS[part].file
    return [image_key(source, image_relpath(entry, f"{file} entry {entry_id!r}")) for entry_id, entry in entries]


def overlapping_images(root: str | Path) -> list[str]:
    """Sorted :func:`image_key` of every frame that a train part and a test part both use (all five files needed)."""
    root = Path(root)
    train = set().union(*(part_image_keys(part, read_part(root, part)) for part in TRAIN_PARTS))
    test = set().union(*(part_image_keys(part, read_part(root, part)) for part in TEST_PARTS))
    return sorted(train & test)


def pixel_boxes(value, where: str) -> np.ndarray:
    """``(K, 4)`` float64 pixel boxes of a test answer: ``[x1, y1, x2, y2]`` or a string of ``{<..>}`` boxes.

    Raises ``ValueError`` naming ``where`` for anything else, a partial box or corners out of order.
    """
    if isinstance(value, str):
        parsed = parse_grid_boxes(value, limit=None)
        if parsed.dropped or parsed.reordered or not len(parsed):
            raise ValueError(f"{where}: cannot read whole, ordered pixel boxes from the answer {value!r}")
        return parsed.boxes
    try:
        boxes = np.asarray(value, dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: a box must be [x1, y1, x2, y2], got {value!r}") from error
    if not len(boxes) or not np.isfinite(boxes).all() or (boxes[:, :2] > boxes[:, 2:]).any():
        raise ValueError(f"{where}: a box is empty, not finite or has x1 > x2 / y1 > y2: {value!r}")
    return boxes


# ---- the dataset ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One sample's recipe: the part, the entry, its position in the file and, for ``noun_box`` parts, which
    question (``refer`` or ``identify``)."""

    part: str
    entry_id: str
    entry: dict
    position: int
    kind: str = ""


class HoiQADataset(Dataset):
    """One split of HOI-QA; every sample is one frame (``T = 1``, ``medium="image"``).

    Args:
        root: the folder holding the JSON files (and, by default, the frame folders).
        split: a key of :data:`SPLITS`.
        frame_folders: ``{source: folder}`` overriding :data:`FRAME_FOLDERS` (relative to ``root`` or absolute).
        box_format: ``"grid"`` or ``"pixels"`` (see the module docstring).
        task_tags: ``"strip"`` or ``"keep"``.
        test_overlap: ``"skip"``, ``"refuse"`` or ``"keep"`` for train parts.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        frame_folders: dict[str, str] | None = None,
        box_format: str = "grid",
        task_tags: str = "strip",
        test_overlap: str = "skip",
    ):
        for name, value, allowed in (
            ("split", split, tuple(SPLITS)),
            ("box_format", box_format, BOX_FORMATS),
            ("task_tags", task_tags, TASK_TAGS),
            ("test_overlap", test_overlap, TEST_OVERLAP),
        ):
            if value not in allowed:
                raise ValueError(f"HOI-QA {name} must be one of {allowed}, got {value!r}")
        self.root, self.split = Path(root), split
        self.box_format, self.task_tags = box_format, task_tags
        folders = {**FRAME_FOLDERS, **(frame_folders or {})}
        self.frame_dirs = {source: self.root / folders[source] for source in FRAME_SIZES}
        entries = {part: read_part(self.root, part) for part in SPLITS[split]}
        keys = self._train_keys(entries, test_overlap)
        shared = self._test_images(keys, test_overlap)
        self.items: list[Item] = []
        self.skipped_test_images = 0
        for part, part_entries in entries.items():
            for index, (entry_id, entry) in enumerate(part_entries):
                if PARTS[part].layout == "noun_box":
                    self.items += [Item(part, entry_id, entry, index, kind) for kind in ("refer", "identify")]
                elif part in keys and keys[part][index] in shared:
                    self.skipped_test_images += 1
                else:
                    self.items.append(Item(part, entry_id, entry, index))
        if self.skipped_test_images:
            warnings.warn(
                f"HOI-QA {split}: left out {self.skipped_test_images} train items on {len(shared)} frames "
                "that the test files also use (test_overlap='skip')",
                stacklevel=2,
            )
        self._ids = [self._sample_id(item) for item in self.items]
        repeated = sorted(sample_id for sample_id, count in Counter(self._ids).items() if count > 1)
        if repeated:
            raise ValueError(f"HOI-QA {split}: {len(repeated)} entry ids repeat, e.g. {repeated[:5]}")

    @staticmethod
    def _train_keys(entries: dict[str, list[tuple[str, dict]]], test_overlap: str) -> dict[str, list[str]]:
        """``{train part: image key per entry}`` of the split's train parts, when their overlap is checked."""
        if test_overlap == "keep":
            return {}
        return {
            part: part_image_keys(part, part_entries) for part, part_entries in entries.items() if part in TRAIN_PARTS
        }

    def _test_images(self, keys: dict[str, list[str]], test_overlap: str) -> set[str]:
        """The frames of the split's train parts (``keys``) that test parts use; ``ValueError`` for ``refuse``."""
        if not keys:
            return set()
        missing = [
            str(self.root / PARTS[part].file) for part in TEST_PARTS if not (self.root / PARTS[part].file).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"HOI-QA {self.split}: test_overlap={test_overlap!r} checks train frames against the test files, "
                f"missing {', '.join(missing)} (or set test_overlap=keep)"
            )
        test = set().union(*(part_image_keys(part, read_part(self.root, part)) for part in TEST_PARTS))
        shared = set().union(*keys.values()) & test
        if shared and test_overlap == "refuse":
            listed = ", ".join(sorted(shared)[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
            raise ValueError(
                f"HOI-QA {self.split}: {len(shared)} train frames are also test frames: {listed}; "
                "training on them leaks the benchmark (test_overlap='skip' leaves them out)"
            )
        return shared

    def _sample_id(self, item: Item) -> str:
        if item.part in TRAIN_PARTS:  # train ids may repeat across QA pairs; the file position does not
            return f"hoi_qa/{item.part}/{item.position:07d}"
        tail = f"/{item.kind}" if item.kind else ""
        return f"hoi_qa/{item.part}/{safe_id_part(item.entry_id)}{tail}"

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``hoi_qa/<train part>/<position>``, ``hoi_qa/<part>/<id>[/refer|/identify]``, in item order."""
        return list(self._ids)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        part = PARTS[item.part]
        where = f"HOI-QA {item.part} entry {item.entry_id!r} ({part.file})"
        relpath = image_relpath(item.entry, where)
        path = self.frame_dirs[part.source] / relpath
        image = read_image(path, where)
        frame_size = FRAME_SIZES[part.source]
        image_size = (image.shape[1], image.shape[0])
        if abs(image_size[0] / image_size[1] / (frame_size[0] / frame_size[1]) - 1) > ASPECT_TOLERANCE:
            raise ValueError(
                f"{where}: {path} is {image_size[0]}x{image_size[1]}, not the {frame_size[0]}x{frame_size[1]} "
                f"aspect ratio its {part.source} boxes are annotated on"
            )
        conversation, tasks = [], []
        for question, answer, gt_pixels in self._qa_pairs(item, where):
            tag, bare = split_tag(question)
            task = classify_task(tag, bare, answer, where)
            tasks.append((tag, task, answer, gt_pixels))
            shown = question.strip() if self.task_tags == "keep" else bare
            conversation += [
                {"role": "user", "content": self._question_text(shown, image_size)},
                {
                    "role": "assistant",
                    "content": self._answer_text(task, bare, answer, gt_pixels, frame_size, image_size, where),
                },
            ]
        tag, task, answer, gt_pixels = tasks[-1]
        referral, kind = TASKS[task]
        meta = {
            "source": part.source,
            "part": item.part,
            "entry_id": item.entry_id,
            "image": relpath,
            "tag": tag,
            "task": task,
            "category": task,
            "referral": referral,
            "question": conversation[-2]["content"],
            "answer": conversation[-1]["content"],
            "frame_size": frame_size,
            "image_size": image_size,
        }
        boxes = None
        if kind == "box":
            gt = self._gt_boxes(answer, gt_pixels, frame_size, where)
            meta["gt_boxes"] = gt.astype(np.float32)
            boxes = rescale_boxes(gt, frame_size, image_size).astype(np.float32)[:, None]
        else:
            meta["gt_text"] = answer.strip()
            if kind == "hand":
                meta["hand"] = hand_answer(answer)
        return Sample(
            sample_id=self._ids[index],
            frames=image[None],
            frame_names=[PurePosixPath(relpath).stem],
            conversation=conversation,
            medium="image",
            boxes=boxes,
            meta=meta,
        )

    # ---- questions and answers -------------------------------------------------------------------

    def _qa_pairs(self, item: Item, where: str) -> list[tuple[str, str, np.ndarray | None]]:
        """``[(question with its tag, answer text, gt pixel boxes or None), ...]`` of an item.

        Box answers are text on the grid; a test answer given in pixels is written on the grid (nearest) and
        its pixels come along, so scoring uses the exact gt.
        """
        entry, spec = item.entry, PARTS[item.part]
        size = FRAME_SIZES[spec.source]
        if spec.layout == "conversation":
            turns = chat_turns(entry.get("conversations"), where)
            return [(turns[i]["content"], turns[i + 1]["content"], None) for i in range(0, len(turns), 2)]
        if spec.layout == "noun_box":
            noun, bbox = entry.get("noun"), entry.get("bbox")
            if not isinstance(noun, str) or not noun.strip():
                raise ValueError(f"{where}: 'noun' must be a non-empty string, got {noun!r}")
            pixels = pixel_boxes(bbox, where)
            if item.kind == "refer":
                return [(f"Where is the {noun.strip()}", format_grid_boxes(pixels_to_grid(pixels, size)), pixels)]
            return [(format_grid_boxes(pixels_to_grid(pixels, size, rounding="floor")), noun.strip(), None)]
        question, answer = entry.get("question"), entry.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{where}: 'question' must be a non-empty string, got {question!r}")
        tag, _ = split_tag(question)
        if tag == "refer":
            pixels = pixel_boxes(answer, where)
            return [(question, format_grid_boxes(pixels_to_grid(pixels, size)), pixels)]
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"{where}: the answer to a [{tag}] question must be non-empty text, got {answer!r}")
        return [(question, answer, None)]

    @staticmethod
    def _gt_boxes(answer: str, gt_pixels: np.ndarray | None, frame_size: tuple[int, int], where: str) -> np.ndarray:
        """``(K, 4)`` float64 gt boxes in pixels of the annotation frame."""
        if gt_pixels is not None:
            return gt_pixels
        parsed = parse_grid_boxes(answer)
        if not len(parsed) or parsed.dropped:
            raise ValueError(f"{where}: a box answer without a whole {{<x1><y1><x2><y2>}} box: {answer!r}")
        return grid_to_pixels(parsed.boxes, frame_size)

    def _question_text(self, question: str, image_size: tuple[int, int]) -> str:
        """The question, its grid boxes written as ``[x1, y1, x2, y2]`` pixels of the frame with ``"pixels"``."""
        if self.box_format == "grid":
            return question

        def pixels(match: re.Match) -> str:
            box = np.round(grid_to_pixels(parse_grid_boxes(match.group(0)).boxes, image_size))[0]
            return "[" + ", ".join(str(int(v)) for v in box) + "]"

        return re.sub(r"\{(?:\s*<[^<>]*>)+\s*\}", pixels, question)

    def _answer_text(
        self,
        task: str,
        question: str,
        answer: str,
        gt_pixels: np.ndarray | None,
        frame_size: tuple[int, int],
        image_size: tuple[int, int],
        where: str,
    ) -> str:
        """The assistant turn: as released (grid), the gt on the grid, or Qwen JSON in pixels of the frame."""
        if TASKS[task][1] != "box":
            return answer.strip()
        gt = self._gt_boxes(answer, gt_pixels, frame_size, where)
        if self.box_format == "pixels":
            return format_qwen_boxes(rescale_boxes(gt, frame_size, image_size), box_labels(task, question, len(gt)))
        return answer.strip()


# ---- registration --------------------------------------------------------------------------------


def required_paths(root: Path, split: str) -> list[Path]:
    """The split's JSON files and the frame folders of their sources (default layout)."""
    parts = SPLITS.get(split, ())
    sources = sorted({PARTS[part].source for part in parts})
    return [root / PARTS[part].file for part in parts] + [root / FRAME_FOLDERS[source] for source in sources]


@register_dataset("hoi_qa", family="hoi_ref", required_paths=required_paths, evaluated_splits=("test", *TEST_PARTS))
def build(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    frame_folders: dict[str, str] | None = None,
    box_format: str = "grid",
    task_tags: str = "strip",
    test_overlap: str = "skip",
) -> HoiQADataset:
    """HOI-QA ``split`` as :class:`HoiQADataset` reads it; frames are single images (``num_frames`` is unused)."""
    return HoiQADataset(root, split, frame_folders, box_format, task_tags, test_overlap)

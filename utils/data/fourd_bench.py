"""4D-Bench (4D object understanding) as released: multiple-choice QA and captioning on multi-view object videos.

Facts used, and where they come from (WenxuanZhu1103/4D-Bench, ``4D_Object_Question_Answering/`` and
``4D_Object_Captioning/``: READMEs, ``eval_code_example/*_exp.py``, ``code/mllm_gen_caption/*_exp.py``,
``code/eval_metrics/other_metrics/get_other_metrics_scores.py``):

* Every 4D object ``<uid>`` is a folder of multi-view renderings,
  ``4d_object_multi_view_videos/<uid>/view_<k>_rgb_white_bg.mp4``. Both tasks show a model views
  :data:`VIEWS` (1, 8 and 16), six uniformly sampled frames of each: 18 images ("every six images uniformly
  sampled from one video, each video captured from a different angle").
* QA, ``4d_qa.json``: ``{"<uid>_<n>": {..., "Answer index": 1..4, "Category": str}}``; what remains of an entry
  after those two keys (the question and its four choices) is what the model is given. The answer is scored
  by its letter (A..D = index 1..4), per category.
* Captioning, ``human_annotations.csv``: one row per object, ``folder_name`` (the uid) and five human captions
  ``caption_1`` .. ``caption_5``; a model caption is scored against all five. Models are asked for
  ``caption: <text>`` and the text after ``caption:`` is kept.

Choices where the sources say nothing (the most plausible reading, stated here):

* The QA entry's question is its ``Question`` (or ``question``) value; the choices are a ``Choices`` /
  ``Options`` value (any form :func:`~utils.data.dsr_bench.lettered_options` reads) or else the entry's other
  keys, each ending in its letter (``"A"``, ``"(A)"``, ``"Choice A"``, ``"Option A"``), in letter order.
  An entry with neither is a ``ValueError`` naming it.
* The 18 images are one sample of ``medium="image"`` (several pictures, not one video): ``frames`` is
  ``(V * F, H, W, 3)``, view after view, frames in time order within a view; ``frame_names`` are
  ``view<k>_<frame index>``. All views must have one size (a ``ValueError`` names the sample otherwise).
  ``num_frames``, when a run fixes it, is split evenly over the views (at least one each).
* ``sample_id`` is ``fourd_bench_qa/test/<key>`` and ``fourd_bench_caption/test/<uid>``. The caption sample's
  ``meta["references"]`` holds the five captions and ``meta["answer"]`` the first (the training target).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.dsr_bench import answer_letters, lettered_options
from utils.data.image_io import read_json
from utils.data.prompts import multiple_choice_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample
from utils.video.clip import read_clip
from utils.video.errors import VideoError
from utils.video.sampling import FrameSampling

TEST_SPLIT = "test"
QA_FILE = "4d_qa.json"
CAPTION_FILE = "human_annotations.csv"
VIDEO_FOLDER = "4d_object_multi_view_videos"
VIEWS = (1, 8, 16)
FRAMES_PER_VIEW = 6
NUM_REFERENCES = 5
ANSWER_INDEX, CATEGORY = "Answer index", "Category"
CHOICE_KEY = re.compile(r"^\s*(?:choice|option)?\s*\(?([A-Da-d])\)?\s*[.:]?\s*$", re.IGNORECASE)

MULTI_VIEW_INTRO = (
    "These {total} images show one object filmed from {views} angles: {per_view} frames sampled uniformly "
    "from each video, one video after the other, in time order."
)
CAPTION_QUESTION = (
    "Write one fluent English caption of this object: describe its appearance (shape, colour, texture and "
    "notable features) and the actions it performs, how it moves and behaves over time. Do not describe "
    "the background. Answer in the form 'caption: <your caption>'."
)


def video_file(folder: Path, uid: str, view: int) -> Path:
    """``<folder>/<uid>/view_<view>_rgb_white_bg.mp4``."""
    return folder / uid / f"view_{view}_rgb_white_bg.mp4"


@dataclass(frozen=True)
class ObjectItem:
    """One QA question or one object to caption.

    Attributes:
        sample_id: ``"<loader>/test/<key>"``.
        uid: the object's folder.
        question: the user turn's question (QA) or :data:`CAPTION_QUESTION`.
        answer: the reference: the right option ``"(B) text"`` or the first caption.
        meta: ``category`` and, for QA, ``options``; for captions, ``references``.
    """

    sample_id: str
    uid: str
    question: str
    answer: str
    meta: dict


class MultiViewDataset(Dataset):
    """Items about 4D objects, each shown as ``len(views) * frames_per_view`` images (see the module docstring)."""

    def __init__(
        self,
        items: Sequence[ObjectItem],
        video_folder: Path,
        views: Sequence[int] = VIEWS,
        frames_per_view: int = FRAMES_PER_VIEW,
    ):
        if not views or frames_per_view < 1:
            raise ValueError(f"need at least one view and one frame per view, got {views} and {frames_per_view}")
        self.items, self.video_folder = list(items), Path(video_folder)
        self.views, self.frames_per_view = tuple(int(v) for v in views), int(frames_per_view)

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no video)."""
        return [item.sample_id for item in self.items]

    def sample_meta(self, index: int) -> dict:
        """Item ``index``'s ``Sample.meta`` without reading its videos."""
        item = self.items[index]
        return {**item.meta, "uid": item.uid, "question": item.question, "answer": item.answer}

    def _views(self, item: ObjectItem) -> tuple[np.ndarray, list[str]]:
        """``(V * F, H, W, 3)`` frames of the views, and their names."""
        frames, names = [], []
        for view in self.views:
            path = video_file(self.video_folder, item.uid, view)
            try:
                clip = read_clip(path, FrameSampling(num_frames=self.frames_per_view))
            except VideoError as error:
                raise type(error)(error.path, f"sample {item.sample_id}: {error.reason}", error.frame) from None
            frames.append(clip.frames)
            names += [f"view{view}_{index:05d}" for index in clip.indices]
        sizes = {f.shape[1:3] for f in frames}
        if len(sizes) > 1:
            raise ValueError(f"sample {item.sample_id}: views {self.views} differ in size {sorted(sizes)}")
        return np.concatenate(frames), names

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        frames, names = self._views(item)
        intro = MULTI_VIEW_INTRO.format(total=len(frames), views=len(self.views), per_view=self.frames_per_view)
        return Sample(
            sample_id=item.sample_id,
            frames=frames,
            frame_names=names,
            conversation=[
                {"role": "user", "content": f"{intro}\n{item.question}"},
                {"role": "assistant", "content": item.answer},
            ],
            medium="image",
            meta=self.sample_meta(index),
        )


# --- reading the released files ------------------------------------------------------------------------------


def qa_choices(entry: dict, where: str) -> list[str]:
    """The entry's choices as ``["(A) text", ...]`` (a ``Choices`` / ``Options`` value, or lettered keys)."""
    for key in ("Choices", "choices", "Options", "options"):
        if key in entry:
            return lettered_options(entry[key], where)
    lettered = {}
    for key, value in entry.items():
        match = CHOICE_KEY.match(str(key))
        if match is not None:
            lettered[match.group(1).upper()] = value
    if len(lettered) < 2:
        raise ValueError(f"{where}: no choices (a 'Choices' list or keys 'A'..'D'), keys are {sorted(entry)}")
    return lettered_options({letter: lettered[letter] for letter in sorted(lettered)}, where)


def qa_items(root: Path) -> list[ObjectItem]:
    """Every question of ``root/4d_qa.json``, in file order."""
    path = Path(root) / QA_FILE
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object of questions")
    items = []
    for key, entry in data.items():
        where = f"question {key!r} of {path}"
        if not isinstance(entry, dict) or ANSWER_INDEX not in entry or CATEGORY not in entry:
            raise ValueError(f"{where}: expected {ANSWER_INDEX!r} and {CATEGORY!r}, got {str(entry)[:120]!r}")
        question = str(entry.get("Question", entry.get("question", ""))).strip()
        if not question:
            raise ValueError(f"{where}: no 'Question'")
        rest = {k: v for k, v in entry.items() if k not in (ANSWER_INDEX, CATEGORY, "Question", "question")}
        options = qa_choices(rest, where)
        index = entry[ANSWER_INDEX]
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= len(options):
            raise ValueError(f"{where}: {ANSWER_INDEX!r} must be 1..{len(options)}, got {index!r}")
        (letter,) = answer_letters(chr(ord("A") + index - 1), options, where)
        items.append(
            ObjectItem(
                sample_id=f"fourd_bench_qa/{TEST_SPLIT}/{key}",
                uid=str(key).split("_")[0],
                question=multiple_choice_question(question, options),
                answer=options[ord(letter) - ord("A")],
                meta={"key": key, "category": str(entry[CATEGORY]), "options": options, "raw_question": question},
            )
        )
    return items


def caption_items(root: Path) -> list[ObjectItem]:
    """One item per row of ``root/human_annotations.csv``, with its five captions as references."""
    path = Path(root) / CAPTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"missing annotation file {path}")
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    columns = ["folder_name", *(f"caption_{i}" for i in range(1, NUM_REFERENCES + 1))]
    if not rows or not set(columns) <= set(rows[0]):
        raise ValueError(f"{path}: expected columns {columns}, got {sorted(rows[0]) if rows else 'no rows'}")
    items, seen = [], set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        uid = row["folder_name"].strip()
        references = [row[column].strip() for column in columns[1:]]
        if not uid or not all(references) or uid in seen:
            raise ValueError(f"{path}, line {number}: an empty uid or caption, or uid {uid!r} repeats")
        seen.add(uid)
        items.append(
            ObjectItem(
                sample_id=f"fourd_bench_caption/{TEST_SPLIT}/{uid}",
                uid=uid,
                question=CAPTION_QUESTION,
                answer=references[0],
                meta={"category": "caption", "references": references},
            )
        )
    return items


def _frames_per_view(num_frames: int | None, views: Sequence[int], frames_per_view: int) -> int:
    return frames_per_view if num_frames is None else max(1, num_frames // len(views))


def _check_split(name: str, split: str) -> None:
    if split != TEST_SPLIT:
        raise ValueError(f"{name} has one split, {TEST_SPLIT!r}; got {split!r}")


def _qa_paths(root: Path, split: str) -> list[Path]:
    return [root / QA_FILE, root / VIDEO_FOLDER]


def _caption_paths(root: Path, split: str) -> list[Path]:
    return [root / CAPTION_FILE, root / VIDEO_FOLDER]


@register_dataset("fourd_bench_qa", family="videoqa", required_paths=_qa_paths, evaluated_splits=(TEST_SPLIT,))
def build_fourd_bench_qa(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    views: Sequence[int] = VIEWS,
    frames_per_view: int = FRAMES_PER_VIEW,
) -> MultiViewDataset:
    """4D-Bench QA (``root`` holds ``4d_qa.json`` and ``4d_object_multi_view_videos/``); one split, ``test``."""
    _check_split("fourd_bench_qa", split)
    frames = _frames_per_view(num_frames, views, frames_per_view)
    return MultiViewDataset(qa_items(Path(root)), Path(root) / VIDEO_FOLDER, views, frames)


@register_dataset(
    "fourd_bench_caption", family="videoqa", required_paths=_caption_paths, evaluated_splits=(TEST_SPLIT,)
)
def build_fourd_bench_caption(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    views: Sequence[int] = VIEWS,
    frames_per_view: int = FRAMES_PER_VIEW,
) -> MultiViewDataset:
    """4D-Bench captioning (``root`` holds ``human_annotations.csv`` and ``4d_object_multi_view_videos/``)."""
    _check_split("fourd_bench_caption", split)
    frames = _frames_per_view(num_frames, views, frames_per_view)
    return MultiViewDataset(caption_items(Path(root)), Path(root) / VIDEO_FOLDER, views, frames)

"""DSR-Bench (DSR Suite's dynamic spatial reasoning benchmark) as released, and the multiple-choice video dataset
it shares with VLM4D.

Facts used, and where they come from:

* DSR-Bench is 1,484 human-refined multiple-choice questions about in-the-wild (Koala-36M) videos
  (TencentARC/DSR_Suite ``README.md``). It ships as ``benchmark.parquet`` with columns ``videoID``, ``question``,
  ``options`` and ``answer``, the videos in a separate folder (the README's ``PATH_TO_PARQUET`` /
  ``PATH_TO_VIDEO_ROOT``).
* The paper evaluates with 32 uniformly sampled frames per video (DSR Suite also trains on 32 frames and its
  evaluation scripts use ``MAX_FRAMES = 32`` / ``--total_frames 32``); this loader reads 32 unless told
  otherwise, and the benchmark entry (:data:`evaluation.benchmarks.BENCHMARKS` ``"dsr_bench"``, ``num_frames``)
  makes 32 what the LLM sees by default (``run_inference --num-frames`` overrides both).
* Template questions come from twelve templates (``qa_temp.py`` / ``template.py`` of DSR Suite's data
  pipeline): a measured quantity (distance, direction, orientation, speed, speed comparison, direction
  prediction) under a *relative* viewpoint ("following the perspective of X": the observer moves with X) or an
  *absolute* one ("from the perspective of X at 3.0s": X's pose frozen at that time). Non-template questions
  were written by an LLM from 3D trajectories. VLMEvalKit's DSRBench names the 13 groups
  :data:`QUESTION_TYPES` (``abs_dis`` ... ``rel_dir_pred``, ``non_temp``) and reports accuracy per group.

Question type, per question: the first of :data:`TYPE_COLUMNS` the parquet has (a non-empty value is used as
it is); otherwise it is **derived from the wording** by :func:`question_type` (the template phrases above; a
question matching no template is ``non_temp``). Which of the two was used is recorded per sample
(``meta["category_source"]``: ``"column:<name>"`` or ``"wording"``).

Choices where the sources say nothing (the most plausible reading, stated here):

* ``options`` may be a list (or array) of strings, a JSON / Python list literal, a ``{"A": text}`` mapping or
  one option per line; an option may carry its letter (``"(A) x"``, ``"A. x"``, ``"A) x"``, ``"A: x"``) or not
  (then letters follow the order). ``answer`` may be a letter (``"B"``, ``"(B)"``, ``"B."``), a lettered option
  or an option's text. Anything else is a ``ValueError`` naming the row.
* ``videoID`` names a file under the video folder (option ``video_folder``, default :data:`VIDEO_FOLDER`),
  with ``.mp4`` added when it has no suffix and the bare name does not exist.
* Frames: ``num_frames`` uniform frames (the centre of each of ``num_frames`` equal segments, the repository's
  ``"uniform"`` sampling; VLMEvalKit's ``linspace`` includes both ends), with their timestamps, since the
  questions name times ("Between 2.0s and 5.0s").
* ``sample_id`` is ``dsr_bench/test/<row>`` (the row's position in the parquet); ``meta["video"]`` is ``videoID``.

A :class:`VideoQuestionDataset` item is a :class:`~utils.data.schema.Sample` whose user turn is
:func:`~utils.data.prompts.multiple_choice_question` and whose assistant turn (``meta["answer"]``) is the right
option as ``"(B) text"``; ``meta`` also has ``options``, ``category`` and ``question`` (the question as released).
:meth:`VideoQuestionDataset.sample_meta` gives that ``meta`` without reading the video (the scorers use it).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.prompts import MULTIPLE_CHOICE_INSTRUCTION, multiple_choice_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample
from utils.video.clip import read_clip
from utils.video.errors import VideoError
from utils.video.sampling import FrameSampling

TEST_SPLIT = "test"
"""DSR-Bench's one split."""

PARQUET_FILE = "benchmark.parquet"
VIDEO_FOLDER = "videos"
"""Where the videos sit under the benchmark root (loader option ``video_folder``; ``"."``: beside the parquet)."""

DSR_NUM_FRAMES = 32
"""Frames per video in the paper's evaluation (uniformly sampled)."""

REQUIRED_COLUMNS = ("videoID", "question", "options", "answer")
TYPE_COLUMNS = ("task_type", "question_type", "type", "Task", "category")
"""Columns that may hold the question type, in the order they are looked for."""

QUANTITIES = (
    ("compare the speed", "spd_comp"),
    ("predict the moving direction", "dir_pred"),
    ("how does the distance", "dis"),
    ("how does the direction", "dir"),
    ("how does the orientation", "ori"),
    ("how does the speed", "spd"),
)
"""Template phrase -> measured quantity, tried in order (speed comparison before speed)."""

NON_TEMPLATE = "non_temp"
QUESTION_TYPES = tuple(f"{frame}_{kind}" for frame in ("abs", "rel") for _, kind in QUANTITIES) + (NON_TEMPLATE,)
"""The 13 question types: absolute / relative viewpoint x six quantities, and the non-template questions."""

ABSOLUTE_VIEW = re.compile(r"from the perspective of .+? at \d+(?:\.\d+)?\s*s\b", re.IGNORECASE | re.DOTALL)
RELATIVE_VIEW = re.compile(r"following the perspective of\b", re.IGNORECASE)
LETTERED = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])[.):])\s*(.*)$", re.DOTALL)
"""An option with its letter: ``(A) x``, ``A. x``, ``A) x``, ``A: x``."""

COT_INSTRUCTION = "Think step by step, then give your final answer as 'Answer: <letter>'."
"""The last line of the user turn with ``prompt="cot"`` (instead of answering with the letter directly)."""

PROMPTS = ("direct", "cot")


def question_type(question: str) -> str:
    """One of :data:`QUESTION_TYPES` from the template wording of ``question`` (``non_temp`` if none fits)."""
    text = question.lower()
    kind = next((kind for phrase, kind in QUANTITIES if phrase in text), None)
    if kind is None:
        return NON_TEMPLATE
    if ABSOLUTE_VIEW.search(question):
        return f"abs_{kind}"
    if RELATIVE_VIEW.search(question):
        return f"rel_{kind}"
    return NON_TEMPLATE


def _letter(position: int) -> str:
    return chr(ord("A") + position)


def lettered_options(value: object, where: str) -> list[str]:
    """``["(A) text", ...]`` from the forms ``options`` is released in (see the module docstring)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str):
        text = value.strip()
        parsed = None
        if text[:1] in "[{":
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                try:
                    parsed = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    parsed = None
        value = parsed if parsed is not None else [line for line in text.splitlines() if line.strip()]
    if isinstance(value, dict):
        value = [f"({key}) {text}" for key, text in sorted(value.items(), key=lambda item: str(item[0]))]
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ValueError(f"{where}: options must be at least two choices, got {str(value)[:120]!r}")
    options = []
    for position, option in enumerate(value):
        text = str(option).strip()
        match = LETTERED.match(text)
        letter, body = (match.group(1) or match.group(2), match.group(3).strip()) if match else (None, text)
        if letter is not None and letter.upper() != _letter(position):
            raise ValueError(f"{where}: option {position} is lettered {letter!r}, expected {_letter(position)!r}")
        if not body:
            raise ValueError(f"{where}: option {_letter(position)} is empty")
        options.append(f"({_letter(position)}) {body}")
    return options


def option_text(option: str) -> str:
    """``"left"`` from ``"(B) left"``."""
    return option[option.index(")") + 1 :].strip()


def answer_letters(answer: object, options: Sequence[str], where: str, by_letter: bool = True) -> list[str]:
    """The letters ``answer`` names: a letter, a lettered option, or an option's text (every option with that text).

    ``by_letter=False`` reads ``answer`` as an option's text only (VLM4D). ``ValueError`` naming ``where`` if it
    names none of ``options``.
    """
    letters = [_letter(i) for i in range(len(options))]
    text = str(answer).strip()
    match = LETTERED.match(text) if by_letter and len(text) > 1 else None
    if by_letter and re.fullmatch(r"\(?[A-Za-z]\)?\.?", text):
        chosen = [text.strip("().").upper()]
    elif match is not None and (match.group(1) or match.group(2)).upper() in letters:
        chosen = [(match.group(1) or match.group(2)).upper()]
    else:
        wanted = " ".join(text.lower().split())
        chosen = [
            letter
            for letter, option in zip(letters, options)
            if " ".join(option_text(option).lower().split()) == wanted
        ]
    if not chosen or not set(chosen) <= set(letters):
        raise ValueError(f"{where}: answer {text[:80]!r} names none of the options {list(options)}")
    return chosen


# --- the dataset ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoQuestion:
    """One multiple-choice question about one video.

    Attributes:
        sample_id: ``"<loader>/<split>/<...>"``.
        video: the video file (for DSR-Bench possibly without its ``.mp4``, see :func:`resolve_video`).
        question: the question as released.
        options: ``("(A) text", ...)``.
        answers: the right letters (several only where options repeat the answer's text).
        category: question type, for per-category accuracy.
        meta: further facts kept in ``Sample.meta`` (ids, splits).
    """

    sample_id: str
    video: Path
    question: str
    options: tuple[str, ...]
    answers: tuple[str, ...]
    category: str
    meta: dict = field(default_factory=dict)


class VideoQuestionDataset(Dataset):
    """Multiple-choice questions about videos, ``num_frames`` frames per video (see the module docstring).

    Args:
        questions: the items, in order.
        num_frames: frames per sample, chosen by ``frame_sampling`` (``"uniform"``: one per equal segment).
        frame_sampling: a :class:`~utils.video.sampling.FrameSampling` strategy.
        train: jitter the frame choice (item ``i`` draws from ``default_rng([seed, i])``).
        seed: seeds the jitter.
        prompt: ``"direct"`` (answer with the letter) or ``"cot"`` (reason, then ``Answer: <letter>``).
    """

    def __init__(
        self,
        questions: Sequence[VideoQuestion],
        num_frames: int,
        frame_sampling: str = "uniform",
        train: bool = False,
        seed: int = 0,
        prompt: str = "direct",
    ):
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        self.questions = list(questions)
        ids = [question.sample_id for question in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("sample ids repeat")
        self.sampling = FrameSampling(frame_sampling, num_frames=num_frames)
        self.train, self.seed, self.prompt = train, seed, prompt

    def __len__(self) -> int:
        return len(self.questions)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no video)."""
        return [question.sample_id for question in self.questions]

    def sample_meta(self, index: int) -> dict:
        """Item ``index``'s ``Sample.meta`` (answer, options, category, question, ...) without reading its video."""
        question = self.questions[index]
        answer = question.options[ord(question.answers[0]) - ord("A")]
        return {
            **question.meta,
            "question": question.question,
            "options": list(question.options),
            "answer": answer,
            "answer_letters": list(question.answers),
            "category": question.category,
        }

    def user_turn(self, question: VideoQuestion) -> str:
        """The question, its options and the answering instruction of ``prompt``."""
        text = multiple_choice_question(question.question, list(question.options))
        if self.prompt == "cot":
            text = text.removesuffix(MULTIPLE_CHOICE_INSTRUCTION) + COT_INSTRUCTION
        return text

    def __getitem__(self, index: int) -> Sample:
        question = self.questions[index]
        rng = np.random.default_rng([self.seed, index])
        try:
            path = resolve_video(question.video, f"sample {question.sample_id}")
            clip = read_clip(path, self.sampling, train=self.train, rng=rng)
        except VideoError as error:
            raise type(error)(error.path, f"sample {question.sample_id}: {error.reason}", error.frame) from None
        meta = self.sample_meta(index)
        return Sample(
            sample_id=question.sample_id,
            frames=clip.frames,
            frame_names=clip.frame_names,
            conversation=[
                {"role": "user", "content": self.user_turn(question)},
                {"role": "assistant", "content": meta["answer"]},
            ],
            timestamps=clip.timestamps,
            meta={**meta, "frame_indices": clip.indices},
        )


# --- DSR-Bench -----------------------------------------------------------------------------------------------


def read_parquet_rows(path: Path) -> list[dict]:
    """The rows of a parquet file as dicts (``FileNotFoundError`` / ``ValueError`` naming it)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"missing benchmark file {path}")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises its own types for a file that is not parquet
        raise ValueError(f"{path} is not a readable parquet file: {error}") from error


def resolve_video(path: Path, where: str) -> Path:
    """``path``, or ``path`` with ``.mp4`` added when it has no suffix and the bare name is missing."""
    if not path.exists() and not path.suffix and path.with_name(f"{path.name}.mp4").exists():
        return path.with_name(f"{path.name}.mp4")
    if not path.exists():
        raise FileNotFoundError(f"{where}: missing video {path}" + ("" if path.suffix else " (nor with .mp4)"))
    return path


def dsr_questions(root: Path, video_folder: str = VIDEO_FOLDER) -> list[VideoQuestion]:
    """Every row of ``root/benchmark.parquet`` as a :class:`VideoQuestion` (videos under ``root/video_folder``)."""
    path = Path(root) / PARQUET_FILE
    rows = read_parquet_rows(path)
    if not rows:
        raise ValueError(f"{path} has no rows")
    missing = [column for column in REQUIRED_COLUMNS if column not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; it has {sorted(rows[0])}")
    type_column = next((column for column in TYPE_COLUMNS if column in rows[0]), None)
    folder = Path(root) / video_folder
    questions = []
    for position, row in enumerate(rows):
        where = f"row {position} of {path}"
        question, video_id = str(row["question"] or "").strip(), str(row["videoID"] or "").strip()
        if not question or not video_id:
            raise ValueError(f"{where}: empty question or videoID")
        options = lettered_options(row["options"], where)
        given = str(row[type_column]).strip() if type_column and row[type_column] is not None else ""
        category, source = (given, f"column:{type_column}") if given else (question_type(question), "wording")
        questions.append(
            VideoQuestion(
                sample_id=f"dsr_bench/{TEST_SPLIT}/{position}",
                video=folder / video_id,
                question=question,
                options=tuple(options),
                answers=tuple(answer_letters(row["answer"], options, where)),
                category=category,
                meta={"video": video_id, "row": position, "category_source": source},
            )
        )
    return questions


def _dsr_paths(root: Path, split: str) -> list[Path]:
    return [root / PARQUET_FILE]


@register_dataset("dsr_bench", family="videoqa", required_paths=_dsr_paths, evaluated_splits=(TEST_SPLIT,))
def build_dsr_bench(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    frame_sampling: str = "uniform",
    video_folder: str = VIDEO_FOLDER,
    prompt: str = "direct",
) -> VideoQuestionDataset:
    """DSR-Bench (``root`` holds ``benchmark.parquet`` and ``video_folder``); one split, ``test``.

    ``num_frames``: frames per video, ``None``: the paper's :data:`DSR_NUM_FRAMES` (32), uniformly sampled.
    Other options: see :class:`VideoQuestionDataset`.
    """
    if split != TEST_SPLIT:
        raise ValueError(f"dsr_bench has one split, {TEST_SPLIT!r}; got {split!r}")
    questions = dsr_questions(Path(root), video_folder)
    frames = DSR_NUM_FRAMES if num_frames is None else num_frames
    return VideoQuestionDataset(questions, frames, frame_sampling, train, seed, prompt)

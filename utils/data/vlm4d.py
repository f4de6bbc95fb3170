"""VLM4D (spatiotemporal awareness benchmark) as released: multiple-choice questions about real and synthetic videos.

Facts used, and where they come from (ShijieZhou-UCLA/VLM4D: ``README.md``, ``data/real_mc.json``,
``data/synthetic_mc.json``, ``acc_final_statistics.py``):

* Each file is a JSON list of questions ``{"id": "validation_<n>", "video": <Hugging Face URL>,
  "question_type": "multiple-choice", "question", "choices": {"A".."D": text}, "answer": <text of the right
  choice>}``. The answer is the choice's **text**, not its letter, and counting questions write answers and
  choices as integers (232 answers of ``real_mc.json``). One real question repeats its answer under two
  letters (``validation_633``); both letters are right.
* Video URLs are ``https://huggingface.co/datasets/shijiezhou/VLM4D/resolve/main/<path>``, ``<path>`` being
  ``videos_real/{davis,youtube-vos,ego4d}/<name>.mp4`` or ``videos_synthetic/<name>.mp4``; the dataset
  repository keeps the videos at ``<path>``.
* Splits of the official table (``acc_final_statistics.py``): a **real** question is exo-centric when the
  number in its id is at most :data:`LAST_EXO_ID` (922: the DAVIS and YouTube-VOS clips) and ego-centric
  above (Ego4D); a **synthetic** question is false-premise ("FP") when its answer, stripped and lower-cased,
  is ``"no"`` or starts with ``"no "`` (``"no car there"``; ``"not moving"`` is directional), directional
  otherwise. Accuracies are over questions: real, synthetic and overall pool their questions.
* DSR Suite evaluates VLM4D with ``--total_frames 32``; this loader reads 32 uniformly sampled frames unless told
  otherwise (VLM4D's own default is 10).

On disk, ``<root>`` holds ``real_mc.json`` and ``synthetic_mc.json`` and the videos at their URL paths
(``<root>/videos_real/davis/aerobatics.mp4``; option ``video_folder`` moves them). Splits: ``real``,
``synthetic`` and ``all`` (both files, real first: the official overall). ``sample_id`` is
``vlm4d/<real|synthetic>/<id>``; ``meta["category"]`` is ``real/exo``, ``real/ego``, ``synthetic/directional``
or ``synthetic/false_premise`` and ``meta["source"]`` is ``real`` or ``synthetic``. Options are lettered as the
file letters them and the reference answer is the right option as ``"(B) left"`` (see
:class:`~utils.data.dsr_bench.VideoQuestionDataset`); ``meta["answer_text"]`` keeps the released answer as text.
"""

from __future__ import annotations

import re
from pathlib import Path

from utils.data.dsr_bench import VideoQuestion, VideoQuestionDataset, answer_letters
from utils.data.image_io import read_json
from utils.data.registry import register_dataset

SOURCE_FILES = {"real": "real_mc.json", "synthetic": "synthetic_mc.json"}
"""The released question files by source."""

SPLITS = {"real": ("real",), "synthetic": ("synthetic",), "all": ("real", "synthetic")}
"""Split -> the sources it reads, in order."""

LAST_EXO_ID = 922
"""Real questions numbered up to this are exo-centric (DAVIS, YouTube-VOS), later ones ego-centric (Ego4D)."""

VLM4D_NUM_FRAMES = 32
"""Frames per video when the loader is given none (DSR Suite's VLM4D runs)."""

CATEGORIES = ("real/exo", "real/ego", "synthetic/directional", "synthetic/false_premise")
CHOICE_LETTERS = ("A", "B", "C", "D")
_URL_PATH = re.compile(r"/resolve/[^/]+/(.+)$")
_ID_NUMBER = re.compile(r"_(\d+)$")


def is_false_premise(answer: object) -> bool:
    """VLM4D's false-premise test: the answer, stripped and lower-cased, is ``"no"`` or starts with ``"no "``."""
    text = str(answer).strip().lower()
    return text == "no" or text.startswith("no ")


def id_number(question_id: str, where: str) -> int:
    """``1371`` from ``"validation_1371"`` (``ValueError`` naming ``where`` without a trailing number)."""
    match = _ID_NUMBER.search(question_id)
    if match is None:
        raise ValueError(f"{where}: id {question_id!r} does not end with _<number>")
    return int(match.group(1))


def category(source: str, question_id: str, answer: object, where: str) -> str:
    """One of :data:`CATEGORIES`: real questions by id (exo up to :data:`LAST_EXO_ID`), synthetic by answer."""
    if source == "real":
        return "real/exo" if id_number(question_id, where) <= LAST_EXO_ID else "real/ego"
    return "synthetic/false_premise" if is_false_premise(answer) else "synthetic/directional"


def video_relative_path(url: str, where: str) -> Path:
    """``videos_real/davis/x.mp4`` from the question's Hugging Face URL (or a relative path as it is)."""
    match = _URL_PATH.search(url)
    if match is not None:
        return Path(match.group(1))
    if "://" in url or Path(url).is_absolute():
        raise ValueError(f"{where}: video {url!r} is neither a Hugging Face 'resolve' URL nor a relative path")
    return Path(url)


def vlm4d_questions(root: Path, source: str, video_folder: str = ".") -> list[VideoQuestion]:
    """The questions of ``root/<source file>`` (``source``: ``real`` or ``synthetic``)."""
    path = Path(root) / SOURCE_FILES[source]
    items = read_json(path)
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a non-empty JSON list of questions")
    questions = []
    for position, item in enumerate(items):
        where = f"item {position} of {path}"
        if not isinstance(item, dict) or not {"id", "video", "question", "choices", "answer"} <= set(item):
            raise ValueError(f"{where}: expected id, video, question, choices and answer, got {str(item)[:120]!r}")
        choices = item["choices"]
        if not isinstance(choices, dict) or tuple(sorted(choices)) != CHOICE_LETTERS:
            raise ValueError(f"{where}: choices must map exactly {CHOICE_LETTERS} to texts, got {choices!r}")
        question_id, question = str(item["id"]), str(item["question"]).strip()
        if not question:
            raise ValueError(f"{where}: empty question")
        options = tuple(f"({letter}) {str(choices[letter]).strip()}" for letter in CHOICE_LETTERS)
        questions.append(
            VideoQuestion(
                sample_id=f"vlm4d/{source}/{question_id}",
                video=Path(root) / video_folder / video_relative_path(str(item["video"]), where),
                question=question,
                options=options,
                answers=tuple(answer_letters(item["answer"], options, where, by_letter=False)),
                category=category(source, question_id, item["answer"], where),
                meta={"id": question_id, "source": source, "answer_text": str(item["answer"]), "url": item["video"]},
            )
        )
    return questions


def _vlm4d_paths(root: Path, split: str) -> list[Path]:
    return [root / SOURCE_FILES[source] for source in SPLITS.get(split, ())]


@register_dataset("vlm4d", family="videoqa", required_paths=_vlm4d_paths, evaluated_splits=tuple(SPLITS))
def build_vlm4d(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    frame_sampling: str = "uniform",
    video_folder: str = ".",
    prompt: str = "direct",
) -> VideoQuestionDataset:
    """VLM4D (``root`` holds ``real_mc.json``, ``synthetic_mc.json`` and the videos at their URL paths under
    ``video_folder``); splits ``real``, ``synthetic`` and ``all``. ``num_frames`` ``None``: :data:`VLM4D_NUM_FRAMES`.
    Other options: see :class:`~utils.data.dsr_bench.VideoQuestionDataset` (``prompt="cot"`` asks for reasoning
    first, as VLM4D's chain-of-thought runs do)."""
    if split not in SPLITS:
        raise ValueError(f"vlm4d splits are {sorted(SPLITS)}, got {split!r}")
    questions = [q for source in SPLITS[split] for q in vlm4d_questions(Path(root), source, video_folder)]
    frames = VLM4D_NUM_FRAMES if num_frames is None else num_frames
    return VideoQuestionDataset(questions, frames, frame_sampling, train, seed, prompt)

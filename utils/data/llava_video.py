"""LLaVA-Video-178K (LLaVA-Video's video instruction data), as released, as RGA3 trains on it.

On disk (huggingface.co/datasets/lmms-lab/LLaVA-Video-178K, its README ``configs`` and file tree),
``<root>`` is the ``LLaVA-Video-178K`` folder, one subset folder per duration and source,
``<duration>_<source>/`` with ``<duration>`` one of :data:`DURATIONS`:

* sources ``academic_v0_1`` and ``youtube_v0_1`` (LLaVA-Video's own data: ``*cap*.json`` captions,
  ``*oe*.json`` open-ended and ``*mc*.json`` multiple-choice QA, e.g.
  ``0_30_s_academic_v0_1/0_30_s_academic_oe_v0_1_qa_processed.json``), and the public sets re-released
  in the same format, ``activitynetqa`` (open-ended), ``nextqa`` (open-ended and multiple-choice) and
  ``perceptiontest`` (multiple-choice), e.g. ``0_30_s_nextqa/0_30_s_nextqa_mc_qa_processed.json``;
* the videos, released as ``<subset>_videos_<n>.tar.gz`` in the subset folder and extracted there:
  an item's ``video`` (e.g. ``ActivityNet-QA/...mp4``) is relative to its subset folder. RGA3
  (``utils/videoqa_dataset.py``) opens ``<root>/<data_source>/<video>``, ``data_source`` being the
  subset folder's name, the same file.

A JSON file is a list of LLaVA-style items ``{"id", "conversations", "data_source", "video"}`` with
``<image>`` marking the video in the first human turn; its kind (:data:`KINDS`) is the ``cap`` /
``oe`` / ``mc`` word of its file name. Multiple-choice questions list their options one per line
(``"A. ..."``), which become ``meta["options"]`` (``["(A) ...", ...]``). With ``mc_prompt="benchmark"`` the
user turn of a multiple-choice item is rewritten as the multiple-choice benchmarks (DSR-Bench, VLM4D, ...) ask:
:func:`utils.data.prompts.multiple_choice_question` (``(A) text`` lines and their instruction), so a model
trained on these items is evaluated with the prompt it was trained on. With ``mc_answer="option_text"`` the
assistant turn of a multiple-choice item is the chosen option's text (``"4.9 m"``) instead of its letter; the
multiple-choice scorers read such a reply as that option (:func:`evaluation.dynamic_scoring.final_choice`).

RGA3 trains on the ActivityNet-QA, NExT-QA and PerceptionTest files of every duration (it globs
``**/*activitynetqa*.json``, ``**/*nextqa*.json``, ``**/*perceptiontest*.json``), the default
``sources`` (:data:`RGA3_SOURCES`). Its reader then decodes 32 frames per video whatever frame count
the run configures (``read_uniform_frames(video_path)`` keeps its default ``num_frames=32``); here the
configured ``num_frames`` is what every sample has (:func:`utils.video.sampling.uniform_indices`: segment
centres, a random frame of each segment in training), read through :func:`utils.video.clip.read_clip`
(only the chosen frames are decoded). RGA3 also replaces an unreadable video by the next item; here
the error names the item and file and training counts it as a skip (:mod:`utils.data.robust`).

Items: subset folders in name order, their JSON files in name order, items in file order;
``sample_id`` ``llava_video/train/<file stem>/<position in the file>``. ``meta``: ``answer`` (the
last assistant turn), ``category`` (``caption`` / ``open_ended`` / ``multi_choice``), ``options``
(multiple choice), ``source``, ``duration``, ``id``, ``video``, ``data_source``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.llava_conversation import chat_turns, final_answer, media_path, read_items
from utils.data.prompts import multiple_choice_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample
from utils.video.clip import read_clip
from utils.video.errors import VideoError
from utils.video.sampling import FrameSampling

SPLIT = "train"
DURATIONS = ("0_30_s", "30_60_s", "1_2_m", "2_3_m")
"""Video-length buckets of the release (folder name prefixes)."""

KINDS = {"cap": "caption", "oe": "open_ended", "mc": "multi_choice"}
"""File-name word -> the kind of its items (``meta["category"]``)."""

KIND_NAMES = tuple(KINDS.values())

RGA3_SOURCES = ("activitynetqa", "nextqa", "perceptiontest")
"""The sources RGA3's general video-QA data reads."""

SUBSET_FOLDER = re.compile(r"^(" + "|".join(DURATIONS) + r")_(.+)$")
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\s*(.+?)\s*$")
"""One option line of a multiple-choice question: ``A. text``, ``A) text`` or ``(A) text``."""
MC_PROMPTS = ("as_released", "benchmark")
"""How a multiple-choice user turn is worded: as in the file, or as the multiple-choice benchmarks word it."""
MC_ANSWERS = ("letter", "option_text")
"""How a multiple-choice answer is written: the option's letter, as released, or the option's text."""


def file_kind(path: Path) -> str | None:
    """The kind of a JSON file by the ``cap`` / ``oe`` / ``mc`` word of its name, or ``None``."""
    words = [word for word in path.stem.split("_") if word in KINDS]
    return KINDS[words[0]] if len(set(words)) == 1 else None


def question_options(question: str) -> list[str]:
    """``["(A) text", ...]`` of the option lines of a multiple-choice question (none: ``[]``)."""
    options = []
    for line in question.splitlines():
        match = OPTION_LINE.match(line)
        if match and match.group(1) == chr(ord("A") + len(options)):
            options.append(f"({match.group(1)}) {match.group(2)}")
    return options


def question_stem(question: str, where: str) -> str:
    """The question of a multiple-choice user turn: its lines before the options (and an ``Options:`` line).

    Raises:
        ValueError: naming ``where`` if nothing precedes the options.
    """
    stem = []
    for line in question.splitlines():
        if OPTION_LINE.match(line):
            break
        stem.append(line)
    if stem and stem[-1].strip().rstrip(":").lower() in ("options", "choices"):
        stem.pop()
    text = "\n".join(stem).strip()
    if not text:
        raise ValueError(f"{where}: a multiple-choice turn with no question before its options: {question!r}")
    return text


class LLaVAVideoDataset(Dataset):
    """LLaVA-Video-178K video question answering / captioning, ``num_frames`` frames per sample.

    Args:
        root: the ``LLaVA-Video-178K`` folder.
        num_frames: frames per sample (uniform; ``None``: every frame).
        train: jitter the frames within their segments (drawn from ``(seed, index)``).
        seed: see ``train``.
        sources: which sources to read (default :data:`RGA3_SOURCES`).
        durations: which duration buckets to read (default all).
        kinds: which kinds of :data:`KINDS` values to read (default all).
        mc_prompt: one of :data:`MC_PROMPTS` (see the module docstring).
        mc_answer: one of :data:`MC_ANSWERS` (see the module docstring).
        questions_per_sample: items about one video (same file, same ``video``) asked in turn in one sample, a
            multi-turn conversation on one read of its frames (the collator trains every answer): a video costs
            far more tokens than a question. Items are grouped per video in an order drawn from ``seed``; a
            video's last group may be smaller. ``1``: one item per sample.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int | None,
        train: bool = False,
        seed: int = 0,
        sources: tuple[str, ...] | list[str] = RGA3_SOURCES,
        durations: tuple[str, ...] | list[str] = DURATIONS,
        kinds: tuple[str, ...] | list[str] = KIND_NAMES,
        mc_prompt: str = "as_released",
        questions_per_sample: int = 1,
        mc_answer: str = "letter",
    ):
        if (
            isinstance(questions_per_sample, bool)
            or not isinstance(questions_per_sample, int)
            or questions_per_sample < 1
        ):
            raise ValueError(
                f"llava_video: questions_per_sample must be a positive integer, got {questions_per_sample!r}"
            )
        if mc_prompt not in MC_PROMPTS:
            raise ValueError(f"llava_video: mc_prompt must be one of {MC_PROMPTS}, got {mc_prompt!r}")
        if mc_answer not in MC_ANSWERS:
            raise ValueError(f"llava_video: mc_answer must be one of {MC_ANSWERS}, got {mc_answer!r}")
        self.mc_prompt, self.mc_answer = mc_prompt, mc_answer
        bad_count = isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1
        if num_frames is not None and bad_count:
            raise ValueError(f"llava_video: num_frames must be a positive integer or None, got {num_frames!r}")
        unknown = sorted(set(durations) - set(DURATIONS)) + sorted(set(kinds) - set(KIND_NAMES))
        if unknown or not sources or not durations or not kinds:
            raise ValueError(
                f"llava_video: durations must be some of {DURATIONS} and kinds some of {KIND_NAMES}, "
                f"sources non-empty; got sources {list(sources)}, durations {list(durations)}, kinds {list(kinds)}"
            )
        self.root, self.train, self.seed = Path(root), train, seed
        self.sampling = FrameSampling("uniform", num_frames=num_frames)
        self.items: list[tuple[Path, int, str, dict]] = []  # (json file, position, kind, item)
        folders = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for folder in folders:
            match = SUBSET_FOLDER.match(folder.name)
            if not match or match.group(1) not in durations or match.group(2) not in sources:
                continue
            for path in sorted(folder.glob("*.json")):
                kind = file_kind(path)
                if kind in kinds:
                    self.items += [(path, position, kind, item) for position, item in enumerate(read_items(path))]
        if not self.items:
            raise FileNotFoundError(
                f"llava_video: no {list(kinds)} JSON file of sources {list(sources)} in "
                f"{self.root}/<{'|'.join(durations)}>_<source>/"
            )
        self.groups = self._group(questions_per_sample)

    def _group(self, questions_per_sample: int) -> list[list[int]]:
        """Item indices per sample (see ``questions_per_sample``)."""
        if questions_per_sample == 1:
            return [[index] for index in range(len(self.items))]
        by_video: dict[tuple[Path, object], list[int]] = {}
        for index, (path, _, _, item) in enumerate(self.items):
            by_video.setdefault((path, item.get("video")), []).append(index)
        rng = np.random.default_rng(self.seed)
        groups = []
        for members in by_video.values():
            members = [members[i] for i in rng.permutation(len(members))]
            groups += [members[i : i + questions_per_sample] for i in range(0, len(members), questions_per_sample)]
        return groups

    def __len__(self) -> int:
        return len(self.groups)

    def _sample_id(self, group: list[int]) -> str:
        path = self.items[group[0]][0]
        return f"llava_video/{SPLIT}/{path.stem}/" + "+".join(str(self.items[i][1]) for i in group)

    def sample_ids(self) -> list[str]:
        """``llava_video/train/<file stem>/<position in the file>`` (positions joined by ``+`` for a group)."""
        return [self._sample_id(group) for group in self.groups]

    def _turns(self, index: int) -> tuple[list[dict[str, str]], dict]:
        """Item ``index``'s chat turns and meta."""
        path, position, kind, item = self.items[index]
        where = f"llava_video/{SPLIT}/{path.stem}/{position} (id {item.get('id')!r} in {path})"
        conversation = chat_turns(item.get("conversations"), where)
        meta = {
            "answer": final_answer(conversation),
            "category": kind,
            "source": SUBSET_FOLDER.match(path.parent.name).group(2),
            "duration": SUBSET_FOLDER.match(path.parent.name).group(1),
            "id": item.get("id"),
            "video": item.get("video"),
            "data_source": item.get("data_source"),
        }
        if kind == "multi_choice":
            turn = next(t for t in reversed(conversation) if t["role"] == "user")
            options = question_options(turn["content"])
            if len(options) < 2:
                raise ValueError(f"{where}: a multiple-choice question without 'A. ...' lines: {turn['content']!r}")
            meta["options"] = options
            if self.mc_prompt == "benchmark":
                turn["content"] = multiple_choice_question(question_stem(turn["content"], where), options)
            if self.mc_answer == "option_text":
                texts = {option[1]: option[4:] for option in options}  # "(A) 4.9 m" -> {"A": "4.9 m"}
                letter = meta["answer"].strip().strip("().")
                if letter not in texts:
                    raise ValueError(f"{where}: the answer {meta['answer']!r} is not one of the options' letters")
                conversation[-1]["content"] = meta["answer"] = texts[letter]
        return conversation, meta

    def __getitem__(self, index: int) -> Sample:
        group = self.groups[index]
        sample_id = self._sample_id(group)
        conversation, meta = [], {}
        for member in group:
            turns, meta = self._turns(member)  # the meta of the last question (its answer is the last turn)
            conversation += turns
        path, _, _, item = self.items[group[0]]
        where = f"{sample_id} (id {item.get('id')!r} in {path})"
        video_path = media_path(path.parent, item.get("video"), where, "video")
        try:
            clip = read_clip(
                video_path, self.sampling, threads=1, train=self.train, rng=np.random.default_rng([self.seed, index])
            )
        except VideoError as error:
            raise type(error)(error.path, f"{where}: {error.reason}", error.frame) from None
        return Sample(
            sample_id,
            clip.frames,
            clip.frame_names,
            conversation,
            timestamps=clip.timestamps,
            medium="video",
            meta=meta,
        )


def _llava_video_paths(root: Path, split: str) -> list[Path]:
    return [root]


@register_dataset("llava_video", family="videoqa", required_paths=_llava_video_paths)
def build_llava_video(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    sources: tuple[str, ...] | list[str] = RGA3_SOURCES,
    durations: tuple[str, ...] | list[str] = DURATIONS,
    kinds: tuple[str, ...] | list[str] = KIND_NAMES,
    mc_prompt: str = "as_released",
    questions_per_sample: int = 1,
    mc_answer: str = "letter",
) -> LLaVAVideoDataset:
    """LLaVA-Video-178K as released (``root`` = the ``LLaVA-Video-178K`` folder); one split, ``train``.

    Every sample has ``num_frames`` frames (fewer only when the video has fewer). Options: ``sources``
    (default RGA3's: ActivityNet-QA, NExT-QA, PerceptionTest), ``durations``, ``kinds``, ``mc_prompt``,
    ``questions_per_sample``, ``mc_answer``.
    """
    if split != SPLIT:
        raise ValueError(f"llava_video has one split, {SPLIT!r}; got {split!r}")
    return LLaVAVideoDataset(
        root, num_frames, train, seed, sources, durations, kinds, mc_prompt, questions_per_sample, mc_answer
    )

"""Synthetic dynamic spatial reasoning data (:mod:`utils.synthetic.dynamic_world` videos, questions from
:mod:`utils.dynamic.qa_templates`) written in the formats the real data comes in.

* The evaluated split as DSR-Bench (:func:`write_dsr_bench`): ``<root>/benchmark.parquet``, one row per
  question with :data:`DSR_BENCH_SCHEMA` (``videoID`` the video's file stem, ``question`` the bare question,
  ``options`` the four ``"A. text"`` strings, ``answer`` the letter, ``task_type`` the DSR-Bench task name),
  the videos as ``<root>/videos/<videoID>.mp4``. Beside them, ``<root>/ground_truth.json`` (one record per
  row, in row order: the exact value, objects, frames and observer) and ``<root>/worlds/<videoID>.npz`` (the
  trajectories and camera, :func:`write_world`) keep what the answers were computed from.
* The training split as LLaVA-Video-178K-style conversations (:func:`write_training_conversations`), read by
  :class:`utils.data.llava_video.LLaVAVideoDataset` with ``sources=("dsr_synthetic",)``:
  ``<root>/0_30_s_dsr_synthetic/0_30_s_dsr_synthetic_mc_qa_processed.json`` (a list of
  ``{"id", "conversations", "data_source", "video", "question_type"}``; the human turn is ``<video>``, the
  question, ``Options:`` and one ``"A. text"`` line per option, then :data:`ANSWER_INSTRUCTION`; the answer
  turn is the letter, as DSR Suite's training conversations have it) with the videos in
  ``<root>/0_30_s_dsr_synthetic/videos/``.

:func:`generate_split` makes, renders and writes one split; within it question types are balanced
(:func:`~utils.dynamic.qa_templates.balance_types`) and the skipped ill-posed questions are counted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from utils.dynamic.qa_templates import Question, balance_types, generate_questions
from utils.synthetic.dynamic_world import DynamicWorld, DynamicWorldConfig, make_world, render_world
from utils.synthetic.rooms import room_rng
from utils.video.encode import write_video

DSR_BENCH_SCHEMA = pa.schema(
    [
        ("videoID", pa.string()),
        ("question", pa.string()),
        ("options", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("task_type", pa.string()),
    ]
)
"""Columns of ``benchmark.parquet``."""

TRAINING_SOURCE = "dsr_synthetic"
TRAINING_SUBSET = f"0_30_s_{TRAINING_SOURCE}"
"""LLaVA-Video-178K subset folder (duration bucket ``0_30_s``, source ``dsr_synthetic``)."""
TRAINING_FILE = f"{TRAINING_SUBSET}_mc_qa_processed.json"
ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
SPLIT_KINDS = ("train", "eval")
"""``train`` is written as training conversations, ``eval`` as DSR-Bench."""


@dataclass
class SplitSummary:
    """What :func:`generate_split` wrote: ``videos``, ``questions`` per task type (after balancing),
    ``generated`` questions before balancing, ``skipped`` ill-posed queries by ``"<type>:<reason>"``."""

    videos: int
    questions: Counter
    generated: int
    skipped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "videos": self.videos,
            "questions": dict(sorted(self.questions.items())),
            "generated": self.generated,
            "skipped": dict(sorted(self.skipped.items())),
        }


def write_world(path: Path, world: DynamicWorld) -> None:
    """``world``'s ground truth as an ``.npz``: ``positions (N, T, 3)``, ``yaws (N, T)``, ``radii (N,)``,
    ``kinds``, ``colours``, ``camera_poses (T, 4, 4)``, ``intrinsics (3, 3)``, ``timestamps (T,)``,
    ``num_video_frames``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        positions=world.positions,
        yaws=world.yaws,
        radii=world.radii,
        kinds=np.array(world.kinds),
        colours=np.array(world.colours),
        camera_poses=world.camera_poses,
        intrinsics=world.intrinsics,
        timestamps=world.timestamps,
        num_video_frames=world.num_video_frames,
    )


def read_world(path: Path) -> DynamicWorld:
    """A world written by :func:`write_world`."""
    with np.load(path) as saved:
        return DynamicWorld(
            video_id=Path(path).stem,
            kinds=[str(kind) for kind in saved["kinds"]],
            colours=[str(colour) for colour in saved["colours"]],
            radii=saved["radii"],
            positions=saved["positions"],
            yaws=saved["yaws"],
            camera_poses=saved["camera_poses"],
            intrinsics=saved["intrinsics"],
            timestamps=saved["timestamps"],
            num_video_frames=int(saved["num_video_frames"]),
        )


def split_questions(
    split: str, seed: int, count: int, questions_per_type: int = 1
) -> dict[tuple[str, str], Question]:
    """``{(video_id, question text): Question}`` of every question :func:`generate_split` asks about the ``count``
    worlds of ``split`` at generation seed ``seed`` (before balancing), recomputed from the worlds alone (nothing is
    rendered): what each question is about and its exact value, which the training conversations do not carry."""
    questions = {}
    for index in range(count):
        world = make_world(seed, split, index)
        asked, _ = generate_questions(world.scene(), room_rng(seed, split, index, 2), questions_per_type)
        questions.update({(world.video_id, question.question): question for question in asked})
    return questions


def _ground_truth(video_id: str, question: Question) -> dict:
    query = question.query
    return {
        "videoID": video_id,
        "task_type": question.question_type,
        "value": question.value,
        "targets": list(query.targets),
        "frames": list(query.frames),
        "observer": query.observer,
    }


def write_dsr_bench(root: str | Path, entries: list[tuple[str, Question]]) -> Path:
    """``<root>/benchmark.parquet`` and ``<root>/ground_truth.json`` of ``entries`` ``[(videoID, question)]``
    (the videos are written separately, :func:`generate_split`); returns the parquet's path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    columns = {
        "videoID": [video_id for video_id, _ in entries],
        "question": [question.question for _, question in entries],
        "options": [question.lettered_options() for _, question in entries],
        "answer": [question.answer for _, question in entries],
        "task_type": [question.question_type for _, question in entries],
    }
    path = root / "benchmark.parquet"
    pq.write_table(pa.table(columns, schema=DSR_BENCH_SCHEMA), path)
    records = [_ground_truth(video_id, question) for video_id, question in entries]
    (root / "ground_truth.json").write_text(json.dumps(records, indent=1) + "\n")
    return path


def training_item(video_id: str, position: int, question: Question) -> dict:
    """One LLaVA-Video-style item asking ``question`` about ``videos/<video_id>.mp4``."""
    prompt = "\n".join(["<video>", question.question, "Options:", *question.lettered_options(), ANSWER_INSTRUCTION])
    return {
        "id": f"{video_id}_{position:02d}",
        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": question.answer}],
        "data_source": TRAINING_SUBSET,
        "video": f"videos/{video_id}.mp4",
        "question_type": question.question_type,
    }


def write_training_conversations(root: str | Path, entries: list[tuple[str, Question]]) -> Path:
    """``<root>/<TRAINING_SUBSET>/<TRAINING_FILE>`` of ``entries`` ``[(video_id, question)]``; returns it."""
    path = Path(root) / TRAINING_SUBSET / TRAINING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    positions: Counter = Counter()
    items = []
    for video_id, question in entries:
        items.append(training_item(video_id, positions[video_id], question))
        positions[video_id] += 1
    path.write_text(json.dumps(items, indent=1) + "\n")
    return path


def split_video_folder(root: str | Path, split: str) -> Path:
    """Where :func:`generate_split` writes the MP4s of ``split`` (``"train"`` or ``"eval"``)."""
    if split not in SPLIT_KINDS:
        raise ValueError(f"split must be one of {SPLIT_KINDS}, got {split!r}")
    return Path(root) / TRAINING_SUBSET / "videos" if split == "train" else Path(root) / "videos"


def generate_split(
    root: str | Path,
    split: str,
    count: int,
    seed: int,
    config: DynamicWorldConfig | None = None,
    questions_per_type: int = 1,
    progress: bool = False,
) -> SplitSummary:
    """Make, render and write videos ``0 .. count - 1`` of ``split`` (``"train"``: training conversations,
    ``"eval"``: DSR-Bench) under ``root`` with generation seed ``seed``, up to ``questions_per_type`` questions
    of every type per video, then balance the types over the split."""
    config = config or DynamicWorldConfig()
    videos = split_video_folder(root, split)
    videos.mkdir(parents=True, exist_ok=True)
    entries, skipped = [], Counter()
    for index in tqdm(range(count), desc=f"{split} videos", disable=not progress):
        world = make_world(seed, split, index, config)
        frames = render_world(world, config, room_rng(seed, split, index, 1))
        write_video(videos / f"{world.video_id}.mp4", frames.colors, fps=config.fps)
        write_world(Path(root) / "worlds" / f"{world.video_id}.npz", world)
        questions, video_skips = generate_questions(world.scene(), room_rng(seed, split, index, 2), questions_per_type)
        entries += [(world.video_id, question) for question in questions]
        skipped += video_skips
    kept = set(map(id, balance_types([question for _, question in entries], seed)))
    balanced = [(video_id, question) for video_id, question in entries if id(question) in kept]
    if split == "train":
        write_training_conversations(root, balanced)
    else:
        write_dsr_bench(root, balanced)
    return SplitSummary(count, Counter(question.question_type for _, question in balanced), len(entries), skipped)

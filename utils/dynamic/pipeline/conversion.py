"""Step (e): every video's questions into the training conversations (and optionally a DSR-Bench-format split).

Reads the per-video question files of steps (c) and (d) and writes them with
:mod:`utils.synthetic.dynamic_formats`' writers, so the result reads like the synthetic data does:

* training (:func:`~utils.synthetic.dynamic_formats.write_training_conversations`):
  ``<output>/e_training/0_30_s_dsr_synthetic/0_30_s_dsr_synthetic_mc_qa_processed.json``, the videos linked
  (symbolic links to the sources) as ``.../videos/<video id>.mp4``; read by
  :class:`utils.data.llava_video.LLaVAVideoDataset` (``root=<output>/e_training``, ``sources=("dsr_synthetic",)``);
* benchmark (:func:`~utils.synthetic.dynamic_formats.write_dsr_bench`, with ``bench=True``):
  ``<output>/e_bench/benchmark.parquet`` and the videos linked in ``<output>/e_bench/videos/``.

A video whose tracks have future frames (``future_frames`` of step (b)) is shown only up to its last shown
frame: its sampled frames up to there are written at their own timestamps as ``<output>/e_clips/<video id>.mp4``
(:func:`shown_clip`), which is linked instead of the source.

Template questions can be balanced over their types (:func:`~utils.dynamic.qa_templates.balance_types`);
free-form ones are kept as they are. Conversion is cheap and rewrites its outputs on every run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from utils.dynamic.pipeline.perception import perception_path
from utils.dynamic.pipeline.questions import FREE_FORM_STEP, TEMPLATE_STEP, question_path, read_questions
from utils.dynamic.qa_templates import Question, balance_types
from utils.synthetic.dynamic_formats import TRAINING_SUBSET, write_dsr_bench, write_training_conversations
from utils.video.clip import read_clip
from utils.video.encode import write_video
from utils.video.sampling import FrameSampling

TRAINING_FOLDER = "e_training"
BENCH_FOLDER = "e_bench"
CLIP_FOLDER = "e_clips"


def link_video(source: Path, link: Path) -> None:
    """``link`` -> ``source`` (absolute), replacing an older link."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path(source).resolve(), link)


def shown_clip(output: Path, video_id: str, source: Path) -> Path:
    """The video the questions of ``video_id`` are about: ``source``, or (tracks with future frames) its shown
    sampled frames re-encoded at their timestamps, written once to ``<output>/e_clips/<video id>.mp4``."""
    tracks = perception_path(output, video_id)
    if not tracks.exists():
        return source
    with np.load(tracks) as data:
        timestamps, shown = data["timestamps"], int(data["num_video_frames"])
    if shown == len(timestamps):
        return source
    clip = output / CLIP_FOLDER / f"{video_id}.mp4"
    if not clip.exists():
        frames = read_clip(source, FrameSampling("uniform", num_frames=len(timestamps))).frames
        clip.parent.mkdir(parents=True, exist_ok=True)
        partial = clip.with_name(f".{clip.name}")
        write_video(partial, frames[:shown], timestamps=timestamps[:shown])
        partial.replace(clip)
    return clip


def collect_questions(output: Path, videos: Mapping[str, Path], balance: bool, seed: int) -> tuple[list, Counter]:
    """``[(video id, question)]`` of every video with a question file, and the question counts by type."""
    templates: list[tuple[str, Question]] = []
    free_form: list[tuple[str, Question]] = []
    for video_id in videos:
        for step, entries in ((TEMPLATE_STEP, templates), (FREE_FORM_STEP, free_form)):
            path = question_path(output, step, video_id)
            if path.exists():
                entries += [(video_id, question) for question in read_questions(path)]
    if balance:
        kept = set(map(id, balance_types([question for _, question in templates], seed)))
        templates = [(video_id, question) for video_id, question in templates if id(question) in kept]
    entries = sorted(templates + free_form, key=lambda entry: entry[0])
    return entries, Counter(question.question_type for _, question in entries)


def convert(
    output: Path, videos: Mapping[str, Path], balance: bool = False, seed: int = 0, bench: bool = False
) -> Counter:
    """Step (e) (see the module docstring); returns the questions written by type, and ``videos``."""
    entries, counts = collect_questions(output, videos, balance, seed)
    used = sorted({video_id for video_id, _ in entries})
    training = output / TRAINING_FOLDER
    write_training_conversations(training, entries)
    sources = {video_id: shown_clip(output, video_id, videos[video_id]) for video_id in used}
    for video_id in used:
        link_video(sources[video_id], training / TRAINING_SUBSET / "videos" / f"{video_id}.mp4")
    if bench:
        write_dsr_bench(output / BENCH_FOLDER, entries)
        for video_id in used:
            link_video(sources[video_id], output / BENCH_FOLDER / "videos" / f"{video_id}.mp4")
    counts["videos"] = len(used)
    return counts

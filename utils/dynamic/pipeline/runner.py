"""Per-video outputs of the pipeline's steps, and running one step over many videos: resumable, parallel, counted.

Each step writes one file per video under ``<output>/<step folder>/`` (atomically: a temporary file, then a
rename), so a run that stops keeps what it wrote and a rerun skips every video whose file exists
(``resumed``). A video whose step raises is recorded in ``<output>/failures/<step>/<video id>.json`` with
the error, counted and named in the step's :class:`StepReport`, and the run goes on; the next run tries it
again (and removes the record once it succeeds). A step may also decline a video with a reason
(:class:`Skip`, e.g. a static video), which is counted by reason.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from tqdm import tqdm

from evaluation.judge import write_json_atomic

Worker = TypeVar("Worker")

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


class Skip(Exception):
    """A video a step does not process, for a counted ``reason`` (not a failure)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class StepReport:
    """What one step did this run: ``done`` videos, ``resumed`` (output already there), ``skipped`` by reason,
    ``failed`` ``{video id: error}``, and ``counts`` the step added up (e.g. ill-posed questions by reason)."""

    step: str
    done: int = 0
    resumed: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: dict[str, str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "done": self.done,
            "resumed": self.resumed,
            "skipped": dict(sorted(self.skipped.items())),
            "failed": dict(sorted(self.failed.items())),
            "counts": dict(sorted(self.counts.items())),
        }


def list_videos(folder: str | Path) -> dict[str, Path]:
    """``{video id (file stem): path}`` of the video files directly in ``folder``, by name.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` for two files with one stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder not found: {folder}")
    videos: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            if path.stem in videos:
                raise ValueError(
                    f"{folder}: two videos are called {path.stem!r} ({videos[path.stem].name}, {path.name})"
                )
            videos[path.stem] = path
    return videos


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` into ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez_compressed(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; ``ValueError`` naming the file if it is not one."""
    try:
        value = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


class WorkerPool(Generic[Worker]):
    """Workers (e.g. one set of models per device) lent to one task at a time."""

    def __init__(self, workers: Sequence[Worker]):
        if not workers:
            raise ValueError("a worker pool needs at least one worker")
        self._idle: queue.Queue = queue.Queue()
        for worker in workers:
            self._idle.put(worker)
        self.size = len(workers)

    def call(self, function: Callable[[Worker], object]) -> object:
        worker = self._idle.get()
        try:
            return function(worker)
        finally:
            self._idle.put(worker)


def failure_path(output: Path, step: str, video_id: str) -> Path:
    return output / "failures" / step / f"{video_id}.json"


def run_step(
    step: str,
    output: Path,
    video_ids: Sequence[str],
    result_path: Callable[[str], Path],
    process: Callable[[str], Counter | None],
    workers: int = 1,
) -> StepReport:
    """Run ``process(video id)`` (which writes ``result_path(video id)`` and may return counts) for every video
    whose result is missing, ``workers`` at a time (threads), with a progress bar; see the module docstring."""
    report = StepReport(step)
    pending = []
    for video_id in video_ids:
        if result_path(video_id).exists():
            report.resumed += 1
        else:
            pending.append(video_id)

    def attempt(video_id: str) -> tuple[str, str, Counter | str | None]:
        try:
            return video_id, "done", process(video_id)
        except Skip as skip:
            return video_id, "skip", skip.reason
        except Exception as error:  # noqa: BLE001 - one bad video must not end a long run; it is recorded
            return video_id, "failed", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        outcomes = as_completed([pool.submit(attempt, video_id) for video_id in pending])
        for outcome in tqdm(outcomes, total=len(pending), desc=step, unit="video", dynamic_ncols=True):
            video_id, status, detail = outcome.result()
            record = failure_path(output, step, video_id)
            if status == "failed":
                report.failed[video_id] = detail.splitlines()[0]
                write_json_atomic(record, {"video_id": video_id, "step": step, "error": detail})
                continue
            record.unlink(missing_ok=True)
            if status == "skip":
                report.skipped[detail] += 1
            else:
                report.done += 1
                report.counts.update(detail or {})
    return report

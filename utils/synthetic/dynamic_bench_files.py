"""Writing tiny DSR-Bench, VLM4D and 4D-Bench releases, for :mod:`utils.data.dsr_bench`, :mod:`utils.data.vlm4d`
and :mod:`utils.data.fourd_bench` to read (tests; the layouts are those the loaders' docstrings describe).

Every video is a short H.264 MP4 of a square moving left to right on grey (:func:`moving_square_video`),
each frame's square offset by its index, so a test can tell which frames were read.

* :func:`write_dsr_bench`: ``<root>/benchmark.parquet`` (``videoID``, ``question``, ``options``, ``answer`` and,
  if given, a type column) and ``<root>/videos/<videoID>.mp4``;
* :func:`write_vlm4d`: ``<root>/real_mc.json`` / ``synthetic_mc.json`` (VLM4D's entries as given) and every video
  at the path after ``/resolve/main/`` of its URL;
* :func:`write_fourd_bench`: ``<root>/4d_qa.json``, ``<root>/human_annotations.csv`` and
  ``<root>/4d_object_multi_view_videos/<uid>/view_<k>_rgb_white_bg.mp4`` for every object they name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.data.dsr_bench import PARQUET_FILE, VIDEO_FOLDER
from utils.data.fourd_bench import CAPTION_FILE, NUM_REFERENCES, QA_FILE, VIEWS, video_file
from utils.data.fourd_bench import VIDEO_FOLDER as FOURD_VIDEO_FOLDER
from utils.data.vlm4d import SOURCE_FILES, video_relative_path
from utils.video.encode import write_video

VIDEO_FPS = 10.0
SQUARE = 8


def moving_square_video(path: Path, num_frames: int = 12, height: int = 32, width: int = 48) -> Path:
    """An MP4 of ``num_frames`` ``(height, width)`` frames: a white square moving right one pixel per frame."""
    frames = np.full((num_frames, height, width, 3), 90, np.uint8)
    for t in range(num_frames):
        left = t % (width - SQUARE)
        frames[t, height // 2 - SQUARE // 2 : height // 2 + SQUARE // 2, left : left + SQUARE] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, fps=VIDEO_FPS)


def write_dsr_bench(
    root: str | Path, rows: Sequence[dict], num_frames: int = 40, type_column: str | None = None
) -> Path:
    """``benchmark.parquet`` of ``rows`` (dicts with ``videoID``, ``question``, ``options``, ``answer`` and, with
    ``type_column``, that key) and one video per distinct ``videoID`` (named ``<videoID>.mp4`` unless it has a
    suffix). Returns the parquet path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    columns = ["videoID", "question", "options", "answer", *([type_column] if type_column else [])]
    table = pa.table({column: [row[column] for row in rows] for column in columns})
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / PARQUET_FILE)
    for video_id in sorted({row["videoID"] for row in rows}):
        name = video_id if Path(video_id).suffix else f"{video_id}.mp4"
        moving_square_video(root / VIDEO_FOLDER / name, num_frames)
    return root / PARQUET_FILE


def write_vlm4d(root: str | Path, real: Sequence[dict], synthetic: Sequence[dict], num_frames: int = 12) -> Path:
    """VLM4D's two question files (entries written as given) and a video at each entry's URL path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for source, entries in (("real", real), ("synthetic", synthetic)):
        (root / SOURCE_FILES[source]).write_text(json.dumps(list(entries), indent=1))
        for url in sorted({entry["video"] for entry in entries}):
            moving_square_video(root / video_relative_path(url, "test video"), num_frames)
    return root


def write_fourd_bench(
    root: str | Path,
    questions: dict[str, dict],
    captions: dict[str, Sequence[str]],
    views: Sequence[int] = VIEWS,
    num_frames: int = 12,
) -> Path:
    """4D-Bench's QA file (``{"<uid>_<n>": entry}`` as given), its caption CSV (``{uid: five captions}``) and the
    multi-view videos ``views`` of every object either names."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / QA_FILE).write_text(json.dumps(questions, indent=1))
    with (root / CAPTION_FILE).open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["folder_name", *(f"caption_{i}" for i in range(1, NUM_REFERENCES + 1))])
        writer.writerows([uid, *texts] for uid, texts in captions.items())
    uids = {key.split("_")[0] for key in questions} | set(captions)
    for uid in sorted(uids):
        for view in views:
            moving_square_video(video_file(root / FOURD_VIDEO_FOLDER, uid, view), num_frames)
    return root

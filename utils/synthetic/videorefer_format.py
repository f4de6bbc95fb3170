"""Writing region-QA records in VideoRefer's released layouts, for :mod:`utils.data.videorefer` to read.

A :class:`RegionQARecord` is one question about pointed-at objects in one video: the frames, a mask per
object on some frames, the question (objects written ``<object{k}><region>``, the k-th one being
``objects[k]``), options for multiple choice, the answer and the question type. Three writers put a list
of records on disk exactly as the releases are laid out (see the loader module's docstring for the
sources):

* :func:`write_videorefer_bench_q`: ``<root>/VideoRefer-Bench-Q.json`` and each video as a JPEG frame folder
  ``<root>/<video>/<frame name>.jpg`` (``video`` like ``"DAVIS/JPEGImages/480p/shapes_0"``);
* :func:`write_videorefer_bench_d`: ``<root>/VideoRefer-Bench-D.json`` (the answer is the ``caption``) and each
  video as an H.264 MP4 ``<root>/Panda-70M-part/<video>`` (``video`` ends in ``.mp4``);
* :func:`write_videorefer_700k`: ``<root>/<name>`` and each video under ``<root>/videos/``: an MP4 when
  ``video`` has a video file suffix, else a JPEG frame folder. The human turn is ``"<video>\\n"`` and the
  question, listed with its options by :func:`~utils.data.prompts.multiple_choice_question` when it has
  some, so training reads exactly the user turn the Bench-Q loader builds.

Masks are written as COCO compressed RLE keyed by the frame index as a string; an empty mask is written
``null``, as the benchmark marks a frame without the object. Every item gets ``frame_idx`` (as a string):
:attr:`RegionQARecord.key_frame`. Several records may share a video (written
once; the same name with other frames is an error). Example::

    record = RegionQARecord(
        video="DAVIS/JPEGImages/480p/shapes_0", frames=frames, frame_names=[f"{t:05d}" for t in range(8)],
        objects=[{0: mask_a0, 4: mask_a4}], question="What colour is <object0><region>?",
        options=["(A) Red", "(B) Blue"], answer="(A) Red", category="Basic Questions", id=0,
    )
    json_path = write_videorefer_bench_q(root, [record])  # then LOADERS["videorefer_bench_q"].build(root, "test", ...)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from utils.data.prompts import REGION_PLACEHOLDER, multiple_choice_question
from utils.data.videorefer import BENCH_D_FILE, BENCH_D_VIDEOS, BENCH_Q_FILE, TRAIN_VIDEOS, VIDEO_TOKEN
from utils.synthetic.moving_shapes import encode_masks
from utils.video.encode import write_video

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
"""A 700K ``video`` with one of these suffixes is written as a video file, else as a frame folder."""

VIDEO_FPS = 30.0
"""Frame rate of the MP4s written (Panda-70M clips are mostly 30 fps)."""

JPEG_QUALITY = 95


@dataclass
class RegionQARecord:
    """One question about pointed-at objects in one video.

    Attributes:
        video: the item's ``video`` path: a frame folder relative to the benchmark folder (Bench-Q, 700K)
            or an MP4 file name (Bench-D; 700K with a :data:`VIDEO_SUFFIXES` suffix).
        frames: ``(T, H, W, 3)`` uint8 RGB (even ``H`` and ``W`` for MP4s).
        frame_names: ``T`` file stems of a frame folder, in an order its sorted listing keeps (numeric
            stems such as ``"00000"``); unused for video files.
        objects: per object ``k`` (the ``k``-th ``<region>`` of the question), ``{frame index: (H, W) bool mask}``.
        question: the question, each object written ``<object{k}><region>`` (or a bare ``<region>``); Bench-D
            stores none (``""``).
        options: the choices as the benchmark writes them (``["(A) ...", "(B) ..."]``), or ``None``.
        answer: the answer (one of ``options`` for multiple choice; Bench-D's caption).
        category: the question type (Bench-Q ``type``); unused by Bench-D and 700K.
        id: the item's ``id``.
        frame_idx: the frame written as ``frame_idx``; ``None``: the first frame where object 0 has pixels.
    """

    video: str
    frames: np.ndarray
    frame_names: list[str]
    objects: list[dict[int, np.ndarray]]
    question: str
    options: list[str] | None
    answer: str
    category: str
    id: int | str
    frame_idx: int | None = None

    def __post_init__(self) -> None:
        where = f"record {self.id!r} ({self.video})"
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"{where}: frames must be a (T, H, W, 3) uint8 array")
        if len(self.frame_names) != len(frames) or len(set(self.frame_names)) != len(frames):
            raise ValueError(f"{where}: {len(self.frame_names)} distinct frame names needed, one per frame")
        if not self.objects:
            raise ValueError(f"{where}: at least one object is needed")
        references = self.question.count(REGION_PLACEHOLDER)
        if self.question and references != len(self.objects):
            raise ValueError(
                f"{where}: the question has {references} {REGION_PLACEHOLDER}, {len(self.objects)} objects"
            )
        for k, track in enumerate(self.objects):
            if not track:
                raise ValueError(f"{where}: object {k} has no mask")
            for frame, mask in track.items():
                if not 0 <= frame < len(frames):
                    raise ValueError(f"{where}: object {k} has a mask on frame {frame} of {len(frames)}")
                if mask.shape != frames.shape[1:3]:
                    raise ValueError(
                        f"{where}: object {k}'s mask on frame {frame} is {mask.shape}, frames {frames.shape[1:3]}"
                    )
        if self.options is not None and self.answer not in self.options:
            raise ValueError(f"{where}: the answer {self.answer!r} is not one of the options")

    @property
    def key_frame(self) -> int:
        """``frame_idx`` as written: the given one, else the first frame where object 0 has pixels."""
        if self.frame_idx is not None:
            return self.frame_idx
        shown = sorted(frame for frame, mask in self.objects[0].items() if mask.any())
        return shown[0] if shown else min(self.objects[0])


def _annotation(record: RegionQARecord) -> list[dict[str, dict]]:
    """The record's objects as VideoRefer's ``annotation``: ``[{"<frame>": {"segmentation": RLE or None}}]``."""
    annotation = []
    for track in record.objects:
        frames = sorted(track)
        rles = encode_masks(np.stack([track[f].astype(bool) for f in frames])[None])[0]
        annotation.append({str(f): {"segmentation": rle} for f, rle in zip(frames, rles)})
    return annotation


def _stem_order(names: Sequence[str]) -> list[str]:
    """``names`` in the order a folder listing is read (numeric stems by value, else lexicographic)."""
    return sorted(names, key=int) if all(n.isdigit() for n in names) else sorted(names)


class _VideoWriter:
    """Writes each video once under ``folder``; a second record with the same name must have the same frames."""

    def __init__(self, folder: Path):
        self.folder, self.written = folder, {}

    def __call__(self, record: RegionQARecord, as_file: bool) -> None:
        if record.video in self.written:
            if not np.array_equal(self.written[record.video], record.frames):
                raise ValueError(f"record {record.id!r}: video {record.video} was written with other frames")
            return
        path = self.folder / record.video
        if as_file:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, record.frames, fps=VIDEO_FPS)
        else:
            if _stem_order(record.frame_names) != list(record.frame_names):
                raise ValueError(f"record {record.id!r}: frame names {record.frame_names} do not list in time order")
            path.mkdir(parents=True, exist_ok=True)
            for name, frame in zip(record.frame_names, record.frames):
                Image.fromarray(frame).save(path / f"{name}.jpg", quality=JPEG_QUALITY)
        self.written[record.video] = record.frames


def _write_json(path: Path, items: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))
    return path


def write_videorefer_bench_q(root: str | Path, records: Sequence[RegionQARecord]) -> Path:
    """VideoRefer-Bench-Q: ``<root>/VideoRefer-Bench-Q.json`` and frame folders ``<root>/<video>/``; returns the JSON.

    Every record needs ``options``; ``category`` is written as ``type``.
    """
    root = Path(root)
    write, items = _VideoWriter(root), []
    for record in records:
        if record.options is None or not record.question:
            raise ValueError(f"record {record.id!r}: a Bench-Q record needs a question and options")
        write(record, as_file=False)
        items.append(
            {
                "id": record.id,
                "video": record.video,
                "Question": record.question,
                "type": record.category,
                "options": list(record.options),
                "Answer": record.answer,
                "frame_idx": str(record.key_frame),
                "annotation": _annotation(record),
            }
        )
    return _write_json(root / BENCH_Q_FILE, items)


def write_videorefer_bench_d(root: str | Path, records: Sequence[RegionQARecord]) -> Path:
    """VideoRefer-Bench-D: ``<root>/VideoRefer-Bench-D.json`` and MP4s in ``<root>/Panda-70M-part/``; returns the JSON.

    Each record has one object and an MP4 ``video`` name; its ``answer`` is written as ``caption``
    (Bench-D stores no question).
    """
    root = Path(root)
    write, items = _VideoWriter(root / BENCH_D_VIDEOS), []
    for record in records:
        if len(record.objects) != 1 or not record.video.endswith(".mp4"):
            raise ValueError(f"record {record.id!r}: a Bench-D record has one object and an .mp4 video")
        write(record, as_file=True)
        item = {"id": record.id, "video": record.video, "caption": record.answer, "frame_idx": str(record.key_frame)}
        items.append({**item, "annotation": _annotation(record)})
    return _write_json(root / BENCH_D_FILE, items)


def write_videorefer_700k(root: str | Path, records: Sequence[RegionQARecord], name: str) -> Path:
    """One VideoRefer-700K annotation file ``<root>/<name>`` and its videos under ``<root>/videos/``; returns its path.

    Read it with ``LOADERS["videorefer"].build(root, "train", ..., json_files=[name])``.
    """
    root = Path(root)
    write, items = _VideoWriter(root / TRAIN_VIDEOS), []
    for record in records:
        if not record.question:
            raise ValueError(f"record {record.id!r}: a 700K record needs a question")
        write(record, as_file=Path(record.video).suffix.lower() in VIDEO_SUFFIXES)
        question = (
            record.question if record.options is None else multiple_choice_question(record.question, record.options)
        )
        conversations = [
            {"from": "human", "value": f"{VIDEO_TOKEN}\n{question}"},
            {"from": "gpt", "value": record.answer},
        ]
        item = {"id": record.id, "video": record.video, "conversations": conversations}
        items.append({**item, "frame_idx": str(record.key_frame), "annotation": _annotation(record)})
    return _write_json(root / name, items)

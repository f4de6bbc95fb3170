"""VideoRefer-700K (training) and VideoRefer-Bench-Q / -D (evaluation) as released: questions about pointed-at objects.

Facts used, and where they come from (DAMO-NLP-SG/VideoRefer's code and docs now live in
alibaba-damo-academy/PixelRefer under ``VideoRefer/``):

* Every file is one JSON list of items, each with ``video`` and ``annotation``: one mapping per
  pointed-at object, ``{"<frame index>": {"segmentation": <COCO RLE> | null}}``. A frame index is a
  string counting the video's frames in presentation order (a frame folder's files in sorted order);
  ``null`` means the object is not there (``VideoRefer/videorefer/eval/inference_videorefer_q_bench.py``
  decodes it as an empty mask). The benchmarks annotate 32 uniformly spaced frames per object and say
  "All the segmentations are in RLE format" (``VideoRefer/benchmark/README.md``); 700K allows "rle format
  or polygon" (``VideoRefer/README.md``). ``frame_idx`` (a string, ``"57"``) is the frame whose mask alone
  is used in VideoRefer's "single-frame mode" (``--mode single``, its inference default).
* The k-th ``<region>`` of the text is the k-th annotation entry: VideoRefer replaces the ``<region>`` s in
  order by the entries' tokens, and UniPixel's loaders (``unipixel/dataset``, ``videorefer_bench_q`` and
  ``videorefer_*``) assert the two counts are equal.
* VideoRefer-Bench-Q, ``VideoRefer-Bench-Q.json`` (1,000 questions; ``VideoRefer/benchmark/README.md``): ``id``,
  ``video`` (a frame folder relative to the benchmark folder: ``DAVIS/JPEGImages/480p/<name>`` or
  ``MeViS/valid_u/JPEGImages/<name>``), ``Question`` with objects written ``<objectN><region>``, where N need
  not start at 0 (``"What is <object3><region> not wearing?"``), ``type`` (one of :data:`BENCH_Q_CATEGORIES`),
  ``options`` (``["(A) A helmet", "(B) A hat", ...]``), ``Answer`` (the right option as written,
  ``"(A) A helmet"``), ``frame_idx``. Options may name an object by ``<objectN>`` alone (RGA3's
  ``evaluation/videorefer_bench/inference_videorefer.py`` rewrites ``<objectN>`` in options too); the answer
  is scored by its letter, per ``type`` (``VideoRefer/videorefer/eval/eval_videorefer_bench_q.py``).
* VideoRefer-Bench-D, ``VideoRefer-Bench-D.json`` (400 items from Panda-70M): ``id``, ``video`` (an MP4 file name,
  ``rLlzmcp3J6s_0:01:09.633_0:01:14.333.mp4``, in ``Panda-70M-part/``), ``caption``, ``frame_idx``, one annotation
  entry. No question is stored: a description of the object is asked and GPT-4o scores it from 0 to 5 on
  the four :data:`BENCH_D_DIMENSIONS` (same README). The Hugging Face dataset DAMO-NLP-SG/VideoRefer-Bench
  ships both JSON files side by side with ``Panda-70M-part.zip``.
* VideoRefer-700K (Hugging Face DAMO-NLP-SG/VideoRefer-700K, file listing): :data:`TRAIN_FILES`. Items have
  ``id``, ``video`` and LLaVA-style ``conversations`` (``[{"from": "human" | "gpt", "value": str}]``, the
  human turn starting ``"<video>\\n"``); single-object items write a bare ``<region>``, multi-object QA items
  ``<objectN><region>`` and name the objects ``<objectN>`` in the answer (UniPixel's checks on the three
  files; they also read a QA item's ``frame_idx``). Captions come from Panda-70M videos, QA from MeViS,
  A2D and YouTube-VOS (``VideoRefer/README.md``).
  Videos sit under ``videos/`` (UniPixel's ``DATA_ROOT``; VideoRefer's README example path is
  ``videos/xxx.mp4`` relative to a data folder).

Choices where the sources say nothing (the most plausible reading, stated here):

* Whether a 700K ``video`` is an MP4 or a frame folder is not documented: a folder is read as JPEG / PNG
  frames in sorted order, anything else as a video file, both through :mod:`utils.video`. A folder's
  frame rate (for ``Sample.timestamps``) comes from the ``fps`` option, else from its source
  (:data:`FOLDER_FPS`: DAVIS 24, MeViS 5), else :data:`DEFAULT_FOLDER_FPS`.
* Objects are renumbered by their first ``<region>``: the k-th placeholder becomes ``<object{k}><region>``
  (:func:`~utils.data.prompts.object_reference`, the schema's contract), and every bare ``<objectN>`` of the
  question, options, answer and turns follows its object; a label that points at nothing gets the next
  free number. Bench-Q's ``meta["raw_question"]`` keeps the question as released.
* A ``null`` or empty RLE marks a frame where the object is absent (no prompt there); an object with no
  mask with pixels on any of its annotated frames is a ``ValueError`` naming the sample and the file (an
  empty polygon or uncompressed RLE is one too, as :func:`~utils.data.coco_format.segmentation_mask` reads them).
* The 700K item's ``meta["category"]`` is its file's kind (``detailed_caption``, ``short_caption``, ``qa``);
  Bench-D's is ``"description"``. Bench-D asks :data:`DESCRIPTION_QUESTION`.
* The 700K file the ``ytb_vos`` QA items come from is said (in a commented-out UniPixel check) to store
  their annotation differently; that shape is not public, so such an item is read like the others and
  a different shape is an error naming it.
* ``sample_id`` is ``<loader>/<split>/<position in the file>`` (700K: ``videorefer/train/<file stem>/<position>``):
  unique and stable for a given file whatever its ``id`` s hold; ``meta["id"]`` keeps the item's ``id``.

Frames: uniform sampling of ``num_frames`` (training jitters inside each segment), with each object's key
frame forced in (:class:`~utils.video.sampling.FrameSampling` ``force``, which replaces the nearest sampled
frame): ``frame_idx`` when the object has a mask with pixels there, else its first such annotated frame.
Every sampled frame where an object has a mask with pixels gets a
:class:`~utils.data.schema.RegionPrompt` (``frame`` = position in the sample, ``region`` = the object's
number); loader option ``mask_mode="single"`` keeps only the ``frame_idx`` mask, as VideoRefer's
single-frame mode. Option ``visual_prompt`` (``region`` / ``overlay`` / ``both``) draws the prompts with
:func:`utils.visual_prompts.overlays.apply_overlays`; in the overlay modes a bare ``<object{k}>`` is worded
like its reference too, in the text and in ``meta["options"]`` / ``meta["answer"]``.

The released 700K files hold their masks inline (5.6 GB for the detailed captions), and all of a file's
items are held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.coco_format import segmentation_mask
from utils.data.image_io import read_json, safe_id_part
from utils.data.mevis import MEVIS_FPS
from utils.data.prompts import REGION_PLACEHOLDER, multiple_choice_question, object_reference
from utils.data.ref_youtube_vos import DAVIS_FPS
from utils.data.registry import register_dataset
from utils.data.rle import decode_rle
from utils.data.schema import RegionPrompt, Sample
from utils.video.backends import decode_frames
from utils.video.clip import Clip
from utils.video.errors import FrameIndexError, VideoError
from utils.video.sampling import FrameSampling
from utils.video.sources import VideoInfo, probe
from utils.visual_prompts.overlays import apply_overlays, check_mode, overlay_phrase, random_styles

TEST_SPLIT = "test"
"""The benchmarks' one split."""

TRAIN_SPLIT = "train"
"""VideoRefer-700K's one split."""

BENCH_Q_FILE = "VideoRefer-Bench-Q.json"
BENCH_D_FILE = "VideoRefer-Bench-D.json"
BENCH_D_VIDEOS = "Panda-70M-part"
"""Bench-D's video folder, beside its JSON file."""

TRAIN_FILES = (
    "videorefer-detailed-caption-125k.json",
    "videorefer-short-caption-500k.json",
    "videorefer-qa-75k.json",
)
"""VideoRefer-700K's annotation files as released on Hugging Face; loader option ``json_files`` picks some."""

TRAIN_VIDEOS = "videos"
"""VideoRefer-700K's video folder under its root; ``video`` paths are relative to it."""

BENCH_Q_CATEGORIES = (
    "Basic Questions",
    "Sequential Questions",
    "Relationship Questions",
    "Reasoning Questions",
    "Future Predictions",
)
"""Bench-Q's question types (``type``), scored separately."""

BENCH_D_DIMENSIONS = (
    "Subject Correspondence",
    "Appearance Description",
    "Temporal Description",
    "Hallucination Detection",
)
"""What Bench-D's judge scores each description on, 0 to 5."""

DESCRIPTION_QUESTION = "Please describe {object} in this video in detail."
"""Bench-D's user turn (``{object}`` is :func:`~utils.data.prompts.object_reference` ``(0)``)."""

MASK_MODES = ("multi", "single")
"""``multi``: every annotated mask on a sampled frame; ``single``: the ``frame_idx`` mask alone."""

FOLDER_FPS = {"davis": DAVIS_FPS, "mevis": MEVIS_FPS}
"""A frame folder's frame rate by its source, the first path part naming one (case-insensitive)."""

DEFAULT_FOLDER_FPS = MEVIS_FPS
"""Frame rate of a frame folder of no known source (a guess: the QA videos' MeViS rate)."""

VIDEO_TOKEN = "<video>"
"""LLaVA's video tag in 700K human turns; dropped (the collator places the video)."""

_REFERENCE = re.compile(r"(?:<object(\d+)>)?" + re.escape(REGION_PLACEHOLDER))
_LABEL = re.compile(r"<object(\d+)>(?!" + re.escape(REGION_PLACEHOLDER) + ")")
_ROLES = {"human": "user", "gpt": "assistant"}


# --- text ----------------------------------------------------------------------------------------------


def number_objects(
    user_texts: Sequence[str], other_texts: Sequence[str], num_objects: int, where: str
) -> tuple[list[str], list[str]]:
    """The texts with objects numbered by their first ``<region>`` in ``user_texts``.

    The k-th ``<region>`` (bare or ``<objectN><region>``) becomes ``<object{k}><region>``; a bare
    ``<objectN>`` anywhere (``other_texts``: options, answers, assistant turns) becomes the number of the
    first reference labelled N, or the next free number. ``ValueError`` naming ``where`` unless there are
    ``num_objects`` references, or if ``<region>`` appears in ``other_texts``.
    """
    labels: dict[str, int] = {}
    count = 0

    def reference(match: re.Match) -> str:
        nonlocal count
        if match.group(1) is not None:
            labels.setdefault(match.group(1), count)
        count += 1
        return object_reference(count - 1)

    user = [_REFERENCE.sub(reference, text) for text in user_texts]
    if count != num_objects:
        raise ValueError(
            f"{where}: the text points at {count} objects ({REGION_PLACEHOLDER}), the annotation has {num_objects}"
        )
    for text in other_texts:
        if REGION_PLACEHOLDER in text:
            raise ValueError(f"{where}: {REGION_PLACEHOLDER} outside the user's question: {text[:120]!r}")

    def label(match: re.Match) -> str:
        if match.group(1) not in labels:
            labels[match.group(1)] = max([count - 1, *labels.values()]) + 1
        return f"<object{labels[match.group(1)]}>"

    return [_LABEL.sub(label, text) for text in user], [_LABEL.sub(label, text) for text in other_texts]


def _text(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty string, got {str(value)[:80]!r}")
    return value.strip()


def _frame_key(value: object, where: str) -> int:
    """A frame index written as a string of digits (or an int)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{where}: frame index {value!r} is not a non-negative integer")


def _objects(entry: dict, where: str) -> list[dict[int, object]]:
    """``annotation`` as one ``{frame index: segmentation or None}`` per object."""
    annotation = entry.get("annotation")
    if not isinstance(annotation, list) or not annotation:
        raise ValueError(f"{where}: 'annotation' must be a non-empty list of objects, got {str(annotation)[:80]!r}")
    objects = []
    for k, frames in enumerate(annotation):
        if not isinstance(frames, dict) or not frames:
            raise ValueError(f"{where}: object {k} must map frame indices to {{'segmentation': ...}}")
        track = {}
        for key, value in frames.items():
            if not isinstance(value, dict) or "segmentation" not in value:
                raise ValueError(
                    f"{where}: object {k}, frame {key!r}: expected {{'segmentation': ...}}, got {str(value)[:80]!r}"
                )
            track[_frame_key(key, f"{where}: object {k}")] = value["segmentation"]
        objects.append(track)
    return objects


def _file_category(path: Path) -> str:
    """A 700K file's kind from its name (``detailed_caption``, ``short_caption``, ``qa``), else its stem."""
    name = path.name.lower()
    for word, kind in (("detailed", "detailed_caption"), ("short", "short_caption"), ("qa", "qa")):
        if word in name:
            return kind
    return path.stem


# --- the data set --------------------------------------------------------------------------------------


class VideoReferDataset(Dataset):
    """Region QA samples from VideoRefer-format JSON files (see the module docstring).

    Args:
        name: loader name, first part of every ``sample_id``.
        kind: ``"bench_q"``, ``"bench_d"`` or ``"700k"``: which fields make the conversation.
        files: the JSON files, read in order.
        video_dir: folder the items' ``video`` paths are relative to.
        split: the split, second part of every ``sample_id``.
        num_frames: frames per sample (uniform, key frames forced in); ``None``: every frame.
        train: jitter the uniform choice (item ``i`` draws from ``default_rng([seed, i])``).
        seed: seeds the jitter and the overlay styles.
        visual_prompt: ``"region"``, ``"overlay"`` or ``"both"``.
        mask_mode: one of :data:`MASK_MODES`.
        fps: frame rate of frame folders; ``None``: :data:`FOLDER_FPS` by source, else :data:`DEFAULT_FOLDER_FPS`.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        files: Sequence[Path],
        video_dir: Path,
        split: str,
        num_frames: int | None = None,
        train: bool = False,
        seed: int = 0,
        visual_prompt: str = "region",
        mask_mode: str = "multi",
        fps: float | None = None,
    ):
        if kind not in ("bench_q", "bench_d", "700k"):
            raise ValueError(f"unknown VideoRefer kind {kind!r}")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"{name}: mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float) or not fps > 0):
            raise ValueError(f"{name}: fps must be a positive number or None, got {fps!r}")
        self.name, self.kind, self.video_dir, self.split = name, kind, Path(video_dir), split
        self.num_frames, self.train, self.seed = num_frames, train, seed
        self.visual_prompt, self.mask_mode, self.fps = check_mode(visual_prompt), mask_mode, fps
        self.entries: list[tuple[Path, int, object]] = []
        self.ids: list[str] = []
        for path in files:
            items = read_json(Path(path))
            if not isinstance(items, list):
                raise ValueError(f"{path}: expected a JSON list of items, got {type(items).__name__}")
            prefix = f"{name}/{split}/" + (f"{safe_id_part(Path(path).stem)}/" if kind == "700k" else "")
            self.entries += [(Path(path), position, item) for position, item in enumerate(items)]
            self.ids += [f"{prefix}{position}" for position in range(len(items))]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"{name} {split}: sample ids repeat (is a file listed twice?)")

    def __len__(self) -> int:
        return len(self.entries)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no video)."""
        return list(self.ids)

    def __getitem__(self, index: int) -> Sample:
        path, position, entry = self.entries[index]
        where = f"sample {self.ids[index]} (item {position} of {path})"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: an item must be a JSON object, got {type(entry).__name__}")
        objects = _objects(entry, where)
        conversation, meta = self._conversation(entry, path, len(objects), where)
        video = _text(entry, "video", where)
        video_path = self.video_dir / video
        fps = self._folder_fps(video) if video_path.is_dir() else None
        try:
            info = probe(video_path, fps=fps)
        except VideoError as error:
            raise type(error)(error.path, f"{where}: {error.reason}", error.frame) from None
        key = None if entry.get("frame_idx") is None else _frame_key(entry["frame_idx"], f"{where}: frame_idx")
        for k, track in enumerate(objects):
            outside = [i for i in track if i >= info.num_frames]
            if outside:
                raise ValueError(
                    f"{where}: object {k} is annotated on frame {outside[0]}, "
                    f"but {video_path} has {info.num_frames} frames"
                )
        if self.mask_mode == "single":
            objects = self._single_frame(objects, key, where)

        masks: dict[tuple[int, int], np.ndarray | None] = {}

        def mask(k: int, frame: int) -> np.ndarray | None:
            if (k, frame) not in masks:
                masks[k, frame] = self._decode(objects[k][frame], info, f"{where}: object {k}, frame {frame}")
            return masks[k, frame]

        keys = [self._key_frame(track, k, key, mask, where) for k, track in enumerate(objects)]
        rng = np.random.default_rng([self.seed, index])
        clip = self._read(info, FrameSampling(num_frames=self.num_frames, force=tuple(sorted(set(keys)))), rng, where)
        regions = [
            RegionPrompt(frame=t, mask=mask(k, i), region=k)
            for k, track in enumerate(objects)
            for t, i in enumerate(clip.indices)
            if i in track and mask(k, i) is not None
        ]
        sample = Sample(
            sample_id=self.ids[index],
            frames=clip.frames,
            frame_names=clip.frame_names,
            conversation=conversation,
            timestamps=clip.timestamps,
            regions=regions,
            meta={**meta, "video": video, "id": entry.get("id"), "frame_idx": key, "frame_indices": clip.indices},
        )
        return self._overlay(sample, len(objects), rng)

    # --- pieces of __getitem__ ---

    def _conversation(self, entry: dict, path: Path, num_objects: int, where: str) -> tuple[list[dict], dict]:
        """The chat and the meta its kind gives (``answer``, ``category``; Bench-Q: ``options``, ``raw_question``)."""
        if self.kind == "bench_q":
            question, answer = _text(entry, "Question", where), _text(entry, "Answer", where)
            options = entry.get("options")
            if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
                raise ValueError(
                    f"{where}: 'options' must be a list of at least two strings, got {str(options)[:80]!r}"
                )
            (user,), others = number_objects([question], [*options, answer], num_objects, where)
            options, answer = others[:-1], others[-1]
            try:
                user = multiple_choice_question(user, options)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            meta = {"category": _text(entry, "type", where), "options": options, "raw_question": question}
            turns = [("user", user), ("assistant", answer)]
        elif self.kind == "bench_d":
            (user,), (answer,) = number_objects(
                [DESCRIPTION_QUESTION.format(object=object_reference(0))],
                [_text(entry, "caption", where)],
                num_objects,
                where,
            )
            meta, turns = {"category": "description"}, [("user", user), ("assistant", answer)]
        else:
            turns = self._turns(entry, where)
            users = [text for role, text in turns if role == "user"]
            others = [text for role, text in turns if role == "assistant"]
            users, others = number_objects(users, others, num_objects, where)
            queue = {"user": iter(users), "assistant": iter(others)}
            turns = [(role, next(queue[role])) for role, _ in turns]
            meta = {"category": _file_category(path)}
        conversation = [{"role": role, "content": text} for role, text in turns]
        return conversation, {**meta, "answer": conversation[-1]["content"], "source_file": path.name}

    @staticmethod
    def _turns(entry: dict, where: str) -> list[tuple[str, str]]:
        """700K ``conversations`` as ``(role, text)``, the ``<video>`` tag dropped; user first, assistant last."""
        conversations = entry.get("conversations")
        if not isinstance(conversations, list) or len(conversations) < 2:
            raise ValueError(f"{where}: 'conversations' must be a list of at least two turns")
        turns = []
        for number, turn in enumerate(conversations):
            if not isinstance(turn, dict) or turn.get("from") not in _ROLES or not isinstance(turn.get("value"), str):
                raise ValueError(
                    f"{where}: turn {number} must be {{'from': 'human' | 'gpt', 'value': str}}, got {str(turn)[:80]!r}"
                )
            text = turn["value"].replace(VIDEO_TOKEN, "").strip()
            if not text:
                raise ValueError(f"{where}: turn {number} is empty")
            turns.append((_ROLES[turn["from"]], text))
        if turns[0][0] != "user" or turns[-1][0] != "assistant":
            raise ValueError(f"{where}: the conversation must start with a human turn and end with a gpt turn")
        return turns

    def _folder_fps(self, video: str) -> float:
        if self.fps is not None:
            return float(self.fps)
        first = Path(video).parts[0].lower() if Path(video).parts else ""
        return FOLDER_FPS.get(first, DEFAULT_FOLDER_FPS)

    @staticmethod
    def _single_frame(objects: list[dict[int, object]], key: int | None, where: str) -> list[dict[int, object]]:
        """Each object's ``frame_idx`` mask alone (``mask_mode="single"``)."""
        if key is None:
            raise ValueError(f"{where}: mask_mode 'single' needs the item's 'frame_idx'")
        for k, track in enumerate(objects):
            if key not in track:
                raise ValueError(f"{where}: object {k} has no mask on frame_idx {key}")
        return [{key: track[key]} for track in objects]

    @staticmethod
    def _decode(segmentation: object, info: VideoInfo, where: str) -> np.ndarray | None:
        """``(H, W)`` bool mask, or ``None`` where the object is absent (``null`` or no pixel)."""
        if segmentation is None:
            return None
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            try:
                mask = decode_rle(segmentation, info.height, info.width)
            except ValueError as error:
                raise ValueError(f"{where}: malformed RLE: {error}") from None
        else:
            mask = segmentation_mask(segmentation, info.height, info.width, where)
        return mask if mask.any() else None

    @staticmethod
    def _key_frame(
        track: dict[int, object], k: int, key: int | None, mask: Callable[[int, int], np.ndarray | None], where: str
    ) -> int:
        """``frame_idx`` if object ``k`` shows there, else its first annotated frame where it shows."""
        order = ([key] if key in track else []) + sorted(i for i in track if i != key)
        for frame in order:
            if mask(k, frame) is not None:
                return frame
        raise ValueError(f"{where}: object {k} has no mask with pixels on any of its {len(track)} annotated frames")

    def _read(self, info: VideoInfo, sampling: FrameSampling, rng: np.random.Generator, where: str) -> Clip:
        """The sampled frames of the video ``info`` describes; errors keep their type and name the sample."""
        try:
            try:
                indices = sampling.select(info.timestamps, train=self.train, rng=rng)
            except IndexError as error:
                raise FrameIndexError(info.path, str(error)) from None
            decoded = decode_frames(info, indices)
        except VideoError as error:
            raise type(error)(error.path, f"{where}: {error.reason}", error.frame) from None
        return Clip(decoded.frames, indices, info.timestamps[indices], info, decoded.backend, decoded.decoded_frames)

    def _overlay(self, sample: Sample, num_objects: int, rng: np.random.Generator) -> Sample:
        """``sample`` with its prompts drawn (``visual_prompt`` overlay / both), bare ``<object{k}>`` worded alike."""
        if self.visual_prompt == "region":
            return sample
        styles = random_styles(num_objects, rng)
        sample = apply_overlays(sample, styles, self.visual_prompt, rng)

        def word(match: re.Match) -> str:
            k = int(match.group(1))
            if k >= num_objects:
                return match.group(0)
            phrase = overlay_phrase(styles[k])
            return phrase if self.visual_prompt == "overlay" else f"{phrase} {match.group(0)}"

        sample.conversation = [{**turn, "content": _LABEL.sub(word, turn["content"])} for turn in sample.conversation]
        sample.meta["answer"] = sample.conversation[-1]["content"]
        if "options" in sample.meta:
            sample.meta["options"] = [_LABEL.sub(word, option) for option in sample.meta["options"]]
        return sample


# --- loaders ---------------------------------------------------------------------------------------------


def _check_split(name: str, split: str, expected: str) -> None:
    if split != expected:
        raise ValueError(f"{name} has one split, {expected!r}; got {split!r}")


def _bench_q_paths(root: Path, split: str) -> list[Path]:
    return [root / BENCH_Q_FILE]


def _bench_d_paths(root: Path, split: str) -> list[Path]:
    return [root / BENCH_D_FILE, root / BENCH_D_VIDEOS]


def _train_paths(root: Path, split: str) -> list[Path]:
    return [root]  # which JSON files and video folder are options, checked when built


@register_dataset(
    "videorefer_bench_q", family="ref_videoqa", required_paths=_bench_q_paths, evaluated_splits=(TEST_SPLIT,)
)
def build_videorefer_bench_q(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    visual_prompt: str = "region",
    mask_mode: str = "multi",
    fps: float | None = None,
) -> VideoReferDataset:
    """VideoRefer-Bench-Q (``root`` holds ``VideoRefer-Bench-Q.json`` and the ``DAVIS/`` and ``MeViS/`` frame
    folders its ``video`` paths name); its one split is ``test``. Options: see :class:`VideoReferDataset`."""
    _check_split("videorefer_bench_q", split, TEST_SPLIT)
    root = Path(root)
    return VideoReferDataset(
        "videorefer_bench_q",
        "bench_q",
        [root / BENCH_Q_FILE],
        root,
        split,
        num_frames,
        train,
        seed,
        visual_prompt,
        mask_mode,
        fps,
    )


@register_dataset(
    "videorefer_bench_d", family="ref_videoqa", required_paths=_bench_d_paths, evaluated_splits=(TEST_SPLIT,)
)
def build_videorefer_bench_d(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    visual_prompt: str = "region",
    mask_mode: str = "multi",
) -> VideoReferDataset:
    """VideoRefer-Bench-D (``root`` holds ``VideoRefer-Bench-D.json`` and ``Panda-70M-part/``); one split, ``test``."""
    _check_split("videorefer_bench_d", split, TEST_SPLIT)
    root = Path(root)
    return VideoReferDataset(
        "videorefer_bench_d",
        "bench_d",
        [root / BENCH_D_FILE],
        root / BENCH_D_VIDEOS,
        split,
        num_frames,
        train,
        seed,
        visual_prompt,
        mask_mode,
    )


@register_dataset("videorefer", family="ref_videoqa", required_paths=_train_paths)
def build_videorefer(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    json_files: str | Sequence[str] | None = None,
    video_folder: str = TRAIN_VIDEOS,
    visual_prompt: str = "region",
    mask_mode: str = "multi",
    fps: float | None = None,
) -> VideoReferDataset:
    """VideoRefer-700K (``root`` holds the JSON files and ``videos/``); its one split is ``train``.

    ``json_files``: which files under ``root`` to read, in order (a name or a list; ``None``: all of
    :data:`TRAIN_FILES`). ``video_folder``: the folder under ``root`` that ``video`` paths are relative to
    (``"."`` if they start with ``videos/`` themselves). Other options: see :class:`VideoReferDataset`.
    """
    _check_split("videorefer", split, TRAIN_SPLIT)
    root = Path(root)
    names = (
        list(TRAIN_FILES) if json_files is None else [json_files] if isinstance(json_files, str) else list(json_files)
    )
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"videorefer: json_files must be a file name or a non-empty list of them, got {json_files!r}")
    missing = [str(root / n) for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"videorefer: missing annotation file(s) {', '.join(missing)} (option json_files)")
    return VideoReferDataset(
        "videorefer",
        "700k",
        [root / n for n in names],
        root / video_folder,
        split,
        num_frames,
        train,
        seed,
        visual_prompt,
        mask_mode,
        fps,
    )

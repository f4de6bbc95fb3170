"""VideoInfer (RGA3's object-centric video question answering set and benchmark), as released.

On disk, ``<root>`` is the released ``VideoInfer-Release/`` folder (qirui-chen/RGA3-release: README
"VideoInfer Structure"; the train reader ``utils/refer_videoqa_dataset.py``; the test readers
``evaluation/videoinfer/inference_videoinfer.py`` and ``evaluation/videoinfer/baselines/*.py``):

* ``train.json`` / ``test.json``: ``{video: {"frames": [names], "expressions": {exp_id: {"exp": text,
  "anno_id": ..., "QA": {qa_id: {"Q": question, "A": answer}}}}}}`` (no ``"videos"`` wrapper). In
  ``train.json`` ``anno_id`` is a list (the target is their union); in ``test.json`` it is one id
  (RGA3 reads ``mask_dict[str(anno_id)]``; a list is accepted too) and the expression adds the fixed
  visual prompt: ``overlayed_frame_idx`` (the frame it is drawn on), ``color`` and ``shape`` (RGA3's
  names: ``color_pool`` keys and ``words_shape`` keys, where ``"mask contour"`` is
  :mod:`~utils.visual_prompts.overlays`' ``mask_contour``).
* ``mask_dict.json``: ``{anno_id: [COCO RLE or null per frame]}`` for both splits.
* ``frames/<video>/<frame>.jpg``.
* ``visual_prompts/<video>/<exp_id>/<shape>.npz`` (test): the fixed prompt, ``<shape>`` being the
  expression's ``shape`` as written. RGA3 reads ``np.load(...)["arr_0"]``, makes it a PIL image and
  ``Image.alpha_composite``\\ s it on the RGB(A) frame ``overlayed_frame_idx``; so ``arr_0`` is an
  ``(H, W, 4)`` uint8 RGBA layer of the frame's size, transparent where nothing is drawn. That is what
  this loader reads and :mod:`utils.synthetic.videoinfer_format` writes; a file of another form is a
  ``ValueError`` naming it. (The released files were not inspected; this is their readers' contract.)

The split follows ReVOS's, so that no test video is seen in training (README); a ``train`` dataset
refuses to build when ``test.json`` beside it shares a video (:func:`check_no_test_videos`, which a
training mix can call with any dataset's videos; :func:`test_videos` lists them).

One item per ``(video, exp_id, qa_id)``, in sorted order (numeric ids by value); ``sample_id`` is
``videoinfer/<split>/<video>/<exp_id>/<qa_id>``. The user turn is :data:`VIDEOINFER_QUESTION` with the
object as :func:`~utils.data.prompts.object_reference` ``(0)``, at training and at test alike (RGA3 named
the overlay's shape and colour at training but not at test); ``visual_prompt`` (:data:`~utils.visual_prompts.
overlays.VISUAL_PROMPT_MODES`) decides what names it. The object is given on its *prompt frames*, which are
always among the sampled frames (forced into the sampling, as RGA3 appends ``overlayed_frame_idx``):

* ``train``: ``prompt_frames`` frames drawn from those where the object is visible; region prompts are its
  masks there, and with ``"overlay"`` / ``"both"`` a random style (:func:`~utils.visual_prompts.overlays.
  random_styles`) is drawn on them. Every random choice comes from ``np.random.default_rng([seed, index])``.
* ``test``: the one frame ``overlayed_frame_idx``; with ``"overlay"`` / ``"both"`` the fixed RGBA layer is
  composited there (never a newly drawn prompt) and the object is worded by
  :func:`~utils.visual_prompts.overlays.overlay_phrase` of the expression's ``shape`` and ``color``, the
  same words a training overlay of that style gets. A fully transparent layer (RGA3 counts and keeps these)
  keeps the sample, warns, and sets ``meta["empty_prompt"]``. With ``"region"`` / ``"both"`` the region
  prompt is the object's mask on that frame; an empty one is a ``ValueError``.

``Sample.meta``: ``video``, ``exp_id``, ``qa_id``, ``answer`` (also the assistant turn), ``exp`` (if
given), ``category`` (only if a QA entry has one: RGA3's readers use only ``Q`` and ``A``),
``frame_indices``, ``prompt_frame_indices`` (into the video's frames) and, with overlays, ``overlays``.
Frame order: RGA3's test readers index frames, masks and ``overlayed_frame_idx`` in the sorted ``*.jpg``
listing and its train reader in ``frames``; ``frames`` must therefore be sorted (a video without it uses
the sorted folder). ``Sample.timestamps`` count the frames at :data:`VIDEOINFER_FPS` (option ``fps``).
"""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from utils.data.image_io import read_json
from utils.data.mevis import REVOS_FPS
from utils.data.prompts import object_reference
from utils.data.registry import register_dataset
from utils.data.rle import decode_rle, rle_problem
from utils.data.schema import RegionPrompt, Sample, mask_box
from utils.data.video_seg import check_fps, entry_field, frame_names, id_part, text_field
from utils.video.clip import read_annotated_frames
from utils.video.sampling import FrameSampling
from utils.visual_prompts.overlays import (
    OverlayStyle,
    apply_overlays,
    check_mode,
    composite,
    rewrite_conversation,
)

SPLITS = ("train", "test")
"""VideoInfer's splits; ``test`` is the benchmark."""

VIDEOINFER_FPS = REVOS_FPS
"""Frames per second of VideoInfer's frame folders: its videos are ReVOS's (README), so ReVOS's rate."""

VIDEOINFER_QUESTION = "Look at {object} in the video and then answer the question. {question}"
"""The user turn, at training and at test; ``{object}`` is the object reference, ``{question}`` the ``Q``."""

RGA3_SHAPES = {"mask contour": "mask_contour"}
"""RGA3 shape names that differ from :data:`~utils.visual_prompts.overlays.SHAPES` (the others are the same)."""


def shape_name(shape: str) -> str:
    """RGA3's name of an overlay shape, as ``test.json`` and the prompt file names write it."""
    return {ours: theirs for theirs, ours in RGA3_SHAPES.items()}.get(shape, shape)


def _ordered(keys: Iterable[str]) -> list[str]:
    """Ids in order: numeric ones by value first, then the others as strings."""
    return sorted(keys, key=lambda key: (0, int(key), "") if key.isdigit() else (1, 0, key))


def _video_id(video: str, where: str) -> str:
    """``video`` if each of its ``/``-parts may be part of a ``sample_id``."""
    for part in video.split("/"):
        id_part(part, where)
    return video


def _anno_ids(expression: dict, where: str, path: Path) -> tuple[str, ...]:
    """The expression's annotation ids (one id or a non-empty list) as ``mask_dict`` keys."""
    value = entry_field(expression, "anno_id", where, path)
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int | str) for v in values):
        raise ValueError(f"{where}: anno_id {value!r} in {path} must be an id or a non-empty list of ids")
    return tuple(str(v) for v in values)


def _qa_entries(expression: dict, where: str, path: Path) -> list[tuple[str, str, str, dict]]:
    """``(qa_id, Q, A, extra meta)`` of an expression's ``QA`` mapping, in order."""
    qa = entry_field(expression, "QA", where, path)
    if not isinstance(qa, dict) or not qa:
        raise ValueError(f"{where}: 'QA' in {path} must be a non-empty mapping of qa_id -> {{'Q', 'A'}}")
    entries = []
    for qa_id in _ordered(qa):
        where_qa = f"{where}/{id_part(qa_id, where)}"
        extra = {"category": qa[qa_id]["category"]} if isinstance(qa[qa_id], dict) and "category" in qa[qa_id] else {}
        entries.append(
            (qa_id, text_field(qa[qa_id], "Q", where_qa, path), text_field(qa[qa_id], "A", where_qa, path), extra)
        )
    return entries


def _fixed_style(expression: dict, where: str, path: Path) -> OverlayStyle:
    """The test expression's overlay style from its ``shape`` and ``color``."""
    shape, colour = entry_field(expression, "shape", where, path), entry_field(expression, "color", where, path)
    try:
        return OverlayStyle(RGA3_SHAPES.get(shape, shape), colour)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: shape {shape!r} / color {colour!r} in {path}: {error}") from error


def test_videos(root: str | Path) -> set[str]:
    """The videos of VideoInfer's test split (keys of ``<root>/test.json``)."""
    path = Path(root) / "test.json"
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map video -> entry")
    return set(data)


test_videos.__test__ = False  # a library function, not a pytest test, wherever a test module imports it


def check_no_test_videos(videos: Iterable[str], root: str | Path, where: str) -> None:
    """``ValueError`` naming ``where`` if any of ``videos`` (a training set's) is a VideoInfer test video."""
    shared = sorted(set(videos) & test_videos(root))
    if shared:
        listed = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        raise ValueError(
            f"{where}: {len(shared)} videos are also in VideoInfer's test split ({Path(root) / 'test.json'}): "
            f"{listed}; training on them leaks the benchmark"
        )


@dataclass(frozen=True)
class VideoInferItem:
    """One sample's recipe: a question about one expression's object.

    Attributes:
        video, exp_id, qa_id: where it is in the annotation file.
        question, answer: ``Q`` and ``A``.
        anno_ids: ``mask_dict`` keys whose union is the object.
        prompt_frame: (test) ``overlayed_frame_idx``; ``None`` for train (drawn per item).
        style: (test) the fixed prompt's style.
        prompt_file: (test) the fixed prompt's ``.npz``.
        meta: ``exp``, ``category`` where given.
    """

    video: str
    exp_id: str
    qa_id: str
    question: str
    answer: str
    anno_ids: tuple[str, ...]
    prompt_frame: int | None = None
    style: OverlayStyle | None = None
    prompt_file: Path | None = None
    meta: dict = field(default_factory=dict)


class VideoInferDataset(Dataset):
    """VideoInfer samples; ``root`` is the ``VideoInfer-Release/`` folder.

    Args:
        root: the released folder.
        split: ``train`` or ``test``.
        num_frames: frames per sample, one per equal segment (the prompt frames forced in); ``None``: all.
        train: jitter the frame choice inside each segment.
        seed: item ``i`` draws its frames, prompt frames and overlay styles from ``default_rng([seed, i])``.
        visual_prompt: ``"region"``, ``"overlay"`` or ``"both"`` (module docstring).
        prompt_frames: (train) how many frames the object is given on, at most those where it is visible.
        fps: frame rate of the frame folders.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_frames: int | None = None,
        train: bool = False,
        seed: int = 0,
        visual_prompt: str = "overlay",
        prompt_frames: int = 1,
        fps: float = VIDEOINFER_FPS,
    ):
        if split not in SPLITS:
            raise ValueError(f"videoinfer splits are {SPLITS}, got {split!r}")
        if isinstance(prompt_frames, bool) or not isinstance(prompt_frames, int) or prompt_frames < 1:
            raise ValueError(f"prompt_frames must be a positive integer, got {prompt_frames!r}")
        self.root, self.split = Path(root), split
        self.num_frames, self.train, self.seed, self.prompt_frames = num_frames, train, seed, prompt_frames
        self.visual_prompt = check_mode(visual_prompt)
        self.fps = check_fps(fps, f"videoinfer {split}")
        self.frame_dir = self.root / "frames"
        self.annotation_path = self.root / f"{split}.json"
        data = read_json(self.annotation_path)
        if not isinstance(data, dict):
            raise ValueError(f"{self.annotation_path} must map video -> {{'frames', 'expressions'}}")
        if split == "train" and (self.root / "test.json").is_file():
            check_no_test_videos(data, self.root, f"videoinfer train ({self.annotation_path})")
        self.mask_path = self.root / "mask_dict.json"
        self.mask_dict = read_json(self.mask_path)
        if not isinstance(self.mask_dict, dict):
            raise ValueError(f"{self.mask_path} must map anno_id -> [RLE or null per frame]")
        self.frames: dict[str, list[str]] = {}
        self.items: list[VideoInferItem] = []
        for video in sorted(data):
            where = f"videoinfer/{split}/{_video_id(video, video)}"
            self.frames[video] = self._frame_names(data[video], video, where)
            expressions = entry_field(data[video], "expressions", where, self.annotation_path)
            if not isinstance(expressions, dict):
                raise ValueError(f"{where}: 'expressions' in {self.annotation_path} must map exp_id -> entry")
            for exp_id in _ordered(expressions):
                self.items += self._expression_items(video, exp_id, expressions[exp_id], f"{where}/{exp_id}")
        self.ids = [f"videoinfer/{split}/{i.video}/{i.exp_id}/{i.qa_id}" for i in self.items]

    def _frame_names(self, entry: object, video: str, where: str) -> list[str]:
        """The video's frames: ``frames`` of its entry (which must be sorted), else its sorted ``*.jpg`` files."""
        if isinstance(entry, dict) and "frames" in entry:
            names = frame_names(entry, where, self.annotation_path)
            if names != sorted(names):
                raise ValueError(
                    f"{where}: 'frames' in {self.annotation_path} is not sorted; RGA3's readers index frames in "
                    "the sorted order, so the masks and overlayed_frame_idx would refer to other frames"
                )
            return names
        names = sorted(path.stem for path in (self.frame_dir / video).glob("*.jpg"))
        if not names:
            raise FileNotFoundError(
                f"{where}: no 'frames' in {self.annotation_path} and no frames in {self.frame_dir / video}"
            )
        return names

    def _expression_items(self, video: str, exp_id: str, expression: object, where: str) -> list[VideoInferItem]:
        id_part(exp_id, where)
        path = self.annotation_path
        anno_ids = _anno_ids(expression, where, path)
        num_frames = len(self.frames[video])
        for anno_id in anno_ids:
            track = self.mask_dict.get(anno_id)
            if not isinstance(track, list) or len(track) != num_frames:
                found = (
                    "missing" if track is None else f"{len(track)} entries" if isinstance(track, list) else "no list"
                )
                raise ValueError(
                    f"{where}: anno_id {anno_id} in {self.mask_path} is {found}, expected {num_frames} frames"
                )
        prompt_frame = style = prompt_file = None
        if self.split == "test":
            prompt_frame = entry_field(expression, "overlayed_frame_idx", where, path)
            if (
                isinstance(prompt_frame, bool)
                or not isinstance(prompt_frame, int)
                or not 0 <= prompt_frame < num_frames
            ):
                raise ValueError(
                    f"{where}: overlayed_frame_idx {prompt_frame!r} in {path} is not a frame of {num_frames}"
                )
            style = _fixed_style(expression, where, path)
            prompt_file = self.root / "visual_prompts" / video / exp_id / f"{expression['shape']}.npz"
        meta = {"exp": expression["exp"]} if "exp" in expression else {}
        return [
            VideoInferItem(video, exp_id, qa_id, q, a, anno_ids, prompt_frame, style, prompt_file, {**meta, **extra})
            for qa_id, q, a, extra in _qa_entries(expression, where, path)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no image)."""
        return list(self.ids)

    def keys(self) -> list[tuple[str, str, str]]:
        """``(video, exp_id, qa_id)`` of every item, in item order."""
        return [(item.video, item.exp_id, item.qa_id) for item in self.items]

    def videos(self) -> set[str]:
        """The split's videos (for a training mix's leakage check)."""
        return set(self.frames)

    def _rle(self, anno_id: str, frame: int) -> object:
        return self.mask_dict[anno_id][frame]

    def visible_frames(self, item: VideoInferItem, where: str) -> list[int]:
        """Indices of the video's frames where the object's mask is non-empty (read without decoding)."""
        visible = []
        for frame in range(len(self.frames[item.video])):
            for anno_id in item.anno_ids:
                rle = self._rle(anno_id, frame)
                if rle is None:
                    continue
                size = rle.get("size") if isinstance(rle, dict) else None
                problem = (
                    rle_problem(rle, int(size[0]), int(size[1]))
                    if isinstance(size, list) and len(size) == 2
                    else "expected {'size': [h, w], 'counts': str}"
                )
                if problem is not None:
                    raise ValueError(
                        f"{where}: malformed RLE in {self.mask_path} (anno_id {anno_id}, frame {frame}): {problem}"
                    )
                if mask_utils.area({"size": size, "counts": rle["counts"].encode()}) > 0:
                    visible.append(frame)
                    break
        return visible

    def object_mask(self, item: VideoInferItem, frame: int, size: tuple[int, int], where: str) -> np.ndarray:
        """``(H, W)`` bool union of the object's annotations on video frame ``frame``."""
        union = np.zeros(size, dtype=bool)
        for anno_id in item.anno_ids:
            try:
                union |= decode_rle(self._rle(anno_id, frame), *size)
            except ValueError as error:
                raise ValueError(
                    f"{where}: malformed RLE in {self.mask_path} (anno_id {anno_id}, frame {frame}): {error}"
                ) from error
        return union

    def read_prompt_layer(self, item: VideoInferItem, size: tuple[int, int], where: str) -> np.ndarray:
        """The fixed test prompt: ``(H, W, 4)`` uint8 RGBA ``arr_0`` of the item's ``.npz``."""
        path = item.prompt_file
        if not path.is_file():
            raise FileNotFoundError(f"{where}: missing fixed visual prompt {path}")
        try:
            with np.load(path) as archive:
                layer = archive["arr_0"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(f"{where}: cannot read 'arr_0' of the visual prompt {path}: {error}") from error
        if layer.dtype != np.uint8 or layer.shape != (*size, 4):
            raise ValueError(
                f"{where}: visual prompt {path} is {layer.shape} {layer.dtype}, expected an RGBA layer "
                f"{(*size, 4)} uint8 of the frame's size"
            )
        return layer

    def __getitem__(self, index: int) -> Sample:
        item, sample_id = self.items[index], self.ids[index]
        where = f"sample {sample_id}"
        names = self.frames[item.video]
        rng = np.random.default_rng([self.seed, index])
        if item.prompt_frame is None:
            visible = self.visible_frames(item, where)
            if not visible:
                raise ValueError(
                    f"{where}: the object (anno_id {', '.join(item.anno_ids)}) is in no frame of {self.mask_path}"
                )
            chosen = rng.choice(visible, size=min(self.prompt_frames, len(visible)), replace=False)
            prompt_frames = sorted(int(frame) for frame in chosen)
        else:
            prompt_frames = [item.prompt_frame]
        sampling = FrameSampling(num_frames=self.num_frames, force=tuple(prompt_frames))
        clip = read_annotated_frames(
            self.frame_dir / item.video, names, sampling, where, fps=self.fps, train=self.train, rng=rng
        )
        size = clip.frames.shape[1:3]
        regions = []
        if self.split == "train" or self.visual_prompt != "overlay":
            for frame in prompt_frames:
                mask = self.object_mask(item, frame, size, where)
                if not mask.any():
                    raise ValueError(
                        f"{where}: the object (anno_id {', '.join(item.anno_ids)}) is empty on its prompt frame "
                        f"{frame} ({names[frame]}) in {self.mask_path}"
                    )
                regions.append(RegionPrompt(frame=clip.indices.index(frame), mask=mask, box=mask_box(mask), region=0))
        question = VIDEOINFER_QUESTION.format(object=object_reference(0), question=item.question)
        sample = Sample(
            sample_id=sample_id,
            frames=clip.frames,
            frame_names=clip.frame_names,
            conversation=[{"role": "user", "content": question}, {"role": "assistant", "content": item.answer}],
            timestamps=clip.timestamps,
            regions=regions,
            meta={
                "video": item.video,
                "exp_id": item.exp_id,
                "qa_id": item.qa_id,
                "answer": item.answer,
                **item.meta,
                "frame_indices": clip.indices,
                "prompt_frame_indices": prompt_frames,
            },
        )
        if self.split == "train":
            return apply_overlays(sample, None, self.visual_prompt, rng)
        return self._fixed_overlay(sample, item, clip.indices.index(item.prompt_frame), where)

    def _fixed_overlay(self, sample: Sample, item: VideoInferItem, frame: int, where: str) -> Sample:
        """The test sample with its fixed prompt layer composited on ``frame`` (a sample frame index)."""
        if self.visual_prompt == "region":
            return sample
        layer = self.read_prompt_layer(item, sample.frames.shape[1:3], where)
        meta = dict(sample.meta)
        if not layer[..., 3].any():
            warnings.warn(f"{where}: the fixed visual prompt {item.prompt_file} is fully transparent", stacklevel=2)
            meta["empty_prompt"] = True
        frames = sample.frames.copy()
        frames[frame] = composite(frames[frame], layer)
        meta["overlays"] = [
            {
                "region": 0,
                "frame": frame,
                "shape": item.style.shape,
                "colour": item.style.colour,
                "file": str(item.prompt_file),
            }
        ]
        return dataclasses.replace(
            sample,
            frames=frames,
            conversation=rewrite_conversation(sample.conversation, [item.style], self.visual_prompt),
            regions=sample.regions if self.visual_prompt == "both" else [],
            meta=meta,
        )


def _videoinfer_paths(root: Path, split: str) -> list[Path]:
    prompts = [root / "visual_prompts"] if split == "test" else []
    return [root / f"{split}.json", root / "mask_dict.json", root / "frames", *prompts]


@register_dataset("videoinfer", family="ref_videoqa", required_paths=_videoinfer_paths, evaluated_splits=("test",))
def build_videoinfer(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    visual_prompt: str = "overlay",
    prompt_frames: int = 1,
    fps: float = VIDEOINFER_FPS,
) -> VideoInferDataset:
    """VideoInfer as released (``root`` = ``VideoInfer-Release/``); benchmark split ``test``.

    ``visual_prompt``: ``"overlay"`` (RGA3's way, the default), ``"region"`` or ``"both"``;
    ``prompt_frames``: (train) frames the object is given on; ``fps``: frame rate of the frame folders.
    """
    return VideoInferDataset(root, split, num_frames, train, seed, visual_prompt, prompt_frames, fps)

"""3D scene benchmarks over scene folders: what ScanRefer, Multi3DRefer, Scan2Cap, ScanQA and SQA3D loaders share.

Every item names a scan (``scene_id``) whose scene folder (:mod:`utils.scene3d.scene_folder`) lies under
``<root>/<scene_root>/<scene_id>/``. A :class:`~utils.data.schema.Sample` holds the frames chosen by a
:class:`~utils.video.sampling.FrameSampling` (strategy option ``frame_sampling``, default ``"uniform"`` over
``num_frames``; ``"mc-ratio90"`` / ``"mc-ratio95"`` / ``"max_coverage"`` get each frame's voxels from
:func:`~utils.scene3d.coverage.scene_frame_voxels`, other plug-ins get the :class:`Scene` as
``options["scene"]``), ``scene`` (their posed depth), ``proposals`` ``(N, 6)`` (``<OBJ{k:03d}>`` is row ``k``),
one user turn from the templates below and the answer. Frames keep their stored size (the collator resizes).
:func:`scene_frame_indices` is that frame choice, for the loaders and the demo alike; :meth:`Scene3DDataset.item`
is an item without its frames (what scoring reads).

Loader option ``view`` (:data:`VIEWS`): ``"video"`` (the default) is the sample above; ``"gpt4scene"`` is
GPT4Scene's protocol (:func:`~utils.scene3d.gpt4scene_view.gpt4scene_view` over the sample's own frames): the
marked BEV then the marked frames as ``1 + T`` images, in GPT4Scene's wording, without ``scene`` (no depth is
read for it).

Two on-disk layouts (loader option ``layout``; ``None`` picks the one whose file exists, and refuses to
guess when both do):

* ``"official"``: the benchmarks' own JSON files as released (each benchmark module names them and its
  fields); Chat-Scene and GPT4Scene start from these same files.
* ``"llava"``: Video-3D LLM's converted files (``scripts/3d/preprocessing/process_*.py`` in
  zd11024/Video-3D-LLM, :data:`LLAVA_FILES`): a JSON list of ``{"id", "video": "scannet/<scene_id>",
  "conversations": [{"from": "human", "value": "<image>..."}, {"from": "gpt", "value": ...}], "metadata":
  {"dataset", "question_type", "ann_id", "object_id"}}`` with, for grounding, answer ``"<ground>"`` and
  ``"box"`` (the ground-truth centre + size, a list of them for Multi3DRefer) and, for Scan2Cap,
  ``"gt_box"``, ``"box_input"`` and (validation) ``"annotations"`` (every reference caption). GPT4Scene's
  training file is a LLaMA-Factory ShareGPT list whose exact fields are not public; what is assumed: the
  same ``conversations``, a ``scene_id`` field instead of ``video`` being accepted, and grounding answers
  naming proposals as ``<OBJ###>`` (Chat-Scene's ``"<OBJ012>."``) instead of giving ``"box"``.

The user turn is rebuilt from the templates below (``*_QUESTION``) whatever the layout, so both layouts of
one annotation give the same sample: a LLaVA turn is matched against :data:`LLAVA_TEMPLATES` (Video-3D LLM's wording) to
recover its description or question; a turn matching none is kept as written (``meta["prompt_source"]``
``"file"``, else ``"template"``). Grounding answers (loader option ``grounding``, :data:`GROUNDING_STYLES`) either
name the proposal with the highest IoU to each ground-truth box, if it reaches ``match_iou``
(:func:`grounding_answer`), else say :data:`NO_OBJECT_ANSWER` (``"ids"``, GPT4Scene style), or are one ``[GRD]``
(:data:`~utils.data.prompts.PROPOSAL_GROUNDING_ANSWER`) with the ground-truth boxes in ``Sample.boxes_3d`` for the
proposal grounding head (``"head"``, Video-3D LLM style).

Every loader is registered with a builder from :func:`scene_loader`, whose signature lists its options (so a
config's unknown option is refused by name at start-up, :mod:`utils.data.mixture`).

Errors: a malformed item raises ``ValueError`` naming the sample and its file (training counts it as a
skip, :mod:`utils.data.robust`); a missing scene folder raises ``FileNotFoundError`` naming the folder.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.image_io import read_json
from utils.data.llava_conversation import chat_turns
from utils.data.schema import RegionPrompt, Sample, SceneGeometry
from utils.scene3d.boxes import box_iou_3d
from utils.scene3d.coverage import scene_frame_voxels
from utils.scene3d.gpt4scene_view import gpt4scene_view
from utils.scene3d.object_ids import format_object_id, parse_object_ids
from utils.scene3d.scene_folder import Scene, read_scene
from utils.video.sampling import FrameSampling

LAYOUTS = ("official", "llava")
SCENE_ROOT = "scenes"
"""Default folder of the scene folders, under the loader's root."""
MATCH_IOU = 0.25
"""A ground-truth box is named by its best proposal only if their IoU reaches this (loader option ``match_iou``)."""
COVERAGE_STRATEGIES = ("mc-ratio90", "mc-ratio95", "max_coverage")
"""Frame samplers that read ``options["frame_voxels"]``."""
GROUNDING_STYLES = ("ids", "head")
"""How grounding answers name their objects: ``<OBJ###>`` ids in the text, or a ``[GRD]`` for the proposal head."""
VIEWS = ("video", "gpt4scene")
"""What a sample shows the model (loader option ``view``, see the module docstring)."""

# --- prompt templates: the one place they are written ----------------------------------------------------

GROUNDING_QUESTION = "Identify the object according to the following description.\n{description}"
MULTI_GROUNDING_QUESTION = (
    GROUNDING_QUESTION + "\nThere may be no corresponding object, or there may be one or more objects."
)
CAPTION_QUESTION = "Describe the object {object} in detail."
QA_INSTRUCTION = "Answer the question using a single word or phrase."
QA_QUESTION = "{question} " + QA_INSTRUCTION
"""ScanQA's question, and SQA3D's situation and question joined by a space."""
NO_OBJECT_ANSWER = "No such object."

LLAVA_TEMPLATES = {
    "scanrefer": ("Identify the object according to the following description.\n{text}",),
    "multi3drefer": (
        "Identify the object according to the following description.\n{text}\n"
        "There may be no corresponding object, or there may be one or more objects.",
    ),
    "scan2cap": ("Given an object located at <coord> , describe the object in detail.",),
    "scanqa": ("{text} Answer the question simply.", "{text} " + QA_INSTRUCTION),
    "sqa3d": ("{text} " + QA_INSTRUCTION,),
}
"""Video-3D LLM's user turns (its ``process_*.py``, media tag removed), first one written by the synthetic
writer; ``{text}`` is the description, question, or situation and question."""
LLAVA_FILES = {
    "scanrefer": "scanrefer_vg_{split}_llava_style.json",
    "multi3drefer": "multi3drefer_{split}_llava_style.json",
    "scan2cap": "scan2cap_{split}_llava_style.json",
    "scanqa": "scanqa_{split}_llava_style.json",
    "sqa3d": "sqa3d_{split}_llava_style.json",
}
LLAVA_GROUND_TOKEN = "<ground>"
"""Video-3D LLM's grounding answer (its head picks the proposal)."""
LLAVA_VIDEO_PREFIX = "scannet/"
"""How Video-3D LLM's ``video`` names a scan: ``scannet/<scene_id>``."""


def sentence(text: str) -> str:
    """``text`` stripped with its first letter upper case (Video-3D LLM capitalises descriptions)."""
    text = text.strip()
    return text[:1].upper() + text[1:]


def grounding_answer(proposal_ids: Sequence[int]) -> str:
    """``"<OBJ003>."``, ``"<OBJ003> and <OBJ007>."``, ``"<OBJ001>, <OBJ003>, and <OBJ007>."``, or
    :data:`NO_OBJECT_ANSWER` for none (ids sorted, each once)."""
    names = [format_object_id(i) for i in sorted(set(int(i) for i in proposal_ids))]
    if not names:
        return NO_OBJECT_ANSWER
    if len(names) <= 2:
        return " and ".join(names) + "."
    return ", ".join(names[:-1]) + f", and {names[-1]}."


def question_type(question: str) -> str:
    """The question's first word among ``what``, ``is``, ``how``, ``can``, ``which``, else ``others`` (the
    SQA3D breakdown Video-3D LLM and Chat-Scene report)."""
    first = question.strip().split(" ", 1)[0].lower() if question.strip() else ""
    return first if first in ("what", "is", "how", "can", "which") else "others"


def template_text(text: str, templates: Sequence[str]) -> str | None:
    """The ``{text}`` part of ``text`` under the first of ``templates`` it matches (``""`` for a template
    without a slot that matches), else ``None``."""
    for template in templates:
        prefix, _, suffix = template.partition("{text}")
        if "{text}" not in template:
            if text == template:
                return ""
        elif text.startswith(prefix) and text.endswith(suffix) and len(text) > len(prefix) + len(suffix):
            return text[len(prefix) : len(text) - len(suffix)].strip()
    return None


def match_proposals(gt_boxes: np.ndarray, proposals: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Each ground-truth box's best proposal: ``(ids (K,), ious (K,))``, ``ids`` -1 where the best IoU is below
    ``min_iou`` or there is no proposal. Boxes are ``(K, 6)`` and ``(N, 6)`` centre + size."""
    if len(gt_boxes) == 0 or len(proposals) == 0:
        return np.full(len(gt_boxes), -1, np.int64), np.zeros(len(gt_boxes))
    ious = box_iou_3d(np.asarray(gt_boxes, np.float64), np.asarray(proposals, np.float64))
    best = ious.argmax(axis=1)
    best_iou = ious[np.arange(len(best)), best]
    return np.where(best_iou >= min_iou, best, -1), best_iou


# --- reading items -------------------------------------------------------------------------------------


def text_field(item: dict, key: str, where: str) -> str:
    """``item[key]`` as a non-empty stripped string; ``ValueError`` naming ``where`` otherwise."""
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty string, got {str(value)[:80]!r}")
    return value.strip()


def object_id(value: object, where: str) -> int:
    """An object id written as an int or a string of digits (ScanRefer writes ``"27"``)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise ValueError(f"{where}: object id {value!r} is not a non-negative integer")


def box_list(value: object, where: str, key: str) -> np.ndarray:
    """``(K, 6)`` boxes from one ``[cx, cy, cz, sx, sy, sz]`` or a list of them (``[]``: none)."""
    try:
        boxes = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        boxes = None
    if boxes is None or not (boxes.shape in ((6,), (0,)) or (boxes.ndim == 2 and boxes.shape[1] == 6)):
        raise ValueError(f"{where}: {key!r} must be a centre + size box or a list of them, got {str(value)[:80]!r}")
    if not np.isfinite(boxes).all() or (boxes.reshape(-1, 6)[:, 3:] < 0).any():
        raise ValueError(f"{where}: {key!r} has a non-finite box or a negative size")
    return boxes.reshape(-1, 6)


@dataclass
class Annotation:
    """One item as read from either layout.

    Attributes:
        scene_id: the scan.
        text: the description (grounding, captions), or the question (ScanQA; SQA3D: situation + question).
        object_ids: ground-truth object ids (``objects.npz``) the item is about.
        answers: reference answers (QA) or captions (Scan2Cap); empty for grounding.
        boxes: ``(K, 6)`` ground-truth boxes the file gives (LLaVA ``box``), else ``None`` (looked up by id).
        proposal_ids: proposals a LLaVA answer names as ``<OBJ###>`` (GPT4Scene style), else ``None``.
        prompt: the file's user turn when it matches no known template, else ``None``.
        meta: benchmark fields passed to ``Sample.meta`` (``ann_id``, ``question_id``, ``eval_type``, ...).
    """

    scene_id: str
    text: str
    object_ids: list[int] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    boxes: np.ndarray | None = None
    proposal_ids: list[int] | None = None
    prompt: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LlavaItem:
    """The parts of a LLaVA-style item every benchmark reads: scene, user and assistant text, ``metadata``, and
    the item itself (``raw``) for benchmark fields."""

    scene_id: str
    user: str
    answer: str
    metadata: dict
    raw: dict

    @classmethod
    def parse(cls, item: dict, where: str) -> LlavaItem:
        """Read ``item`` (scene from ``scene_id`` or the last part of ``video``); ``ValueError`` naming ``where``."""
        if isinstance(item.get("scene_id"), str) and item["scene_id"].strip():
            scene_id = item["scene_id"].strip()
        else:
            scene_id = Path(text_field(item, "video", where)).name
        turns = chat_turns(item.get("conversations"), where)
        if len(turns) != 2:
            raise ValueError(f"{where}: expected one question and one answer, got {len(turns)} turns")
        metadata = item.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError(f"{where}: 'metadata' must be an object, got {str(metadata)[:80]!r}")
        return cls(scene_id, turns[0]["content"], turns[1]["content"], metadata, item)

    def proposal_ids(self) -> list[int] | None:
        """The ``<OBJ###>`` ids the answer names, or ``None`` if it names none."""
        ids = list(parse_object_ids(self.answer).ids)
        return ids or None


def resolve_layout(name: str, layout: str | None, official: Sequence[Path], llava: Path) -> tuple[str, list[Path]]:
    """The layout and its files: ``layout`` as given, or (``None``) the one whose files all exist."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"{name}: layout must be one of {LAYOUTS} or None, got {layout!r}")
    has_official, has_llava = all(p.is_file() for p in official), llava.is_file()
    if layout is None:
        if has_official and has_llava:
            raise ValueError(f"{name}: both {official[0]} and {llava} exist; pass layout='official' or 'llava'")
        if not has_official and not has_llava:
            listed = ", ".join(str(p) for p in official)
            raise FileNotFoundError(f"{name}: no annotation file: neither {listed} (official) nor {llava} (llava)")
        layout = "llava" if has_llava else "official"
    files = list(official) if layout == "official" else [llava]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: missing annotation file(s) {', '.join(missing)} (layout {layout!r})")
    return layout, files


def read_items(path: Path, key: str | None = None) -> list:
    """The JSON list in ``path`` (or under ``key`` of its top-level object); ``ValueError`` naming the file."""
    data = read_json(path)
    if key is not None:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{path}: expected an object with a list under {key!r}")
        return data[key]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    return data


def scene_frame_indices(
    scene: Scene,
    strategy: str,
    num_frames: int | None,
    train: bool = False,
    rng: np.random.Generator | None = None,
    options: Mapping | None = None,
    voxels_cache: dict[str, list[np.ndarray]] | None = None,
    where: str | None = None,
) -> list[int]:
    """Indices of the frames of ``scene`` that :class:`FrameSampling` ``strategy`` chooses (see the module docstring).

    Args:
        scene: the scene folder; its :class:`Scene` is ``options["scene"]`` of the strategy.
        strategy: the strategy's name; num_frames: how many frames (``None``: all).
        train: turn on the strategy's jitter, drawn from ``rng``.
        options: the strategy's other options.
        voxels_cache: each scene's frame voxels by ``scene_id``, for the coverage strategies
            (:data:`COVERAGE_STRATEGIES`): read from it, filled on a miss; ``None``: computed for this call.
        where: what errors name (default: the scene folder).
    Returns:
        Frame indices, increasing. ``ValueError`` naming ``where`` and the strategy when it cannot choose.
    """
    options = {**(options or {}), "scene": scene}
    if strategy in COVERAGE_STRATEGIES:
        voxels = voxels_cache if voxels_cache is not None else {}
        if scene.scene_id not in voxels:
            voxels[scene.scene_id] = scene_frame_voxels(scene)
        options["frame_voxels"] = voxels[scene.scene_id]
    try:
        sampling = FrameSampling(strategy, num_frames=num_frames, options=options)
        return sampling.select(scene.timestamps, train=train, rng=rng)
    except (IndexError, ValueError) as error:
        raise ValueError(f"{where or scene.folder}: frame sampling {strategy!r}: {error}") from None


# --- the data set --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One sample's source: ``item`` (or several, grouped) at ``position`` of ``path``; ``key`` ends its id."""

    path: Path
    position: int
    item: object
    key: str


@dataclass(frozen=True)
class ItemView:
    """One item without its frames: everything of its sample that needs no frame or depth map.

    Attributes:
        sample_id: the sample's id.
        where: how errors name it (``sample <id> (item <position> of <file>)``).
        annotation: the item as read from its file.
        scene: its scene folder's metadata (proposals ``(N, 6)``, ground truth, frame names and poses).
        user: the user turn; answer: the assistant turn (the reference).
        meta: the sample's ``meta`` but ``frame_indices`` (the frames are chosen when they are read).
    """

    sample_id: str
    where: str
    annotation: Annotation
    scene: Scene
    user: str
    answer: str
    meta: dict


class Scene3DDataset(Dataset):
    """Samples of one benchmark (subclasses read its fields; see the module docstring).

    Args:
        name: loader name, first part of every ``sample_id`` (``<name>/<split>/<key>``).
        root: the benchmark folder; split: its split.
        layout: ``"official"`` or ``"llava"``; files: what that layout reads for ``split``.
        num_frames: frames per sample; ``None``: all.
        train: jitter the uniform frame choice (item ``i`` draws from ``default_rng([seed, i])``).
        scene_root: folder of the scene folders (relative to ``root`` or absolute).
        frame_sampling: a :class:`FrameSampling` strategy; sampling_options: its ``options``.
        match_iou: see :data:`MATCH_IOU`.
        view: what a sample shows the model, one of :data:`VIEWS` (see the module docstring).
    """

    kind = ""
    """The benchmark's key in :data:`LLAVA_TEMPLATES` / :data:`LLAVA_FILES`."""

    def __init__(
        self,
        name: str,
        root: Path,
        split: str,
        layout: str,
        files: Sequence[Path],
        num_frames: int | None = None,
        train: bool = False,
        seed: int = 0,
        scene_root: str = SCENE_ROOT,
        frame_sampling: str = "uniform",
        sampling_options: dict | None = None,
        match_iou: float = MATCH_IOU,
        view: str = "video",
    ):
        if not 0 <= match_iou <= 1:
            raise ValueError(f"{name}: match_iou must be in [0, 1], got {match_iou}")
        if view not in VIEWS:
            raise ValueError(f"{name}: view must be one of {VIEWS}, got {view!r}")
        self.name, self.split, self.layout, self.files = name, split, layout, [Path(p) for p in files]
        self.scene_root = Path(root) / scene_root
        self.num_frames, self.train, self.seed, self.match_iou = num_frames, train, seed, match_iou
        self.frame_sampling, self.sampling_options = frame_sampling, dict(sampling_options or {})
        self.view = view
        self.entries = self.read_entries()
        self.ids = [f"{name}/{split}/{entry.key}" for entry in self.entries]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"{name} {split}: sample ids repeat in {self.files}")
        self._scenes: dict[str, Scene] = {}
        self._voxels: dict[str, list[np.ndarray]] = {}

    # --- what subclasses define ---

    def read_entries(self) -> list[Entry]:
        """One entry per item of the layout's one file (override to join or group files)."""
        path = self.files[0]
        return [Entry(path, position, item, str(position)) for position, item in enumerate(read_items(path))]

    def parse_official(self, entry: Entry, where: str) -> Annotation:
        raise NotImplementedError

    def parse_llava(self, item: LlavaItem, where: str) -> Annotation:
        raise NotImplementedError

    def conversation(self, annotation: Annotation, scene: Scene, where: str) -> tuple[str, str, dict]:
        """``(user turn, answer, meta)`` of an annotation in its scene."""
        raise NotImplementedError

    def region_prompts(self, meta: dict, geometry: SceneGeometry, frame_size: tuple[int, int]) -> list[RegionPrompt]:
        """Prompts for the user turn's ``<region>`` placeholders on the sample's frames (``geometry``: theirs,
        ``frame_size``: ``(H, W)`` of its colour frames; ``view="video"`` only); none by default."""
        return []

    def target_fields(self, meta: dict) -> dict:
        """Typed :class:`~utils.data.schema.Sample` targets beyond the conversation (e.g. ``boxes_3d``), from the
        item's ``meta`` (:attr:`ItemView.meta`, which holds what :meth:`conversation` returned); none by default."""
        return {}

    # --- the sample ---

    def __len__(self) -> int:
        return len(self.entries)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no scene)."""
        return list(self.ids)

    def item(self, index: int) -> ItemView:
        """Item ``index`` read from its file and its scene's metadata, without a frame or depth map."""
        entry, sample_id = self.entries[index], self.ids[index]
        where = f"sample {sample_id} (item {entry.position} of {entry.path})"
        if self.layout == "official":
            annotation = self.parse_official(entry, where)
        else:
            if not isinstance(entry.item, dict):
                raise ValueError(f"{where}: an item must be a JSON object, got {type(entry.item).__name__}")
            annotation = self.parse_llava(LlavaItem.parse(entry.item, where), where)
        scene = self.scene(annotation.scene_id, where)
        user, answer, meta = self.conversation(annotation, scene, where)
        meta = {
            **annotation.meta,
            **meta,
            "scene_id": annotation.scene_id,
            "answer": answer,
            "prompt_source": "file" if annotation.prompt is not None else "template",
            "layout": self.layout,
            "source_file": entry.path.name,
        }
        return ItemView(sample_id, where, annotation, scene, user, answer, meta)

    def __getitem__(self, index: int) -> Sample:
        item = self.item(index)
        return self.sample([item], index, item.sample_id)

    def sample(self, items: Sequence[ItemView], index: int, sample_id: str) -> Sample:
        """The sample of ``items`` of one scene asked in turn (one user and one assistant turn each; usually one
        item), on the frames chosen for ``index``. Each item's ``<object{k}>`` region references are renumbered
        after the previous items' (:meth:`region_prompts`); ``meta`` is the first item's, with ``questions``
        (every item's ``sample_id``) and ``turn_boxes`` (per item its ``gt_boxes``: the ``(K, 6)`` boxes of the
        objects its question is about, ``None`` where unknown) when there are several."""
        scene = items[0].scene
        if any(item.scene is not scene for item in items):
            raise ValueError(f"{sample_id}: the items of one sample must share a scene")
        indices = self.frame_indices(scene, index, items[0].where)
        frames = scene.read_colors(indices)
        geometry = scene.geometry(indices) if self.view == "video" else None
        conversation, regions, targets = [], [], []
        for item in items:
            prompts = [] if geometry is None else self.region_prompts(item.meta, geometry, frames.shape[1:3])
            user, offset = item.user, len({prompt.region for prompt in regions})
            for k in sorted({prompt.region for prompt in prompts}, reverse=True):
                user = user.replace(f"<object{k}>", f"<object{k + offset}>")
            regions += [replace(prompt, region=prompt.region + offset) for prompt in prompts]
            conversation += [{"role": "user", "content": user}, {"role": "assistant", "content": item.answer}]
            targets.append(self.target_fields(item.meta))
        meta = {**items[0].meta, "frame_indices": indices}
        if len(items) > 1:
            meta["questions"] = [item.sample_id for item in items]
            meta["turn_boxes"] = [item.meta.get("gt_boxes") for item in items]
        sample = Sample(
            sample_id=sample_id,
            frames=frames,
            frame_names=[scene.frame_names[i] for i in indices],
            conversation=conversation,
            timestamps=scene.timestamps[indices],
            regions=regions,
            scene=geometry,
            proposals=scene.proposals.boxes,
            proposal_labels=[str(label) for label in scene.proposals.labels],
            **merge_target_fields(targets, sample_id),
            meta=meta,
        )
        return sample if self.view == "video" else gpt4scene_view(sample, scene, num_frames=None)

    def scene(self, scene_id: str, where: str) -> Scene:
        """The scene folder's metadata (read once per data set)."""
        if scene_id not in self._scenes:
            try:
                self._scenes[scene_id] = read_scene(self.scene_root / scene_id)
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{where}: {error}") from None
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
        return self._scenes[scene_id]

    def frame_indices(self, scene: Scene, index: int, where: str) -> list[int]:
        """The frames of sample ``index`` (:func:`scene_frame_indices`; jitter drawn from ``default_rng([seed,
        index])``)."""
        return scene_frame_indices(
            scene,
            self.frame_sampling,
            self.num_frames,
            train=self.train,
            rng=np.random.default_rng([self.seed, index]),
            options=self.sampling_options,
            voxels_cache=self._voxels,
            where=where,
        )

    # --- helpers for subclasses ---

    def gt_boxes(self, annotation: Annotation, scene: Scene, where: str) -> np.ndarray:
        """``(K, 6)`` ground-truth boxes: the file's, else its object ids' in ``objects.npz``, else the boxes of
        the proposals its answer names."""
        if annotation.boxes is not None:
            return annotation.boxes
        if annotation.object_ids or annotation.proposal_ids is None:
            return self.object_boxes(annotation.object_ids, scene, where)
        ids = [i for i in annotation.proposal_ids if i < len(scene.proposals)]
        if len(ids) != len(annotation.proposal_ids):
            raise ValueError(
                f"{where}: the answer names proposals {annotation.proposal_ids}; the scene has {len(scene.proposals)}"
            )
        return scene.proposals.boxes[ids].astype(np.float64)

    @staticmethod
    def object_boxes(object_ids: Sequence[int], scene: Scene, where: str) -> np.ndarray:
        """``(K, 6)`` boxes of ground-truth ``object_ids`` in ``objects.npz``."""
        if scene.objects is None:
            if not object_ids:
                return np.zeros((0, 6))
            raise ValueError(f"{where}: scene folder {scene.folder} has no objects.npz for object ids {object_ids}")
        rows = {int(i): k for k, i in enumerate(scene.objects.object_ids)}
        unknown = [i for i in object_ids if i not in rows]
        if unknown:
            raise ValueError(f"{where}: object ids {unknown} are not in {scene.folder / 'objects.npz'}")
        return scene.objects.boxes[[rows[i] for i in object_ids]].astype(np.float64).reshape(-1, 6)

    @staticmethod
    def object_label(object_id_: int, scene: Scene) -> str | None:
        """The class of ground-truth object ``object_id_``, or ``None`` if unknown."""
        if scene.objects is None:
            return None
        rows = np.flatnonzero(scene.objects.object_ids == object_id_)
        return str(scene.objects.labels[rows[0]]) if len(rows) else None

    def user_turn(self, annotation: Annotation, template: str, **fields: str) -> str:
        """The file's own user turn if it matched no template, else ``template`` filled in."""
        return annotation.prompt if annotation.prompt is not None else template.format(**fields)

    def llava_text(self, item: LlavaItem) -> tuple[str, str | None]:
        """``(text, prompt)``: the ``{text}`` of a known template, or the whole turn and the turn itself."""
        text = template_text(item.user, LLAVA_TEMPLATES[self.kind])
        return (text, None) if text is not None else (item.user, item.user)


def merge_target_fields(fields: Sequence[dict], sample_id: str) -> dict:
    """The :class:`~utils.data.schema.Sample` targets of several items asked in turn: the ``boxes_3d`` (and
    ``situations``) of those that have them (turns with a ``[GRD]`` / ``[SIT]``) one after the other, and their
    common ``grounding_multi``."""
    if len(fields) == 1:
        return dict(fields[0])
    targeted = [field for field in fields if field]
    if not targeted:
        return {}
    if len({frozenset(field) for field in targeted}) != 1 or len({f.get("grounding_multi") for f in targeted}) != 1:
        raise ValueError(f"{sample_id}: the items asked in turn have different kinds of targets")
    merged = dict(targeted[0])
    for name in ("boxes_3d", "situations"):  # one entry per [GRD] / [SIT], in turn order
        if name in merged:
            merged[name] = [entry for field in targeted for entry in field[name]]
    return merged


class SceneQuestionGroups(Dataset):
    """Training samples that ask several questions about one scene in turn, on one set of frames.

    A scene's video costs far more tokens than a question about it, so each forward pass trains on
    ``questions_per_sample`` of its questions (a multi-turn conversation; each grounding answer keeps its own
    ``[GRD]`` and targets). Items are grouped per scene and kind of targets (none, single-target, multi-target
    grounding: a sample is one or the other), in an order drawn from ``seed``; a scene's last group of a kind may be
    smaller. Items that cannot be read (a malformed annotation, an object no proposal covers) join no
    group: they are counted and named once, when the groups are made (:attr:`skipped`, a warning).

    Args:
        dataset: a training :class:`Scene3DDataset`; questions_per_sample: items per sample (>= 2).
    """

    def __init__(self, dataset: Scene3DDataset, questions_per_sample: int, seed: int = 0):
        if questions_per_sample < 2:
            raise ValueError(f"questions_per_sample must be at least 2 to group, got {questions_per_sample}")
        self.dataset = dataset
        self.groups: list[list[int]] = []
        self.skipped: list[str] = []
        """The errors of the items left out."""
        by_scene: dict[tuple, list[int]] = {}
        for index in range(len(dataset)):
            try:
                item = dataset.item(index)
            except (ValueError, FileNotFoundError) as error:
                self.skipped.append(str(error))
                continue
            targets = dataset.target_fields(item.meta)
            kind = (tuple(sorted(targets)), targets.get("grounding_multi")) if targets else ()
            by_scene.setdefault((item.annotation.scene_id, kind), []).append(index)
        if self.skipped:
            warnings.warn(
                f"{dataset.name} {dataset.split}: {len(self.skipped)} of {len(dataset)} items left out of the "
                f"question groups; the first: {self.skipped[0]}",
                stacklevel=2,
            )
        if not by_scene:
            raise ValueError(f"{dataset.name} {dataset.split}: no item can be read ({len(self.skipped)} skipped)")
        rng = np.random.default_rng(seed)
        for key in sorted(by_scene, key=repr):
            members = [by_scene[key][i] for i in rng.permutation(len(by_scene[key]))]
            self.groups += [members[i : i + questions_per_sample] for i in range(0, len(members), questions_per_sample)]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> Sample:
        members = self.groups[index]
        items = [self.dataset.item(i) for i in members]
        if len(items) == 1:
            return self.dataset.sample(items, members[0], items[0].sample_id)
        ids = "+".join(self.dataset.entries[i].key for i in members)
        return self.dataset.sample(items, members[0], f"{self.dataset.name}/{self.dataset.split}/{ids}")


SCENE_OPTIONS: dict[str, object] = {
    "layout": None,
    "scene_root": SCENE_ROOT,
    "frame_sampling": "uniform",
    "sampling_options": None,
    "view": "video",
    "questions_per_sample": 1,
}
"""The options every 3D loader takes, with their defaults (``layout``: see the module docstring;
``questions_per_sample``: training samples of several questions, :class:`SceneQuestionGroups`; the others:
:class:`Scene3DDataset`)."""


def scene_loader(
    dataset: type[Scene3DDataset], official: Sequence[str], **options: object
) -> Callable[..., Scene3DDataset]:
    """The registered builder ``(root, split, *, num_frames, train, seed, **options) -> dataset`` of a 3D loader.

    It reads ``root``'s files for ``split``: the ``official`` names (``{split}`` filled in) or
    :data:`LLAVA_FILES`, as :func:`resolve_layout` picks them; scene folders under ``root/<scene_root>``. Its
    signature names its options, :data:`SCENE_OPTIONS` and ``options`` (the dataset's own, name -> default), so
    that a config's options are checked against it before anything is built (``TypeError`` naming an unknown one,
    as a call with one raises).

    Args:
        dataset: the benchmark's :class:`Scene3DDataset` (its ``kind`` names the loader and its LLaVA file).
        official: the official layout's file names, relative to ``root``.
        options: the dataset's own options (e.g. ``match_iou``, ``grounding``) and their defaults.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.Signature(
        [
            *(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("root", "split")),
            *(inspect.Parameter(name, keyword) for name in ("num_frames", "train", "seed")),
            *(inspect.Parameter(name, keyword, default=value) for name, value in {**SCENE_OPTIONS, **options}.items()),
        ],
        return_annotation=dataset,
    )

    def build(*args: object, **kwargs: object) -> Scene3DDataset | SceneQuestionGroups:
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        values = dict(arguments.arguments)
        root, split = Path(values.pop("root")), values.pop("split")
        questions_per_sample = values.pop("questions_per_sample")
        if questions_per_sample < 1 or (questions_per_sample > 1 and not values["train"]):
            raise ValueError(
                f"{dataset.kind}: questions_per_sample must be 1, or more for training only (benchmarks score one "
                f"question per sample), got {questions_per_sample} with train={values['train']}"
            )
        layout, files = resolve_layout(
            dataset.kind,
            values.pop("layout"),
            [root / name.format(split=split) for name in official],
            root / LLAVA_FILES[dataset.kind].format(split=split),
        )
        built = dataset(dataset.kind, root, split, layout, files, **values)
        return built if questions_per_sample == 1 else SceneQuestionGroups(built, questions_per_sample, values["seed"])

    build.__signature__ = signature
    build.__name__ = build.__qualname__ = f"build_{dataset.kind}"
    build.__doc__ = (
        f"{dataset.__name__} under ``root`` ({', '.join(official)} or {LLAVA_FILES[dataset.kind]}). Options, with "
        f"their defaults: {', '.join(f'{name}={value!r}' for name, value in {**SCENE_OPTIONS, **options}.items())} "
        f"(see :class:`{dataset.__module__}.{dataset.__name__}`)."
    )
    return build


def root_path(root: Path, split: str) -> list[Path]:
    """What every 3D benchmark needs before it is built: its root (files depend on the layout, checked when built)."""
    return [Path(root)]

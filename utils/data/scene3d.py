"""3D scene benchmarks over scene folders: what ScanRefer, Multi3DRefer, Scan2Cap, ScanQA and SQA3D loaders share.

Every item names a scan (``scene_id``) whose scene folder (:mod:`utils.scene3d.scene_folder`) lies under
``<root>/<scene_root>/<scene_id>/``. A :class:`~utils.data.schema.Sample` holds the frames chosen by a
:class:`~utils.video.sampling.FrameSampling` (strategy option ``frame_sampling``, default ``"uniform"`` over
``num_frames``; ``"mc-ratio90"`` / ``"mc-ratio95"`` / ``"max_coverage"`` get each frame's voxels from
:func:`~utils.scene3d.coverage.scene_frame_voxels`, other plug-ins get the :class:`Scene` as
``options["scene"]``), ``scene`` (their posed depth), ``proposals`` ``(N, 6)`` (``<OBJ{k:03d}>`` is row ``k``),
one user turn from the templates below and the answer. Frames keep their stored size (the collator resizes).

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

Errors: a malformed item raises ``ValueError`` naming the sample and its file (training counts it as a
skip, :mod:`utils.data.robust`); a missing scene folder raises ``FileNotFoundError`` naming the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.image_io import read_json
from utils.data.llava_conversation import chat_turns
from utils.data.schema import Sample
from utils.scene3d.boxes import box_iou_3d
from utils.scene3d.coverage import scene_frame_voxels
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


# --- the data set --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One sample's source: ``item`` (or several, grouped) at ``position`` of ``path``; ``key`` ends its id."""

    path: Path
    position: int
    item: object
    key: str


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
    ):
        if not 0 <= match_iou <= 1:
            raise ValueError(f"{name}: match_iou must be in [0, 1], got {match_iou}")
        self.name, self.split, self.layout, self.files = name, split, layout, [Path(p) for p in files]
        self.scene_root = Path(root) / scene_root
        self.num_frames, self.train, self.seed, self.match_iou = num_frames, train, seed, match_iou
        self.frame_sampling, self.sampling_options = frame_sampling, dict(sampling_options or {})
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

    def target_fields(self, meta: dict) -> dict:
        """Typed :class:`~utils.data.schema.Sample` targets beyond the conversation (e.g. ``boxes_3d``), from the
        ``meta`` that :meth:`conversation` returned; none by default."""
        return {}

    # --- the sample ---

    def __len__(self) -> int:
        return len(self.entries)

    def sample_ids(self) -> list[str]:
        """``sample_id`` of every item, in item order (reads no scene)."""
        return list(self.ids)

    def __getitem__(self, index: int) -> Sample:
        entry = self.entries[index]
        where = f"sample {self.ids[index]} (item {entry.position} of {entry.path})"
        if self.layout == "official":
            annotation = self.parse_official(entry, where)
        else:
            if not isinstance(entry.item, dict):
                raise ValueError(f"{where}: an item must be a JSON object, got {type(entry.item).__name__}")
            annotation = self.parse_llava(LlavaItem.parse(entry.item, where), where)
        scene = self.scene(annotation.scene_id, where)
        user, answer, meta = self.conversation(annotation, scene, where)
        indices = self.frame_indices(scene, index, where)
        return Sample(
            sample_id=self.ids[index],
            frames=scene.read_colors(indices),
            frame_names=[scene.frame_names[i] for i in indices],
            conversation=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
            timestamps=scene.timestamps[indices],
            scene=scene.geometry(indices),
            proposals=scene.proposals.boxes,
            **self.target_fields(meta),
            meta={
                **annotation.meta,
                **meta,
                "scene_id": annotation.scene_id,
                "answer": answer,
                "prompt_source": "file" if annotation.prompt is not None else "template",
                "frame_indices": indices,
                "layout": self.layout,
                "source_file": entry.path.name,
            },
        )

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
        """The frames of sample ``index`` (see the module docstring)."""
        options = {**self.sampling_options, "scene": scene}
        if self.frame_sampling in COVERAGE_STRATEGIES:
            if scene.scene_id not in self._voxels:
                self._voxels[scene.scene_id] = scene_frame_voxels(scene)
            options["frame_voxels"] = self._voxels[scene.scene_id]
        sampling = FrameSampling(self.frame_sampling, num_frames=self.num_frames, options=options)
        try:
            return sampling.select(scene.timestamps, train=self.train, rng=np.random.default_rng([self.seed, index]))
        except (IndexError, ValueError) as error:
            raise ValueError(f"{where}: frame sampling {self.frame_sampling!r}: {error}") from None

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


def build_scene_dataset(
    dataset: type[Scene3DDataset],
    root: str | Path,
    split: str,
    official: Sequence[str],
    layout: str | None,
    **arguments,
) -> Scene3DDataset:
    """``dataset`` over ``root``'s files for ``split``: ``official`` names (``{split}`` filled in) or
    :data:`LLAVA_FILES`, by :func:`resolve_layout`; ``arguments`` go to :class:`Scene3DDataset`."""
    root = Path(root)
    layout, files = resolve_layout(
        dataset.kind,
        layout,
        [root / name.format(split=split) for name in official],
        root / LLAVA_FILES[dataset.kind].format(split=split),
    )
    return dataset(dataset.kind, root, split, layout, files, **arguments)


def root_path(root: Path, split: str) -> list[Path]:
    """What every 3D benchmark needs before it is built: its root (files depend on the layout, checked when built)."""
    return [Path(root)]

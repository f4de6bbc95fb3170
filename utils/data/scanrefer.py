"""ScanRefer and Multi3DRefer: find the object(s) a description refers to, among a scan's proposals.

Official layout (shared parts: :mod:`utils.data.scene3d`):

* ScanRefer, ``ScanRefer_filtered_{split}.json`` (daveredrum/ScanRefer): a list of ``{"scene_id",
  "object_id", "object_name", "ann_id", "description", "token"}``, ids written as strings (``"27"``).
  Video-3D LLM's and M3DRef-CLIP's preprocessing add ``"eval_type"`` (``"unique"`` / ``"multiple"``) in
  place; when absent it is computed as ScanRefer defines it: unique when the target is the only object of
  its class in the scan (``objects.npz`` labels).
* Multi3DRefer, ``multi3drefer_{split}.json`` (3dlg-hcvc/M3DRef-CLIP): ``{"scene_id", "object_ids"`` (a
  possibly empty list), ``"object_name", "ann_id", "description", "eval_type"}``, ``eval_type`` one of
  :data:`MULTI3DREFER_EVAL_TYPES` (zero / single target with / without distractors, multiple targets).

LLaVA layout: Video-3D LLM's ``scanrefer_vg_{split}_llava_style.json`` / ``multi3drefer_{split}_llava_style.json``
(``"box"`` the ground truth, ``metadata.question_type`` the eval type, ``metadata.object_id`` the id or ids).

Loader option ``grounding`` (:data:`~utils.data.scene3d.GROUNDING_STYLES`): with ``"ids"`` (the default) the
answer names, for each ground-truth box, the proposal of highest IoU when it reaches ``match_iou``
(:func:`~utils.data.scene3d.grounding_answer`); with ``"head"`` it is one ``[GRD]``
(:data:`~utils.data.prompts.PROPOSAL_GROUNDING_ANSWER`) and ``Sample.boxes_3d`` holds its ground-truth boxes
(``(1, 6)`` for ScanRefer; ``(K, 6)``, ``K >= 0``, for Multi3DRefer, whose samples are ``grounding_multi``).
``meta``: ``gt_boxes`` ``(K, 6)``, ``object_id`` (ScanRefer) or ``object_ids``, ``eval_type`` (also
``category``), ``unique`` (ScanRefer), ``target_proposals`` and ``target_ious`` (best proposal and its IoU per
ground-truth box, -1 below ``match_iou``), ``description``, ``ann_id``.
"""

from __future__ import annotations

import numpy as np

from utils.data.prompts import PROPOSAL_GROUNDING_ANSWER
from utils.data.registry import register_dataset
from utils.data.scene3d import (
    GROUNDING_QUESTION,
    GROUNDING_STYLES,
    MATCH_IOU,
    MULTI_GROUNDING_QUESTION,
    Annotation,
    Entry,
    LlavaItem,
    Scene3DDataset,
    box_list,
    grounding_answer,
    match_proposals,
    object_id,
    root_path,
    scene_loader,
    sentence,
    text_field,
)
from utils.scene3d.scene_folder import Scene

SCANREFER_FILE = "ScanRefer_filtered_{split}.json"
MULTI3DREFER_FILE = "multi3drefer_{split}.json"
SCANREFER_EVAL_TYPES = ("unique", "multiple")
MULTI3DREFER_EVAL_TYPES = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")


def official_item(entry: Entry, where: str) -> dict:
    """An official item, checked to be a JSON object."""
    if not isinstance(entry.item, dict):
        raise ValueError(f"{where}: an item must be a JSON object, got {type(entry.item).__name__}")
    return entry.item


def scanrefer_eval_type(given: object, target: int | None, scene: Scene) -> str | None:
    """``given`` if it is one of :data:`SCANREFER_EVAL_TYPES`, else ``"unique"`` / ``"multiple"`` by the count of
    ``objects.npz`` objects of the target's class, else ``None`` (no target id or no ground truth)."""
    if given in SCANREFER_EVAL_TYPES:
        return str(given)
    label = None if target is None else Scene3DDataset.object_label(target, scene)
    if label is None:
        return None
    return "unique" if np.sum(scene.objects.labels == label) == 1 else "multiple"


class ProposalGroundingDataset(Scene3DDataset):
    """What ScanRefer and Multi3DRefer share: their items' fields (the target ids, one or a list:
    :attr:`multi_target`, :attr:`ids_field`) and the answer style (``grounding``, see the module docstring).

    Args:
        grounding: ``"ids"`` or ``"head"``; the other arguments: see :class:`~utils.data.scene3d.Scene3DDataset`.
    """

    multi_target = False
    """Whether a description may refer to zero, one or several objects (``Sample.grounding_multi``)."""
    ids_field = "object_id"
    """The official item's field of its target id (a list of them when :attr:`multi_target`)."""

    def __init__(self, *args, grounding: str = "ids", **kwargs):
        if grounding not in GROUNDING_STYLES:
            raise ValueError(f"{self.kind}: grounding must be one of {GROUNDING_STYLES}, got {grounding!r}")
        super().__init__(*args, **kwargs)
        self.grounding = grounding

    def target_ids(self, value: object, where: str, key: str) -> list[int]:
        """The ground-truth object ids in ``value`` (the item's ``key``): one id, or a list of them when
        :attr:`multi_target`."""
        if not self.multi_target:
            return [object_id(value, where)]
        if not isinstance(value, list):
            raise ValueError(f"{where}: {key} must be a list of ids (possibly empty), got {str(value)[:80]!r}")
        return [object_id(i, where) for i in value]

    def parse_official(self, entry: Entry, where: str) -> Annotation:
        item = official_item(entry, where)
        return Annotation(
            scene_id=text_field(item, "scene_id", where),
            text=text_field(item, "description", where),
            object_ids=self.target_ids(item.get(self.ids_field), where, repr(self.ids_field)),
            meta={
                "ann_id": item.get("ann_id"),
                "object_name": item.get("object_name"),
                "eval_type": item.get("eval_type"),
            },
        )

    def parse_llava(self, item: LlavaItem, where: str) -> Annotation:
        text, prompt = self.llava_text(item)
        ids = item.metadata.get("object_id")
        return Annotation(
            scene_id=item.scene_id,
            text=text,
            object_ids=[] if ids is None else self.target_ids(ids, where, "metadata 'object_id'"),
            boxes=None if item.raw.get("box") is None else box_list(item.raw["box"], where, "box"),
            proposal_ids=item.proposal_ids(),
            prompt=prompt,
            meta={"ann_id": item.metadata.get("ann_id"), "eval_type": item.metadata.get("question_type")},
        )

    def answer(self, proposal_ids: np.ndarray) -> str:
        """The answer naming the matched proposals (``"ids"``) or the one ``[GRD]`` (``"head"``)."""
        return PROPOSAL_GROUNDING_ANSWER if self.grounding == "head" else grounding_answer(proposal_ids)

    def target_fields(self, meta: dict) -> dict:
        """With ``"head"``: ``boxes_3d`` (the ground-truth boxes of the one ``[GRD]``) and ``grounding_multi``."""
        if self.grounding != "head":
            return {}
        return {"boxes_3d": [meta["gt_boxes"]], "grounding_multi": self.multi_target}


class ScanReferDataset(ProposalGroundingDataset):
    """ScanRefer samples (see the module docstring)."""

    kind = "scanrefer"

    def conversation(self, annotation: Annotation, scene: Scene, where: str) -> tuple[str, str, dict]:
        gt = self.gt_boxes(annotation, scene, where)
        if len(gt) != 1:
            raise ValueError(f"{where}: ScanRefer needs one ground-truth box, got {len(gt)}")
        ids, ious = match_proposals(gt, scene.proposals.boxes, self.match_iou)
        target = annotation.object_ids[0] if annotation.object_ids else None
        eval_type = scanrefer_eval_type(annotation.meta.get("eval_type"), target, scene)
        meta = {
            "object_id": target,
            "gt_boxes": gt.astype(np.float32),
            "eval_type": eval_type,
            "category": eval_type,
            "unique": None if eval_type is None else eval_type == "unique",
            "target_proposals": ids.tolist(),
            "target_ious": ious.tolist(),
            "description": annotation.text,
        }
        user = self.user_turn(annotation, GROUNDING_QUESTION, description=sentence(annotation.text))
        return user, self.answer(ids[ids >= 0]), meta


class Multi3DReferDataset(ProposalGroundingDataset):
    """Multi3DRefer samples (see the module docstring)."""

    kind = "multi3drefer"
    multi_target = True
    ids_field = "object_ids"

    def conversation(self, annotation: Annotation, scene: Scene, where: str) -> tuple[str, str, dict]:
        eval_type = annotation.meta.get("eval_type")
        if eval_type not in MULTI3DREFER_EVAL_TYPES:
            raise ValueError(f"{where}: eval_type must be one of {MULTI3DREFER_EVAL_TYPES}, got {eval_type!r}")
        gt = self.gt_boxes(annotation, scene, where)
        ids, ious = match_proposals(gt, scene.proposals.boxes, self.match_iou)
        meta = {
            "object_ids": list(annotation.object_ids),
            "gt_boxes": gt.astype(np.float32),
            "eval_type": eval_type,
            "category": eval_type,
            "target_proposals": ids.tolist(),
            "target_ious": ious.tolist(),
            "description": annotation.text,
        }
        user = self.user_turn(annotation, MULTI_GROUNDING_QUESTION, description=sentence(annotation.text))
        return user, self.answer(ids[ids >= 0]), meta


build_scanrefer = register_dataset(
    "scanrefer", family="3d_grounding", required_paths=root_path, evaluated_splits=("val",)
)(scene_loader(ScanReferDataset, (SCANREFER_FILE,), match_iou=MATCH_IOU, grounding="ids"))
build_multi3drefer = register_dataset(
    "multi3drefer", family="3d_grounding", required_paths=root_path, evaluated_splits=("val",)
)(scene_loader(Multi3DReferDataset, (MULTI3DREFER_FILE,), match_iou=MATCH_IOU, grounding="ids"))

"""Scan2Cap: describe the object a proposal marks, with ScanRefer's descriptions as the reference captions.

Official layout: ScanRefer's ``ScanRefer_filtered_{split}.json`` (fields in :mod:`utils.data.scanrefer`). In
training (``train=True``) every description is a sample; otherwise the descriptions of one object (same
``scene_id`` and ``object_id``) make one sample whose references are all of them, as Scan2Cap is scored
(Video-3D LLM's ``process_scan2cap.py`` groups its validation split the same way).

LLaVA layout: Video-3D LLM's ``scan2cap_{split}_llava_style.json``: the user turn locates the object by
``<coord>`` (its ``"box_input"``), the answer is one description, ``"gt_box"`` is the object's box and
validation items list every reference under ``"annotations"``. A user turn that is not Video-3D LLM's
(a GPT4Scene one naming ``<OBJ###>``) is kept as written.

The question names the proposal of highest IoU with the object's box (:data:`~utils.data.scene3d.CAPTION_QUESTION`)
by its id (loader option ``object_prompt="id"``, GPT4Scene style: the id is all the model gets), or
(``object_prompt="region"``) by its id followed by a region token (``<object0><region>``, filled by the region
encoder, :mod:`model.encoders.region`) prompted on every sampled frame with the pixels whose depth point lies in
the proposal's box (:func:`~utils.scene3d.proposal_views.box_pixel_masks`), as Video-3D LLM hands the model the
box (its ``<coord>``) rather than a name; a file's own user turn gets the region token appended;
in training an object that no proposal covers to ``match_iou`` is an error (a counted skip: its caption
would describe another box), in evaluation the sample stays and ``meta["proposal_iou"]`` lets the metric
score it as missed. ``meta``: ``answers`` (references), ``object_id``, ``gt_boxes`` ``(1, 6)``, ``proposal_id``,
``proposal_iou``, ``unique`` and ``category`` (ScanRefer's unique / multiple), ``ann_ids``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from utils.data.prompts import object_reference
from utils.data.registry import register_dataset
from utils.data.scanrefer import SCANREFER_FILE, official_item, scanrefer_eval_type
from utils.data.scene3d import (
    CAPTION_QUESTION,
    MATCH_IOU,
    Annotation,
    Entry,
    LlavaItem,
    Scene3DDataset,
    box_list,
    match_proposals,
    object_id,
    read_items,
    root_path,
    scene_loader,
    sentence,
    text_field,
)
from utils.data.schema import RegionPrompt, SceneGeometry
from utils.scene3d.geometry import project_points
from utils.scene3d.object_ids import format_object_id
from utils.scene3d.proposal_views import box_pixel_masks
from utils.scene3d.scene_folder import Scene

OBJECT_PROMPTS = ("id", "region")
"""How the question hands the model the object to describe (see the module docstring)."""


def _object_key(item: object) -> tuple[str, str] | None:
    """``(scene_id, object_id)`` of an item that has both as text or int, else ``None`` (a sample of its own)."""
    if not isinstance(item, dict):
        return None
    scene, obj = item.get("scene_id"), item.get("object_id")
    if isinstance(scene, str) and isinstance(obj, str | int) and not isinstance(obj, bool):
        return scene, str(obj).strip()
    return None


class Scan2CapDataset(Scene3DDataset):
    """Scan2Cap samples (see the module docstring)."""

    kind = "scan2cap"

    def __init__(self, *args: object, object_prompt: str = "id", **kwargs: object):
        if object_prompt not in OBJECT_PROMPTS:
            raise ValueError(f"scan2cap: object_prompt must be one of {OBJECT_PROMPTS}, got {object_prompt!r}")
        if object_prompt == "region" and kwargs.get("view", "video") != "video":
            raise ValueError("scan2cap: object_prompt='region' prompts the video's frames; it needs view='video'")
        self.object_prompt = object_prompt
        super().__init__(*args, **kwargs)

    def read_entries(self) -> list[Entry]:
        if self.layout != "official" or self.train:
            return super().read_entries()
        path = self.files[0]
        groups: dict[object, list[tuple[int, object]]] = {}
        for position, item in enumerate(read_items(path)):
            groups.setdefault(_object_key(item) or position, []).append((position, item))
        return [
            Entry(path, members[0][0], [item for _, item in members], str(members[0][0])) for members in groups.values()
        ]

    def parse_official(self, entry: Entry, where: str) -> Annotation:
        items = entry.item if isinstance(entry.item, list) else [official_item(entry, where)]
        items = [official_item(Entry(entry.path, entry.position, item, entry.key), where) for item in items]
        first = items[0]
        return Annotation(
            scene_id=text_field(first, "scene_id", where),
            text=text_field(first, "description", where),
            object_ids=[object_id(first.get("object_id"), where)],
            answers=[text_field(item, "description", where) for item in items],
            meta={"ann_ids": [item.get("ann_id") for item in items], "object_name": first.get("object_name")},
        )

    def parse_llava(self, item: LlavaItem, where: str) -> Annotation:
        _, prompt = self.llava_text(item)
        references = item.raw.get("annotations")
        if references is not None and (
            not isinstance(references, list) or not all(isinstance(r, str) and r.strip() for r in references)
        ):
            raise ValueError(f"{where}: 'annotations' must be a list of captions, got {str(references)[:80]!r}")
        ids = item.metadata.get("object_id")
        return Annotation(
            scene_id=item.scene_id,
            text=item.answer,
            object_ids=[] if ids is None else [object_id(ids, where)],
            answers=list(references) if references else [item.answer],
            boxes=None if item.raw.get("gt_box") is None else box_list(item.raw["gt_box"], where, "gt_box"),
            prompt=prompt,
            meta={"ann_ids": [item.metadata.get("ann_id")], "eval_type": item.metadata.get("question_type")},
        )

    def conversation(self, annotation: Annotation, scene: Scene, where: str) -> tuple[str, str, dict]:
        gt = self.gt_boxes(annotation, scene, where)
        if len(gt) != 1:
            raise ValueError(f"{where}: Scan2Cap needs one ground-truth box, got {len(gt)}")
        if len(scene.proposals) == 0:
            raise ValueError(f"{where}: scene folder {scene.folder} has no proposals to name the object by")
        ids, ious = match_proposals(gt, scene.proposals.boxes, 0.0)
        best, iou = int(ids[0]), float(ious[0])
        if self.train and iou < self.match_iou:
            raise ValueError(
                f"{where}: no proposal covers the object (best IoU {iou:.2f} < match_iou {self.match_iou})"
            )
        target = annotation.object_ids[0] if annotation.object_ids else None
        eval_type = scanrefer_eval_type(annotation.meta.get("eval_type"), target, scene)
        meta = {
            "answers": annotation.answers,
            "object_id": target,
            "gt_boxes": gt.astype(np.float32),
            "proposal_id": best,
            "proposal_iou": iou,
            "unique": None if eval_type is None else eval_type == "unique",
            "category": eval_type,
        }
        name = format_object_id(best)
        if self.object_prompt == "region":
            if annotation.prompt is None:
                name = f"{name} {object_reference(0)}"
            else:
                annotation = replace(annotation, prompt=f"{annotation.prompt} {object_reference(0)}")
        user = self.user_turn(annotation, CAPTION_QUESTION, object=name)
        return user, sentence(annotation.text), meta

    def region_prompts(self, meta: dict, geometry: SceneGeometry, frame_size: tuple[int, int]) -> list[RegionPrompt]:
        """With ``object_prompt="region"``: the named proposal's pixels on each frame that shows it; when no depth
        pixel of the sampled frames lies in its box (hidden or out of view), its projected box on the frame it
        overlaps most (:func:`projected_box_prompt`)."""
        if self.object_prompt != "region":
            return []
        box = self.scene(meta["scene_id"], meta["scene_id"]).proposals.boxes[meta["proposal_id"]]
        masks = box_pixel_masks(geometry, box[None], size=frame_size)[0]  # (T, H, W)
        prompts = [RegionPrompt(frame=t, mask=mask, region=0) for t, mask in enumerate(masks) if mask.any()]
        return prompts or [projected_box_prompt(geometry, box, frame_size, meta["scene_id"])]


def projected_box_prompt(
    geometry: SceneGeometry, box: np.ndarray, frame_size: tuple[int, int], where: str
) -> RegionPrompt:
    """A box prompt (region 0): 3D ``box`` ``(6,)``'s corners projected into each frame in front of the camera,
    their bounding box clipped to the frame, on the frame where the clipped box is largest; ``ValueError`` naming
    ``where`` when on no frame it is in front of the camera and at least a pixel wide and high after clipping (a
    region prompt must cover a pixel, :func:`utils.data.collate.region_prompts_step`)."""
    depth_h, depth_w = geometry.depth.shape[1:]
    height, width = frame_size
    offsets = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    corners = box[:3] + offsets * box[3:]  # (8, 3)
    best, best_area = None, 0.0
    for t in range(len(geometry.depth)):
        intrinsics = geometry.intrinsics[t] if geometry.intrinsics.ndim == 3 else geometry.intrinsics
        uv, z = project_points(corners, intrinsics, geometry.poses[t], geometry.axis_alignment)
        if not np.all(z > 0):
            continue
        scale = np.array([width / depth_w, height / depth_h])
        low = np.clip(uv.min(axis=0) * scale, 0, [width, height])
        high = np.clip(uv.max(axis=0) * scale, 0, [width, height])
        area = float(np.prod(high - low))
        if area > best_area and bool(np.all(high - low >= 1)):
            best, best_area = RegionPrompt(frame=t, box=np.concatenate([low, high]).astype(np.float32)), area
    if best is None:
        raise ValueError(f"{where}: the object's box covers a pixel of no sampled frame (behind or outside each view)")
    return best


build_scan2cap = register_dataset("scan2cap", family="3d_caption", required_paths=root_path, evaluated_splits=("val",))(
    scene_loader(Scan2CapDataset, (SCANREFER_FILE,), match_iou=MATCH_IOU, object_prompt="id")
)

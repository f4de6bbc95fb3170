"""ScanQA and SQA3D: answer a question about a scan (SQA3D: from a described situation in it).

Official layout (shared parts: :mod:`utils.data.scene3d`):

* ScanQA, ``ScanQA_v1.0_{split}.json`` (ATR-DBI/ScanQA): a list of ``{"scene_id", "question_id", "question",
  "answers", "object_ids", "object_names"}``; ``answers`` is a non-empty list of strings (the test files,
  released without answers, are not read). The first answer is the assistant turn, all of them are
  ``meta["answers"]``.
* SQA3D, ``v1_balanced_questions_{split}_scannetv2.json`` (``{"questions": [{"question_id", "scene_id",
  "situation", "alternative_situation", "question", ...}]}``) and ``v1_balanced_sqa_annotations_{split}_
  scannetv2.json`` (``{"annotations": [{"question_id", "scene_id", "answers": [{"answer", "answer_id"}],
  ...}]}``) from SilongYong/SQA3D's ``balanced`` folder, both directly under the root, joined by
  ``question_id``; one sample per annotation, with the main ``situation`` (Video-3D LLM adds the alternative
  situations as extra training items; not done here).

LLaVA layout: Video-3D LLM's ``scanqa_{split}_llava_style.json`` (one item per answer) and
``sqa3d_{split}_llava_style.json`` (user turn ``"<situation> <question> Answer the question using a single word
or phrase."``, ``metadata.question_type`` the SQA3D type); each item is a sample whose one answer is its
``meta["answers"]``.

The user turn is :data:`~utils.data.scene3d.QA_QUESTION` (SQA3D: situation and question joined by a space,
which gives Video-3D LLM's turn). ``meta``: ``answers``, ``question_type`` (also ``category``; the first-word
type of :func:`~utils.data.scene3d.question_type`, SQA3D LLaVA items keep their own), ``question_id``,
ScanQA's ``object_ids`` / ``object_names`` / ``gt_boxes`` (``None`` where the scan has no ground truth),
SQA3D's ``situation`` and ``question`` (official layout).

SQA3D's loader option ``situated`` (:class:`SQA3DDataset`) closes the situation with ``[SIT]`` in the user turn
(``"<situation> [SIT] <question>"``) and answers ``"[GRD][READ] <answer>"`` for a question about one object (or a
count, multi-target as ScanQA's): ``[SIT]`` locates the speaker from the situation it closes (the grounding head's
situation, trained on the annotation's ``position`` and ``rotation``), ``[GRD]`` grounds the object the question
after it names and ``[READ]`` reads it back with where it lies as seen from the speaker. The object a question is
about is not in SQA3D's release: an annotation may name it in ``object_ids`` (the synthetic rooms do,
:mod:`utils.synthetic.scene3d_formats`); without it the answer is the words alone.

ScanQA's loader option ``read_object`` (:class:`ScanQADataset`) answers a question about one object by grounding it
and reading it back: ``"[GRD][READ] white"``; the answer's words are what is scored.
"""

from __future__ import annotations

import numpy as np

from utils.data.prompts import GRD_TOKEN, READ_TOKEN, SIT_TOKEN
from utils.data.registry import register_dataset
from utils.data.scanrefer import official_item
from utils.data.scene3d import (
    QA_QUESTION,
    Annotation,
    Entry,
    LlavaItem,
    Scene3DDataset,
    object_id,
    question_type,
    read_items,
    root_path,
    scene_loader,
    text_field,
)
from utils.scene3d.scene_folder import Scene

SCANQA_FILE = "ScanQA_v1.0_{split}.json"
SQA3D_QUESTIONS_FILE = "v1_balanced_questions_{split}_scannetv2.json"
SQA3D_ANNOTATIONS_FILE = "v1_balanced_sqa_annotations_{split}_scannetv2.json"
SQA3D_QUESTION_TYPES = ("what", "is", "how", "can", "which", "others")
SQA3D_FORWARD_YAW = 0.0
"""Heading (radians from +x about the vertical axis) of a speaker whose ``rotation`` is the identity. SQA3D's
localization task says the agent is rotated by ``rotation`` and then translated by ``position`` but not which way
it faces before; +x is an assumption."""


def _answers(value: object, where: str) -> list[str]:
    """A non-empty list of non-empty answer strings."""
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a.strip() for a in value):
        raise ValueError(f"{where}: 'answers' must be a non-empty list of strings, got {str(value)[:80]!r}")
    return [a.strip() for a in value]


def is_count_question(text: str) -> bool:
    """Whether a question asks for a count (``"How many ..."``)."""
    return text.strip().lower().startswith("how many")


def grounded_answer(num_objects: int, question: str, count_objects: bool) -> tuple[bool, bool]:
    """``(grounded, counted)`` for a question about ``num_objects`` known objects: it is answered ``"[GRD][READ] ..."``
    when it is about one object and counts nothing, or counts with ``count_objects`` (``counted``: all of them,
    multi-target); otherwise in words (a count of one object too: its token holds no count)."""
    count = is_count_question(question)
    counted = count_objects and count and num_objects > 0
    return counted or (num_objects == 1 and not count), counted


class ScanQADataset(Scene3DDataset):
    """ScanQA samples (see the module docstring).

    Args:
        read_object: a question about one object of the scan is answered ``"[GRD][READ] <answer>"``: grounded
            first (the proposal grounding head, trained on the question's object as ScanRefer's target), then read
            back (``[READ]`` holds the grounded object's token, :mod:`model.encoders.proposal_tokens`). A count
            question is answered in words even when it counts one object (its token holds no count), so whether an
            answer starts with ``[GRD]`` depends on the question alone.
        count_objects: with ``read_object``, a count question (``"How many ..."``) also grounds, all its objects,
            multi-target, and ``[READ]`` holds how many (the object tokens' ``count_read``).
    """

    kind = "scanqa"

    def __init__(self, *args: object, read_object: bool = False, count_objects: bool = False, **kwargs: object):
        if (read_object or count_objects) and kwargs.get("view", "video") != "video":
            raise ValueError("scanqa: read_object reads object tokens of the video's proposals; it needs view='video'")
        if count_objects and not read_object:
            raise ValueError("scanqa: count_objects reads what read_object grounds; set read_object too")
        self.read_object, self.count_objects = read_object, count_objects
        super().__init__(*args, **kwargs)

    def parse_official(self, entry: Entry, where: str) -> Annotation:
        item = official_item(entry, where)
        ids, names = item.get("object_ids", []), item.get("object_names", [])
        if not isinstance(ids, list) or not isinstance(names, list):
            raise ValueError(f"{where}: 'object_ids' and 'object_names' must be lists")
        question = text_field(item, "question", where)
        return Annotation(
            scene_id=text_field(item, "scene_id", where),
            text=question,
            object_ids=[object_id(i, where) for i in ids],
            answers=_answers(item.get("answers"), where),
            meta={
                "question_id": item.get("question_id"),
                "object_names": names,
                "question_type": question_type(question),
            },
        )

    def parse_llava(self, item: LlavaItem, where: str) -> Annotation:
        text, prompt = self.llava_text(item)
        return Annotation(
            scene_id=item.scene_id,
            text=text,
            answers=[item.answer],
            prompt=prompt,
            meta={"question_id": item.raw.get("id"), "question_type": question_type(text)},
        )

    def conversation(self, annotation: Annotation, scene: Scene, where: str) -> tuple[str, str, dict]:
        known = scene.objects is not None and np.isin(annotation.object_ids, scene.objects.object_ids).all()
        boxes = self.object_boxes(annotation.object_ids, scene, where).astype(np.float32) if known else None
        meta = {
            "answers": annotation.answers,
            "object_ids": list(annotation.object_ids),
            "gt_boxes": boxes,
            "category": annotation.meta["question_type"],
        }
        answer = annotation.answers[0]
        grounded, counted = grounded_answer(0 if boxes is None else len(boxes), annotation.text, self.count_objects)
        if self.read_object and grounded:
            answer, meta["read_object"], meta["counted"] = f"{GRD_TOKEN}{READ_TOKEN} {answer}", True, counted
        return self.user_turn(annotation, QA_QUESTION, question=annotation.text), answer, meta

    def target_fields(self, meta: dict) -> dict:
        """The grounded objects of a ``read_object`` answer: one ``[GRD]``'s box, single-target, or a count
        question's boxes, multi-target."""
        if not meta.get("read_object"):
            return {}
        return {"boxes_3d": [meta["gt_boxes"]], "grounding_multi": meta["counted"]}


def situation_pose(item: dict, where: str) -> np.ndarray | None:
    """``(4,)`` ``x, y, z, heading`` of an SQA3D annotation's ``position`` (``{"x", "y", "z"}``, metres) and
    ``rotation`` (a quaternion ``{"_x", "_y", "_z", "_w"}``; its heading about the vertical axis, plus
    :data:`SQA3D_FORWARD_YAW`); ``None`` when the annotation has neither."""
    position, rotation = item.get("position"), item.get("rotation")
    if position is None and rotation is None:
        return None
    try:
        x, y, z = (float(position[k]) for k in ("x", "y", "z"))
        qx, qy, qz, qw = (float(rotation[k]) for k in ("_x", "_y", "_z", "_w"))
    except (TypeError, KeyError, ValueError):
        raise ValueError(
            f"{where}: 'position' must be {{'x', 'y', 'z'}} and 'rotation' {{'_x', '_y', '_z', '_w'}} numbers, got "
            f"{str(position)[:60]!r} and {str(rotation)[:60]!r}"
        ) from None
    heading = np.arctan2(2 * (qw * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz)) + SQA3D_FORWARD_YAW
    pose = np.array([x, y, z, heading], dtype=np.float64)
    if not np.isfinite(pose).all():
        raise ValueError(f"{where}: the situation's position or rotation is not finite")
    return pose


def aligned_pose(pose: np.ndarray, alignment: np.ndarray) -> np.ndarray:
    """``pose`` ``(4,)`` moved by a scene's ``(4, 4)`` axis alignment (position transformed, heading turned by the
    alignment's rotation about the vertical axis)."""
    position = alignment[:3, :3] @ pose[:3] + alignment[:3, 3]
    turn = np.arctan2(alignment[1, 0], alignment[0, 0])
    return np.array([*position, np.arctan2(np.sin(pose[3] + turn), np.cos(pose[3] + turn))])


class SQA3DDataset(Scene3DDataset):
    """SQA3D samples (see the module docstring).

    Args:
        situated: ``"<situation> [SIT] <question>"`` with the situation as a target, answered ``"[GRD][READ] ..."``
            where the annotation names one object and the question counts nothing (:func:`grounded_answer`); needs
            the official layout's ``position`` and ``rotation`` and ``view='video'``.
        count_objects: a count question grounds every object its ``object_ids`` name (as ScanQA's option).
        situation_frame: the frame of those: ``"scan"`` (ScanNet's original scan, as SQA3D's localization notes
            say its annotations are; moved by the scene's axis alignment into the proposals' frame) or ``"aligned"``.
    """

    kind = "sqa3d"

    def __init__(
        self,
        *args: object,
        situated: bool = False,
        situation_frame: str = "scan",
        count_objects: bool = False,
        **kwargs: object,
    ):
        if situated and kwargs.get("view", "video") != "video":
            raise ValueError("sqa3d: situated reads object tokens of the video's proposals; it needs view='video'")
        if situation_frame not in ("scan", "aligned"):
            raise ValueError(f"sqa3d: situation_frame must be 'scan' or 'aligned', got {situation_frame!r}")
        if count_objects and not situated:
            raise ValueError("sqa3d: count_objects reads what a situated answer grounds; set situated too")
        self.situated, self.situation_frame, self.count_objects = situated, situation_frame, count_objects
        super().__init__(*args, **kwargs)

    def read_entries(self) -> list[Entry]:
        if self.layout != "official":
            return super().read_entries()
        questions_path, annotations_path = self.files
        questions = {
            question["question_id"]: question
            for question in read_items(questions_path, "questions")
            if isinstance(question, dict) and isinstance(question.get("question_id"), int | str)
        }
        entries = []
        for position, item in enumerate(read_items(annotations_path, "annotations")):
            key = item.get("question_id") if isinstance(item, dict) else None
            question = questions.get(key) if isinstance(key, int | str) else None
            entries.append(Entry(annotations_path, position, (item, question), str(position)))
        return entries

    def parse_official(self, entry: Entry, where: str) -> Annotation:
        item, question = entry.item
        item = official_item(Entry(entry.path, entry.position, item, entry.key), where)
        if question is None:
            raise ValueError(f"{where}: question_id {item.get('question_id')!r} is not in {self.files[0]}")
        answers = item.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise ValueError(f"{where}: 'answers' must be a list of {{'answer': ...}}, got {str(answers)[:80]!r}")
        situation, text = text_field(question, "situation", where), text_field(question, "question", where)
        ids = item.get("object_ids", [])
        if not isinstance(ids, list):
            raise ValueError(f"{where}: 'object_ids' must be a list")
        return Annotation(
            scene_id=text_field(item, "scene_id", where),
            text=f"{situation} {text}",
            object_ids=[object_id(i, where) for i in ids],
            answers=_answers([a.get("answer") for a in answers], where),
            meta={
                "question_id": item.get("question_id"),
                "situation": situation,
                "question": text,
                "question_type": question_type(text),
                "pose": situation_pose(item, where),
            },
        )

    def parse_llava(self, item: LlavaItem, where: str) -> Annotation:
        text, prompt = self.llava_text(item)
        kind = item.metadata.get("question_type")
        return Annotation(
            scene_id=item.scene_id,
            text=text,
            answers=[item.answer],
            prompt=prompt,
            meta={"question_id": item.raw.get("id"), "question_type": kind if kind in SQA3D_QUESTION_TYPES else None},
        )

    def conversation(self, annotation: Annotation, scene: Scene, where: str) -> tuple[str, str, dict]:
        meta = {"answers": annotation.answers, "category": annotation.meta["question_type"]}
        answer, question = annotation.answers[0], annotation.text
        if self.situated:
            pose = annotation.meta.get("pose")
            if pose is None:
                raise ValueError(
                    f"{where}: situated needs the annotation's 'position' and 'rotation' (official layout)"
                )
            meta["pose"] = aligned_pose(pose, scene.axis_alignment) if self.situation_frame == "scan" else pose
            known = scene.objects is not None and np.isin(annotation.object_ids, scene.objects.object_ids).all()
            ids, question = annotation.object_ids, annotation.meta["question"]
            grounded, counted = grounded_answer(len(ids) if known else 0, question, self.count_objects)
            if grounded:
                meta["gt_boxes"] = self.object_boxes(ids, scene, where).astype(np.float32)
                meta["counted"] = counted
                answer = f"{GRD_TOKEN}{READ_TOKEN} {answer}"
            question = f"{annotation.meta['situation']} {SIT_TOKEN} {question}"
        return self.user_turn(annotation, QA_QUESTION, question=question), answer, meta

    def target_fields(self, meta: dict) -> dict:
        """The situation of a ``situated`` answer, and its grounded object as a single-target ``[GRD]``'s box (none
        otherwise: every sample's ``meta`` has the annotation's pose, only a situated prompt has its ``[SIT]``)."""
        if not self.situated:
            return {}
        fields = {"situations": [meta["pose"].astype(np.float32)]}
        if "gt_boxes" in meta:
            fields.update(boxes_3d=[meta["gt_boxes"]], grounding_multi=meta["counted"])
        return fields


build_scanqa = register_dataset("scanqa", family="3d_qa", required_paths=root_path, evaluated_splits=("val",))(
    scene_loader(ScanQADataset, (SCANQA_FILE,), read_object=False, count_objects=False)
)
build_sqa3d = register_dataset("sqa3d", family="3d_qa", required_paths=root_path, evaluated_splits=("val", "test"))(
    scene_loader(
        SQA3DDataset,
        (SQA3D_QUESTIONS_FILE, SQA3D_ANNOTATIONS_FILE),
        situated=False,
        situation_frame="scan",
        count_objects=False,
    )
)

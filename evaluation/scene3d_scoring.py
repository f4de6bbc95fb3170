"""Scorers of the five ScanNet scene benchmarks: the stored answer texts against the loaders' ``meta``.

Same shape as :mod:`evaluation.scoring` and :mod:`evaluation.qa_scoring`: ``score(dataset, store, options) ->
{"overall", "groups", "per_sample"}``, refusing an incomplete store; the numbers are those of
:mod:`evaluation.metrics.scene3d`, whose records are built here from each sample's ``meta`` (keys in
:mod:`utils.data.scanrefer`, :mod:`utils.data.scan2cap`, :mod:`utils.data.scanqa`).

* Grounding answers name proposals as ``<OBJ###>`` (:func:`~utils.scene3d.object_ids.boxes_from_text`): the
  named proposals' boxes are the prediction, ``"No such object."`` (no id) is no box, and ids with no proposal
  give no box and are counted (``out_of_range``: answers that named one). ScanRefer takes one box, the first
  id named (answers naming more are counted, ``several_ids``); Multi3DRefer takes every id named.
* Scan2Cap: the caption describes the proposal its question names (``<OBJ###>`` in the user turn; the loader
  asks about the proposal of highest IoU with the object, ``meta["proposal_id"]``), so that proposal is the
  predicted box. ``overall`` is m@kIoU as the paper defines it (``misses="zero"``); ``groups["released
  code"]`` is what Scan2Cap's and Chat-Scene's released code compute (``misses="placeholder"``).
* ScanQA: caption metrics and the three exact matches (EM, EM-refined, EM-raw) over all questions.
* SQA3D: the exact matches per question type (``meta["question_type"]``) and overall.

Caption metrics tokenise as ``options.caption_tokenizer`` says (``run_eval --caption-tokenizer``; Chat-Scene
and GPT4Scene report ``ptb``).

Scoring reads no frame or depth map: a :class:`~utils.data.scene3d.Scene3DDataset` gives each item without them
(:meth:`~utils.data.scene3d.Scene3DDataset.item`, :func:`sample_metadata`); any other dataset of scene samples is
read item by item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from evaluation.metrics.scene3d import (
    MULTI3DREFER_TYPES,
    SCANREFER_SPLITS,
    SQA3D_QUESTION_TYPES,
    answer_match,
    multi3drefer_scores,
    scan2cap_scores,
    scanqa_scores,
    scanrefer_scores,
    sqa3d_scores,
)
from evaluation.prediction_store import PredictionStore
from evaluation.scoring import ScoreOptions
from utils.data.scene3d import Scene3DDataset
from utils.scene3d.boxes import box_iou_3d
from utils.scene3d.object_ids import ObjectIdMentions, boxes_from_text, parse_object_ids

DEFAULT_OPTIONS = ScoreOptions()
RELEASED_CODE = "released code"
"""Scan2Cap's group scored as its released code scores (a missed object's caption is ``"sos eos"``)."""


@dataclass(frozen=True)
class SceneAnswer:
    """One sample's stored answer and what scoring reads of the sample.

    Attributes:
        sample_id: the sample.
        answer: the stored prediction text.
        question: the sample's (last) user turn.
        proposals: ``(N, 6)`` the scene's proposal boxes, centre + size (``<OBJ{k:03d}>`` is row ``k``).
        meta: the sample's ``meta`` (frame keys aside).
    """

    sample_id: str
    answer: str
    question: str
    proposals: np.ndarray
    meta: Mapping


def sample_metadata(dataset: Dataset, index: int) -> tuple[str, str, np.ndarray | None, dict]:
    """``(sample_id, user turn, proposals (N, 6), meta)`` of item ``index``.

    A :class:`~utils.data.scene3d.Scene3DDataset` item is read without a frame or depth map
    (:meth:`~utils.data.scene3d.Scene3DDataset.item`: ``meta`` lacks ``frame_indices``; with the ``"gpt4scene"``
    view the user turn is the loader's, before GPT4Scene's rewording); any other dataset's item is read whole.
    """
    if not isinstance(dataset, Scene3DDataset):
        sample = dataset[index]
        users = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
        if not users:
            raise ValueError(f"{sample.sample_id}: the conversation has no user turn")
        return sample.sample_id, users[-1], sample.proposals, dict(sample.meta)
    item = dataset.item(index)
    return item.sample_id, item.user, item.scene.proposals.boxes, item.meta


def scene_answers(dataset: Dataset, store: PredictionStore, desc: str) -> list[SceneAnswer]:
    """Every sample's stored answer with its question, proposals and ``meta``, after checking the store is complete."""
    store.require_complete(dataset.sample_ids())
    records = store.records()
    answers = []
    for index in tqdm(range(len(dataset)), desc=desc, unit="sample", dynamic_ncols=True):
        sample_id, question, proposals, meta = sample_metadata(dataset, index)
        if proposals is None:
            raise ValueError(f"{sample_id} has no proposals: it is not a 3D scene sample")
        answer = records[sample_id].get("answer")
        if not isinstance(answer, str):
            raise ValueError(f"the stored prediction of {sample_id} has no answer text")
        answers.append(SceneAnswer(sample_id, answer, question, np.asarray(proposals), meta))
    return answers


def meta_value(item: SceneAnswer, key: str) -> object:
    """``item.meta[key]``; ``ValueError`` naming the sample when the loader did not set it."""
    if key not in item.meta:
        raise ValueError(f"{item.sample_id} has no meta[{key!r}]: not a sample of this benchmark's loader")
    return item.meta[key]


def grouped_rows(row: Mapping, groups: tuple[str, ...]) -> tuple[dict, dict[str, dict]]:
    """``(overall, {group: row})`` from a metric row keyed ``"<group>/<metric>"`` (other keys join ``overall``)."""
    split: dict[str, dict] = {name: {} for name in (*groups, "overall")}
    extra = {}
    for key, value in row.items():
        group, slash, metric = key.partition("/")
        if slash and group in split:
            split[group][metric] = value
        else:
            extra[key] = value
    return {**split.pop("overall"), **extra}, split


def out_of_range(mentions: list[ObjectIdMentions]) -> int:
    """How many answers named an id with no proposal."""
    return sum(bool(m.out_of_range) for m in mentions)


def score_scanrefer(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """ScanRefer Acc@0.25 / Acc@0.5, overall and for ``unique`` / ``multiple``; the first id named is the box."""
    records, per_sample, mentions = [], {}, []
    for item in scene_answers(dataset, store, "ScanRefer"):
        boxes, named = boxes_from_text(item.answer, item.proposals)
        gt = np.asarray(meta_value(item, "gt_boxes"), np.float64)
        records.append(
            {"sample_id": item.sample_id, "pred_boxes": boxes[:1], "gt_boxes": gt, "unique": meta_value(item, "unique")}
        )
        mentions.append(named)
        per_sample[item.sample_id] = {
            "predicted": list(named.ids),
            "out_of_range": list(named.out_of_range),
            "IoU": float(box_iou_3d(np.asarray(boxes[:1], np.float64), gt).max(initial=0.0)),
            "category": item.meta.get("eval_type"),
        }
    overall, groups = grouped_rows(scanrefer_scores(records), SCANREFER_SPLITS)
    overall.update(out_of_range=out_of_range(mentions), several_ids=sum(len(m.ids) > 1 for m in mentions))
    return {"overall": overall, "groups": groups, "per_sample": per_sample}


def score_multi3drefer(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """Multi3DRefer F1@0.25 / F1@0.5, overall and per evaluation type; every id named is a predicted box."""
    records, per_sample, mentions = [], {}, []
    for item in scene_answers(dataset, store, "Multi3DRefer"):
        boxes, named = boxes_from_text(item.answer, item.proposals)
        eval_type = meta_value(item, "eval_type")
        records.append(
            {
                "sample_id": item.sample_id,
                "pred_boxes": boxes,
                "gt_boxes": meta_value(item, "gt_boxes"),
                "eval_type": eval_type,
            }
        )
        mentions.append(named)
        per_sample[item.sample_id] = {
            "predicted": list(named.ids),
            "out_of_range": list(named.out_of_range),
            "category": eval_type,
        }
    overall, groups = grouped_rows(multi3drefer_scores(records), MULTI3DREFER_TYPES)
    overall["out_of_range"] = out_of_range(mentions)
    return {"overall": overall, "groups": groups, "per_sample": per_sample}


def asked_proposal(item: SceneAnswer) -> int:
    """The one proposal a caption question names (``<OBJ###>`` in its user turn)."""
    named = parse_object_ids(item.question, len(item.proposals))
    if len(named.ids) != 1 or named.out_of_range:
        raise ValueError(
            f"{item.sample_id}: a caption question must name one proposal of the scene's {len(item.proposals)}, "
            f"got {item.question!r}"
        )
    return named.ids[0]


def score_scan2cap(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """Scan2Cap CIDEr / BLEU-4 / METEOR / ROUGE-L @0.25 and @0.5 (m@kIoU), the asked proposal as the caption's box."""
    records, per_sample = [], {}
    for item in scene_answers(dataset, store, "Scan2Cap"):
        proposal = asked_proposal(item)
        box = item.proposals[proposal : proposal + 1].astype(np.float64)
        gt = np.asarray(meta_value(item, "gt_boxes"), np.float64)
        records.append(
            {
                "sample_id": item.sample_id,
                "answer": item.answer,
                "answers": meta_value(item, "answers"),
                "pred_boxes": box,
                "gt_boxes": gt,
            }
        )
        per_sample[item.sample_id] = {
            "proposal": proposal,
            "IoU": float(box_iou_3d(box, gt).max(initial=0.0)),
            "category": item.meta.get("category"),
        }
    tokenizer = options.caption_tokenizer
    overall = scan2cap_scores(records, tokenizer, misses="zero")
    released = scan2cap_scores(records, tokenizer, misses="placeholder")
    return {"overall": overall, "groups": {RELEASED_CODE: released}, "per_sample": per_sample, "tokenizer": tokenizer}


def qa_records(items: list[SceneAnswer]) -> tuple[list[dict], dict[str, dict]]:
    """``({"sample_id", "answer", "answers"} per sample, per-sample matches)`` of question-answering samples."""
    records, per_sample = [], {}
    for item in items:
        references = meta_value(item, "answers")
        records.append({"sample_id": item.sample_id, "answer": item.answer, "answers": references})
        per_sample[item.sample_id] = {**answer_match(item.answer, references), "category": item.meta.get("category")}
    return records, per_sample


def score_scanqa(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """ScanQA CIDEr, BLEU-1, BLEU-4, METEOR, ROUGE-L and EM / EM-refined / EM-raw over every question."""
    records, per_sample = qa_records(scene_answers(dataset, store, "ScanQA"))
    overall = scanqa_scores(records, options.caption_tokenizer)
    return {"overall": overall, "groups": {}, "per_sample": per_sample, "tokenizer": options.caption_tokenizer}


def score_sqa3d(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """SQA3D EM / EM-refined / EM-raw per question type (``meta["question_type"]``) and overall."""
    items = scene_answers(dataset, store, "SQA3D")
    records, per_sample = qa_records(items)
    for record, item in zip(records, items):
        record["question_type"] = meta_value(item, "question_type")
        if record["question_type"] is None:
            raise ValueError(f"{item.sample_id} has no question type (meta['question_type'] is None)")
    overall, groups = grouped_rows(sqa3d_scores(records), SQA3D_QUESTION_TYPES)
    return {"overall": overall, "groups": groups, "per_sample": per_sample}

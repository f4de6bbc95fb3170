"""Scores of the five ScanNet scene benchmarks: ScanRefer, Multi3DRefer, Scan2Cap, ScanQA and SQA3D.

Each ``*_scores`` function takes plain records (one mapping per sample, keys below) and returns one flat
row ``{name: value}``: fractions (papers print them x100; CIDEr keeps its own scale), ``count``-like
integers, NaN for a group with no sample, and :data:`~evaluation.metrics.captions.NOT_RUN` for a caption
metric that could not run (METEOR without Java). Every record needs a unique string ``sample_id``; a
missing key, a malformed box or text is a ``ValueError`` naming the benchmark and the sample.

**Boxes** are axis-aligned ``(x, y, z, dx, dy, dz)`` centre + size in the scene's aligned frame
(``Sample.proposals``). IoU is intersection over union of volumes in float64 with no epsilon (LEO and
Chat-Scene add 1e-8 to the union, which puts an IoU of exactly k just below k), and a box *hits* at k
when ``IoU >= k``, k in :data:`IOU_THRESHOLDS` (Scan2Cap's code tests ``> k``; ties only).

* **ScanRefer** (``pred_boxes``: one box or none, ``gt_boxes``: one box, ``unique``: bool from the
  annotation, true when the target is the only object of its class in the scene): Acc@k, the share of
  descriptions hit (no box is a miss), for ``unique``, ``multiple`` and ``overall``.
* **Multi3DRefer** (``pred_boxes`` ``(P, 6)``, ``gt_boxes`` ``(G, 6)``, ``eval_type``): as
  ``m3drefclip/evaluation/multi3drefer_evaluator.py`` in 3dlg-hcvc/M3DRef-CLIP: boxes are matched one to
  one by the Hungarian algorithm maximising the *total IoU* (not the number of pairs above k), matched
  pairs with ``IoU >= k`` are true positives, F1 = 2 TP / (P + G); a zero-target description scores 1
  with no box and 0 with any. F1 is averaged over the descriptions of each type and over all.
* **Scan2Cap** m@kIoU (one record per ground-truth object: ``answer`` the caption or ``None``,
  ``answers`` its reference captions, ``pred_boxes`` the box it describes or none, ``gt_boxes``):
  ``misses="zero"`` is the paper's definition, the mean over objects of the object's score times
  ``IoU >= k`` (BLEU-4 and METEOR per object are sentence scores). ``misses="placeholder"`` is what
  the released code computes (Scan2Cap ``lib/eval_helper.py``, Chat-Scene ``utils/eval.py``): a missed
  object's caption becomes ``"sos eos"`` and the corpus scores are reported. CIDEr is the same either
  way (the placeholder shares no n-gram with IDF above 0); the placeholder earns some BLEU, METEOR and
  ROUGE-L. Captions and references are written ``sos ... eos`` as in Scan2Cap's corpus (unless
  already so) when ``add_sos_eos``.
* **ScanQA** (``answer``, ``answers``): CIDEr, BLEU-1, BLEU-4, METEOR, ROUGE-L of the normalised
  answer against the normalised references (as LEO and Chat-Scene score), and the matches of
  :func:`answer_match`.
* **SQA3D** (``answer``, ``answers``, ``question_type`` or ``question``): the matches per question
  type (:func:`sqa3d_question_type`) and overall.

**Answer normalisation** (:func:`normalize_answer`) follows ``clean_answer`` of LEO / Chat-Scene:
lower-case; ``’`` -> ``'`` and ``ç`` -> ``c``; characters other than ``a-z 0-9 , ' - :`` and
whitespace dropped; ScanQA's typos fixed (``letf``/``let`` -> left, ``tehre``, ``rigth``, ``rght``,
``behine``, ``chai``, ``wasing``, ``waslked``, ``oclock``/``o' clock`` -> o'clock, ``backwards`` ->
backward); 0-20 and 23 written as words and ``none`` -> zero; one digit glued to a word dropped
(``mat2`` -> mat); ``a``/``an``/``the`` before a word dropped. It differs in order only: LEO drops
``’`` and ``ç`` before mapping them and collapses spaces before dropping characters (so ``"chair ."``
keeps a trailing space there); here whitespace is collapsed after, and ``tv`` is not upper-cased (a
no-op on both sides).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from evaluation.metrics.captions import NOT_RUN, caption_scores
from utils.scene3d.boxes import box_iou_3d

IOU_THRESHOLDS = (0.25, 0.5)
SCANREFER_SPLITS = ("unique", "multiple")
MULTI3DREFER_TYPES = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")
MULTI3DREFER_TARGETS = {"zt": (0, 0), "st": (1, 1), "mt": (2, math.inf)}
"""Ground-truth box counts each type allows: zero, single and multiple targets."""
SCAN2CAP_METRICS = ("CIDEr", "BLEU-4", "METEOR", "ROUGE-L")
SCAN2CAP_MISSES = ("zero", "placeholder")
SCANQA_CAPTION_METRICS = ("CIDEr", "BLEU-1", "BLEU-4", "METEOR", "ROUGE-L")
SQA3D_QUESTION_TYPES = ("what", "is", "how", "can", "which", "others")
"""SQA3D's question types, in its tables' order; the last is every question not starting with another."""

Row = dict[str, float | int | str]

_DROPPED = re.compile(r"[^a-z0-9,'\s\-:]")
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
_WORD_FIXES = {
    "letf": "left",
    "let": "left",
    "tehre": "there",
    "rigth": "right",
    "rght": "right",
    "behine": "behind",
    "chai": "chair",
    "wasing": "washing",
    "waslked": "walked",
    "oclock": "o'clock",
    "backwards": "backward",
    "none": "zero",
    "23": "twenty-three",
    **{str(number): word for number, word in enumerate(_NUMBER_WORDS)},
}
"""ScanQA's typos and the numbers LEO writes as words, replaced as whole words."""
_FIXED_WORD = re.compile(r"\b(" + "|".join(sorted(_WORD_FIXES, key=len, reverse=True)) + r")\b")
_O_CLOCK = re.compile(r"\bo'\s+clock\b")
_GLUED_DIGIT = re.compile(r"\b([a-z]+)[0-9]\b")
_ARTICLE = re.compile(r"\b(?:a|an|the) (?=[a-z])")


def _checked(records: Iterable[Mapping[str, Any]], benchmark: str) -> list[Mapping[str, Any]]:
    """The records as a list, after checking there are some and their ``sample_id`` s are unique strings."""
    records, seen = list(records), set()
    if not records:
        raise ValueError(f"{benchmark}: no records to score")
    for index, record in enumerate(records):
        sample_id = record.get("sample_id")
        if not isinstance(sample_id, str) or not sample_id:
            raise ValueError(f"{benchmark}: record {index} has no string 'sample_id'")
        if sample_id in seen:
            raise ValueError(f"{benchmark}: sample {sample_id!r} appears twice")
        seen.add(sample_id)
    return records


def _field(record: Mapping[str, Any], key: str, benchmark: str) -> Any:
    if key not in record:
        raise ValueError(f"{benchmark} sample {record['sample_id']!r} has no {key!r}")
    return record[key]


def _boxes(record: Mapping[str, Any], key: str, benchmark: str, most: float = math.inf) -> np.ndarray:
    """``(K, 6)`` float64 boxes of ``record[key]``: ``None`` or empty is ``(0, 6)``, a ``(6,)`` box is ``(1, 6)``."""
    value = _field(record, key, benchmark)
    where = f"{benchmark} sample {record['sample_id']!r}: {key}"
    try:
        boxes = np.zeros((0, 6)) if value is None else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} is not an array of numbers: {error}") from None
    boxes = boxes.reshape(0, 6) if boxes.size == 0 else boxes.reshape(1, 6) if boxes.shape == (6,) else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 6:
        raise ValueError(f"{where} must be (K, 6) centre + size boxes, got shape {boxes.shape}")
    if not np.isfinite(boxes).all() or (boxes[:, 3:] < 0).any():
        raise ValueError(f"{where} has a non-finite value or a negative size")
    if len(boxes) > most:
        raise ValueError(f"{where} has {len(boxes)} boxes, at most {most} allowed")
    return boxes


def _text(record: Mapping[str, Any], key: str, benchmark: str) -> str:
    value = _field(record, key, benchmark)
    if not isinstance(value, str):
        raise ValueError(f"{benchmark} sample {record['sample_id']!r}: {key} must be a string, got {value!r}")
    return value


def _texts(record: Mapping[str, Any], key: str, benchmark: str) -> list[str]:
    value = _field(record, key, benchmark)
    if isinstance(value, str) or not value or not all(isinstance(text, str) for text in value):
        raise ValueError(f"{benchmark} sample {record['sample_id']!r}: {key} must be a non-empty list of strings")
    return list(value)


def _grouped(scores: Mapping[str, np.ndarray], groups: Sequence[str], names: Sequence[str]) -> Row:
    """``{"<group>/<metric>": mean, "<group>/count": n}`` for each of ``names`` and ``overall``.

    Args:
        scores: ``{metric: (N,) per-sample values}``.
        groups: ``(N,)`` the group of each sample, one of ``names``.
    """
    groups = np.asarray(groups)
    row: Row = {}
    for name in (*names, "overall"):
        members = np.ones(len(groups), dtype=bool) if name == "overall" else groups == name
        count = int(members.sum())
        for metric, values in scores.items():
            row[f"{name}/{metric}"] = float(np.mean(values[members])) if count else math.nan
        row[f"{name}/count"] = count
    return row


def scanrefer_scores(records: Iterable[Mapping[str, Any]]) -> Row:
    """Acc@0.25 and Acc@0.5 of single-object grounding, per ``unique`` / ``multiple`` split and overall.

    Args:
        records: ``{"sample_id", "pred_boxes": (6,) | (1, 6) | None, "gt_boxes": (6,) | (1, 6), "unique": bool}``.
    Returns:
        ``{"<split>/Acc@<k>", "<split>/count"}`` for ``unique``, ``multiple`` and ``overall``, and
        ``no_prediction`` (descriptions without a box, counted as misses).
    """
    records = _checked(records, "ScanRefer")
    ious, splits, unanswered = np.zeros(len(records)), [], 0
    for index, record in enumerate(records):
        pred = _boxes(record, "pred_boxes", "ScanRefer", most=1)
        gt = _boxes(record, "gt_boxes", "ScanRefer", most=1)
        unique = _field(record, "unique", "ScanRefer")
        if len(gt) != 1 or not isinstance(unique, bool | np.bool_):
            raise ValueError(f"ScanRefer sample {record['sample_id']!r} needs one gt box and a bool 'unique'")
        ious[index] = box_iou_3d(pred, gt).max(initial=0.0)
        splits.append("unique" if unique else "multiple")
        unanswered += len(pred) == 0
    row = _grouped({f"Acc@{k:g}": ious >= k for k in IOU_THRESHOLDS}, splits, SCANREFER_SPLITS)
    row["no_prediction"] = unanswered
    return row


def _true_positives(iou: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """``(len(thresholds),)`` matched pairs with ``IoU >= k`` after a one-to-one matching of the ``(P, G)``
    IoU matrix that maximises the total IoU."""
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return (iou[rows, cols][None, :] >= np.asarray(thresholds)[:, None]).sum(1)


def multi3drefer_scores(records: Iterable[Mapping[str, Any]]) -> Row:
    """F1@0.25 and F1@0.5 of multi-object grounding, per evaluation type and overall.

    Args:
        records: ``{"sample_id", "pred_boxes": (P, 6), "gt_boxes": (G, 6), "eval_type"}``; ``eval_type``
            is one of :data:`MULTI3DREFER_TYPES` and must agree with ``G`` (``zt_*``: 0, ``st_*``: 1, ``mt``: 2+).
    Returns:
        ``{"<type>/F1@<k>", "<type>/count"}`` for each type and ``overall`` (the mean over all samples).
    """
    records = _checked(records, "Multi3DRefer")
    f1, types = np.zeros((len(records), len(IOU_THRESHOLDS))), []
    for index, record in enumerate(records):
        pred = _boxes(record, "pred_boxes", "Multi3DRefer")
        gt = _boxes(record, "gt_boxes", "Multi3DRefer")
        eval_type = _field(record, "eval_type", "Multi3DRefer")
        if eval_type not in MULTI3DREFER_TYPES:
            raise ValueError(
                f"Multi3DRefer sample {record['sample_id']!r}: eval_type {eval_type!r} is not one of "
                f"{MULTI3DREFER_TYPES}"
            )
        least, most = MULTI3DREFER_TARGETS[eval_type[:2]]
        if not least <= len(gt) <= most:
            raise ValueError(f"Multi3DRefer sample {record['sample_id']!r}: {eval_type} with {len(gt)} gt boxes")
        total = len(pred) + len(gt)
        f1[index] = 2 * _true_positives(box_iou_3d(pred, gt), IOU_THRESHOLDS) / total if total else 1.0
        types.append(eval_type)
    scores = {f"F1@{k:g}": f1[:, column] for column, k in enumerate(IOU_THRESHOLDS)}
    return _grouped(scores, types, MULTI3DREFER_TYPES)


def _with_sos_eos(text: str) -> str:
    words = text.split()
    return " ".join(words if words[:1] == ["sos"] and words[-1:] == ["eos"] else ["sos", *words, "eos"])


def scan2cap_scores(
    records: Iterable[Mapping[str, Any]], tokenizer: str = "ptb", misses: str = "zero", add_sos_eos: bool = True
) -> Row:
    """CIDEr, BLEU-4, METEOR and ROUGE-L "@0.25" and "@0.5" of dense captioning (m@kIoU).

    Args:
        records: one per ground-truth object: ``{"sample_id", "answer": caption | None, "answers":
            [reference, ...], "pred_boxes": (6,) | (1, 6) | None, "gt_boxes": (6,) | (1, 6)}``; a box needs
            a caption, and a caption without a box is a miss. Every object of the split must be there
            (CIDEr's IDF is over all the references).
        tokenizer: the caption tokenizer (:data:`~evaluation.metrics.captions.TOKENIZERS`); Chat-Scene
            and GPT4Scene use ``"ptb"``.
        misses: ``"zero"`` or ``"placeholder"`` (see the module docstring).
        add_sos_eos: write captions and references as ``sos ... eos``.
    Returns:
        ``{"<metric>@<k>", "hits@<k>", "count"}``; a metric that could not run is :data:`NOT_RUN`.
    """
    if misses not in SCAN2CAP_MISSES:
        raise ValueError(f"unknown misses {misses!r}; choose one of {SCAN2CAP_MISSES}")
    records = _checked(records, "Scan2Cap")
    wrap = _with_sos_eos if add_sos_eos else str
    placeholder = wrap("")
    ids = [record["sample_id"] for record in records]
    references, captions, ious = {}, {}, np.zeros(len(records))
    for index, record in enumerate(records):
        pred = _boxes(record, "pred_boxes", "Scan2Cap", most=1)
        gt = _boxes(record, "gt_boxes", "Scan2Cap", most=1)
        caption = _field(record, "answer", "Scan2Cap")
        if len(gt) != 1 or not isinstance(caption, str | None) or (caption is None and len(pred)):
            raise ValueError(
                f"Scan2Cap sample {ids[index]!r} needs one gt box and a caption string (None only without a box)"
            )
        references[ids[index]] = [wrap(text) for text in _texts(record, "answers", "Scan2Cap")]
        captions[ids[index]] = placeholder if caption is None else wrap(caption)
        ious[index] = box_iou_3d(pred, gt).max(initial=0.0)
    row: Row = {}
    if misses == "zero":
        scores = caption_scores(references, captions, tokenizer)
        for metric in SCAN2CAP_METRICS:
            each = None if metric in scores["not_run"] else np.array([scores["per_sample"][i][metric] for i in ids])
            for k in IOU_THRESHOLDS:
                row[f"{metric}@{k:g}"] = NOT_RUN if each is None else float(np.mean(each * (ious >= k)))
    else:
        for k in IOU_THRESHOLDS:
            kept = {i: caption if iou >= k else placeholder for (i, caption), iou in zip(captions.items(), ious)}
            overall = caption_scores(references, kept, tokenizer)["overall"]
            row.update({f"{metric}@{k:g}": overall[metric] for metric in SCAN2CAP_METRICS})
    row.update({f"hits@{k:g}": int((ious >= k).sum()) for k in IOU_THRESHOLDS})
    row["count"] = len(records)
    return row


def normalize_answer(text: str) -> str:
    """``text`` as LEO and Chat-Scene compare answers (module docstring): ``"The 2 Chairs."`` -> ``"two chairs"``."""
    text = _DROPPED.sub("", text.lower().replace("’", "'").replace("ç", "c"))
    text = _FIXED_WORD.sub(lambda match: _WORD_FIXES[match.group(1)], " ".join(text.split()))
    return _ARTICLE.sub("", _GLUED_DIGIT.sub(r"\1", _O_CLOCK.sub("o'clock", text)))


def answer_match(answer: str, references: Sequence[str]) -> dict[str, bool]:
    """Whether ``answer`` matches one of ``references``, three ways.

    Returns:
        ``{"EM": normalised answer equals a normalised reference (Chat-Scene's EM@1; LEO stops at the first
        reference that only overlaps, so a later exact one can be missed there),
        "EM-refined": EM, or one normalised text with its spaces removed contains the other
        (Chat-Scene's refined EM; an empty text contains nothing here, where LEO and Chat-Scene let an
        empty answer match everything), "EM-raw": the answer equals a reference after stripping
        surrounding whitespace only (Video-3D LLM's ScanQA EM)}``.
    """
    normalized = normalize_answer(answer)
    targets = [normalize_answer(reference) for reference in references]
    squeezed, squeezed_targets = normalized.replace(" ", ""), [target.replace(" ", "") for target in targets]
    exact = normalized in targets
    contained = bool(squeezed) and any(t and (squeezed in t or t in squeezed) for t in squeezed_targets)
    return {"EM": exact, "EM-refined": exact or contained, "EM-raw": answer.strip() in {r.strip() for r in references}}


def scanqa_scores(records: Iterable[Mapping[str, Any]], tokenizer: str = "ptb") -> Row:
    """ScanQA: caption metrics of the normalised answers and the three exact matches of :func:`answer_match`.

    Args:
        records: ``{"sample_id", "answer": str, "answers": [reference, ...]}``.
        tokenizer: the caption tokenizer applied after normalising; Chat-Scene uses ``"ptb"``, LEO ``"none"``.
    Returns:
        ``{"CIDEr", "BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "EM", "EM-refined", "EM-raw", "count"}``.
    """
    records = _checked(records, "ScanQA")
    predictions, references, matches = {}, {}, []
    for record in records:
        answer, answers = _text(record, "answer", "ScanQA"), _texts(record, "answers", "ScanQA")
        predictions[record["sample_id"]] = normalize_answer(answer)
        references[record["sample_id"]] = [normalize_answer(text) for text in answers]
        matches.append(answer_match(answer, answers))
    overall = caption_scores(references, predictions, tokenizer)["overall"]
    row: Row = {metric: overall[metric] for metric in SCANQA_CAPTION_METRICS}
    row.update({name: float(np.mean([match[name] for match in matches])) for name in matches[0]})
    row["count"] = len(records)
    return row


def sqa3d_question_type(question: str) -> str:
    """The :data:`SQA3D_QUESTION_TYPES` name of a question: the type it starts with, case-insensitively, else
    ``"others"`` (LEO's ``get_sqa_question_type``, a prefix test: ``"Isn't ..."`` is an ``is`` question)."""
    start = question.lstrip().lower()
    return next((name for name in SQA3D_QUESTION_TYPES[:-1] if start.startswith(name)), "others")


def _question_type(record: Mapping[str, Any]) -> str:
    given = record.get("question_type")
    if given is None:
        return sqa3d_question_type(_text(record, "question", "SQA3D"))
    if isinstance(given, numbers.Integral) and not isinstance(given, bool) and 0 <= given < len(SQA3D_QUESTION_TYPES):
        return SQA3D_QUESTION_TYPES[given]  # LEO's and Chat-Scene's ``sqa_type`` index
    if isinstance(given, str) and given.lower() in SQA3D_QUESTION_TYPES:
        return given.lower()
    raise ValueError(
        f"SQA3D sample {record['sample_id']!r}: question_type {given!r} is not one of "
        f"{SQA3D_QUESTION_TYPES} or their index"
    )


def sqa3d_scores(records: Iterable[Mapping[str, Any]]) -> Row:
    """SQA3D: the matches of :func:`answer_match` per question type and overall.

    Args:
        records: ``{"sample_id", "answer": str, "answers": [reference, ...], "question_type": name | index}``
            or, without a type, ``"question"`` to take it from (:func:`sqa3d_question_type`).
    Returns:
        ``{"<type>/EM", "<type>/EM-refined", "<type>/EM-raw", "<type>/count"}`` for each type and ``overall``.
    """
    records = _checked(records, "SQA3D")
    matches = [answer_match(_text(r, "answer", "SQA3D"), _texts(r, "answers", "SQA3D")) for r in records]
    scores = {name: np.array([match[name] for match in matches], dtype=float) for name in matches[0]}
    return _grouped(scores, [_question_type(record) for record in records], SQA3D_QUESTION_TYPES)

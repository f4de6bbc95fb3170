"""HOI-QA scoring (HOI-Ref): box hits, mean IoU, noun accuracy and hand side, per source, referral type and task.

Same shape as :mod:`evaluation.scoring`: :func:`score_hoi` ``(dataset, store, options) -> {"overall",
"groups", "per_sample"}``, refusing an incomplete store. It reads what :mod:`utils.data.hoi_qa` puts in
``Sample.meta`` (``task``, ``source``, ``referral``, ``frame_size``, ``gt_boxes`` or ``gt_text``) and the
stored answer text. The protocol is the reference's ``eval_scripts/evaluate.py`` (Sid2697/HOI-Ref):

* **Boxes.** Boxes are read from the answer in HOI-QA's grid format, else as Qwen2.5-VL JSON
  (:func:`~utils.data.box_text.parse_pixel_boxes`), and put in pixels of the frame the ground truth is
  annotated on, *per source* (EPIC/VISOR 1920x1080, Ego4D 1440x1080; the reference turns grid boxes into
  1920x1080 pixels for Ego4D too whenever an answer holds several boxes). JSON pixels are those of the
  image the model saw: the record's ``input_size`` ``[width, height]`` if it has one, else the frame as
  loaded (``meta["image_size"]``). IoU counts the +1 pixel (``(x2 - x1 + 1) * (y2 - y1 + 1)``), a hit is
  IoU > 0.5.
  One ground-truth box: the best IoU among the predicted boxes. Two (or more) ground-truth boxes (both
  hands): right only when exactly that many boxes are predicted and each ground-truth box has IoU > 0.5
  with its own predicted box (the best one-to-one assignment); such a question counts as that many
  targets, all hit or all missed, as in the reference. Mean IoU is over targets, each its assigned IoU
  (0 when no box could be read: the reference leaves these out for the noun/box questions and counts 0
  for the hand-object ones; here they always count 0).
* **Nouns.** Token match: lower-cased words (``[a-z0-9]+``); right if the reference's words appear in a
  row in the answer (the reference splits on spaces after dropping ``.`` only, so ``"knife,"`` misses
  there). A hand answer needs its ``left hand`` / ``right hand``; a glove answer any word starting with
  ``glove``.
* **Hand side** (hand answers only): the answer names the right side (``left``/``right`` + ``hand``/``glove``)
  and not the other one; stricter than the noun rule, which accepts ``"left hand and right hand"``.

Groups: ``source=<epic|ego4d>``, ``referral=<direct|interaction>`` and ``task=<name>`` (the reference's
subset names, :data:`utils.data.hoi_qa.TASKS`). Columns: ``box acc`` (hits / targets), ``mean IoU``,
``noun acc`` (noun and hand questions), ``hand side``, ``box targets``, ``text questions``, ``unparsed`` (box
questions without a readable box), ``dropped`` (partial boxes left out), ``count`` (questions).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from evaluation.prediction_store import PredictionStore
from evaluation.scoring import ScoreOptions
from utils.data.box_text import parse_pixel_boxes
from utils.data.hoi_qa import TASKS

IOU_THRESHOLD = 0.5
COLUMNS = ("box acc", "mean IoU", "noun acc", "hand side", "box targets", "text questions", "unparsed", "count")
DEFAULT_OPTIONS = ScoreOptions()
HAND_MENTION = re.compile(r"\b(left|right)\s+(?:hand|glove)s?\b")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(K, M)`` IoU of ``(K, 4)`` and ``(M, 4)`` pixel boxes, counting the +1 pixel as the reference does."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low + 1, 0, None).prod(axis=-1)
    area_a = (a[:, 2:] - a[:, :2] + 1).prod(axis=-1)
    area_b = (b[:, 2:] - b[:, :2] + 1).prod(axis=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def matched_ious(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``(K,)`` IoU of each ground-truth box with its predicted box under the one-to-one assignment of largest
    total IoU (a ground-truth box left without one gets 0); one ground-truth box takes the best prediction."""
    if len(pred) == 0:
        return np.zeros(len(gt))
    ious = np.concatenate([box_iou(gt, pred), np.zeros((len(gt), len(gt)))], axis=1)  # K "no box" columns
    columns = max(itertools.permutations(range(ious.shape[1]), len(gt)), key=lambda c: ious[range(len(gt)), c].sum())
    return ious[range(len(gt)), columns]


def box_result(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, int]:
    """``(per-target IoU (K,), hits)``: hits is K or 0 for several targets (exactly K boxes, each IoU > 0.5)."""
    ious = matched_ious(gt, pred)
    if len(gt) == 1:
        return ious, int(ious[0] > IOU_THRESHOLD)
    right = len(pred) == len(gt) and bool((ious > IOU_THRESHOLD).all())
    return ious, len(gt) if right else 0


def words(text: str) -> list[str]:
    """Lower-cased ``[a-z0-9]+`` words of ``text``."""
    return re.findall(r"[a-z0-9]+", text.lower())


def noun_correct(reference: str, answer: str) -> bool:
    """Whether ``answer`` names ``reference`` by the token rule of the module docstring."""
    gt, said = words(reference), words(answer)
    if not gt:
        raise ValueError(f"the reference answer {reference!r} has no words")
    if gt[-1] == "glove" and gt[0] in ("left", "right"):
        return any(word.startswith("glove") for word in said)
    return any(said[i : i + len(gt)] == gt for i in range(len(said) - len(gt) + 1))


def hand_side_correct(side: str, answer: str) -> bool:
    """Whether ``answer`` names the ``side`` (``left``/``right``) hand or glove and not the other side."""
    return set(HAND_MENTION.findall(answer.lower())) == {side}


def _row(results: list[dict]) -> dict:
    """One table row from per-sample results."""
    boxes = [r for r in results if "ious" in r]
    texts = [r for r in results if "correct" in r and "ious" not in r]
    hands = [r for r in texts if "hand_side" in r]
    ious = [iou for r in boxes for iou in r["ious"]]
    targets = sum(len(r["ious"]) for r in boxes)
    return {
        "box acc": sum(r["hits"] for r in boxes) / targets if targets else math.nan,
        "mean IoU": float(np.mean(ious)) if ious else math.nan,
        "noun acc": sum(r["correct"] for r in texts) / len(texts) if texts else math.nan,
        "hand side": sum(r["hand_side"] for r in hands) / len(hands) if hands else math.nan,
        "box targets": targets,
        "text questions": len(texts),
        "unparsed": sum(r["boxes_read"] == 0 for r in boxes),
        "dropped": sum(r["dropped"] for r in boxes),
        "count": len(results),
    }


def score_hoi(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """HOI-QA's box and noun scores, overall and per source, referral type and task (see the module docstring)."""
    store.require_complete(dataset.sample_ids())
    records = store.records()
    per_sample: dict[str, dict] = {}
    groups: dict[str, list[dict]] = defaultdict(list)
    for index in tqdm(range(len(dataset)), desc="HOI-QA", unit="sample", dynamic_ncols=True):
        sample = dataset[index]
        meta, record = sample.meta, records[sample.sample_id]
        answer = record.get("answer")
        if not isinstance(answer, str):
            raise ValueError(f"the stored prediction of {sample.sample_id} has no answer text")
        task = meta.get("task")
        if task not in TASKS:
            raise ValueError(f"{sample.sample_id}: meta['task'] {task!r} is not a HOI-QA task")
        kind = TASKS[task][1]
        result: dict = {"task": task, "source": meta["source"], "referral": meta["referral"]}
        if kind == "box":
            json_size = tuple(record["input_size"]) if "input_size" in record else tuple(meta["image_size"])
            parsed, form = parse_pixel_boxes(answer, tuple(meta["frame_size"]), json_size)
            ious, hits = box_result(np.asarray(meta["gt_boxes"]), parsed.boxes)
            result.update(
                ious=ious.tolist(),
                hits=hits,
                boxes_read=len(parsed),
                format=form,
                dropped=parsed.dropped,
                pred_boxes=parsed.boxes.round(1).tolist(),
            )
        else:
            result["correct"] = noun_correct(meta["gt_text"], answer)
            if kind == "hand":
                result["hand_side"] = hand_side_correct(meta["hand"], answer)
        per_sample[sample.sample_id] = result
        for group in (f"source={meta['source']}", f"referral={meta['referral']}", f"task={task}"):
            groups[group].append(result)
    if not per_sample:
        raise ValueError("no HOI-QA questions to score")
    return {
        "overall": _row(list(per_sample.values())),
        "groups": {name: _row(results) for name, results in sorted(groups.items())},
        "per_sample": per_sample,
    }

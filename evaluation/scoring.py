"""Scorers: a split's ground truth against a prediction store, the way each benchmark's official tool scores it.

Every scorer takes the dataset (built with every frame, ``num_frames=None``), the store and
:class:`ScoreOptions`, refuses an incomplete store (naming what is missing) and returns
``{"overall": {...}, "groups": {name: {...}}, "per_sample": {sample_id: {...}}}``. A sample's
ground truth is the union of its ``masks`` (``O`` objects). Items of one video are contiguous in
every loader, which :func:`score_jf` relies on to compare a video's expressions.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from evaluation.judge import JudgeConfig
from evaluation.metrics import davis17, refer_iou, revos
from evaluation.metrics.jf import jf_scores, summarize
from evaluation.prediction_store import PredictionStore, foreground
from utils.data.rle import decode_rle
from utils.data.schema import Sample

Binarize = Callable[[np.ndarray], np.ndarray]
DISTINCT_IOU = 0.5


@dataclass(frozen=True)
class ScoreOptions:
    """How to read and score predictions.

    Attributes:
        binarize: turns a saved PNG into a mask (``run_eval --mask-scale`` checks the saved values).
        ar_scale: ReVOS only: the foreground value A and R are computed as if the PNGs held it. The
            official script uses the raw PNG values, so its A and R depend on how masks were saved;
            1 gives the intended accuracy and robustness, 100 reproduces numbers of RGA3-style 0/100
            files (see :mod:`evaluation.metrics.revos`).
        judge: the LLM judge of the judged text benchmarks (:mod:`evaluation.qa_scoring`), or ``None``.
        caption_tokenizer: how caption metrics tokenise (:data:`evaluation.metrics.captions.TOKENIZERS`).
    """

    binarize: Binarize = foreground
    ar_scale: int = 1
    judge: JudgeConfig | None = None
    caption_tokenizer: str = "none"


class NoGroundTruth(ValueError):
    """The split has no public masks (an online benchmark): it can be submitted, not scored here."""


def group_of(sample_id: str) -> str:
    """The video (or image) a sample belongs to: its id without the last part (the expression)."""
    return sample_id.rsplit("/", 1)[0]


def scored_pairs(
    dataset: Dataset, store: PredictionStore, binarize: Binarize, desc: str
) -> Iterator[tuple[Sample, np.ndarray, np.ndarray]]:
    """``(sample, pred (T, H, W), gt (T, H, W))`` for every item, after checking the store is complete."""
    store.require_complete(dataset.sample_ids())
    for index in tqdm(range(len(dataset)), desc=desc, unit="sample", dynamic_ncols=True):
        sample = dataset[index]
        if sample.masks is None:
            raise NoGroundTruth(f"{sample.sample_id} has no ground-truth masks; this split can only be submitted")
        pred = store.read_masks(sample.sample_id, sample.frame_names, binarize)
        gt = sample.masks.any(0)
        if pred.shape != gt.shape:
            raise ValueError(f"{sample.sample_id}: prediction is {pred.shape[1:]} but the frames are {gt.shape[1:]}")
        yield sample, pred, gt


def by_video(
    pairs: Iterator[tuple[Sample, np.ndarray, np.ndarray]],
) -> Iterator[list[tuple[Sample, np.ndarray, np.ndarray]]]:
    """The items of :func:`scored_pairs`, a list per video (or image); a loader lists a video's items together."""
    for _, group in itertools.groupby(pairs, key=lambda pair: group_of(pair[0].sample_id)):
        yield list(group)


def track_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``(T, H, W)`` bool mask tracks over all their pixels (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def distinct_pairs(preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple[int, int]:
    """``(pairs with distinct predictions, pairs with distinct targets)`` among one video's expressions.

    A pair of expressions has distinct targets when their ground-truth IoU is below 0.5; the
    prediction tells them apart when the predicted IoU is below 0.5 too. A model that ignores the
    expression scores 0; the ground truth scores 1.
    """
    distinct = total = 0
    for i, j in itertools.combinations(range(len(gts)), 2):
        if track_iou(gts[i], gts[j]) < DISTINCT_IOU:
            total += 1
            distinct += track_iou(preds[i], preds[j]) < DISTINCT_IOU
    return distinct, total


def score_jf(dataset: Dataset, store: PredictionStore, options: ScoreOptions = ScoreOptions()) -> dict:
    """J, F and J&F per expression (DAVIS definitions), overall and by ``meta["type"]``.

    This is MeViS's, ReasonVOS's and Ref-YouTube-VOS's protocol (mean over expressions of the mean
    over frames, every frame scored, no void) and Ref-DAVIS17's per-expression one.
    ``overall["distinct_pairs"]`` is :func:`distinct_pairs` over every video; each type's group has its
    own, over the pairs of one video whose expressions are both of that type.
    """
    per_sample: dict[str, dict] = {}
    pair_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # type ("" = all) -> [distinct, total]
    for video in by_video(scored_pairs(dataset, store, options.binarize, "J&F")):
        types = [str(sample.meta.get("type", "all")) for sample, _, _ in video]
        for (sample, pred, gt), kind in zip(video, types):
            per_sample[sample.sample_id] = {**jf_scores(pred, gt), "type": kind}
        for kind in ["", *sorted(set(types))]:
            members = [item for item, t in zip(video, types) if kind in ("", t)]
            video_distinct, video_total = distinct_pairs([pred for _, pred, _ in members], [gt for _, _, gt in members])
            pair_counts[kind][0] += video_distinct
            pair_counts[kind][1] += video_total

    def pair_share(kind: str) -> float:
        distinct, total = pair_counts[kind]
        return distinct / total if total else math.nan

    by_type = defaultdict(dict)
    for sample_id, scores in per_sample.items():
        by_type[scores["type"]][sample_id] = scores
    return {
        "overall": {**summarize(per_sample), "distinct_pairs": pair_share("")},
        "groups": {
            name: {**summarize(group), "distinct_pairs": pair_share(name)} for name, group in sorted(by_type.items())
        },
        "per_sample": per_sample,
    }


def score_refer_iou(dataset: Dataset, store: PredictionStore, options: ScoreOptions = ScoreOptions()) -> dict:
    """gIoU and cIoU as LISA scores RefCOCO-family and ReasonSeg; ``meta["void"]`` pixels are left out.

    Grouped by ``meta["type"]`` where a loader sets it (e.g. ReasonSeg's short and long queries).
    """
    pairs: dict[str, tuple[int, int]] = {}
    types: dict[str, str] = {}
    for sample, pred, gt in scored_pairs(dataset, store, options.binarize, "gIoU/cIoU"):
        void = sample.meta.get("void", np.zeros_like(gt))
        counts = [refer_iou.intersection_union(p, g, v) for p, g, v in zip(pred, gt, void)]
        pairs[sample.sample_id] = (sum(i for i, _ in counts), sum(u for _, u in counts))
        types[sample.sample_id] = str(sample.meta.get("type", "all"))
    groups = defaultdict(list)
    for sample_id, pair in pairs.items():
        groups[types[sample_id]].append(pair)
    per_sample = {
        sample_id: {"IoU": refer_iou.mask_iou(*pair), "type": types[sample_id]} for sample_id, pair in pairs.items()
    }
    return {
        "overall": refer_iou.giou_ciou(pairs.values()),
        "groups": {name: refer_iou.giou_ciou(group) for name, group in sorted(groups.items()) if len(groups) > 1},
        "per_sample": per_sample,
    }


DAVIS_KEYS = {"J&F-Mean": "J&F", "J-Mean": "J", "F-Mean": "F"}


def _davis_row(table: dict) -> dict:
    """A DAVIS-2017 toolkit table with ``J&F`` / ``J`` / ``F`` names for the means (recall and decay kept)."""
    return {DAVIS_KEYS.get(key, key): value for key, value in table.items()}


def score_ref_davis17(dataset: Dataset, store: PredictionStore, options: ScoreOptions = ScoreOptions()) -> dict:
    """Ref-DAVIS17 in both protocols in use.

    * Per annotator (ReferFormer's, what papers report): for each of the four expression sets
      (``meta["annotator"]``), a video's predicted masks become one id map (first object wins
      where they overlap) scored against the DAVIS-2017 ground truth with the toolkit's
      unsupervised protocol (:mod:`evaluation.metrics.davis17`); ``overall`` is the mean of the four.
    * Per expression: J&F of each expression against its own object, in ``groups["per-expression"]``.
    """
    per_sample: dict[str, dict] = {}
    objects: dict[int, list[dict]] = defaultdict(list)
    for video in by_video(scored_pairs(dataset, store, options.binarize, "Ref-DAVIS17")):
        for sample, pred, gt in video:
            per_sample[sample.sample_id] = jf_scores(pred, gt)
        sample, pred, _ = video[0]
        name, frames = sample.meta["video"], sample.frame_names
        gt_ids = np.stack([dataset.id_map(name, frame, pred.shape[1:], sample.sample_id) for frame in frames])
        for annotator in sorted({s.meta["annotator"] for s, _, _ in video}):
            preds = np.stack([p for s, p, _ in video if s.meta["annotator"] == annotator])
            objects[annotator] += davis17.evaluate_sequence(name, davis17.merge_expression_masks(preds), gt_ids)
    groups = {f"annotator {a}": _davis_row(davis17.summarize_davis17(objects[a])) for a in sorted(objects)}
    overall = {key: float(np.mean([row[key] for row in groups.values()])) for key in ("J&F", "J", "F")}
    overall["count"] = len(per_sample)
    groups["per-expression"] = summarize(per_sample)
    return {"overall": overall, "groups": groups, "per_sample": per_sample}


def read_revos_foreground(dataset: Dataset) -> tuple[dict, Path]:
    """``mask_dict_foreground.json`` of a ReVOS split (``{video: {"masks_rle": [...]}}``) and its path."""
    path = dataset.split_dir / "mask_dict_foreground.json"
    if not path.is_file():
        raise FileNotFoundError(f"ReVOS scoring needs {path} (the robustness score R reads it)")
    return json.loads(path.read_text()), path


def revos_foreground(entries: dict, path: Path, video: str, height: int, width: int) -> np.ndarray:
    """``(T, H, W)`` uint8: every annotated object of a ReVOS video, summed.

    Each frame's entry is one COCO RLE or a list of them (channels), summed as the official script does.
    """
    entry = entries.get(video)
    if entry is None:
        raise KeyError(f"ReVOS video {video} is not in {path}")
    frames = []
    for index, rles in enumerate(entry["masks_rle"]):
        channels = rles if isinstance(rles, list) else [rles]
        try:
            frames.append(sum(decode_rle(rle, height, width).astype(np.uint8) for rle in channels))
        except ValueError as error:
            raise ValueError(f"{path}: video {video} frame {index}: {error}") from error
    return np.stack(frames).astype(np.uint8)


def score_revos(dataset: Dataset, store: PredictionStore, options: ScoreOptions = ScoreOptions()) -> dict:
    """ReVOS's official table: J, F, J&F, A and R for referring, reasoning and overall (their mean).

    The target is the *sum* of the expression's objects (2 where two overlap, as the official
    script has it); A and R are computed at ``options.ar_scale``.
    """

    entries, path = read_revos_foreground(dataset)

    def expressions():
        for video in by_video(scored_pairs(dataset, store, options.binarize, "ReVOS")):
            height, width = video[0][1].shape[1:]
            all_objects = revos_foreground(entries, path, video[0][0].meta["video"], height, width)
            for sample, pred, _ in video:
                indices = sample.meta["frame_indices"]
                expression = dataset.videos[sample.meta["video"]]["expressions"][sample.meta["exp_id"]]
                target = np.zeros(pred.shape, dtype=np.uint8)
                for anno_id in expression["anno_id"]:
                    target += dataset.union_mask([anno_id], indices, height, width, sample.sample_id)
                yield sample.sample_id, pred, target, all_objects[indices], int(expression["type_id"])

    result = revos.revos_evaluate(expressions(), saved_scale=options.ar_scale)
    table = result["table"]
    return {
        "overall": table["overall"],
        "groups": {group: table[group] for group in revos.GROUPS.values()},
        "per_sample": result["per_expression"],
        "ar_scale": options.ar_scale,
    }


def format_table(rows: dict[str, dict], columns: list[str], unscaled: Collection[str] = ()) -> str:
    """A plain-text table: one row per entry of ``rows``, numbers in percent with one decimal, counts as is;
    ``unscaled`` columns (scores on their own scale, e.g. a judge's 0-5) with two decimals."""

    def cell(value, column: str) -> str:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float):
            if math.isnan(value):
                return "nan"
            return f"{value:.2f}" if column in unscaled else f"{100 * value:.1f}"
        return str(value)

    body = [[name] + [cell(row.get(column, ""), column) for column in columns] for name, row in rows.items()]
    header = [""] + columns
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [header, *body]
    return "\n".join("  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in lines)

"""The benchmarks: which loader and split each reads, what it predicts, how it is scored, how it is submitted.

Every benchmark folder under ``evaluation/`` (``mevis/``, ``revos/``, ...) holds a thin
``run_inference.sh`` / ``run_eval.sh`` pair that calls :mod:`evaluation.run_inference` and
:mod:`evaluation.run_eval` with its name from :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from torch.utils.data import Dataset

from evaluation import dynamic_scoring, hoi_scoring, qa_scoring, scene3d_scoring, scoring
from utils.data.catalog import LOADERS, registered_names


@dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    Attributes:
        loader: registered dataset loader that reads it.
        split: the split it reports on (``--split`` picks another).
        score: ``(dataset, store, binarize) -> metrics``; see :mod:`evaluation.scoring`.
        columns: the metric columns its table shows.
        submissions: split -> the folder an online server wants the ``<video>/<exp_id>/<frame>.png``
            tree in, inside the zip (``""``: at the zip's root), for the splits such a server scores.
        predicts: ``"masks"`` (segmentation) or ``"text"`` (answers only; the store holds no masks).
        unscaled: columns on their own scale (a judge's 0-5), printed as they are rather than in percent.
        frames_by_loader: the loader chooses the frames the LLM sees (3D scenes: a coverage sampler needs
            the scene's geometry), with the model's saved frame count and sampling strategy
            (:func:`build_benchmark_dataset` ``num_frames`` / ``frame_sampling``); otherwise the dataset
            has every frame and the predictor chooses.
        num_frames: frames the LLM sees unless ``--num-frames`` says otherwise: the benchmark's protocol
            (DSR-Bench: 32 uniformly sampled); ``None``: the number the model was trained with.
    """

    loader: str
    split: str
    score: Callable[..., dict]
    columns: tuple[str, ...]
    submissions: Mapping[str, str] = field(default_factory=dict)
    predicts: str = "masks"
    unscaled: tuple[str, ...] = ()
    frames_by_loader: bool = False
    num_frames: int | None = None


JF_COLUMNS = ("J&F", "J", "F", "count")
IOU_COLUMNS = ("gIoU", "cIoU", "count")
DESCRIPTION_COLUMNS = (*qa_scoring.DESCRIPTION_DIMENSIONS.values(), "average")
EM_COLUMNS = ("EM", "EM-refined", "EM-raw", "count")
CHOICE_COLUMNS = ("accuracy", "unparsed", "count")
CAPTION_COLUMNS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "count")
SCAN2CAP_COLUMNS = tuple(
    f"{metric}@{k}" for k in ("0.25", "0.5") for metric in ("CIDEr", "BLEU-4", "METEOR", "ROUGE-L")
) + ("hits@0.25", "hits@0.5", "count")


def scene_benchmark(loader: str, split: str, score: Callable[..., dict], columns: tuple[str, ...]) -> Benchmark:
    """A 3D scene benchmark: text answers, frames chosen by its loader with the model's settings."""
    return Benchmark(loader, split, score, columns, predicts="text", frames_by_loader=True)


BENCHMARKS: dict[str, Benchmark] = {
    "mevis": Benchmark("mevis", "valid_u", scoring.score_jf, JF_COLUMNS, submissions={"valid": ""}),
    "revos": Benchmark("revos", "valid", scoring.score_revos, ("J&F", "J", "F", "A", "R", "count")),
    "ref_youtube_vos": Benchmark(
        "ref_youtube_vos", "valid", scoring.score_jf, JF_COLUMNS, submissions={"valid": "Annotations"}
    ),
    "ref_davis17": Benchmark("ref_davis17", "valid", scoring.score_ref_davis17, JF_COLUMNS),
    "reasonvos": Benchmark("reasonvos", "test", scoring.score_jf, JF_COLUMNS),
    "refcoco": Benchmark("refcoco", "val", scoring.score_refer_iou, IOU_COLUMNS),
    "refcoco+": Benchmark("refcoco+", "val", scoring.score_refer_iou, IOU_COLUMNS),
    "refcocog": Benchmark("refcocog", "val", scoring.score_refer_iou, IOU_COLUMNS),
    "refclef": Benchmark("refclef", "val", scoring.score_refer_iou, IOU_COLUMNS),
    "reasonseg": Benchmark("reasonseg", "val", scoring.score_refer_iou, IOU_COLUMNS),
    "videorefer_q": Benchmark(
        "videorefer_bench_q", "test", qa_scoring.score_choice, ("accuracy", "unparsed", "count"), predicts="text"
    ),
    "videorefer_d": Benchmark(
        "videorefer_bench_d",
        "test",
        qa_scoring.score_description,
        (*DESCRIPTION_COLUMNS, "count", "parse_failures", "refusals"),
        predicts="text",
        unscaled=DESCRIPTION_COLUMNS,
    ),
    "videoinfer": Benchmark(
        "videoinfer",
        "test",
        qa_scoring.score_open_qa,
        ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "judge accuracy", "judge score", "count"),
        predicts="text",
        unscaled=("judge score",),
    ),
    "scanrefer": scene_benchmark(
        "scanrefer",
        "val",
        scene3d_scoring.score_scanrefer,
        ("Acc@0.25", "Acc@0.5", "count", "no_prediction", "out_of_range", "several_ids"),
    ),
    "multi3drefer": scene_benchmark(
        "multi3drefer", "val", scene3d_scoring.score_multi3drefer, ("F1@0.25", "F1@0.5", "count", "out_of_range")
    ),
    "scan2cap": scene_benchmark("scan2cap", "val", scene3d_scoring.score_scan2cap, SCAN2CAP_COLUMNS),
    "scanqa": scene_benchmark(
        "scanqa", "val", scene3d_scoring.score_scanqa, ("CIDEr", "BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", *EM_COLUMNS)
    ),
    "sqa3d": scene_benchmark("sqa3d", "test", scene3d_scoring.score_sqa3d, EM_COLUMNS),
    "dsr_bench": Benchmark(
        "dsr_bench",
        "test",
        dynamic_scoring.score_dsr_bench,
        CHOICE_COLUMNS,
        predicts="text",
        frames_by_loader=True,
        num_frames=32,
    ),
    "vlm4d": Benchmark(
        "vlm4d",
        "all",
        dynamic_scoring.score_vlm4d,
        ("accuracy", "unparsed", "judged", "count"),
        predicts="text",
        frames_by_loader=True,
        num_frames=32,
    ),
    "fourd_bench_qa": Benchmark(
        "fourd_bench_qa", "test", dynamic_scoring.score_fourd_qa, CHOICE_COLUMNS, predicts="text"
    ),
    "fourd_bench_caption": Benchmark(
        "fourd_bench_caption", "test", dynamic_scoring.score_fourd_caption, CAPTION_COLUMNS, predicts="text"
    ),
    "hoi_qa": Benchmark("hoi_qa", "test", hoi_scoring.score_hoi, hoi_scoring.COLUMNS, predicts="text"),
}
"""Benchmark name -> :class:`Benchmark`."""


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """``--benchmark``, ``--data-root``, ``--split`` and ``--option``: which split of which benchmark to read."""
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    parser.add_argument("--data-root", required=True, type=Path, help="the dataset's folder as released")
    parser.add_argument("--split", help="default: the benchmark's evaluation split")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="loader option")


def parse_options(items: list[str]) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``, each value read as YAML (``3`` is an int, ``umd`` a string)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"loader option {item!r} is not KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def build_benchmark_dataset(
    name: str,
    data_root: str | Path,
    split: str | None = None,
    options: list[str] = (),
    num_frames: int | None = None,
    frame_sampling: str | None = None,
) -> tuple[Dataset, str]:
    """``(dataset, split)`` of benchmark ``name``; missing files are named before loading.

    The dataset has every frame, except for a ``frames_by_loader`` benchmark: there ``num_frames`` and
    ``frame_sampling`` (the model's :class:`~utils.data.input_settings.InputSettings`) choose them, as in training.
    """
    benchmark = BENCHMARKS[name]
    split = split or benchmark.split
    if benchmark.loader not in LOADERS:
        raise KeyError(f"{name} reads loader {benchmark.loader!r}, which is not registered ({registered_names()})")
    loader = LOADERS[benchmark.loader]
    root = Path(data_root)
    missing = loader.missing_paths(root, split)
    if missing:
        raise FileNotFoundError(f"{name} {split}: missing {', '.join(map(str, missing))}")
    loader_options = parse_options(list(options))
    if benchmark.frames_by_loader and frame_sampling is not None:
        loader_options["frame_sampling"] = frame_sampling
    frames = num_frames if benchmark.frames_by_loader else None
    dataset = loader.build(root, split, num_frames=frames, train=False, seed=0, **loader_options)
    return dataset, split

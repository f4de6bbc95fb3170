"""Predict every sample of a benchmark split into a prediction store: sharded, resumable, with progress.

    python -m evaluation.run_inference --benchmark mevis --data-root data/mevis --split valid_u \\
        --model work_dirs/unigr/final --out work_dirs/eval/mevis_valid_u
    torchrun --nproc_per_node 8 -m evaluation.run_inference --benchmark revos ...   # one shard per rank

Each rank predicts items ``rank, rank + world_size, ...`` on ``cuda:<LOCAL_RANK>`` (or the CPU)
and writes ``<out>/masks/<sample_id>/<frame>.png`` (segmentation benchmarks) and
``<out>/records/rank<r>.jsonl`` (every sample's answer). Running the same command again skips
finished samples and retries failed ones. Score with ``python -m evaluation.run_eval`` (or each
benchmark's ``run_eval.sh``).

Predictors: ``unigr`` segments (benchmarks that predict masks) or answers (benchmarks that predict
text) with the model in ``--model``; ``blind`` is the same model answering with no frames (text
benchmarks); ``all_objects`` predicts every annotated object (segmentation benchmarks).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import Dataset

from baselines.all_objects import AllObjectsPredictor
from evaluation.benchmarks import BENCHMARKS, add_benchmark_arguments, build_benchmark_dataset
from evaluation.prediction_store import PredictionStore
from evaluation.runner import DistributedEnv, InferenceSummary, Predictor, run_inference
from model.configuration_unigr import UniGRConfig
from utils.data.input_settings import InputSettings

PREDICTORS = ("unigr", "blind", "swapped_geometry", "all_objects")
PREDICTS = {"blind": "text", "swapped_geometry": "text", "all_objects": "masks"}
"""What a baseline predicts; ``unigr`` predicts what the benchmark asks for."""


def build_predictor(args: argparse.Namespace, dataset: Dataset, device: str) -> Predictor:
    """``unigr``: the model in ``--model`` as a segmenter or an answerer, as the benchmark predicts;
    ``blind``: that model with no frames; ``swapped_geometry``: that (GSM) model with another video's geometry
    tokens; ``all_objects``: the every-object baseline (needs ground truth)."""
    tokens = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    num_frames = args.num_frames or BENCHMARKS[args.benchmark].num_frames  # the benchmark's protocol, if it has one
    if args.predictor == "blind":
        from baselines.blind import BlindPredictor

        return BlindPredictor(args.model, device, args.dtype, options_only=args.options_only, **tokens)
    if args.predictor == "swapped_geometry":
        from baselines.swapped_geometry import SwappedGeometryPredictor

        return SwappedGeometryPredictor(
            args.model, dataset, num_frames, device, args.dtype, options_only=args.options_only, **tokens
        )
    if args.predictor == "unigr" and BENCHMARKS[args.benchmark].predicts == "text":
        from evaluation.answer_predictor import UniGRAnswerPredictor

        return UniGRAnswerPredictor(
            args.model, num_frames, device, args.dtype, options_only=args.options_only, **tokens
        )
    if args.predictor == "unigr":
        from evaluation.video_seg_predictor import UniGRVideoSegPredictor

        return UniGRVideoSegPredictor(args.model, args.num_frames, device, args.dtype, **tokens)
    return AllObjectsPredictor(dataset)


def pick_device(requested: str, env: DistributedEnv) -> str:
    """``auto``: this rank's GPU when there is one, else the CPU."""
    if requested != "auto":
        return requested
    return f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="prediction store folder")
    parser.add_argument("--predictor", choices=PREDICTORS, default="unigr")
    parser.add_argument(
        "--model", help="UniGR folder (save_pretrained output); needed for --predictor unigr, blind, swapped_geometry"
    )
    parser.add_argument(
        "--num-frames", type=int, default=None, help="frames the LLM sees (default: what the model was trained with)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 on a GPU")
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="longest generated answer (default: 32 masks, 512 text)"
    )
    parser.add_argument(
        "--options-only",
        nargs="?",
        const="labels",
        choices=("labels", "texts"),
        default=None,
        help="multiple choice: answer with the option the model scores highest (decoding restricted to the option "
        "labels, or with 'texts' to the options' own words) instead of free text; for baselines whose free text "
        "is no answer and for models trained to answer with an option's words",
    )
    args = parser.parse_args(argv)
    if args.predictor in ("unigr", "blind", "swapped_geometry") and not args.model:
        parser.error(f"--predictor {args.predictor} needs --model")
    predicts = BENCHMARKS[args.benchmark].predicts
    if PREDICTS.get(args.predictor, predicts) != predicts:
        parser.error(
            f"--predictor {args.predictor} predicts {PREDICTS[args.predictor]}; {args.benchmark} scores {predicts}"
        )
    return args


def main(argv: list[str] | None = None) -> InferenceSummary:
    args = parse_args(argv)
    env = DistributedEnv.from_environ()
    num_frames, frame_sampling = None, None
    if BENCHMARKS[args.benchmark].frames_by_loader and args.model:  # the model's own frame choice, as in training
        settings = InputSettings.from_dict(UniGRConfig.from_pretrained(args.model).inputs)
        requested = args.num_frames or BENCHMARKS[args.benchmark].num_frames
        num_frames, frame_sampling = requested or settings.num_frames, settings.frame_sampling
    dataset, split = build_benchmark_dataset(
        args.benchmark, args.data_root, args.split, args.option, num_frames, frame_sampling
    )
    predictor = build_predictor(args, dataset, pick_device(args.device, env))
    store = PredictionStore(args.out, writer=f"rank{env.rank}")
    return run_inference(dataset, predictor, store, env, desc=f"{args.predictor} on {args.benchmark} {split}")


if __name__ == "__main__":
    main()

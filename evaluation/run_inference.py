"""Predict every sample of a benchmark split into a prediction store: sharded, resumable, with progress.

    python -m evaluation.run_inference --benchmark mevis --data-root data/mevis --split valid_u \\
        --model work_dirs/unigr/final --out work_dirs/eval/mevis_valid_u
    torchrun --nproc_per_node 8 -m evaluation.run_inference --benchmark revos ...   # one shard per rank

Each rank predicts items ``rank, rank + world_size, ...`` on ``cuda:<LOCAL_RANK>`` (or the CPU)
and writes ``<out>/masks/<sample_id>/<frame>.png`` and ``<out>/records/rank<r>.jsonl``. Running the
same command again skips finished samples and retries failed ones. Score with
``python -m evaluation.run_eval`` (or each benchmark's ``run_eval.sh``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import Dataset

from baselines.all_objects import AllObjectsPredictor
from evaluation.benchmarks import add_benchmark_arguments, build_benchmark_dataset
from evaluation.prediction_store import PredictionStore
from evaluation.runner import DistributedEnv, InferenceSummary, Predictor, run_inference

PREDICTORS = ("unigr", "all_objects")


def build_predictor(args: argparse.Namespace, dataset: Dataset, device: str) -> Predictor:
    """``unigr``: the model in ``--model``; ``all_objects``: the every-object baseline (needs ground truth)."""
    if args.predictor == "unigr":
        from evaluation.video_seg_predictor import UniGRVideoSegPredictor

        return UniGRVideoSegPredictor(args.model, args.num_frames, device, args.dtype)
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
    parser.add_argument("--model", help="UniGR folder (save_pretrained output); needed for --predictor unigr")
    parser.add_argument(
        "--num-frames", type=int, default=None, help="frames the LLM sees (default: what the model was trained with)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 on a GPU")
    args = parser.parse_args(argv)
    if args.predictor == "unigr" and not args.model:
        parser.error("--predictor unigr needs --model")
    return args


def main(argv: list[str] | None = None) -> InferenceSummary:
    args = parse_args(argv)
    env = DistributedEnv.from_environ()
    dataset, split = build_benchmark_dataset(args.benchmark, args.data_root, args.split, args.option)
    predictor = build_predictor(args, dataset, pick_device(args.device, env))
    store = PredictionStore(args.out, writer=f"rank{env.rank}")
    return run_inference(dataset, predictor, store, env, desc=f"{args.predictor} on {args.benchmark} {split}")


if __name__ == "__main__":
    main()

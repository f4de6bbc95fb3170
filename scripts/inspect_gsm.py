"""How much the GSM's appended tokens vary: a check that a trained GSM passes on something about each video.

For a UniGR model with the geometry encoder (:mod:`model.encoders.geometry`) and a benchmark's questions, assembles
the LLM's input for ``--samples`` evenly spread questions and prints, over the tokens written into the
``<geometry>`` placeholders: their mean norm, how far the ``num_queries`` tokens of one sample lie from their mean
(``query_spread``), and how far one query's token lies from its mean over the samples (``sample_spread``), each
also relative to the norm. A GSM whose relative sample spread is near 0 appends the same tokens to every video:
it carries nothing about the geometry (its ``run_inference --predictor swapped_geometry`` score then equals its own).

    python scripts/inspect_gsm.py --model work_dirs/quickstart_dynamic/gsm/final \
        --benchmark dsr_bench --data-root data/synthetic_dynamic/eval [--samples 20] [--num-frames 16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.answer_predictor import UniGRAnswerPredictor  # noqa: E402
from evaluation.benchmarks import build_benchmark_dataset  # noqa: E402
from model.encoders.geometry import GEOMETRY_PLACEHOLDER  # noqa: E402


@torch.no_grad()
def appended_tokens(predictor: UniGRAnswerPredictor, sample) -> torch.Tensor:
    """``(num_queries, D)``: what the model's input assembly writes into ``sample``'s ``<geometry>`` placeholders."""
    model = predictor.model
    inputs, _ = predictor.llm_inputs(sample)
    embeds, _ = model.assemble(inputs["input_ids"], inputs)  # (1, L, D)
    return embeds[0, inputs["input_ids"][0] == model.placeholder_token_ids()[GEOMETRY_PLACEHOLDER]].float()


def token_spread(tokens: torch.Tensor) -> dict[str, float]:
    """``tokens (S, N, D)`` (samples x queries) -> mean norm, query spread and sample spread (absolute and over the
    norm)."""
    norm = float(tokens.norm(dim=-1).mean())
    query = float((tokens - tokens.mean(1, keepdim=True)).norm(dim=-1).mean())
    sample = float((tokens - tokens.mean(0, keepdim=True)).norm(dim=-1).mean())
    return {
        "norm": round(norm, 4),
        "query_spread": round(query, 4),
        "sample_spread": round(sample, 4),
        "relative_query_spread": round(query / max(norm, 1e-12), 4),
        "relative_sample_spread": round(sample / max(norm, 1e-12), 4),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="a UniGR folder with the geometry encoder")
    parser.add_argument("--benchmark", default="dsr_bench")
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--samples", type=int, default=20, help="questions, spread evenly over the benchmark")
    parser.add_argument("--num-frames", type=int, default=None, help="frames per video (default: the benchmark's)")
    args = parser.parse_args(argv)
    dataset, _ = build_benchmark_dataset(args.benchmark, args.data_root, num_frames=args.num_frames)
    predictor = UniGRAnswerPredictor(args.model, args.num_frames, "cpu", "fp32", max_new_tokens=1)
    if "geometry" not in predictor.model.input_assembly.encoders:
        parser.error(f"{args.model} has no geometry encoder")
    if args.samples < 2:
        parser.error("--samples must be at least 2")
    count = min(args.samples, len(dataset))
    indices = [round(i * (len(dataset) - 1) / max(count - 1, 1)) for i in range(count)]
    tokens = torch.stack([appended_tokens(predictor, dataset[index]) for index in indices])  # (S, N, D)
    spread = {"samples": count, **token_spread(tokens)}
    print(json.dumps(spread, indent=2))
    return spread


if __name__ == "__main__":
    main()

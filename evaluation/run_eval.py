"""Score a prediction store on a benchmark split (and zip it for the online server where there is one).

    python -m evaluation.run_eval --benchmark mevis --data-root data/mevis --split valid_u \\
        --pred work_dirs/eval/mevis_valid_u

Refuses an incomplete store and names the missing samples. Prints the benchmark's table (overall
and per group), writes ``<pred>/metrics_<benchmark>_<split>.json`` (with per-sample scores) and,
for splits an online server scores (MeViS ``valid``, Ref-YouTube-VOS ``valid``),
``<pred>/submission_<benchmark>_<split>.zip``. A split without public
masks gets only the zip.

Judged benchmarks (``videorefer_d``; ``videoinfer``'s judge columns) call an OpenAI-compatible
endpoint: ``--judge-base-url`` and ``--judge-model`` (or ``$UNIGR_JUDGE_BASE_URL`` and
``$UNIGR_JUDGE_MODEL``), the key in ``$OPENAI_API_KEY`` (``--judge-api-key-env`` names another
variable). Judgments are cached in ``<pred>/judge_cache`` (``--judge-cache``), so scoring again
sends no request.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from evaluation.benchmarks import BENCHMARKS, add_benchmark_arguments, build_benchmark_dataset
from evaluation.judge import JudgeConfig
from evaluation.metrics.captions import TOKENIZERS
from evaluation.metrics.revos import MASK_SCALES, binarize_scaled
from evaluation.prediction_store import PredictionStore
from evaluation.scoring import NoGroundTruth, ScoreOptions, format_table
from evaluation.submission import write_submission_zip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_benchmark_arguments(parser)
    parser.add_argument("--pred", required=True, type=Path, help="prediction store folder (run_inference --out)")
    parser.add_argument(
        "--mask-scale",
        type=int,
        choices=MASK_SCALES,
        default=255,
        help="foreground value of the saved PNGs (this repo writes 255); other values are refused",
    )
    parser.add_argument(
        "--ar-scale",
        type=int,
        choices=MASK_SCALES,
        default=1,
        help="ReVOS: value scale A and R are computed at, as the official script would on PNGs saved with it "
        "(1: the intended A and R; 100: RGA3-style files); see evaluation/metrics/revos.py",
    )
    parser.add_argument("--out", type=Path, help="metrics JSON (default: in --pred)")
    parser.add_argument(
        "--caption-tokenizer",
        choices=TOKENIZERS,
        default="none",
        help="caption metrics: none (raw text, RGA3's VideoInfer protocol), ptb (COCO's, needs Java) or "
        "simple (PTB-like without Java); see evaluation/metrics/captions.py",
    )
    judge = parser.add_argument_group("LLM judge (any OpenAI-compatible chat-completions endpoint)")
    judge.add_argument(
        "--judge-base-url",
        default=os.environ.get("UNIGR_JUDGE_BASE_URL"),
        help="API root, e.g. https://api.openai.com/v1 (default: $UNIGR_JUDGE_BASE_URL)",
    )
    judge.add_argument("--judge-model", default=os.environ.get("UNIGR_JUDGE_MODEL"), help="default: $UNIGR_JUDGE_MODEL")
    judge.add_argument(
        "--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable that holds the API key"
    )
    judge.add_argument("--judge-cache", type=Path, help="cache of judgments (default: <pred>/judge_cache)")
    judge.add_argument("--judge-workers", type=int, default=4, help="requests in flight at once")
    judge.add_argument("--judge-retries", type=int, default=5, help="retries after 429 / 5xx / timeouts")
    judge.add_argument("--judge-backoff", type=float, default=2.0, help="seconds before the first retry, doubled after")
    judge.add_argument("--judge-timeout", type=float, default=120.0, help="seconds to wait for one response")
    args = parser.parse_args(argv)
    if bool(args.judge_base_url) != bool(args.judge_model):
        parser.error("the judge needs both --judge-base-url and --judge-model")
    return args


def judge_config(args: argparse.Namespace) -> JudgeConfig | None:
    """The judge the flags describe, or ``None`` when none is given."""
    if not args.judge_base_url:
        return None
    return JudgeConfig(
        args.judge_base_url,
        args.judge_model,
        api_key_env=args.judge_api_key_env,
        cache_dir=args.judge_cache or args.pred / "judge_cache",
        timeout=args.judge_timeout,
        max_retries=args.judge_retries,
        backoff=args.judge_backoff,
        workers=args.judge_workers,
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    benchmark = BENCHMARKS[args.benchmark]
    dataset, split = build_benchmark_dataset(args.benchmark, args.data_root, args.split, args.option)
    store = PredictionStore(args.pred)
    sample_ids = dataset.sample_ids()
    result: dict = {"benchmark": args.benchmark, "split": split}
    if split in benchmark.submissions:
        zip_path = args.pred / f"submission_{args.benchmark}_{split}.zip"
        write_submission_zip(store, sample_ids, benchmark.submissions[split], zip_path)
        result["submission"] = str(zip_path)
        print(f"submission zip for the {args.benchmark} server: {zip_path}")
    try:
        options = ScoreOptions(
            lambda png: binarize_scaled(png, args.mask_scale),
            args.ar_scale,
            judge=judge_config(args),
            caption_tokenizer=args.caption_tokenizer,
        )
        metrics = benchmark.score(dataset, store, options)
    except NoGroundTruth as error:
        if split not in benchmark.submissions:
            raise
        print(f"{args.benchmark} {split} has no public ground truth ({error}); upload the zip to score it.")
        return result
    result.update(metrics)
    out = args.out or args.pred / f"metrics_{args.benchmark}_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    rows = {"overall": metrics["overall"], **metrics.get("groups", {})}
    table = format_table(rows, list(benchmark.columns), benchmark.unscaled)
    print(f"{args.benchmark} {split}\n{table}\nwritten to {out}")
    return result


if __name__ == "__main__":
    main()

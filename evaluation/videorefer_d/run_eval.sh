#!/usr/bin/env bash
# VideoRefer-Bench-D: test: an LLM judge's 0-5 scores (subject, appearance, temporal, hallucination) and their average.
#   OPENAI_API_KEY=... bash evaluation/videorefer_d/run_eval.sh DATA_ROOT PRED --judge-base-url URL --judge-model NAME [run_eval args]
# (or UNIGR_JUDGE_BASE_URL / UNIGR_JUDGE_MODEL in the environment); judgments are cached in PRED/judge_cache.
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval videorefer_d --data-root "$data_root" --pred "$pred" "$@"

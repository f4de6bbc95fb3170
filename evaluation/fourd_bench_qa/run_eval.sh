#!/usr/bin/env bash
# 4D-Bench QA test: accuracy overall and per category, the final answer of each reply (not its first letter).
#   bash evaluation/fourd_bench_qa/run_eval.sh DATA_ROOT PRED [run_eval args]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval fourd_bench_qa --data-root "$data_root" --pred "$pred" "$@"

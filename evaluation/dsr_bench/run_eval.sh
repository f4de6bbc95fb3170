#!/usr/bin/env bash
# DSR-Bench test: accuracy overall and per question type (abs/rel x distance, direction, orientation, speed, speed comparison, direction prediction; non-template), and how many replies had no readable answer.
#   bash evaluation/dsr_bench/run_eval.sh DATA_ROOT PRED [run_eval args]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval dsr_bench --data-root "$data_root" --pred "$pred" "$@"

#!/usr/bin/env bash
# VideoRefer-Bench-Q: test: accuracy per question type and overall, and how many answers had no readable letter.
#   bash evaluation/videorefer_q/run_eval.sh DATA_ROOT PRED [run_eval args]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval videorefer_q --data-root "$data_root" --pred "$pred" "$@"

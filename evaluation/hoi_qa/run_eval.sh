#!/usr/bin/env bash
# HOI-QA (HOI-Ref): test: box accuracy (IoU > 0.5, +1 pixel, per-source frame size), mean IoU, noun accuracy and
# hand side, overall and per source, referral type and task (evaluation/hoi_scoring.py).
#   bash evaluation/hoi_qa/run_eval.sh DATA_ROOT PRED [run_eval args]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval hoi_qa --data-root "$data_root" --pred "$pred" "$@"

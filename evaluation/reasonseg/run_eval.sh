#!/usr/bin/env bash
# ReasonSeg: gIoU and cIoU (val or test).
#   bash evaluation/reasonseg/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval reasonseg --data-root "$data_root" --pred "$pred" "$@"

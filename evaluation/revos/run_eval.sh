#!/usr/bin/env bash
# ReVOS: valid: J, F, J&F for referring / reasoning / overall, plus A and R.
#   bash evaluation/revos/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval revos --data-root "$data_root" --pred "$pred" "$@"

#!/usr/bin/env bash
# ReasonVOS: J, F, J&F per expression.
#   bash evaluation/reasonvos/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval reasonvos --data-root "$data_root" --pred "$pred" "$@"

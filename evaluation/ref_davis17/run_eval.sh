#!/usr/bin/env bash
# Ref-DAVIS17: valid: per-annotator DAVIS-2017 unsupervised protocol and per-expression J&F.
#   bash evaluation/ref_davis17/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval ref_davis17 --data-root "$data_root" --pred "$pred" "$@"

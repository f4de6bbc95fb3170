#!/usr/bin/env bash
# Multi3DRefer: val: F1@0.25 / F1@0.5 overall and per evaluation type (zt_w_d, zt_wo_d, st_w_d, st_wo_d, mt).
#   bash evaluation/multi3drefer/run_eval.sh DATA_ROOT PRED [run_eval args]
# Reads no frame: scores from the annotations and the scenes' proposals
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval multi3drefer --data-root "$data_root" --pred "$pred" "$@"

#!/usr/bin/env bash
# ScanRefer: val: Acc@0.25 / Acc@0.5 overall and for unique / multiple, answers without a box, ids out of range.
#   bash evaluation/scanrefer/run_eval.sh DATA_ROOT PRED [run_eval args]
# Reads no frame: scores from the annotations and the scenes' proposals
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval scanrefer --data-root "$data_root" --pred "$pred" "$@"

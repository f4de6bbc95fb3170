#!/usr/bin/env bash
# SQA3D: test: EM / EM-refined / EM-raw per question type and overall.
#   bash evaluation/sqa3d/run_eval.sh DATA_ROOT PRED [run_eval args]
# Reads no frame: scores from the annotations and the scenes' proposals
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval sqa3d --data-root "$data_root" --pred "$pred" "$@"

#!/usr/bin/env bash
# MeViS: valid_u (local, scored) or valid (online: writes the CodaLab zip).
#   bash evaluation/mevis/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval mevis --data-root "$data_root" --pred "$pred" "$@"

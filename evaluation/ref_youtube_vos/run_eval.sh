#!/usr/bin/env bash
# Ref-YouTube-VOS: valid: writes the CodaLab zip; scores locally where masks exist.
#   bash evaluation/ref_youtube_vos/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval ref_youtube_vos --data-root "$data_root" --pred "$pred" "$@"

#!/usr/bin/env bash
# VLM4D (--split real|synthetic|all, default all): accuracy overall, real ego/exo, synthetic directional/false-premise. Replies the rules cannot read go to the judge when one is given (--judge-base-url, --judge-model), else count as unparsed. VLM4D's own judged files: python -m evaluation.vlm4d.official_table REAL_DIR SYNTHETIC_DIR.
#   bash evaluation/vlm4d/run_eval.sh DATA_ROOT PRED [run_eval args]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval vlm4d --data-root "$data_root" --pred "$pred" "$@"

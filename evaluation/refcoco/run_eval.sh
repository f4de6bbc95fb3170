#!/usr/bin/env bash
# RefCOCO / RefCOCO+ / RefCOCOg / RefCLEF: gIoU and cIoU; BENCHMARK=refcoco+|refcocog|refclef picks the dataset, --split testA|testB|test.
#   bash evaluation/refcoco/run_eval.sh DATA_ROOT PRED [run_eval args, e.g. --split]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval "${BENCHMARK:-refcoco}" --data-root "$data_root" --pred "$pred" "$@"

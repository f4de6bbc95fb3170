#!/usr/bin/env bash
# RefCOCO / RefCOCO+ / RefCOCOg / RefCLEF: UniGR predictions for every sample of a split, sharded over this node's GPUs, resumable.
#   bash evaluation/refcoco/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT is the dataset's folder as released; OUT the prediction store. Args e.g. --split <split> (default val), --dtype bf16, --num-frames N (default: what the model was trained with); NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference "${BENCHMARK:-refcoco}" --model "$model" --data-root "$data_root" --out "$out" "$@"

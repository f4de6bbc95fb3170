#!/usr/bin/env bash
# VideoInfer: UniGR's answer to every question about a pointed-at object, sharded over this node's GPUs, resumable.
#   bash evaluation/videoinfer/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT is VideoInfer-Release as released; OUT the prediction store. Args e.g. --predictor blind, --num-frames N, --dtype bf16; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference videoinfer --model "$model" --data-root "$data_root" --out "$out" "$@"

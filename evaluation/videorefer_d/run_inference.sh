#!/usr/bin/env bash
# VideoRefer-Bench-D: UniGR's description of every pointed-at object, sharded over this node's GPUs, resumable.
#   bash evaluation/videorefer_d/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT is the benchmark's folder as released; OUT the prediction store. Args e.g. --max-new-tokens 512, --predictor blind, --num-frames N, --dtype bf16; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference videorefer_d --model "$model" --data-root "$data_root" --out "$out" "$@"

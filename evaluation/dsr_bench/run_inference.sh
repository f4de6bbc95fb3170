#!/usr/bin/env bash
# DSR-Bench: UniGR's answer to every question, 32 uniformly sampled frames per video by default, sharded over this node's GPUs, resumable.
#   bash evaluation/dsr_bench/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds benchmark.parquet and videos/ (--option video_folder=DIR elsewhere); OUT the prediction store. Args e.g. --num-frames N, --option prompt=cot, --options-only, --predictor blind, --dtype bf16; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference dsr_bench --model "$model" --data-root "$data_root" --out "$out" "$@"

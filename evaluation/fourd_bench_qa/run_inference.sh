#!/usr/bin/env bash
# 4D-Bench QA: UniGR's answer to every question, from views 1, 8 and 16 of each object (6 frames each, as images), sharded, resumable.
#   bash evaluation/fourd_bench_qa/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds 4d_qa.json and 4d_object_multi_view_videos/. Args e.g. --option frames_per_view=8, --options-only, --predictor blind; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference fourd_bench_qa --model "$model" --data-root "$data_root" --out "$out" "$@"

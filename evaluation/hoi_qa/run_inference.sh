#!/usr/bin/env bash
# HOI-QA (HOI-Ref): UniGR's answer to every test question (boxes on the 0-100 grid or as Qwen JSON, nouns, hands),
# sharded over this node's GPUs, resumable.
#   bash evaluation/hoi_qa/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds HOI-QA's JSON files and the extracted frames (utils/data/hoi_qa.py, scripts/extract_hoi_frames.py);
# OUT the prediction store. Args e.g. --split epic_hoi_test, --option task_tags=keep, --option box_format=pixels,
# --dtype bf16; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference hoi_qa --model "$model" --data-root "$data_root" --out "$out" "$@"

#!/usr/bin/env bash
# ScanQA: UniGR's short answer to every question about a scan, sharded over this node's GPUs, resumable.
#   bash evaluation/scanqa/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds ScanQA_v1.0_val.json (or Video-3D LLM's LLaVA file) and scenes/<scene_id>/ folders; OUT the prediction store. The loader picks the frames with the model's saved frame count and sampling (as in training). Args e.g. --predictor blind, --num-frames N, --option layout=llava, --option read_object=true (a model trained to ground and read, [GRD][READ]), --dtype bf16; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference scanqa --model "$model" --data-root "$data_root" --out "$out" "$@"

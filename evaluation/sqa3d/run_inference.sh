#!/usr/bin/env bash
# SQA3D: UniGR's short answer to every situated question, sharded over this node's GPUs, resumable.
#   bash evaluation/sqa3d/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds the balanced v1 questions and annotations files (or Video-3D LLM's LLaVA file) and scenes/<scene_id>/ folders; OUT the prediction store. The loader picks the frames with the model's saved frame count and sampling (as in training). Args e.g. --predictor blind, --num-frames N, --option layout=llava, --option situated=true (a model trained to locate the speaker first, [SIT]), --dtype bf16; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference sqa3d --model "$model" --data-root "$data_root" --out "$out" "$@"

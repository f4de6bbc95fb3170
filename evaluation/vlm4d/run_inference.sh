#!/usr/bin/env bash
# VLM4D: UniGR's answer to every real and synthetic question (--split real|synthetic|all), 32 uniformly sampled frames by default, sharded, resumable.
#   bash evaluation/vlm4d/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds real_mc.json, synthetic_mc.json and the videos at their URL paths (videos_real/..., videos_synthetic/...). Args e.g. --option prompt=cot, --num-frames N, --predictor blind; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference vlm4d --model "$model" --data-root "$data_root" --out "$out" "$@"

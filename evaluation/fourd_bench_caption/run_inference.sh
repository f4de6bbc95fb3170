#!/usr/bin/env bash
# 4D-Bench captioning: UniGR's caption of every object, from views 1, 8 and 16 (6 frames each, as images), sharded, resumable.
#   bash evaluation/fourd_bench_caption/run_inference.sh MODEL_DIR DATA_ROOT OUT [run_inference args]
# DATA_ROOT holds human_annotations.csv and 4d_object_multi_view_videos/. Args e.g. --max-new-tokens 256, --option frames_per_view=8; NPROC_PER_NODE / NNODES / RDZV_ENDPOINT as in evaluation/launch.sh.
set -euo pipefail
model=$1 data_root=$2 out=$3
shift 3
exec bash "$(dirname "$0")/../launch.sh" inference fourd_bench_caption --model "$model" --data-root "$data_root" --out "$out" "$@"

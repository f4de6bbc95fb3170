#!/usr/bin/env bash
# Shared by every benchmark's run_inference.sh / run_eval.sh: run an evaluation module, under torchrun for inference.
#   bash evaluation/launch.sh inference <benchmark> <run_inference args...>
#   bash evaluation/launch.sh eval <benchmark> <run_eval args...>
# Inference runs NPROC_PER_NODE processes per node (default: the visible GPUs, at least 1), one shard each.
# Several nodes: the same command on every node with NNODES and RDZV_ENDPOINT=<host of one of them>:<port>
# (NODE_RANK=<i> fixes the node order). Re-running resumes: finished samples are skipped.
set -euo pipefail
stage=$1 benchmark=$2
shift 2
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
if [ "$stage" = eval ]; then
  exec python -m evaluation.run_eval --benchmark "$benchmark" "$@"
fi
nproc=${NPROC_PER_NODE:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}
launch=(--nnodes="${NNODES:-1}" --nproc_per_node="$nproc")
if [ -n "${RDZV_ENDPOINT:-}" ]; then
  launch+=(--rdzv_backend=c10d --rdzv_endpoint="$RDZV_ENDPOINT" --rdzv_id="${RDZV_ID:-unigr-eval-$benchmark}")
fi
if [ -n "${NODE_RANK:-}" ]; then
  launch+=(--node_rank="$NODE_RANK")
fi
exec torchrun "${launch[@]}" -m evaluation.run_inference --benchmark "$benchmark" "$@"

#!/usr/bin/env bash
# With arguments: launch train.py under torchrun, e.g.
#   NPROC_PER_NODE=8 bash run_torchrun.sh --config configs/<run>.yaml train.lr=1e-4
# Several nodes: run the same command on every node with NNODES and the rendezvous address of one of them,
#   NNODES=2 NPROC_PER_NODE=8 RDZV_ENDPOINT=node0:29500 bash run_torchrun.sh --config configs/<run>.yaml
# (NODE_RANK=<i> fixes the node order; RDZV_ID names the job, default unigr.) Under Slurm: scripts/slurm_train.sh.
# Without arguments: the quick start (synthetic data, tiny model, train, evaluate, print a table).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ $# -gt 0 ]; then
  launch=(--nnodes="${NNODES:-1}" --nproc_per_node="${NPROC_PER_NODE:-1}")
  if [ -n "${RDZV_ENDPOINT:-}" ]; then
    launch+=(--rdzv_backend=c10d --rdzv_endpoint="$RDZV_ENDPOINT" --rdzv_id="${RDZV_ID:-unigr}")
  fi
  if [ -n "${NODE_RANK:-}" ]; then
    launch+=(--node_rank="$NODE_RANK")
  fi
  exec torchrun "${launch[@]}" train.py "$@"
fi
exec python scripts/quickstart.py

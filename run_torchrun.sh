#!/usr/bin/env bash
# With arguments: launch train.py under torchrun, e.g.
#   NPROC_PER_NODE=8 bash run_torchrun.sh --config configs/<run>.yaml train.lr=1e-4
# Without arguments: the quick start (synthetic data, tiny model, train, evaluate, print a table).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ $# -gt 0 ]; then
  exec torchrun --nnodes="${NNODES:-1}" --nproc_per_node="${NPROC_PER_NODE:-1}" train.py "$@"
fi
exec python scripts/quickstart.py

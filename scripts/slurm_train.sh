#!/usr/bin/env bash
# Multi-node training under Slurm: one torchrun per node, joined by a c10d rendezvous on the first node.
# Submit from the repository root (with .venv/ installed on a shared file system):
#   sbatch scripts/slurm_train.sh --config configs/mevis_7b_lora.yaml [key=value ...]
#   sbatch --nodes=4 --gpus-per-node=4 scripts/slurm_train.sh --config ... train.engine=deepspeed \
#       train.deepspeed_config=configs/deepspeed/zero3.json
#SBATCH --job-name=unigr
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
if [ ! -x .venv/bin/torchrun ]; then
  echo "no .venv/bin/torchrun in $PWD: submit from the repository root after bash scripts/setup_env.sh" >&2
  exit 1
fi
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
echo "nodes=$SLURM_NNODES gpus_per_node=$GPUS_PER_NODE rendezvous=$MASTER_ADDR:$MASTER_PORT"
srun --kill-on-bad-exit=1 .venv/bin/torchrun \
  --nnodes="$SLURM_NNODES" \
  --nproc_per_node="$GPUS_PER_NODE" \
  --rdzv_id="$SLURM_JOB_ID" \
  --rdzv_backend=c10d \
  --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" \
  train.py "$@"

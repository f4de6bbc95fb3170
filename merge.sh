#!/usr/bin/env bash
# After training: merge a run's LoRA into one Hugging Face folder, <run>/merged (see merge_lora.py).
#   bash merge.sh work_dirs/<run> [final | step_0001000]
set -euo pipefail
run_dir=$(cd "${1:?usage: bash merge.sh work_dirs/<run> [final | step_N]}" && pwd)
cd "$(dirname "$0")"
exec .venv/bin/python merge_lora.py --run-dir "$run_dir" --checkpoint "${2:-final}"

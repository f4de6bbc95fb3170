#!/usr/bin/env bash
# ScanQA: val: CIDEr, BLEU-1, BLEU-4, METEOR, ROUGE-L and EM / EM-refined / EM-raw.
#   bash evaluation/scanqa/run_eval.sh DATA_ROOT PRED [run_eval args]
# Reads no frame: scores from the annotations and the scenes' proposals; --caption-tokenizer ptb for COCO tokenisation as Chat-Scene / GPT4Scene report (Java).
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval scanqa --data-root "$data_root" --pred "$pred" "$@"

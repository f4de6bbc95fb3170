#!/usr/bin/env bash
# Scan2Cap: val: CIDEr / BLEU-4 / METEOR / ROUGE-L @0.25 and @0.5 IoU (paper) and as the released code scores misses.
#   bash evaluation/scan2cap/run_eval.sh DATA_ROOT PRED [run_eval args]
# Reads no frame: scores from the annotations and the scenes' proposals; --caption-tokenizer ptb for COCO tokenisation as Chat-Scene / GPT4Scene report (Java).
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval scan2cap --data-root "$data_root" --pred "$pred" "$@"

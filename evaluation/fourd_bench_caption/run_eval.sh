#!/usr/bin/env bash
# 4D-Bench captioning test: BLEU-1..4, METEOR (needs Java), ROUGE-L and CIDEr against the five human captions (--caption-tokenizer none|ptb|simple).
#   bash evaluation/fourd_bench_caption/run_eval.sh DATA_ROOT PRED [run_eval args]
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval fourd_bench_caption --data-root "$data_root" --pred "$pred" "$@"

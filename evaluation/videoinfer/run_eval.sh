#!/usr/bin/env bash
# VideoInfer: test: BLEU-4, METEOR, ROUGE-L, CIDEr and, with a judge, RGA3's judge accuracy and score.
#   OPENAI_API_KEY=... bash evaluation/videoinfer/run_eval.sh DATA_ROOT PRED [--judge-base-url URL --judge-model NAME] [run_eval args]
# Without a judge the judge columns read "not run"; --caption-tokenizer ptb for COCO tokenisation (Java).
set -euo pipefail
data_root=$1 pred=$2
shift 2
exec bash "$(dirname "$0")/../launch.sh" eval videoinfer --data-root "$data_root" --pred "$pred" "$@"

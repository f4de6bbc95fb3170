"""An offline tokenizer with Qwen's special tokens and chat template, for tiny models and tests.

Real runs use the tokenizer shipped in a Qwen2.5-VL folder. Tiny runs cannot download it, so this
module trains a small byte-level BPE on a given corpus and wraps it in transformers'
``Qwen2Tokenizer`` (Qwen's own pre-tokenizer), with the same special tokens and chat format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, Qwen2Tokenizer

from utils.data.prompts import GRD_TOKEN, SEG_TOKEN

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen's ChatML format: a default system turn, then <|im_start|>role\ncontent<|im_end|>\n per turn.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> Qwen2Tokenizer:
    """Train a byte-level BPE on ``corpus`` and return it as a Qwen tokenizer with ``[SEG]`` and ``[GRD]`` added."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=trained["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    add_seg_token(tokenizer)
    add_grd_token(tokenizer)
    return tokenizer


def add_seg_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add ``[SEG]`` as a special token (idempotent) and return its id."""
    tokenizer.add_tokens([SEG_TOKEN], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(SEG_TOKEN)


def add_grd_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add ``[GRD]`` (the proposal grounding head's token) as a special token (idempotent) and return its id."""
    tokenizer.add_tokens([GRD_TOKEN], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(GRD_TOKEN)

"""Location tokens: each grid value ``<0>`` .. ``<100>`` of HOI-QA's box text as one token that means its place.

Qwen2.5-VL's tokenizer spells ``<17>`` as four tokens (``<``, ``1``, ``7``, ``>``), and a real Qwen2.5-VL has
learned to write places that way. A tiny model from scratch has not, and the digits of a place are a poor target
to learn it from: the tens digit is a step function of the place, the units digit a saw-tooth. With location
tokens (as Pix2Seq, OFA and Florence-2 write boxes) a place is one token whose input and output embeddings start
as the parameter-free sinusoidal code of its value (:func:`model.encoders.position2d.sinusoidal_code_2d` at
``(k, k)``, the code the ``position2d`` encoder adds to the visual token at that place), so the output
embedding that best matches a visual token's code is that token's place. The text is unchanged: the tokens
decode to the same characters, so answers are read and scored as before.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from model.builder import grow_embeddings
from model.encoders.position2d import sinusoidal_code_2d
from utils.data.box_text import GRID

LOCATION_TOKENS = tuple(f"<{value}>" for value in range(GRID + 1))
"""The added tokens, in value order."""


def location_codes(width: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(GRID + 1, width)`` float32 unit-norm codes: row ``k`` is the 2D sinusoidal code at ``(k, k)``."""
    values = torch.arange(GRID + 1, dtype=torch.float32)
    codes = sinusoidal_code_2d(torch.stack([values, values], dim=-1), width, temperature)
    return codes / codes.norm(dim=-1, keepdim=True)


def add_location_tokens(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Add :data:`LOCATION_TOKENS` to ``tokenizer`` and ``model`` (a UniGR), their input and output embeddings set
    to :func:`location_codes` at the mean norm of the existing rows; their ids. Raises ``ValueError`` if the
    tokenizer has them already."""
    vocabulary = tokenizer.get_vocab()
    present = [token for token in LOCATION_TOKENS if token in vocabulary]
    if present:
        raise ValueError(f"the tokenizer already has location tokens ({present[0]}, ...)")
    old_rows = model.backbone.get_input_embeddings().weight.shape[0]
    tokenizer.add_tokens(list(LOCATION_TOKENS))
    grow_embeddings(model.backbone, tokenizer)
    model.config.backbone_config = model.backbone.config  # the vocabulary has grown (as add_grounding_head does)
    ids = tokenizer.convert_tokens_to_ids(list(LOCATION_TOKENS))
    embeddings = [model.backbone.get_input_embeddings().weight, model.backbone.get_output_embeddings().weight]
    with torch.no_grad():
        for weight in embeddings:
            norm = weight[:old_rows].norm(dim=-1).mean()
            weight[ids] = (location_codes(weight.shape[1]) * norm).to(weight.dtype)
    return ids

"""The blind baseline: the same model asked the same question with no frames at all.

What a benchmark's questions give away by their text alone (answer priors, option wording). The
prompt is the conversation only: no video or image placeholder, no visual tokens, no region
prompts; ``<object{k}><region>`` stays in the question as plain text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from evaluation.answer_predictor import UniGRAnswerPredictor
from utils.data.collate import SampleCollator
from utils.data.schema import Sample


class BlindPredictor(UniGRAnswerPredictor):
    """:class:`~evaluation.answer_predictor.UniGRAnswerPredictor` with a text-only collator."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str = "auto",
        max_new_tokens: int = 512,
        options_only: str | None = None,
    ):
        super().__init__(model_dir, None, device, dtype, max_new_tokens, options_only)
        self.collator = SampleCollator(self.processor, None, inference=True, media=False)

    def llm_inputs(self, sample: Sample) -> tuple[dict, list[int]]:
        """The collated text-only prompt (the LLM sees no frame)."""
        batch = self.collator([replace(sample, regions=[], masks=None)])
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}, []

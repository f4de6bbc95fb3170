"""UniGR as a question answerer: the sample's frames, question and region prompts in, the generated text out.

For text benchmarks (region QA, object descriptions). Frames are chosen and collated as for
segmentation (:class:`~evaluation.unigr_predictor.UniGRPredictor`), the sample's region prompts go
through the collator's region step to the model's region encoder, and the answer is decoded
greedily up to the end of the turn.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evaluation.unigr_predictor import UniGRPredictor
from utils.data.schema import Sample


class UniGRAnswerPredictor(UniGRPredictor):
    """Greedy answers of a UniGR model; ``predict`` returns ``(None, text)`` (no masks).

    Args:
        model_dir: a UniGR folder.
        num_frames: frames the LLM sees; ``None``: the number the model was trained with.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...; dtype: ``auto`` (bf16 on a GPU), ``fp32`` or ``bf16``.
        max_new_tokens: the longest answer generated (descriptions need a few hundred).
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_frames: int | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        max_new_tokens: int = 512,
    ):
        super().__init__(model_dir, num_frames, device, dtype, max_new_tokens)

    @torch.no_grad()
    def predict(self, sample: Sample) -> tuple[None, str]:
        """``(None, answer text)``."""
        inputs, _ = self.llm_inputs(sample)
        result = self.model.generate(inputs, max_new_tokens=self.max_new_tokens)
        return None, self.answer_text(result.sequences, inputs)

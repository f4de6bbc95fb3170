"""UniGR as a question answerer: the sample's frames, question and region prompts in, the generated text out.

For text benchmarks (region QA, object descriptions). Frames are chosen and collated as for
segmentation (:class:`~evaluation.unigr_predictor.UniGRPredictor`), the sample's region prompts go
through the collator's region step to the model's region encoder, and the answer is decoded
greedily up to the end of the turn. A grounding answer's ``[GRD]`` is written as the proposals the head chose
(``<OBJ003>``); an answer that grounded an object to read it (``[GRD][READ] white``) is its words.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from evaluation.metrics.qa import option_letters
from evaluation.unigr_predictor import UniGRPredictor
from utils.data.prompts import GRD_TOKEN, READ_TOKEN
from utils.data.schema import Sample
from utils.scene3d.object_ids import format_object_id

OPTIONS_ONLY = (None, "labels", "texts")
"""How a multiple-choice answer is restricted: not at all, to the option labels, or to the option texts."""


class UniGRAnswerPredictor(UniGRPredictor):
    """Greedy answers of a UniGR model; ``predict`` returns ``(None, text)`` (no masks).

    Args:
        model_dir: a UniGR folder.
        num_frames: frames the LLM sees; ``None``: the number the model was trained with.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...; dtype: ``auto`` (bf16 on a GPU), ``fp32`` or ``bf16``.
        max_new_tokens: the longest answer generated (descriptions need a few hundred).
        options_only: answer a multiple-choice sample with one of its options (see :meth:`predict`): ``"labels"``
            (``"(B)"``) or ``"texts"`` (the option's own words, for a model trained to answer so:
            ``llava_video``'s ``mc_answer: option_text``); ``None``: free text.
        loaded: a loaded ``(model, processor)`` to share (:class:`~evaluation.unigr_predictor.UniGRPredictor`).
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_frames: int | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        max_new_tokens: int = 512,
        options_only: str | None = None,
        loaded: tuple | None = None,
    ):
        super().__init__(model_dir, num_frames, device, dtype, max_new_tokens, loaded)
        if options_only not in OPTIONS_ONLY:
            raise ValueError(f"options_only must be one of {OPTIONS_ONLY}, got {options_only!r}")
        self.options_only = options_only

    @torch.no_grad()
    def predict(self, sample: Sample) -> tuple[None, str]:
        """``(None, answer text)``; with ``options_only``, a multiple-choice sample's answer is the option label
        (``"(B)"``) or option text (``"4.9 m"``) the model scores highest (greedy decoding restricted to them)."""
        inputs, _ = self.llm_inputs(sample)
        options = sample.meta.get("options") if self.options_only else None
        if not options:
            result = self.model.generate(inputs, max_new_tokens=self.max_new_tokens)
            if result.grounding is not None and READ_TOKEN not in self.answer_text(result.sequences, inputs, False):
                return None, self.grounded_text(result, inputs)
            return None, self.answer_text(result.sequences, inputs)
        if self.options_only == "labels":
            answers = [f"({chr(ord('A') + i)})" for i in range(len(options))]
        else:
            answers = list(option_letters(options).values())  # "(A) 4.9 m" -> "4.9 m"
        sequences = [self.tokenizer.encode(answer, add_special_tokens=False) for answer in answers]
        eos = self.model.backbone.generation_config.eos_token_id
        restrict = AllowedSequences(sequences, inputs["input_ids"].shape[1], [eos] if isinstance(eos, int) else eos)
        result = self.model.generate(
            inputs, max_new_tokens=max(map(len, sequences)) + 1, logits_processor=LogitsProcessorList([restrict])
        )
        return None, self.answer_text(result.sequences, inputs)

    def grounded_text(self, result, inputs: dict) -> str:
        """The answer with each ``[GRD]`` written as the proposals the grounding head chose for it (``<OBJ003>``,
        ``<OBJ003> and <OBJ007>``, or ``none``), so grounding benchmarks score the head like ids in text."""
        text = self.answer_text(result.sequences, inputs, skip_special_tokens=False)
        for ids in result.grounding["pred_proposal_ids"][0]:
            chosen = " and ".join(format_object_id(int(k)) for k in ids.tolist()) or "none"
            text = text.replace(GRD_TOKEN, chosen, 1)
        return text


class AllowedSequences(LogitsProcessor):
    """Greedy decoding restricted to one of ``sequences`` (token id lists): at each step only the tokens that
    continue a sequence matching what was generated so far keep their score; once one is complete, only
    ``end_ids`` (the end-of-turn tokens) do."""

    def __init__(self, sequences: list[list[int]], prompt_length: int, end_ids: list[int] = ()):
        self.sequences, self.prompt_length, self.end_ids = sequences, prompt_length, list(end_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        restricted = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            allowed = {seq[len(ids)] for seq in self.sequences if len(seq) > len(ids) and seq[: len(ids)] == ids}
            if ids in self.sequences:
                allowed.update(self.end_ids)
            for token in allowed:
                restricted[row, token] = scores[row, token]
        return restricted

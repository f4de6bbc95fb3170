"""What every UniGR predictor shares: the loaded model, the frames its LLM sees and the collated prompt.

:class:`~evaluation.video_seg_predictor.UniGRVideoSegPredictor` (masks) and
:class:`~evaluation.answer_predictor.UniGRAnswerPredictor` (text) subclass :class:`UniGRPredictor`,
so both choose frames with the model's saved :class:`~utils.data.input_settings.InputSettings` and
collate with the training collator.

Benchmarks are built with every frame; the LLM sees a subset. Region prompts (``Sample.regions``)
follow their frames into that subset (re-indexed; prompts on frames left out are dropped), and an
object none of whose prompted frames was chosen has one of them put in place of the nearest chosen
frame (:func:`~utils.video.sampling.force_in`), so every ``<region>`` of the question keeps a prompt.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model.builder import load_unigr
from utils.data.collate import SampleCollator
from utils.data.input_settings import InputSettings, resolve_num_frames
from utils.data.schema import RegionPrompt, Sample
from utils.video.sampling import FrameSampling, force_in

DTYPE_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``auto``: bf16 on a GPU, float32 on the CPU; else ``fp32`` / ``bf16``."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be auto, fp32 or bf16, got {name!r}")
    return DTYPE_NAMES[name]


def region_anchor_frames(regions: list[RegionPrompt], chosen: list[int]) -> list[int]:
    """One prompted frame per region object that must be seen: a chosen one if it has any, else the
    prompted frame nearest to a chosen frame."""
    anchors = set()
    for region in sorted({prompt.region for prompt in regions}):
        frames = sorted({prompt.frame for prompt in regions if prompt.region == region})
        seen = [frame for frame in frames if frame in chosen]
        anchors.add(seen[0] if seen else min(frames, key=lambda f: (min(abs(f - c) for c in chosen), f)))
    return sorted(anchors)


def llm_view(sample: Sample, indices: list[int]) -> Sample:
    """The sample on frames ``indices`` only: frames, names, timestamps, boxes and scene geometry cut, region
    prompts re-indexed (those on other frames dropped), no mask targets."""
    position = {frame: i for i, frame in enumerate(indices)}
    return replace(
        sample,
        frames=sample.frames[indices],
        frame_names=[sample.frame_names[i] for i in indices],
        timestamps=None if sample.timestamps is None else sample.timestamps[indices],
        masks=None,
        boxes=None if sample.boxes is None else sample.boxes[:, indices],
        regions=[replace(p, frame=position[p.frame]) for p in sample.regions if p.frame in position],
        scene=None if sample.scene is None else sample.scene.take(indices),
    )


class UniGRPredictor:
    """A UniGR folder loaded for inference, with the frame choice and collation of its training.

    Args:
        model_dir: a UniGR folder.
        num_frames: frames the LLM sees; ``None``: the number the model was trained with.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...; dtype: ``auto`` (bf16 on a GPU), ``fp32`` or ``bf16``.
        max_new_tokens: the longest answer generated.
        loaded: an already loaded ``(model, processor)`` of ``model_dir`` to share (several predictors
            of one model, as the demo has), instead of loading it again; ``device`` / ``dtype`` then
            only name where it already is.
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_frames: int | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        max_new_tokens: int = 32,
        loaded: tuple | None = None,
    ):
        if loaded is None:
            self.model, self.processor = load_unigr(model_dir, dtype=resolve_dtype(dtype, device))
            self.model.to(device).eval()
        else:
            self.model, self.processor = loaded
        self.device = torch.device(device)
        if self.model.config.inputs is None:
            print(f"note: {model_dir} stores no input settings (not trained here); using the defaults")
        self.settings = InputSettings.from_dict(self.model.config.inputs)
        changed = self.settings.template_mismatches()
        if changed:
            print(f"warning: prompt templates {changed} differ from those {model_dir} was trained with")
        self.num_frames = resolve_num_frames(self.settings, num_frames)
        self.max_new_tokens = max_new_tokens
        self.collator = SampleCollator.for_model(self.model, self.processor, inference=True)
        self.tokenizer = self.processor.tokenizer

    def llm_frames(self, sample: Sample) -> list[int]:
        """Indices of the frames the LLM sees (the saved sampling strategy, no jitter), with a prompted
        frame of every region object (:func:`region_anchor_frames`). A 3D scene's frames were chosen by its
        loader with the same settings (``Benchmark.frames_by_loader``), so all of them; so are all of a sample's
        images (several images are separate pictures, e.g. GPT4Scene's BEV and marked frames, not a video)."""
        if sample.scene is not None or sample.medium == "image":
            return list(range(len(sample.frames)))
        timestamps = sample.timestamps if sample.timestamps is not None else np.arange(len(sample.frames), dtype=float)
        chosen = FrameSampling(self.settings.frame_sampling, num_frames=self.num_frames).select(timestamps)
        return force_in(chosen, region_anchor_frames(sample.regions, chosen)) if sample.regions else chosen

    def llm_inputs(self, sample: Sample) -> tuple[dict, list[int]]:
        """``(collated prompt on the device, indices of the frames the LLM sees)``."""
        indices = self.llm_frames(sample)
        batch = self.collator([llm_view(sample, indices)])
        batch.pop("sam_frames", None)  # SAM2 reads all frames through its own state, not the LLM's subset
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}, indices

    def answer_text(self, sequences: torch.Tensor, inputs: dict, skip_special_tokens: bool = True) -> str:
        """The first sample's generated answer up to its end-of-turn token; special tokens (``[SEG]``
        among them) left out unless ``skip_special_tokens`` is off."""
        eos = self.model.backbone.generation_config.eos_token_id
        stops = {eos} if isinstance(eos, int) else set(eos or [])
        tokens = sequences[0, inputs["input_ids"].shape[1] :].tolist()
        end = next((i for i, token in enumerate(tokens) if token in stops), len(tokens))
        return self.tokenizer.decode(tokens[:end], skip_special_tokens=skip_special_tokens).strip()

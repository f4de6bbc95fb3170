"""UniGR as a referring video segmenter: generate an answer, segment its ``[SEG]`` tokens on every frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model.builder import load_unigr
from model.heads.sam2_video import upscale_mask_logits
from utils.data.collate import SampleCollator
from utils.data.input_settings import InputSettings, resolve_num_frames
from utils.data.schema import Sample
from utils.video.model_inputs import sam2_frames_uint8
from utils.video.sampling import FrameSampling

DTYPE_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``auto``: bf16 on a GPU, float32 on the CPU; else ``fp32`` / ``bf16``."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be auto, fp32 or bf16, got {name!r}")
    return DTYPE_NAMES[name]


class UniGRVideoSegPredictor:
    """The LLM sees the frames the model was trained to see; SAM2 segments and propagates over all frames.

    The prompt is the sample's own conversation (built by the dataset with the training templates),
    frames are chosen with the saved :class:`~utils.data.input_settings.InputSettings` and resized by
    the shared collator, so train and test agree. SAM2's image features of a video are kept in a
    state object and reused by the next sample of the same video (benchmarks list a video's
    expressions one after another).

    Args:
        model_dir: a UniGR folder.
        num_frames: frames the LLM sees; ``None``: the number the model was trained with.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...; dtype: ``auto`` (bf16 on a GPU), ``fp32`` or ``bf16``.
        max_new_tokens: the longest answer generated.
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_frames: int | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        max_new_tokens: int = 32,
    ):
        self.model, processor = load_unigr(model_dir, dtype=resolve_dtype(dtype, device))
        self.model.to(device).eval()
        if self.model.seg_head is None:
            raise ValueError(f"{model_dir} has no segmentation head")
        self.device = torch.device(device)
        if self.model.config.inputs is None:
            print(f"note: {model_dir} stores no input settings (not trained here); using the defaults")
        self.settings = InputSettings.from_dict(self.model.config.inputs)
        changed = self.settings.template_mismatches()
        if changed:
            print(f"warning: prompt templates {changed} differ from those {model_dir} was trained with")
        self.num_frames = resolve_num_frames(self.settings, num_frames)
        self.max_new_tokens = max_new_tokens
        self.collator = SampleCollator.for_model(self.model, processor, inference=True)
        self.tokenizer = processor.tokenizer
        self._video_key: tuple | None = None
        self._video_state = None

    def llm_frames(self, sample: Sample) -> list[int]:
        """Indices of the frames the LLM sees (the saved sampling strategy, no jitter)."""
        timestamps = sample.timestamps if sample.timestamps is not None else np.arange(len(sample.frames), dtype=float)
        return FrameSampling(self.settings.frame_sampling, num_frames=self.num_frames).select(timestamps)

    def sam2_state(self, sample: Sample):
        """SAM2's state on all the sample's frames, reused while consecutive samples show the same video."""
        key = (sample.meta.get("video"), tuple(sample.frame_names), sample.frames.shape)
        if key[0] is None or key != self._video_key:
            frames = sam2_frames_uint8(sample.frames, self.model.seg_head.image_size)  # kept on the CPU
            self._video_state = self.model.seg_head.init_state(frames, storage_device=self.device)
            self._video_key = key if key[0] is not None else None
        return self._video_state

    @torch.no_grad()
    def predict(self, sample: Sample) -> tuple[np.ndarray, str]:
        """``(T, H, W)`` bool mask (union over generated ``[SEG]``) and the generated text."""
        indices = self.llm_frames(sample)
        seen = replace(
            sample,
            frames=sample.frames[indices],
            frame_names=[sample.frame_names[i] for i in indices],
            timestamps=None if sample.timestamps is None else sample.timestamps[indices],
            masks=None,
        )
        batch = self.collator([seen])
        batch.pop("sam_frames")
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        sequences, (logits,) = self.model.generate_and_segment(
            inputs, [self.sam2_state(sample)], [indices], max_new_tokens=self.max_new_tokens
        )
        text = self.tokenizer.decode(sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
        size = sample.frames.shape[1:3]
        union = np.zeros((len(sample.frames), *size), dtype=bool)
        for t in range(len(sample.frames)):  # one frame at a time: full-size logits of a long video never coexist
            union[t] = (upscale_mask_logits(logits[:, t : t + 1], size) > 0).any(0)[0].cpu().numpy()
        return union, text

"""UniGR as a referring video segmenter: generate an answer, segment its ``[SEG]`` tokens on every frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from evaluation.unigr_predictor import UniGRPredictor
from model.heads.sam2_video import upscale_mask_logits
from utils.data.schema import Sample
from utils.video.model_inputs import sam2_frames_uint8


class UniGRVideoSegPredictor(UniGRPredictor):
    """The LLM sees the frames the model was trained to see; SAM2 segments and propagates over all frames.

    The prompt is the sample's own conversation (built by the dataset with the training templates),
    frames are chosen with the saved :class:`~utils.data.input_settings.InputSettings` and resized by
    the shared collator, so train and test agree (:class:`~evaluation.unigr_predictor.UniGRPredictor`).
    SAM2's image features of a video are kept in a state object and reused by the next sample of the
    same video (benchmarks list a video's expressions one after another).

    Args:
        model_dir: a UniGR folder.
        num_frames: frames the LLM sees; ``None``: the number the model was trained with.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...; dtype: ``auto`` (bf16 on a GPU), ``fp32`` or ``bf16``.
        max_new_tokens: the longest answer generated.
        loaded: a loaded ``(model, processor)`` to share (:class:`~evaluation.unigr_predictor.UniGRPredictor`).
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
        super().__init__(model_dir, num_frames, device, dtype, max_new_tokens, loaded)
        if self.model.seg_head is None:
            raise ValueError(f"{model_dir} has no segmentation head")
        self._video_key: tuple | None = None
        self._video_state = None

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
        masks, text = self.predict_objects(sample)
        return masks.any(0), text

    @torch.no_grad()
    def predict_objects(self, sample: Sample) -> tuple[np.ndarray, str]:
        """``(O, T, H, W)`` bool masks, one per generated ``[SEG]`` in order (``O`` may be 0), and the
        answer up to its end of turn (special tokens kept, so the ``[SEG]`` show)."""
        inputs, indices = self.llm_inputs(sample)
        sequences, (logits,) = self.model.generate_and_segment(
            inputs, [self.sam2_state(sample)], [indices], max_new_tokens=self.max_new_tokens
        )
        text = self.answer_text(sequences, inputs, skip_special_tokens=False)
        size = sample.frames.shape[1:3]
        masks = np.zeros((logits.shape[0], len(sample.frames), *size), dtype=bool)
        for t in range(len(sample.frames)):  # one frame at a time: full-size logits of a long video never coexist
            masks[:, t] = (upscale_mask_logits(logits[:, t : t + 1], size) > 0)[:, 0].cpu().numpy()
        return masks, text

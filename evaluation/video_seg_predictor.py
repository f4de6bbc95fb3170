"""UniGR as a referring video segmenter: generate an answer, segment its ``[SEG]`` tokens on every frame."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.builder import load_unigr
from utils.data.collate import VideoChatCollator
from utils.data.schema import Sample
from utils.video.model_inputs import sam2_frames
from utils.video.sampling import uniform_indices


class UniGRVideoSegPredictor:
    """Qwen sees ``num_frames`` uniformly sampled frames; SAM2 segments and propagates over all frames.

    The prompt is the sample's own conversation (built by the dataset with the training templates),
    and frames are resized exactly as in training (the shared collator), so train and test agree.
    """

    def __init__(self, model_dir: str | Path, num_frames: int, video_fps: float, device: str = "cpu"):
        self.model, processor = load_unigr(model_dir)
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.num_frames = num_frames
        self.collator = VideoChatCollator(processor, self.model.seg_head.image_size, video_fps, inference=True)
        self.tokenizer = processor.tokenizer

    @torch.no_grad()
    def predict(self, sample: Sample) -> tuple[np.ndarray, str]:
        """``(T, H, W)`` bool mask (union over generated ``[SEG]``) and the generated text."""
        indices = uniform_indices(len(sample.frames), self.num_frames)
        source_indices = sample.meta.get("frame_indices", list(range(len(sample.frames))))
        seen = replace(
            sample,
            frames=sample.frames[indices],
            frame_names=[sample.frame_names[i] for i in indices],
            masks=None,
            meta={**sample.meta, "frame_indices": [source_indices[i] for i in indices]},
        )
        batch = self.collator([seen])
        batch.pop("sam_frames")
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        all_frames = sam2_frames(sample.frames, self.model.seg_head.image_size, normalize=False).to(self.device)
        sequences, masks = self.model.generate_and_segment(inputs, [all_frames])
        text = self.tokenizer.decode(sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
        height, width = sample.frames.shape[1:3]
        logits = masks[0]  # (O, T, S, S)
        if logits.shape[0] == 0:
            return np.zeros((len(sample.frames), height, width), dtype=bool), text
        full = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)
        return (full > 0).any(0).cpu().numpy(), text

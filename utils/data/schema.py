"""The one sample schema every dataset yields and every collator, predictor and metric reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """A video (or image, ``T = 1``) with a conversation and optional mask targets.

    Attributes:
        sample_id: unique and stable, ``"<dataset>/<split>/<...>"``; predictions are keyed by it.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        frame_names: ``T`` names of the frames in their source (file stems), in time order.
        conversation: ``[{"role": "user" | "assistant", "content": str}, ...]``.
        masks: ``(O, T, H, W)`` bool, one track per ``[SEG]`` of the answer, in order; ``None`` if unknown.
        meta: dataset-specific facts (video id, expression ids and type, source frame indices, ...).
    """

    sample_id: str
    frames: np.ndarray
    frame_names: list[str]
    conversation: list[dict[str, str]]
    masks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

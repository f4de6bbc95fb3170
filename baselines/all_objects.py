"""The "segment every object" baseline: the union of all annotated targets of the video, whatever is asked.

It reads the ground truth of every expression of the sample's video (or image): an oracle for
*what* is an object, so it scores what a model gets by segmenting all foreground without
understanding the expression.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from torch.utils.data import Dataset

from evaluation.scoring import group_of
from utils.data.schema import Sample


class AllObjectsPredictor:
    """Predicts, for any expression, the union of its video's annotated targets on every frame."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.members: dict[str, list[int]] = defaultdict(list)
        for index, sample_id in enumerate(dataset.sample_ids()):
            self.members[group_of(sample_id)].append(index)
        self._cached: tuple[str, np.ndarray] | None = None

    def predict(self, sample: Sample) -> tuple[np.ndarray, str]:
        """``(T, H, W)`` bool union of the targets of every expression of the sample's video, and no answer."""
        group = group_of(sample.sample_id)
        if self._cached is None or self._cached[0] != group:
            union = np.zeros(sample.frames.shape[:3], dtype=bool)
            for index in self.members[group]:
                masks = self.dataset[index].masks
                if masks is None:
                    raise ValueError(f"{sample.sample_id}: the all-objects baseline needs ground-truth masks")
                union |= masks.any(0)
            self._cached = (group, union)
        return self._cached[1], ""

"""The "segment every object" baseline: the union of all annotated objects of the video, whatever is asked.

It reads the ground truth of every object of the video (an oracle for *what* is an object), so it
scores what a model gets by segmenting all foreground without understanding the expression.
"""

from __future__ import annotations

import numpy as np

from utils.data.mevis import MeViSDataset
from utils.data.schema import Sample


class AllObjectsPredictor:
    """Predicts, for any expression, the union of all of its video's annotated objects on every frame."""

    def __init__(self, dataset: MeViSDataset):
        self.dataset = dataset
        if dataset.mask_dict is None:
            raise FileNotFoundError(f"{self.dataset.mask_path} is needed by the all-objects baseline")

    def predict(self, sample: Sample) -> tuple[np.ndarray, str]:
        """``(T, H, W)`` bool union of all objects on the sample's frames, and an empty answer."""
        video_id = sample.meta["video"]
        anno_ids = sorted({a for e in self.dataset.videos[video_id]["expressions"].values() for a in e["anno_id"]})
        height, width = sample.frames.shape[1:3]
        where = f"all-objects baseline, video {video_id}"
        return self.dataset.union_mask(anno_ids, sample.meta["frame_indices"], height, width, where), ""

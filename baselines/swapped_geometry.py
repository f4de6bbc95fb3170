"""The swapped-geometry control of the GSM: the same model, the same video and question, another video's geometry.

A GSM model (:mod:`model.encoders.geometry`) is scored as usual except that its geometry tokens are read from the
frames of another video of the benchmark (its *donor*: the first later question, wrapping around, about a different
video), while Qwen's visual tokens, the question and the options stay the sample's own. What the model gains from
its geometry over this control is what the right geometry gives it; what it keeps is what the extra tokens give
regardless (capacity, a prior). The donor's frames must have the sample's grid (the same frame count and size).
"""

from __future__ import annotations

from pathlib import Path

from evaluation.answer_predictor import UniGRAnswerPredictor
from utils.data.schema import Sample


def donor_indices(videos: list[object]) -> list[int]:
    """For each item of ``videos`` (one entry per question), the index of the first later item, wrapping around, about
    another video.

    Raises:
        ValueError: when every question is about the same video (no donor exists).
    """
    if len(set(videos)) < 2:
        raise ValueError("the swapped-geometry control needs questions about at least two videos")
    count = len(videos)
    return [
        next((i + k) % count for k in range(1, count) if videos[(i + k) % count] != videos[i]) for i in range(count)
    ]


class SwappedGeometryPredictor(UniGRAnswerPredictor):
    """:class:`~evaluation.answer_predictor.UniGRAnswerPredictor` whose geometry frames come from the donor video.

    Args:
        model_dir: a UniGR folder with a geometry encoder.
        dataset: the benchmark's video-question dataset (``questions``, each with its ``video``, in item order).
        the rest: as :class:`~evaluation.answer_predictor.UniGRAnswerPredictor`.
    """

    def __init__(
        self,
        model_dir: str | Path,
        dataset,
        num_frames: int | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        max_new_tokens: int = 512,
        options_only: str | None = None,
    ):
        super().__init__(model_dir, num_frames, device, dtype, max_new_tokens, options_only)
        if "geometry" not in self.model.input_assembly.encoders:
            raise ValueError(f"{model_dir}: the swapped-geometry control needs a model with the geometry encoder")
        questions = getattr(dataset, "questions", None)
        if questions is None:
            raise ValueError(f"the swapped-geometry control needs a video-question benchmark, got {type(dataset)}")
        self.dataset = dataset
        donors = donor_indices([question.video for question in questions])
        self.donors = {question.sample_id: donor for question, donor in zip(questions, donors, strict=True)}

    def llm_inputs(self, sample: Sample) -> tuple[dict, list[int]]:
        """The sample's prompt with the donor video's ``geometry_frames``."""
        inputs, indices = super().llm_inputs(sample)
        donor = self.dataset[self.donors[sample.sample_id]]
        donor_inputs, _ = super().llm_inputs(donor)
        if donor_inputs["video_grid_thw"].tolist() != inputs["video_grid_thw"].tolist():
            raise ValueError(
                f"{sample.sample_id}: its donor {donor.sample_id} has the video grid "
                f"{donor_inputs['video_grid_thw'].tolist()}, not {inputs['video_grid_thw'].tolist()}"
            )
        inputs["geometry_frames"] = donor_inputs["geometry_frames"]
        return inputs, indices

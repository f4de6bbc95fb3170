"""The data settings that shape a model's inputs, saved with the model so inference uses the training ones.

Pixel budgets travel in the saved processor; the rest — how many frames the language model sees, how
they are chosen, and the prompt templates it was trained on — is :class:`InputSettings`, stored in
``UniGRConfig.inputs`` by ``train.py`` and read back by every predictor. An explicit override at
inference (``--num-frames``) is allowed and announced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

from utils.data.prompts import reasoning_seg_question, referring_seg_answer, referring_seg_question


def current_templates() -> dict[str, str]:
    """The prompt templates of this code, with ``{...}`` where the sample's words go."""
    return {
        "referring_question": referring_seg_question(["{expression}"]),
        "reasoning_question": reasoning_seg_question("{query}"),
        "answer": referring_seg_answer(1),
    }


@dataclass
class InputSettings:
    """Attributes:
    num_frames: frames the language model sees per video (SAM2 segments every frame).
    frame_sampling: the :class:`~utils.video.sampling.FrameSampling` strategy that picks them.
    templates: the prompt templates training used (:func:`current_templates` when saved).
    """

    num_frames: int = 8
    frame_sampling: str = "uniform"
    templates: dict[str, str] = field(default_factory=current_templates)

    @classmethod
    def from_dict(cls, values: Mapping | None) -> InputSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(values or {}) - names
        if unknown:
            raise ValueError(f"unknown input settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**dict(values or {}))

    @classmethod
    def from_data_config(cls, data: Mapping) -> InputSettings:
        """The settings of a run config's ``data:`` section."""
        return cls(num_frames=int(data["num_frames"]), frame_sampling=str(data.get("frame_sampling", "uniform")))

    def to_dict(self) -> dict:
        return asdict(self)

    def template_mismatches(self) -> list[str]:
        """Templates that differ between the saved model and this code (empty when they agree)."""
        now = current_templates()
        return [name for name, text in self.templates.items() if now.get(name) != text]


def resolve_num_frames(saved: InputSettings, requested: int | None, log=print) -> int:
    """The frame count for inference: the saved one, or ``requested`` with a note that it overrides it."""
    if requested is None or requested == saved.num_frames:
        return saved.num_frames
    log(f"note: the model was trained with {saved.num_frames} frames per video; using {requested} (--num-frames)")
    return requested

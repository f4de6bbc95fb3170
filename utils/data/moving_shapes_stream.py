"""The synthetic "moving shapes" world drawn on the fly: as many training videos as a run wants.

The MeViS-format files of ``scripts/generate_synthetic_mevis.py`` hold a few hundred videos; a tiny
model trained long on them memorises them. This loader renders video ``i`` of the ``train`` split
of the world (:func:`utils.synthetic.moving_shapes.make_video`, keyed by ``(world_seed, "train", i)``,
so it never meets a ``valid_u`` video of any seed) when item ``i`` is read, with the same frame size,
JPEG round trip, frame rate and prompts as the files the evaluation reads. Nothing is read from disk.

With ``describe_share > 0`` that share of items instead asks for every object of the video, as text
(:func:`describe_video`): a dense language target that names each object's colour, shape and direction
of motion, so the visual tokens learn to carry them (Qwen-style captioning, no masks).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from utils.data.mevis import MEVIS_FPS
from utils.data.prompts import referring_seg_answer, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample
from utils.synthetic.moving_shapes import COLOURS, DIRECTIONS, SHAPES, ShapeObject, Video, WorldConfig, make_video

TRAIN_SPLIT = "train"
"""The only split this loader draws (the world keys every video by its split name)."""

DESCRIBE_QUESTION = "Which objects are in this video, and where does each move?"


def describe_video(objects: list[ShapeObject]) -> str:
    """Every object as ``"<colour> <shape> moving <direction>"``, in a fixed order (colour, shape, direction)."""
    order = sorted(
        objects,
        key=lambda o: (list(COLOURS).index(o.colour), SHAPES.index(o.shape), list(DIRECTIONS).index(o.direction)),
    )
    return ", ".join(f"{o.colour} {o.shape} moving {o.direction}" for o in order).capitalize() + "."


def jpeg_round_trip(frames: np.ndarray, quality: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames as they come back from JPEG files of ``quality``."""
    decoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(decoded)


class MovingShapesStream(Dataset):
    """``num_videos`` training videos of the world, one item per (video, expression) drawn by the item's seed.

    Args:
        world_seed: the world's generation seed (the quick start's files use 0).
        num_videos: how many distinct videos the items cycle through.
        num_frames: frames per video (all of them are sampled, as the 8-frame files are).
        seed: item ``i`` picks its expression with ``default_rng([seed, i])``.
        size: frame height and width in px.
        jpeg_quality: the files' JPEG quality; ``None`` skips the round trip.
        expression_types: keep only expressions of these types (``"attribute"``, ``"motion"``); ``None``: all.
        describe_share: share of items that ask for a description of every object instead (no masks).
    """

    def __init__(
        self,
        world_seed: int,
        num_videos: int,
        num_frames: int,
        seed: int = 0,
        size: int = 128,
        jpeg_quality: int | None = 95,
        expression_types: list[str] | None = None,
        describe_share: float = 0.0,
    ):
        if not 0 <= describe_share <= 1:
            raise ValueError(f"describe_share must be in [0, 1], got {describe_share}")
        self.describe_share = describe_share
        if num_videos < 1:
            raise ValueError(f"num_videos must be positive, got {num_videos}")
        self.world_seed, self.num_videos, self.seed = world_seed, num_videos, seed
        self.config = WorldConfig(height=size, width=size, num_frames=num_frames)
        self.jpeg_quality = jpeg_quality
        self.expression_types = expression_types

    def __len__(self) -> int:
        return self.num_videos

    def sample_ids(self) -> list[str]:
        return [f"moving_shapes/{TRAIN_SPLIT}/{i}" for i in range(self.num_videos)]

    def __getitem__(self, index: int) -> Sample:
        video = make_video(self.world_seed, TRAIN_SPLIT, index, self.config)
        frames = video.frames if self.jpeg_quality is None else jpeg_round_trip(video.frames, self.jpeg_quality)
        rng = np.random.default_rng([self.seed, index])
        if rng.random() < self.describe_share:
            return self._description(index, video, frames)
        expressions = [e for e in video.expressions if self.expression_types is None or e.type in self.expression_types]
        if not expressions:
            raise ValueError(f"moving_shapes video {index} has no expression of types {self.expression_types}")
        expression = expressions[int(rng.integers(len(expressions)))]
        return self._sample(
            f"{index}/{video.expressions.index(expression)}",
            video,
            frames,
            [referring_seg_question([expression.text]), referring_seg_answer(1)],
            masks=video.masks[expression.target][None],
            meta={"exp": expression.text, "type": expression.type},
        )

    @staticmethod
    def _world(video: Video) -> dict:
        """What the world knows about every object: ``objects`` (colour, shape, direction) and their
        visible ``object_masks`` ``(N, T, H, W)`` bool (for token-level supervision in pretraining)."""
        return {
            "objects": [(o.colour, o.shape, o.direction) for o in video.objects],
            "object_masks": video.masks,
        }

    def _description(self, index: int, video: Video, frames: np.ndarray) -> Sample:
        """The item that asks for every object of the video as text."""
        turns = [DESCRIBE_QUESTION, describe_video(video.objects)]
        return self._sample(f"{index}/describe", video, frames, turns, masks=None, meta={"type": "description"})

    def _sample(
        self, key: str, video: Video, frames: np.ndarray, turns: list[str], masks: np.ndarray | None, meta: dict
    ) -> Sample:
        """A one-turn sample of ``video``: question and answer ``turns``, the world's facts in ``meta``."""
        num_frames = len(frames)
        return Sample(
            sample_id=f"moving_shapes/{TRAIN_SPLIT}/{key}",
            frames=frames,
            frame_names=[f"{t:05d}" for t in range(num_frames)],
            conversation=[{"role": "user", "content": turns[0]}, {"role": "assistant", "content": turns[1]}],
            masks=masks,
            timestamps=np.arange(num_frames) / MEVIS_FPS,
            meta={"video": video.video_id, **meta, **self._world(video)},
        )


def _no_paths(root: Path, split: str) -> list[Path]:
    return []


@register_dataset("moving_shapes", family="ref_vos", required_paths=_no_paths, evaluated_splits=("valid_u",))
def build_moving_shapes(
    root: Path,
    split: str,
    *,
    num_frames: int,
    train: bool,
    seed: int,
    world_seed: int = 0,
    num_videos: int = 100_000,
    size: int = 128,
    jpeg_quality: int | None = 95,
    expression_types: list[str] | None = None,
    describe_share: float = 0.0,
) -> MovingShapesStream:
    """The world's ``train`` split drawn on the fly (``root`` is unused: nothing is on disk)."""
    if split != TRAIN_SPLIT:
        raise ValueError(f"moving_shapes draws only the {TRAIN_SPLIT!r} split, got {split!r}")
    return MovingShapesStream(
        world_seed, num_videos, num_frames, seed, size, jpeg_quality, expression_types, describe_share
    )

"""Which frames of a video a model sees: all, or one per equal segment (segment centre, or jittered in training)."""

from __future__ import annotations

import numpy as np


def sample_frame_indices(
    num_total: int, num_frames: int | None, jitter: bool = False, rng: np.random.Generator | None = None
) -> list[int]:
    """Sorted distinct indices into a video of ``num_total`` frames.

    The video is cut into ``num_frames`` equal segments; each gives its centre frame, or with
    ``jitter`` a uniformly random frame of the segment (``rng`` draws it). ``num_frames`` of
    ``None`` or ``>= num_total`` keeps every frame.
    """
    if num_total < 1:
        raise ValueError(f"num_total must be positive, got {num_total}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be positive or None, got {num_frames}")
    if num_frames is None or num_frames >= num_total:
        return list(range(num_total))
    if not jitter:
        return [(2 * i + 1) * num_total // (2 * num_frames) for i in range(num_frames)]
    rng = rng if rng is not None else np.random.default_rng()
    starts = [-(-i * num_total // num_frames) for i in range(num_frames + 1)]  # ceil(i * total / count)
    return [int(rng.integers(starts[i], starts[i + 1])) for i in range(num_frames)]

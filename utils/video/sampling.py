"""Which frames of a video to decode, chosen from its timestamps before any frame is decoded.

Strategies (:class:`FrameSampling` ``strategy``): ``"uniform"`` (one frame per equal segment: its centre,
or in training a random frame of it), ``"fps"`` (one frame per ``1 / fps`` seconds of video time, the
nearest real frame, so variable frame rates are right), ``"all"`` and ``"indices"`` (exactly the given
ones). Forced frames (a key frame, the frame a visual prompt is drawn on) replace the nearest sampled
frame. Other strategies plug in with :func:`register_sampler`, e.g. a "maximum coverage" sampler for 3D
scenes reading camera poses from ``options``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SamplingContext:
    """What a sampler sees: the video's ``(N,)`` timestamps in seconds and the request."""

    timestamps: np.ndarray
    num_frames: int | None
    fps: float | None
    indices: tuple[int, ...]
    train: bool
    rng: np.random.Generator
    options: dict

    @property
    def num_total(self) -> int:
        """Frames in the video."""
        return len(self.timestamps)


Sampler = Callable[[SamplingContext], Sequence[int]]
"""A strategy: context -> frame indices (any order, repeats dropped later)."""

SAMPLERS: dict[str, Sampler] = {}
"""Strategy name -> sampler; built-ins below, plug-ins through :func:`register_sampler`."""


def register_sampler(name: str) -> Callable[[Sampler], Sampler]:
    """Decorator registering ``sampler`` as strategy ``name`` (names are unique)."""

    def register(sampler: Sampler) -> Sampler:
        if name in SAMPLERS:
            raise ValueError(f"frame sampler {name!r} is already registered")
        SAMPLERS[name] = sampler
        return sampler

    return register


@dataclass(frozen=True)
class FrameSampling:
    """How to choose frames (a config section).

    Attributes:
        strategy: ``"uniform"``, ``"fps"``, ``"all"``, ``"indices"`` or a registered plug-in.
        num_frames: frames to take (uniform, plug-ins); for ``"fps"`` the most to take; ``None``: every frame
            (uniform) / no cap (fps).
        fps: frames per second of video time (``"fps"``).
        indices: the frames of ``"indices"``.
        force: frames always included (key frame, overlay frame); each replaces the nearest sampled one.
        options: passed to a plug-in sampler.
    """

    strategy: str = "uniform"
    num_frames: int | None = None
    fps: float | None = None
    indices: tuple[int, ...] = ()
    force: tuple[int, ...] = ()
    options: dict = field(default_factory=dict)

    def select(
        self, timestamps: np.ndarray, *, train: bool = False, rng: np.random.Generator | None = None
    ) -> list[int]:
        """Sorted distinct frame indices for a video with these ``(N,)`` timestamps (seconds).

        ``train`` turns on the strategy's jitter (drawn from ``rng``). Raises ``IndexError`` for an
        index outside the video and ``ValueError`` for an unknown strategy or a bad request.
        """
        if self.strategy not in SAMPLERS:
            raise ValueError(f"unknown frame sampling strategy {self.strategy!r}; known: {sorted(SAMPLERS)}")
        if len(timestamps) < 1:
            raise ValueError("cannot sample frames from a video without frames")
        rng = rng if rng is not None else np.random.default_rng()
        context = SamplingContext(
            np.asarray(timestamps, np.float64),
            self.num_frames,
            self.fps,
            tuple(self.indices),
            train,
            rng,
            self.options,
        )
        chosen = check_indices(SAMPLERS[self.strategy](context), len(timestamps))
        return force_in(chosen, check_indices(self.force, len(timestamps))) if self.force else chosen


def check_indices(indices: Sequence[int], num_total: int) -> list[int]:
    """``indices`` sorted without repeats; ``IndexError`` if one is outside ``[0, num_total)``."""
    for index in indices:
        if not 0 <= index < num_total:
            raise IndexError(f"frame index {index} is outside a video of {num_total} frames")
    return sorted({int(i) for i in indices})


def uniform_indices(
    num_total: int, num_frames: int | None, jitter: bool = False, rng: np.random.Generator | None = None
) -> list[int]:
    """Sorted distinct indices into ``num_total`` frames: the centre of each of ``num_frames`` equal
    segments, or with ``jitter`` a uniformly random frame of each (``rng`` draws it). ``num_frames`` of
    ``None`` or ``>= num_total`` keeps every frame. (The behaviour of
    :func:`utils.data.frame_sampling.sample_frame_indices`.)
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


def fps_indices(
    timestamps: np.ndarray,
    fps: float,
    max_frames: int | None = None,
    jitter: bool = False,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """The frame nearest to each of ``t0 + phase + k / fps`` (``k = 0, 1, ...`` up to the last frame).

    ``phase`` is 0, or with ``jitter`` uniform in ``[0, 1 / fps)``. Frames found twice count once; more
    than ``max_frames`` are thinned by :func:`uniform_indices` (segment centres).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    timestamps = np.asarray(timestamps, np.float64)
    if len(timestamps) == 1:
        return [0]
    phase = (rng if rng is not None else np.random.default_rng()).uniform(0, 1 / fps) if jitter else 0.0
    count = max(1, int(np.floor((timestamps[-1] - timestamps[0] - phase) * fps + 1e-9)) + 1)
    targets = timestamps[0] + phase + np.arange(count) / fps
    right = np.clip(np.searchsorted(timestamps, targets), 1, len(timestamps) - 1)
    nearer_left = targets - timestamps[right - 1] <= timestamps[right] - targets
    chosen = np.unique(np.where(nearer_left, right - 1, right))
    if max_frames is not None and len(chosen) > max_frames:
        chosen = chosen[uniform_indices(len(chosen), max_frames)]
    return chosen.tolist()


def force_in(indices: Sequence[int], forced: Sequence[int]) -> list[int]:
    """``indices`` with each ``forced`` frame in, replacing the nearest sampled non-forced frame (ties: the
    earlier), so the count stays; with more forced frames than sampled ones, the forced frames alone."""
    chosen, forced = set(indices), set(forced)
    for frame in sorted(forced - chosen):
        free = sorted(chosen - forced, key=lambda i: (abs(i - frame), i))
        if free:
            chosen.remove(free[0])
        chosen.add(frame)
    return sorted(chosen)


@register_sampler("uniform")
def _uniform(context: SamplingContext) -> list[int]:
    return uniform_indices(context.num_total, context.num_frames, jitter=context.train, rng=context.rng)


@register_sampler("fps")
def _fps(context: SamplingContext) -> list[int]:
    if context.fps is None:
        raise ValueError("strategy 'fps' needs fps")
    return fps_indices(context.timestamps, context.fps, context.num_frames, jitter=context.train, rng=context.rng)


@register_sampler("all")
def _all(context: SamplingContext) -> list[int]:
    return list(range(context.num_total))


@register_sampler("indices")
def _explicit(context: SamplingContext) -> list[int]:
    if not context.indices:
        raise ValueError("strategy 'indices' needs a non-empty indices list")
    return list(context.indices)

"""Posed RGB-D clips of the synthetic 4D world (:mod:`utils.synthetic.dynamic_world`) as Pi3 training targets.

:func:`render_geometry_clips` renders worlds of one split and keeps, per world, its frames resized to the size a
model reads (Qwen's video size, so the geometry encoder is trained on what the GSM will see), the true local point
map of every pixel at that size (camera frame, OpenCV axes, metres; the rendered depth back-projected with the
world's intrinsics, then resampled to the nearest pixel) with a validity mask (0 where a ray hits nothing), and
the camera-to-world poses. :class:`GeometryClips` draws random sub-clips of them for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from utils.synthetic.dynamic_world import DynamicWorldConfig, WorldFrames, make_world, render_world
from utils.synthetic.rooms import room_rng


def local_points(depths: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` z-depths -> ``(T, H, W, 3)`` points in the camera frame (the renderer's pixel convention:
    pixel ``(v, u)`` looks along ``((u - cx) / fx, (v - cy) / fy, 1)``)."""
    height, width = depths.shape[1:]
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    x = (u - intrinsics[0, 2]) / intrinsics[0, 0]
    y = (v - intrinsics[1, 2]) / intrinsics[1, 1]
    return np.stack([x * depths, y * depths, depths], axis=-1).astype(np.float32)


@dataclass
class GeometryClip:
    """One world's clip at the model's size: ``frames`` ``(T, 3, H, W)`` in ``[0, 1]``, ``points`` ``(T, H, W, 3)``
    local points, ``valid`` ``(T, H, W)`` 1 where the depth is known, ``poses`` ``(T, 4, 4)`` camera-to-world."""

    frames: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor
    poses: torch.Tensor


def resize_clip(rendered: WorldFrames, size: tuple[int, int]) -> GeometryClip:
    """``rendered`` at ``size`` (H, W): frames bilinearly, point maps and validity by the nearest pixel."""
    frames = torch.from_numpy(rendered.colors).permute(0, 3, 1, 2).float() / 255.0
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    points = torch.from_numpy(local_points(rendered.depths, rendered.intrinsics)).permute(0, 3, 1, 2)
    points = F.interpolate(points, size=size, mode="nearest-exact").permute(0, 2, 3, 1)
    valid = (points[..., 2] > 0).float()
    return GeometryClip(frames, points.contiguous(), valid, torch.from_numpy(rendered.poses).float())


def render_geometry_clips(
    seed: int,
    split: str,
    count: int,
    size: tuple[int, int],
    config: DynamicWorldConfig | None = None,
    progress: bool = False,
) -> list[GeometryClip]:
    """Worlds ``0 .. count - 1`` of ``split`` (generation seed ``seed``), rendered as in the dataset files and
    resized to ``size``."""
    config = config or DynamicWorldConfig()
    clips = []
    for index in tqdm(range(count), desc=f"{split} worlds", disable=not progress):
        world = make_world(seed, split, index, config)
        clips.append(resize_clip(render_world(world, config, room_rng(seed, split, index, 1)), size))
    return clips


class GeometryClips:
    """Random training batches of ``frames_per_clip`` consecutive frames from :class:`GeometryClip` s."""

    def __init__(self, clips: list[GeometryClip], frames_per_clip: int, seed: int):
        lengths = {clip.frames.shape[0] for clip in clips}
        if not clips or min(lengths) < frames_per_clip:
            raise ValueError(f"need clips of at least {frames_per_clip} frames, got lengths {sorted(lengths)}")
        self.clips, self.frames_per_clip = clips, frames_per_clip
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, batch_size: int) -> GeometryClip:
        """``batch_size`` sub-clips stacked: frames ``(B, N, 3, H, W)``, points ``(B, N, H, W, 3)``, ..."""
        picks = []
        for _ in range(batch_size):
            clip = self.clips[int(torch.randint(len(self.clips), (1,), generator=self.generator))]
            start = int(torch.randint(clip.frames.shape[0] - self.frames_per_clip + 1, (1,), generator=self.generator))
            window = slice(start, start + self.frames_per_clip)
            picks.append(GeometryClip(clip.frames[window], clip.points[window], clip.valid[window], clip.poses[window]))
        return GeometryClip(
            *(torch.stack([getattr(p, name) for p in picks]) for name in GeometryClip.__dataclass_fields__)
        )

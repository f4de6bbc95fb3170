"""Model-ready inputs from decoded frames: Qwen2.5-VL's video and SAM2's frames.

The one builder of these inputs: the training and evaluation collator (:mod:`utils.data.collate`),
the predictors and the benchmarks all call :func:`qwen_video` and :func:`sam2_frames`.

Qwen2.5-VL: the frames are resized by transformers' own ``Qwen2VLVideoProcessor.resize`` (bicubic,
antialiased; size from its ``smart_resize``: both sides multiples of ``patch_size * merge_size`` = 28,
aspect ratio kept, pixels per frame in ``[min_pixels, max_pixels]``, and with ``cap_pixels_per_frame``
``max_pixels`` also held to an even share of a ``max_video_tokens`` whole-video budget, as qwen-vl-utils'
``fetch_video`` does). ``video_grid_thw`` is ``(ceil(T / temporal_patch_size), h / patch_size, w /
patch_size)`` and ``second_per_grid_ts`` is ``temporal_patch_size`` over the sampled frame rate, taken
from the frames' own timestamps. The processor's defaults are qwen-vl-utils' (128 to 768 tokens of 28 x
28 px per frame).

SAM2: a square ``image_size`` resize (bilinear, antialiased) to float in [0, 1], and with ``normalize``
the ImageNet mean / std that SAM2's ``load_video_frames`` applies (UniGR's SAM2 head normalises itself,
so it takes ``normalize=False``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.video_utils import VideoMetadata

from utils.video.clip import Clip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.cache
def default_video_processor() -> Qwen2VLVideoProcessor:
    """transformers' Qwen2-VL / Qwen2.5-VL video processor with its default settings (no download)."""
    return Qwen2VLVideoProcessor()


@dataclass
class QwenVideo:
    """One video as Qwen2.5-VL takes it.

    Attributes:
        frames: ``(T, 3, h, w)`` uint8, resized (``h``, ``w`` multiples of 28).
        video_grid_thw: ``(3,)`` int64, ``(ceil(T / 2), h / 14, w / 14)`` with Qwen2.5-VL's patch sizes.
        second_per_grid_ts: seconds of video per temporal patch.
        metadata: what ``Qwen2_5_VLProcessor`` reads to give the same ``second_per_grid_ts``
            (``fps`` = the sampled frame rate, every frame kept).
    """

    frames: torch.Tensor
    video_grid_thw: torch.Tensor
    second_per_grid_ts: float
    metadata: VideoMetadata

    def processor_kwargs(self) -> dict:
        """Keyword arguments for a Qwen2.5-VL processor call taking this video as it is: sampled and sized
        already (``smart_resize`` is not idempotent when ``min_pixels`` rounds up past ``max_pixels``)."""
        return {
            "videos": [self.frames],
            "video_metadata": [self.metadata],
            "do_sample_frames": False,
            "do_resize": False,
        }


SINGLE_FRAME_FPS = 1.0
"""Frame rate given to a one-frame video: it has one temporal patch, so its time scale plays no part."""


def sampled_fps(timestamps: np.ndarray, fallback: float) -> float:
    """Mean frame rate of frames taken at ``timestamps`` (seconds); ``fallback`` for a single frame."""
    if len(timestamps) < 2 or timestamps[-1] <= timestamps[0]:
        return fallback
    return (len(timestamps) - 1) / float(timestamps[-1] - timestamps[0])


def qwen_video(
    frames: np.ndarray,
    timestamps: np.ndarray | None,
    video_processor: Qwen2VLVideoProcessor | None = None,
    cap_pixels_per_frame: bool = True,
) -> QwenVideo:
    """``(T, H, W, 3)`` uint8 frames taken at ``timestamps`` (seconds) sized for Qwen2.5-VL by ``video_processor``
    (default: :func:`default_video_processor`; pass the model processor's ``video_processor`` to use its pixel
    budget). A single frame (or ``timestamps=None`` for one frame) gets :data:`SINGLE_FRAME_FPS`."""
    if timestamps is None and len(frames) > 1:
        raise ValueError(f"a video of {len(frames)} frames needs the frames' timestamps")
    processor = video_processor or default_video_processor()
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
    resized = processor.resize(
        video[None],
        size=processor.size,
        resample=processor.resample,
        factor=processor.patch_size * processor.merge_size,
        temporal_factor=processor.temporal_patch_size,
        cap_pixels_per_frame=cap_pixels_per_frame,
    )[0]
    num_frames, _, height, width = resized.shape
    fps = sampled_fps(timestamps, SINGLE_FRAME_FPS) if timestamps is not None else SINGLE_FRAME_FPS
    patch, temporal_patch = processor.patch_size, processor.temporal_patch_size
    grid = (-(-num_frames // temporal_patch), height // patch, width // patch)
    metadata = VideoMetadata(
        total_num_frames=num_frames,
        fps=fps,
        width=width,
        height=height,
        frames_indices=list(range(num_frames)),
    )
    return QwenVideo(resized, torch.tensor(grid), temporal_patch / fps, metadata)


def video_processor_kwargs(videos: list[QwenVideo]) -> dict:
    """What Qwen's video processor takes with ``videos`` already sized by :func:`qwen_video`: their metadata, no frame
    sampling and no second resize (smart_resize is not idempotent)."""
    return {
        "video_metadata": [video.metadata for video in videos],
        "do_sample_frames": False,
        "do_resize": False,
        "cap_pixels_per_frame": True,
    }


def sam2_frames_uint8(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, S, S)`` uint8: the square bilinear antialiased resize SAM2's own
    loader applies, rounded to uint8 (a quarter of the float frames' memory, for long videos)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # channels-last uint8: fast path
    return F.interpolate(video, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)


def sam2_frames(frames: np.ndarray, image_size: int, *, normalize: bool) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, S, S)`` float32: :func:`sam2_frames_uint8` in [0, 1],
    ImageNet-normalised if ``normalize``."""
    resized = sam2_frames_uint8(frames, image_size)
    out = torch.empty(resized.shape, dtype=torch.float32).copy_(resized)  # one pass: to float and contiguous
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    scale = 1 / (255 * torch.tensor(std))
    return out.mul_(scale.view(1, 3, 1, 1)).sub_((torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))


@dataclass
class ModelInputs:
    """Both models' inputs from one decode: ``qwen`` and ``sam_frames`` ``(T, 3, S, S)``."""

    qwen: QwenVideo
    sam_frames: torch.Tensor


def model_inputs(
    clip: Clip,
    sam_image_size: int,
    *,
    sam_normalize: bool,
    video_processor: Qwen2VLVideoProcessor | None = None,
    cap_pixels_per_frame: bool = True,
) -> ModelInputs:
    """Qwen2.5-VL's and SAM2's inputs from the same decoded frames (see :func:`qwen_video`, :func:`sam2_frames`)."""
    return ModelInputs(
        qwen_video(clip.frames, clip.timestamps, video_processor, cap_pixels_per_frame),
        sam2_frames(clip.frames, sam_image_size, normalize=sam_normalize),
    )

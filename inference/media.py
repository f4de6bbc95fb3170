"""A user's video file, frame folder or image, read within limits, as the frames of a sample.

Limits (:class:`MediaLimits`) keep one upload from taking the machine: the file size, the video length
in seconds, the frames decoded (a longer video is sampled uniformly down to ``max_frames``: SAM2
segments every decoded frame) and the resolution (frames whose longer side exceeds ``max_side`` are
scaled down, aspect kept). Anything that cannot be read or breaks a limit is a :class:`MediaError`
whose message names the file and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.video.clip import read_clip
from utils.video.errors import VideoError
from utils.video.sampling import FrameSampling
from utils.video.sources import IMAGE_SUFFIXES, probe

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
"""Video files :func:`load_media` accepts (any case); images are :data:`~utils.video.sources.IMAGE_SUFFIXES`."""


class MediaError(ValueError):
    """An input that cannot be used: unreadable, of the wrong type, or over a :class:`MediaLimits` limit."""


@dataclass(frozen=True)
class MediaLimits:
    """What one input may be.

    Attributes:
        max_megabytes: largest file (a folder: its frames together).
        max_seconds: longest video.
        max_frames: most frames decoded; longer videos are sampled uniformly down to this.
        max_side: longest frame side in px; larger frames are scaled down to it.
        folder_fps: the rate a frame folder's frames are numbered in.
    """

    max_megabytes: float = 200.0
    max_seconds: float = 180.0
    max_frames: int = 96
    max_side: int = 1280
    folder_fps: float = 30.0


@dataclass
class Media:
    """Frames read from one input.

    Attributes:
        source: the file or folder read.
        frames: ``(T, H, W, 3)`` uint8 RGB (``T = 1`` for an image).
        frame_names: the frames' names in the source (file stems, or 5-digit indices of a video file).
        timestamps: ``(T,)`` float seconds (videos), ``None`` for an image.
        medium: ``"video"`` or ``"image"``.
        fps: the frame rate of the decoded frames (for an overlay video of them).
        notes: what was changed to fit the limits (sampled frames, scaled size), for the user.
        scale: the frames' size over the source's (1 unless scaled down to ``max_side``): pixel
            coordinates given for the source are multiplied by it.
    """

    source: Path
    frames: np.ndarray
    frame_names: list[str]
    timestamps: np.ndarray | None
    medium: str
    fps: float
    notes: list[str]
    scale: float = 1.0


def load_media(path: str | Path, limits: MediaLimits = MediaLimits()) -> Media:
    """Read a video file, a frame folder or an image within ``limits``; :class:`MediaError` if it cannot be."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file or folder")
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else path.stat().st_size
    if size > limits.max_megabytes * 2**20:
        raise MediaError(f"{path}: {size / 2**20:.1f} MB is over the {limits.max_megabytes:g} MB limit")
    suffix = path.suffix.lower()
    if path.is_file() and suffix in IMAGE_SUFFIXES:
        media = _load_image(path)
    elif path.is_dir() or suffix in VIDEO_SUFFIXES:
        media = _load_video(path, limits)
    else:
        accepted = ", ".join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        raise MediaError(f"{path}: {suffix or 'no extension'} is not a video or image type this reads ({accepted})")
    return _fit_side(media, limits.max_side)


def _load_image(path: Path) -> Media:
    try:
        with Image.open(path) as image:
            frame = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # upright, as phone videos are read
    except (UnidentifiedImageError, OSError) as error:
        raise MediaError(f"{path}: not a readable image ({error})") from error
    return Media(path, frame[None], [path.stem], None, "image", 1.0, [])


def _load_video(path: Path, limits: MediaLimits) -> Media:
    fps = limits.folder_fps if path.is_dir() else None
    try:
        info = probe(path, fps=fps)
        if info.duration > limits.max_seconds:
            raise MediaError(f"{path}: the video is {info.duration:.1f} s long; the limit is {limits.max_seconds:g} s")
        sampled = info.num_frames > limits.max_frames
        sampling = FrameSampling("uniform", num_frames=limits.max_frames) if sampled else FrameSampling("all")
        clip = read_clip(path, sampling, fps=fps)
    except VideoError as error:
        raise MediaError(f"not a readable video: {error}") from error
    notes = [f"{info.num_frames} frames sampled uniformly down to {len(clip.indices)}"] if sampled else []
    rate = (len(clip.indices) - 1) / (clip.timestamps[-1] - clip.timestamps[0]) if len(clip.indices) > 1 else info.fps
    return Media(path, clip.frames, clip.frame_names, clip.timestamps, "video", float(rate), notes)


def _fit_side(media: Media, max_side: int) -> Media:
    """``media`` with frames scaled down (area interpolation) so that the longer side is at most ``max_side``."""
    height, width = media.frames.shape[1:3]
    scale = max_side / max(height, width)
    if scale >= 1:
        return media
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    media.frames = np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in media.frames])
    media.scale = size[0] / width
    media.notes.append(f"frames scaled from {width}x{height} to {size[0]}x{size[1]} (limit {max_side} px)")
    return media

"""The one call datasets, the evaluation runner and the demo read video through: path + sampling -> :class:`Clip`.

``read_clip`` probes the source (:mod:`utils.video.sources`), chooses frames from its timestamps
(:mod:`utils.video.sampling`) and decodes only those (:mod:`utils.video.backends`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from utils.video.backends import decode_frames
from utils.video.errors import FrameIndexError, VideoError, VideoOpenError
from utils.video.sampling import FrameSampling
from utils.video.sources import VideoInfo, probe


@dataclass
class Clip:
    """Decoded frames of one video.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB, upright.
        indices: the ``T`` frames' indices in the source (presentation order), increasing.
        timestamps: ``(T,)`` float64 seconds (container pts, or frame number / fps for folders).
        info: the source's metadata.
        backend: ``"pyav"``, ``"torchcodec"``, ``"decord"`` or ``"folder"``.
        decoded_frames: pictures decoded to get them (PyAV and folders), ``None`` if the backend does not say.
    """

    frames: np.ndarray
    indices: list[int]
    timestamps: np.ndarray
    info: VideoInfo
    backend: str
    decoded_frames: int | None

    @property
    def frame_names(self) -> list[str]:
        """Source frame names: file stems for a folder, ``"<index>"`` (5 digits) for a file."""
        if self.info.is_folder:
            return [self.info.frame_files[i].stem for i in self.indices]
        return [f"{i:05d}" for i in self.indices]


def read_clip(
    path: str | Path,
    sampling: FrameSampling | None = None,
    *,
    backend: str = "auto",
    threads: int = 0,
    train: bool = False,
    rng: np.random.Generator | None = None,
    fps: float | None = None,
    frame_names: Sequence[str] | None = None,
) -> Clip:
    """Read the frames ``sampling`` picks (default: every frame) from a video file or frame folder.

    ``train`` turns on sampling jitter drawn from ``rng`` (``np.random.default_rng([seed, index])``
    makes item ``index`` deterministic). ``fps`` and ``frame_names`` describe a frame folder (see
    :func:`utils.video.sources.probe`). Errors name the file and, where one is to blame, the frame
    (:mod:`utils.video.errors`).
    """
    info = probe(path, fps=fps, frame_names=frame_names)
    try:
        indices = (sampling or FrameSampling("all")).select(info.timestamps, train=train, rng=rng)
    except IndexError as error:
        raise FrameIndexError(info.path, f"{error}{info.truncation_note()}") from error
    decoded = decode_frames(info, indices, backend=backend, threads=threads)
    return Clip(decoded.frames, indices, info.timestamps[indices], info, decoded.backend, decoded.decoded_frames)


def read_annotated_frames(
    folder: str | Path,
    frame_names: Sequence[str],
    sampling: FrameSampling,
    where: str,
    *,
    fps: float,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> Clip:
    """:func:`read_clip` for a dataset item: the frame folder whose frames an annotation lists, in order.

    ``frame_names`` are all the frames the dataset released for the video, ``fps`` of them per second of
    the source (the dataset's frame rate, which the caller must give): frame ``i`` of the list is at
    ``i / fps`` seconds whatever its file name counts in, and the frames are chosen and their
    ``timestamps`` given on that time line (``clip.info`` keeps the folder as probed). An error keeps its
    type and also names the sample ``where``.
    """
    if not fps > 0:
        raise ValueError(f"{where}: fps must be positive (the dataset's frame rate), got {fps!r}")
    if not frame_names:
        raise VideoOpenError(folder, f"{where}: the annotation lists no frames")
    timestamps = np.arange(len(frame_names), dtype=np.float64) / fps
    try:
        indices = sampling.select(timestamps, train=train, rng=rng)
    except IndexError as error:
        raise FrameIndexError(folder, f"{where}: {error}") from None
    try:
        clip = read_clip(folder, FrameSampling("indices", indices=tuple(indices)), fps=fps, frame_names=frame_names)
    except VideoError as error:
        raise type(error)(error.path, f"{where}: {error.reason}", error.frame) from None
    return replace(clip, timestamps=timestamps[clip.indices])

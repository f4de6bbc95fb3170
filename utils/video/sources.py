"""Video sources and their metadata: a video file (MP4 / MOV / WebM / MKV) or a folder of JPEG / PNG frames.

Files: the container's best video stream is demuxed once (packets read, not decoded); frame ``i`` is the
``i``-th packet in presentation-timestamp (pts) order and its time is ``pts * time_base`` seconds, so a
variable frame rate is exact. Audio and other streams are ignored. The first frame is decoded to check
that the stream decodes and to read its display matrix (phone clips store their rotation there, as a
counter-clockwise angle: FFmpeg's ``av_display_rotation_get``); sizes and frames are then upright.

Frame folders (``<video>/00000.jpg, 00001.jpg, ...`` as MeViS, DAVIS and ScanNet ship them): the JPEG / PNG
files sorted by numeric stem (lexicographically if a stem is not an integer), or exactly the names an
annotation lists. Frame ``i`` is at ``int(stem) / fps`` seconds, ``fps`` being the rate the numbering
counts in (so Ref-YouTube-VOS's every-5th-frame names keep their real spacing), or ``i / fps`` for
non-numeric names.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from utils.video.errors import FrameDecodeError, MissingVideoError, VideoOpenError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Frame files a folder may hold (any case)."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video before decoding its frames.

    Attributes:
        path: the video file or frame folder.
        num_frames: ``N``, frames in presentation order.
        timestamps: ``(N,)`` float64 seconds, strictly increasing (container pts, or ``int(stem) / fps``).
        fps: mean frame rate, ``(N - 1) / (timestamps[-1] - timestamps[0])`` (a folder's given ``fps``).
        duration: seconds from the first frame's start to the last frame's end.
        height, width: upright frame size in px (after ``rotation``).
        rotation: counter-clockwise degrees the stored frames are turned to be upright: 0, 90, 180 or 270.
        frame_files: a folder's ``N`` frame files; empty for a video file.
        pts: a file's ``(N,)`` int64 pts in ``time_base`` units; empty for a folder.
        keyframes: a file's sorted frame indices a decoder can start at; empty for a folder.
        time_base: seconds per pts unit (files).
        stream_index: the decoded stream's index in the container (files).
        header_frames: frame count the container header states (0 if it states none), for error messages.
    """

    path: Path
    num_frames: int
    timestamps: np.ndarray
    fps: float
    duration: float
    height: int
    width: int
    rotation: int = 0
    frame_files: tuple[Path, ...] = ()
    pts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    keyframes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    time_base: Fraction = Fraction(1)
    stream_index: int = 0
    header_frames: int = 0

    @property
    def is_folder(self) -> bool:
        """Whether the frames are image files rather than a video stream."""
        return bool(self.frame_files)

    def truncation_note(self) -> str:
        """``" (its header says M frames: truncated?)"`` when the header promises more frames than there are."""
        return f" (its header says {self.header_frames}: truncated?)" if self.header_frames > self.num_frames else ""


def probe(path: str | Path, *, fps: float | None = None, frame_names: Sequence[str] | None = None) -> VideoInfo:
    """Metadata of a video file or frame folder, reading no more than the packets (files, cached by path,
    size and modification time) or the first image's header (folders).

    ``fps`` (required for a folder, not allowed for a file) is the rate a folder's frame numbers count
    in; ``frame_names`` (folders only) are the frames an annotation lists, without or with extension,
    in time order. Raises :class:`MissingVideoError`, :class:`VideoOpenError` or :class:`FrameDecodeError`.
    """
    path = Path(path)
    if path.is_dir():
        if fps is None or fps <= 0:
            raise ValueError(f"{path}: a frame folder needs fps > 0 (the rate its frame numbers count in), got {fps}")
        return _probe_folder(path, float(fps), frame_names)
    if fps is not None or frame_names is not None:
        raise ValueError(f"{path}: fps and frame_names are for frame folders; a video file has its own timestamps")
    if not path.is_file():
        raise MissingVideoError(path, "no such video file or frame folder")
    stat = path.stat()
    return _probe_file(path, stat.st_size, stat.st_mtime_ns)


def clear_probe_cache() -> None:
    """Forget cached file metadata (to time cold opens, or after rewriting a file in place)."""
    _probe_file.cache_clear()


def upright_size(height: int, width: int, rotation: int) -> tuple[int, int]:
    """``(height, width)`` of a ``height x width`` stored frame once turned by ``rotation`` degrees."""
    return (width, height) if rotation % 180 else (height, width)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=1024)
def _probe_file(path: Path, size: int, mtime_ns: int) -> VideoInfo:
    """File metadata; ``size`` and ``mtime_ns`` only key the cache."""
    if size == 0:
        raise VideoOpenError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise VideoOpenError(path, f"not a readable media file ({error})") from error
    with container:
        if not container.streams.video:
            raise VideoOpenError(path, "no video stream (an MP4 cut before its 'moov' index box looks like this)")
        stream = container.streams.best("video")
        packets, first = _demux(path, container, stream)
        header_frames = int(stream.frames or 0)
        time_base = Fraction(stream.time_base)
        rate = stream.average_rate or stream.guessed_rate
        stream_index = stream.index
    if not packets:
        raise VideoOpenError(path, "the video stream has no frames")
    packets.sort()
    pts = np.array([p[0] for p in packets], np.int64)
    if np.any(np.diff(pts) == 0):
        raise VideoOpenError(path, f"two frames share pts {int(pts[np.argmax(np.diff(pts) == 0)])}")
    timestamps = pts * float(time_base)
    fps = (len(pts) - 1) / (timestamps[-1] - timestamps[0]) if len(pts) > 1 else float(rate or 1)
    last_duration = packets[-1][2] * float(time_base) if packets[-1][2] > 0 else 1 / fps
    rotation = int(round(first.rotation)) % 360
    if rotation % 90:
        raise VideoOpenError(path, f"display rotation of {first.rotation} degrees is not a multiple of 90")
    height, width = upright_size(first.height, first.width, rotation)
    return VideoInfo(
        path=path,
        num_frames=len(pts),
        timestamps=_frozen(timestamps),
        fps=float(fps),
        duration=float(timestamps[-1] - timestamps[0] + last_duration),
        height=height,
        width=width,
        rotation=rotation,
        pts=_frozen(pts),
        keyframes=_frozen(np.flatnonzero([p[1] for p in packets]).astype(np.int64)),
        time_base=time_base,
        stream_index=stream_index,
        header_frames=header_frames,
    )


def _demux(path: Path, container, stream) -> tuple[list[tuple[int, bool, int]], av.VideoFrame]:
    """``[(pts, is_keyframe, duration)]`` of every packet of ``stream`` and its first decoded frame."""
    packets: list[tuple[int, bool, int]] = []
    first = None
    try:
        for packet in container.demux(stream):
            if packet.size:
                if packet.pts is None:
                    raise VideoOpenError(path, f"packet {len(packets)} of the video stream has no pts")
                packets.append((int(packet.pts), bool(packet.is_keyframe), int(packet.duration or 0)))
            if first is None:  # the empty packet at the end flushes the decoder
                first = next(iter(packet.decode()), None)
    except av.FFmpegError as error:
        if first is None:
            raise FrameDecodeError(path, f"the first frame does not decode ({error})", frame=0) from error
        raise VideoOpenError(path, f"unreadable after {len(packets)} packets ({error})") from error
    if packets and first is None:
        raise FrameDecodeError(path, "no frame of the video stream decodes", frame=0)
    return packets, first


def _numeric_stems(files: Sequence[Path]) -> list[int] | None:
    stems = [f.stem for f in files]
    return [int(s) for s in stems] if all(s.isdigit() for s in stems) else None


def _frame_file(folder: Path, name: str, index: int) -> Path:
    """The file of frame ``name`` (with or without its extension) in ``folder``."""
    candidates = [folder / name] if Path(name).suffix.lower() in IMAGE_SUFFIXES else []
    candidates += [folder / f"{name}{suffix}" for suffix in (*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    others = ", ".join(c.suffix for c in candidates[1:])
    raise MissingVideoError(folder, f"missing frame file {candidates[0]} (nor with {others})", index)


def _probe_folder(folder: Path, fps: float, frame_names: Sequence[str] | None) -> VideoInfo:
    if frame_names is None:
        files = [f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        numbers = _numeric_stems(files)
        files = [f for _, f in sorted(zip(numbers, files))] if numbers is not None else sorted(files)
    else:
        files = [_frame_file(folder, name, i) for i, name in enumerate(frame_names)]
    if not files:
        raise VideoOpenError(folder, f"no frames ({'/'.join(IMAGE_SUFFIXES)} files) in the folder")
    numbers = _numeric_stems(files)
    timestamps = np.asarray(numbers if numbers is not None else range(len(files)), np.float64) / fps
    if np.any(np.diff(timestamps) <= 0):
        bad = int(np.argmax(np.diff(timestamps) <= 0)) + 1
        raise VideoOpenError(folder, f"frame {files[bad].name} does not come after {files[bad - 1].name} in time")
    try:
        with Image.open(files[0]) as image:
            width, height = image.size
    except OSError as error:
        raise FrameDecodeError(folder, f"cannot read {files[0].name} ({error})", frame=0) from error
    return VideoInfo(
        path=folder,
        num_frames=len(files),
        timestamps=_frozen(timestamps),
        fps=fps,
        duration=float(timestamps[-1] - timestamps[0] + 1 / fps),
        height=height,
        width=width,
        frame_files=tuple(files),
    )

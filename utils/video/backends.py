"""Decoding chosen frames of a probed video (:mod:`utils.video.sources`) with PyAV, torchcodec or decord.

One call, :func:`decode_frames`. The backend is named in config or, with ``"auto"``, is the first
installed of :data:`BACKENDS` (PyAV first: fastest on the benchmark clip, see "Video decoding speed" in
docs/benchmarks.md). Every backend gives frame ``i`` = the ``i``-th in presentation order, RGB uint8,
upright (torchcodec and decord apply the display rotation themselves; PyAV frames are turned here), and
decodes only what the wanted frames need: it seeks to the key frame before them. PyAV also skips, on the
way, the frames that no other frame references (``skip_frame="NONREF"``), which leaves every wanted frame
bit-identical, and spreads the key-frame groups over parallel decoders. Frame folders are read image by
image, whatever the backend.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from utils.data.image_io import read_rgb
from utils.video.errors import FrameDecodeError, FrameIndexError, MissingVideoError, VideoError, VideoOpenError
from utils.video.sources import VideoInfo

BACKENDS = ("pyav", "torchcodec", "decord")
"""Backends in the order ``"auto"`` tries them."""

_MODULES = {"pyav": "av", "torchcodec": "torchcodec.decoders", "decord": "decord"}
_INSTALL = {
    "pyav": "pip install av",
    "torchcodec": "pip install torchcodec, and FFmpeg's shared libraries (apt-get install ffmpeg)",
    "decord": "pip install decord",
}


@dataclass
class DecodedFrames:
    """Frames as asked: ``frames`` ``(K, H, W, 3)`` uint8 RGB upright, in the order of the indices given.

    ``decoded_frames`` counts the pictures the decoder produced on the way (PyAV; images read for a
    folder), or is ``None`` where the backend does not tell.
    """

    frames: np.ndarray
    backend: str
    decoded_frames: int | None


@functools.cache
def _load(backend: str):
    """The backend's module, or the exception importing it raised (torchcodec fails without FFmpeg)."""
    try:
        return importlib.import_module(_MODULES[backend])
    except (ImportError, OSError, RuntimeError) as error:
        return error


def available_backends() -> list[str]:
    """The installed backends, in :data:`BACKENDS` order."""
    return [name for name in BACKENDS if not isinstance(_load(name), Exception)]


def resolve_backend(backend: str = "auto") -> str:
    """``backend`` if it is installed, or for ``"auto"`` the first installed; else ``ValueError`` saying how to
    install it."""
    if backend == "auto":  # the first that loads; the later ones are not imported
        name = next((name for name in BACKENDS if not isinstance(_load(name), Exception)), None)
        if name is None:
            raise ValueError(f"no video backend is installed; install one of {BACKENDS} ({_INSTALL['pyav']})")
        return name
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose 'auto' or one of {BACKENDS}")
    module = _load(backend)
    if isinstance(module, Exception):
        raise ValueError(f"video backend {backend!r} is not usable ({module}); {_INSTALL[backend]}")
    return backend


def decode_frames(info: VideoInfo, indices: Sequence[int], backend: str = "auto", threads: int = 0) -> DecodedFrames:
    """The frames ``indices`` (any order, repeats allowed) of the video ``info`` describes.

    ``threads``: decoder threads (0: one PyAV decoder per CPU, FFmpeg's choice for torchcodec and decord;
    1 inside data-loader workers). Raises
    :class:`FrameIndexError` for an index outside the video, :class:`FrameDecodeError` naming the frame
    that does not decode, :class:`MissingVideoError` for a missing frame file.
    """
    for index in indices:
        if not 0 <= index < info.num_frames:
            note = info.truncation_note()
            raise FrameIndexError(info.path, f"index out of range: the video has {info.num_frames} frames{note}", index)
    wanted = sorted({int(i) for i in indices})
    name = "folder" if info.is_folder else resolve_backend(backend)
    reader = {"folder": _read_folder, "pyav": _read_pyav, "torchcodec": _read_torchcodec, "decord": _read_decord}[name]
    frames, decoded = reader(info, wanted, threads)
    for index, frame in zip(wanted, frames):
        if frame.shape != (info.height, info.width, 3):
            expected = f"{info.height}x{info.width}x3"
            raise FrameDecodeError(info.path, f"{name} gave a {frame.shape} frame, expected {expected}", index)
    position = {index: k for k, index in enumerate(wanted)}
    return DecodedFrames(np.stack([frames[position[int(i)]] for i in indices]), name, decoded)


def _read_folder(info: VideoInfo, wanted: list[int], threads: int) -> tuple[list[np.ndarray], int]:
    """The wanted image files, decoded by ``threads`` threads (0: one per CPU; PIL decodes without the GIL)."""

    def read(index: int) -> np.ndarray:
        file = info.frame_files[index]
        if not file.is_file():
            raise MissingVideoError(info.path, f"missing frame file {file.name}", index)
        try:
            return read_rgb(file, str(info.path), kind="frame")
        except OSError as error:
            raise FrameDecodeError(info.path, f"cannot decode {file.name} ({error})", index) from error

    workers = min(len(wanted), threads or _cpus())
    if workers <= 1:
        return [read(i) for i in wanted], len(wanted)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read, wanted)), len(wanted)


def _cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def _read_pyav(info: VideoInfo, wanted: list[int], threads: int) -> tuple[list[np.ndarray], int]:
    """Seek to the key frame before each group of wanted frames and decode forward to them.

    Groups (GOPs) are shared among ``threads`` decoders running in parallel (0: one per CPU), each
    single-threaded: after every seek, FFmpeg's own frame threading would have to refill its pipeline.
    One group (or ``threads=1``) gets one decoder with FFmpeg's threading (``threads`` threads).
    """
    av = _load("pyav")
    groups: dict[int, list[int]] = {}
    for index in wanted:
        key = np.searchsorted(info.keyframes, index, side="right") - 1
        groups.setdefault(int(info.keyframes[key]) if key >= 0 else 0, []).append(index)
    workers = min(len(groups), threads or _cpus())
    if workers <= 1:
        out, decoded = _decode_groups(av, info, list(groups.items()), threads)
    else:
        shares: list[list[tuple[int, list[int]]]] = [[] for _ in range(workers)]
        loads = [0] * workers
        for key, targets in sorted(groups.items(), key=lambda group: group[0] - max(group[1])):  # longest first
            k = loads.index(min(loads))
            shares[k].append((key, targets))
            loads[k] += max(targets) - key + 1
        with ThreadPoolExecutor(workers) as pool:  # PyAV decodes without the GIL
            parts = list(pool.map(lambda share: _decode_groups(av, info, sorted(share), 1), shares))
        out = {index: frame for part, _ in parts for index, frame in part.items()}
        decoded = sum(count for _, count in parts)
    return [out[i] for i in wanted], decoded


def _decode_groups(
    av, info: VideoInfo, groups: list[tuple[int, list[int]]], threads: int
) -> tuple[dict[int, np.ndarray], int]:
    """``({index: frame}, pictures decoded)`` for ``(key frame, wanted frames)`` groups, with one decoder."""
    out: dict[int, np.ndarray] = {}
    decoded = 0
    try:
        container = av.open(str(info.path))
    except av.FFmpegError as error:
        raise VideoOpenError(info.path, f"not a readable media file ({error})") from error
    with container:
        stream = next(s for s in container.streams if s.index == info.stream_index)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        for key, targets in groups:
            need = {int(info.pts[i]): i for i in targets}
            for start in dict.fromkeys((int(info.pts[key]), int(info.pts[0]))):  # on a miss, retry from the start
                container.seek(start, stream=stream, backward=True, any_frame=False)
                decoded += _decode_until(av, info, container, stream, need, out)
                if not need:
                    break
            if need:
                raise FrameDecodeError(info.path, "the decoder never output this frame", min(need.values()))
    return out, decoded


def _decode_until(av, info: VideoInfo, container, stream, need: dict[int, int], out: dict[int, np.ndarray]) -> int:
    """Decode from the current position until every frame of ``need`` (pts -> index) is in ``out``
    (popping them from ``need``) or has been passed; returns the pictures decoded."""
    codec, decoded, last = stream.codec_context, 0, max(need)
    try:
        for packet in container.demux(stream):
            codec.skip_frame = "DEFAULT" if packet.pts in need else "NONREF"
            for frame in packet.decode():
                decoded += 1
                index = need.pop(frame.pts, None)
                if index is not None:
                    out[index] = np.rot90(frame.to_ndarray(format="rgb24"), info.rotation // 90)
                if frame.pts is not None and frame.pts >= last:
                    return decoded
            if not need:
                return decoded
    except av.FFmpegError as error:
        raise FrameDecodeError(info.path, f"does not decode ({error})", min(need.values())) from error
    finally:
        codec.skip_frame = "DEFAULT"
    return decoded


def _check_count(info: VideoInfo, backend: str, count: int) -> None:
    if count != info.num_frames:
        raise VideoError(info.path, f"{backend} counts {count} frames, the container has {info.num_frames} packets")


def _batch_or_locate(
    info: VideoInfo, backend: str, wanted: list[int], errors: tuple, read: Callable[[list[int]], np.ndarray]
) -> list[np.ndarray]:
    """``read(wanted)``; if it fails, read frame by frame to name the first frame that does not decode."""
    try:
        return list(read(wanted))
    except errors as batch_error:
        for index in wanted:
            try:
                read([index])
            except errors as error:
                raise FrameDecodeError(info.path, f"{backend} cannot decode it ({error})", index) from error
        raise FrameDecodeError(info.path, f"{backend} cannot decode frames {wanted} ({batch_error})") from batch_error


def _read_torchcodec(info: VideoInfo, wanted: list[int], threads: int) -> tuple[list[np.ndarray], None]:
    decoders = _load("torchcodec")
    try:
        decoder = decoders.VideoDecoder(
            str(info.path), stream_index=info.stream_index, dimension_order="NHWC", num_ffmpeg_threads=threads
        )
    except (RuntimeError, ValueError) as error:
        raise VideoOpenError(info.path, f"torchcodec cannot open it ({error})") from error
    _check_count(info, "torchcodec", len(decoder))
    errors = (RuntimeError, IndexError, ValueError)
    return _batch_or_locate(info, "torchcodec", wanted, errors, lambda i: decoder.get_frames_at(i).data.numpy()), None


def _read_decord(info: VideoInfo, wanted: list[int], threads: int) -> tuple[list[np.ndarray], None]:
    if info.rotation % 180:  # decord 0.6 returns 4-channel frames or fails for these (180 degrees is right)
        reason = f"decord mis-decodes videos turned {info.rotation} degrees; use pyav or torchcodec"
        raise VideoError(info.path, reason)
    decord = _load("decord")
    errors = (RuntimeError, decord.DECORDError)
    try:
        reader = decord.VideoReader(str(info.path), num_threads=threads)
    except errors as error:
        raise VideoOpenError(info.path, f"decord cannot open it ({error})") from error
    _check_count(info, "decord", len(reader))
    return _batch_or_locate(info, "decord", wanted, errors, lambda i: reader.get_batch(i).asnumpy()), None

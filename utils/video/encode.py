"""Writing video files with PyAV, for tests and benchmarks: any FFmpeg encoder and container, constant or
variable frame rate (explicit timestamps), a display-matrix rotation (as phones write), an audio track."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VFR_TIME_BASE = Fraction(1, 1000)
"""Time base of clips written with explicit timestamps (milliseconds)."""


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float | Fraction = 30,
    timestamps: Sequence[float] | None = None,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    rotation: int = 0,
    audio_seconds: float = 0.0,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``(H, W, 3)`` uint8 RGB ``frames`` into ``path`` (container from its extension).

    Args:
        fps: nominal frame rate; frame ``i`` is at ``i / fps`` s unless ``timestamps`` are given.
        timestamps: per-frame seconds (variable frame rate), rounded to :data:`VFR_TIME_BASE`.
        codec: FFmpeg encoder (``"libx264"``, ``"libvpx-vp9"``, ...), ``options`` its private options.
        rotation: counter-clockwise degrees stored in the display matrix (the pixels are not turned).
        audio_seconds: length of a silent AAC (MP4/MKV) or Opus (WebM) track to add, 0 for none.
        container_options: muxer options, e.g. ``{"movflags": "faststart"}``.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.pix_fmt = "yuv420p"
        time_base = VFR_TIME_BASE if timestamps is not None else 1 / rate
        stream.time_base = stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        audio = _add_audio(container, path) if audio_seconds > 0 else None
        for i, array in enumerate(frames):
            if i == 0:
                stream.height, stream.width = array.shape[:2]
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = round(timestamps[i] / time_base) if timestamps is not None else i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            _write_silence(container, audio, audio_seconds)
    return path


AUDIO_RATE = 48000


def _add_audio(container, path: Path):
    """A mono audio stream (Opus in WebM, AAC elsewhere); streams must all exist before the first packet."""
    return container.add_stream("libopus" if path.suffix.lower() == ".webm" else "aac", rate=AUDIO_RATE, layout="mono")


def _write_silence(container, stream, seconds: float) -> None:
    """``seconds`` of silence into the audio ``stream``."""
    chunk = 960
    for start in range(0, int(seconds * AUDIO_RATE), chunk):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, chunk), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())

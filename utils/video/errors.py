"""Errors of the video input module; each message starts ``"<file or frame folder>[, frame <i>]: "``.

They subclass the built-in types that :data:`utils.data.robust.LOAD_ERRORS` catches (``ValueError``,
``FileNotFoundError``, ``IndexError``), so in training a bad video becomes a counted skip.
"""

from __future__ import annotations

from pathlib import Path


class VideoError(ValueError):
    """A video (file or frame folder) that cannot give the frames asked for.

    Attributes:
        path: the file or frame folder.
        frame: index of the frame to blame (in presentation order), or ``None`` for the whole video.
        reason: what went wrong.
    """

    def __init__(self, path: str | Path, reason: str, frame: int | None = None):
        self.path, self.reason, self.frame = Path(path), reason, frame
        where = str(path) if frame is None else f"{path}, frame {frame}"
        super().__init__(f"{where}: {reason}")


class VideoOpenError(VideoError):
    """The file is not a readable video: empty, not a media container, or without a video stream."""


class MissingVideoError(VideoError, FileNotFoundError):
    """The video file, the frame folder or one frame file of the folder does not exist."""


class FrameIndexError(VideoError, IndexError):
    """A frame index outside ``[0, num_frames)`` (e.g. a truncated file shorter than its annotation)."""


class FrameDecodeError(VideoError):
    """A frame that was asked for could not be decoded (truncated or corrupt data)."""

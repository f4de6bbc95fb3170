"""What every tab of the demo is built with: the loaded model, the input limits and where outputs go."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from inference.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Media, MediaError, MediaLimits, load_media
from inference.pipeline import UniGRInference

UPLOAD_TYPES = list(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
"""File types a tab that takes a video or an image offers to upload."""

MODEL_QUEUE = "model"
"""The ``concurrency_id`` of every event that runs the model: they share one concurrency limit."""


@dataclass(frozen=True)
class DemoContext:
    """Attributes:
    inference: the one loaded model every session uses (read-only; its events share :data:`MODEL_QUEUE`).
    limits: what one upload may be.
    output_root: each request writes its files to a fresh folder under it (Gradio serves them from there).
    concurrency: how many model events run at once.
    scene_root: the server's folder of 3D scene folders (``app.py --scene-root``), or ``None``.
    detector: a Grounding DINO folder the dynamic reasoning tab tracks objects with (``app.py --detector``), or
        ``None``.
    """

    inference: UniGRInference
    limits: MediaLimits
    output_root: Path
    concurrency: int = 1
    scene_root: Path | None = None
    detector: Path | None = None

    def new_output_folder(self) -> Path:
        """A fresh folder for one request's files (never shared between sessions)."""
        folder = self.output_root / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def model_event(self) -> dict:
        """Keyword arguments for an event listener that runs the model (shared queue and limit)."""
        return {"concurrency_id": MODEL_QUEUE, "concurrency_limit": self.concurrency}

    def load(self, path: str | None) -> Media:
        """The uploaded file read within the limits; a ``gr.Error`` (shown to that user only) if it cannot be."""
        if not path:
            raise gr.Error("Upload a video or an image first.")
        try:
            return load_media(path, self.limits)
        except MediaError as error:
            raise gr.Error(f"Cannot use this upload: {error}".replace(str(Path(path).parent) + "/", "")) from error


def default_output_root() -> Path:
    """``<system temp>/unigr_demo``: a place Gradio is allowed to serve files from."""
    return Path(tempfile.gettempdir()) / "unigr_demo"


def describe(media: Media) -> str:
    """One line about an input, for the user: name, frames, size and what the limits changed."""
    height, width = media.frames.shape[1:3]
    what = "image" if media.medium == "image" else f"video, {len(media.frames)} frames at {media.fps:.1f} fps"
    notes = "; ".join(media.notes)
    return f"**{media.source.name}**: {what}, {width}x{height}" + (f" ({notes})" if notes else "")

"""Predictions on disk, keyed by ``sample_id``: what the runner writes, resumes from and scorers read.

Layout under a store's root::

    masks/<sample_id>/<frame>.png    one greyscale PNG per frame, 0 = background, 255 = object
    records/<writer>.jsonl           one JSON line per finished sample: {"sample_id", "answer", ...}
    errors/<writer>.jsonl            one JSON line per sample that failed: {"sample_id", "error"}

Each process of a sharded run writes its own ``<writer>`` files, so no two processes share a file.
A sample is *done* once its record line exists; its mask folder is written first under a temporary
name and renamed when complete, so a crash leaves either nothing or a whole sample, and a torn last
record line (a crash mid-write) is ignored. Because ``sample_id`` is ``<loader>/<split>/<...>``,
``masks/<loader>/<split>/`` is already the official ``<video>/<exp_id>/<frame>.png`` submission tree
for MeViS, ReVOS and Ref-YouTube-VOS.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image


class IncompletePredictions(RuntimeError):
    """Raised instead of scoring a prediction set that lacks some samples; the message names them."""


def _read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of ``path``; a torn last line (a crash mid-write) is skipped."""
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise ValueError(f"{path}:{number} is not valid JSON: {error}") from error
    return rows


def _drop_torn_tail(path: Path) -> None:
    """Cut a line left unfinished by a crash off the end of ``path``, so the next line starts cleanly.

    Only the last byte is read unless the file is torn, so checking before every append stays cheap.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) == b"\n":
            return
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"\n") + 1])


def foreground(png: np.ndarray) -> np.ndarray:
    """The default reading of a saved mask: any non-zero value is object."""
    return png > 0


class PredictionStore:
    """Read and write one prediction set; ``writer`` names this process's record files (e.g. ``rank0``)."""

    def __init__(self, root: str | Path, writer: str = "rank0"):
        self.root = Path(root)
        self.writer = writer
        self.masks_dir = self.root / "masks"
        self.records_dir = self.root / "records"
        self.errors_dir = self.root / "errors"

    # ---- writing ---------------------------------------------------------------------------------

    def mask_dir(self, sample_id: str) -> Path:
        return self.masks_dir / sample_id

    def write(self, sample_id: str, frame_names: list[str], masks: np.ndarray | None, record: dict) -> None:
        """Store one finished sample: its ``(T, H, W)`` bool masks (if any), then its record line."""
        if masks is not None:
            self._write_masks(sample_id, frame_names, masks)
        self._append(self.records_dir, {"sample_id": sample_id, **record})

    def write_error(self, sample_id: str, error: str) -> None:
        """Note a sample that could not be predicted; it stays not done, so a re-run retries it."""
        self._append(self.errors_dir, {"sample_id": sample_id, "error": error})

    def _append(self, folder: Path, row: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.writer}.jsonl"
        _drop_torn_tail(path)
        with open(path, "a") as file:
            file.write(json.dumps(row) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _write_masks(self, sample_id: str, frame_names: list[str], masks: np.ndarray) -> None:
        if masks.ndim != 3 or len(frame_names) != len(masks):
            raise ValueError(f"{sample_id}: masks of shape {masks.shape} for {len(frame_names)} frames")
        final = self.mask_dir(sample_id)
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)  # a sample re-predicted after a crash before its record
        partial.mkdir(parents=True)
        for name, mask in zip(frame_names, masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(partial / f"{name}.png")
        partial.rename(final)

    # ---- reading ---------------------------------------------------------------------------------

    def records(self) -> dict[str, dict]:
        """``sample_id -> record`` over every writer's file (a later record of an id wins)."""
        rows = {}
        for path in sorted(self.records_dir.glob("*.jsonl")):
            rows.update((row["sample_id"], row) for row in _read_jsonl(path))
        return rows

    def errors(self) -> dict[str, str]:
        """``sample_id -> error`` of samples that failed and have no record since."""
        failed = {}
        for path in sorted(self.errors_dir.glob("*.jsonl")):
            failed.update((row["sample_id"], row["error"]) for row in _read_jsonl(path))
        done = self.done_ids()
        return {sample_id: error for sample_id, error in failed.items() if sample_id not in done}

    def done_ids(self) -> set[str]:
        return set(self.records())

    def require_complete(self, sample_ids: Iterable[str]) -> None:
        """Raise :class:`IncompletePredictions` naming the missing samples (and why, if they failed)."""
        sample_ids = list(sample_ids)
        done = self.done_ids()
        missing = [sample_id for sample_id in sample_ids if sample_id not in done]
        if missing:
            errors = self.errors()
            shown = [
                f"{sample_id} ({errors[sample_id]})" if sample_id in errors else sample_id for sample_id in missing
            ]
            raise IncompletePredictions(
                f"{len(missing)} of {len(sample_ids)} samples have no prediction in {self.root}; "
                f"run inference again to fill them in. Missing: {', '.join(shown[:10])}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            )

    def read_masks(
        self, sample_id: str, frame_names: list[str], binarize: Callable[[np.ndarray], np.ndarray] = foreground
    ) -> np.ndarray:
        """``(T, H, W)`` bool; ``binarize`` turns a read PNG into a mask. A missing frame raises naming the file."""
        folder = self.mask_dir(sample_id)
        masks = []
        for name in frame_names:
            path = folder / f"{name}.png"
            if not path.is_file():
                raise FileNotFoundError(f"prediction for {sample_id} lacks frame {path}")
            with Image.open(path) as image:
                masks.append(binarize(np.asarray(image)))
        return np.stack(masks)

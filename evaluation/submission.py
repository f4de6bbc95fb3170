"""Zip a prediction store the way an online evaluation server wants it.

MeViS (``valid``) and Ref-YouTube-VOS (``valid``) are scored by CodaLab servers that take a zip of
``<video>/<exp_id>/<frame>.png`` masks; the store already keeps them in that tree under
``masks/<loader>/<split>/``, so the zip only re-roots it (at ``folder`` inside the archive).
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from evaluation.prediction_store import PredictionStore


def write_submission_zip(store: PredictionStore, sample_ids: list[str], folder: str, out: str | Path) -> Path:
    """Zip every sample's masks as ``<folder>/<video>/<exp_id>/<frame>.png``; refuses an incomplete store.

    ``sample_ids`` are ``<loader>/<split>/<video>/<exp_id>``. The zip is written under a temporary
    name and renamed, so a crash never leaves a truncated archive that looks finished.
    """
    store.require_complete(sample_ids)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for sample_id in sample_ids:
            relative = PurePosixPath(*sample_id.split("/")[2:])
            pngs = sorted(store.mask_dir(sample_id).glob("*.png"))
            if not pngs:
                raise FileNotFoundError(f"{sample_id}: no mask PNGs in {store.mask_dir(sample_id)}")
            for png in pngs:
                archive.write(png, arcname=str(PurePosixPath(folder) / relative / png.name))
    partial.rename(out)
    return out

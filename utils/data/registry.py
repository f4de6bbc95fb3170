"""Dataset loaders by name: each task family registers its builders here; a run's config names them.

A loader is a builder function ``(root, split, *, num_frames, train, seed, **options) -> Dataset``
of :class:`~utils.data.schema.Sample`, registered with :func:`register_dataset` together with
``required_paths(root, split)``: what must exist on disk, checked at start-up before anything is
built. The one piece of module state is :data:`LOADERS`, filled by the decorators at import (as
SAM2's and torchtune's builders are). :data:`EVALUATED_SPLITS` lists the splits benchmarks report
on, which no training mix may contain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from utils.data.mevis import MeViSDataset

Builder = Callable[..., Dataset]
RequiredPaths = Callable[[Path, str], list[Path]]


@dataclass(frozen=True)
class DatasetLoader:
    """A registered loader: its builder, its task family and the paths it needs."""

    name: str
    family: str
    build: Builder
    required_paths: RequiredPaths


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a training mix, as a config lists it (``data.datasets.<name>``)."""

    name: str
    loader: str
    root: Path
    split: str
    weight: float
    options: dict = field(default_factory=dict)


LOADERS: dict[str, DatasetLoader] = {}
"""Loader name -> :class:`DatasetLoader`, filled by :func:`register_dataset`."""

EVALUATED_SPLITS: frozenset[tuple[str, str]] = frozenset(
    {
        ("mevis", "valid_u"),  # MeViS local validation (the quick start's evaluation split too)
        ("mevis", "valid"),  # MeViS online benchmark
        ("revos", "valid"),  # ReVOS benchmark (meta_expressions_valid_.json)
    }
)
"""``(loader, split)`` pairs that benchmarks report on; a training mix naming one is an error."""


def register_dataset(name: str, family: str, required_paths: RequiredPaths) -> Callable[[Builder], Builder]:
    """Decorator: register a builder as loader ``name`` of task ``family`` (e.g. ``ref_vos``, ``vqa``)."""

    def register(build: Builder) -> Builder:
        if name in LOADERS:
            raise ValueError(f"dataset loader {name!r} is registered twice")
        LOADERS[name] = DatasetLoader(name, family, build, required_paths)
        return build

    return register


def registered_names() -> str:
    """``"name (family), ..."`` of every registered loader, sorted, for messages."""
    return ", ".join(f"{name} ({LOADERS[name].family})" for name in sorted(LOADERS))


# ---- Loaders -------------------------------------------------------------------------------------


def _mevis_paths(root: Path, split: str) -> list[Path]:
    return [root / split / "meta_expressions.json", root / split / "mask_dict.json", root / split / "JPEGImages"]


@register_dataset("mevis", family="ref_vos", required_paths=_mevis_paths)
def build_mevis(
    root: Path, split: str, *, num_frames: int, train: bool, seed: int, expressions_per_sample: int = 1
) -> MeViSDataset:
    """MeViS as released (``<root>/<split>/``); also any set written in its layout (the synthetic one)."""
    return MeViSDataset(root, split, num_frames, train, seed, expressions_per_sample)


def _revos_paths(root: Path, split: str) -> list[Path]:
    return [root / f"meta_expressions_{split}_.json", root / "mask_dict.json", root / "JPEGImages"]


@register_dataset("revos", family="reason_vos", required_paths=_revos_paths)
def build_revos(
    root: Path, split: str, *, num_frames: int, train: bool, seed: int, expressions_per_sample: int = 1
) -> MeViSDataset:
    """ReVOS as released: one root for all splits, ``meta_expressions_<split>_.json`` per split."""
    return MeViSDataset(root, split, num_frames, train, seed, expressions_per_sample, layout="revos")

"""Dataset loaders by name: each dataset module registers its builders here; a run's config names them.

A loader is a builder function ``(root, split, *, num_frames, train, seed, **options) -> Dataset``
of :class:`~utils.data.schema.Sample`, registered with :func:`register_dataset` together with
``required_paths(root, split)``: what must exist on disk, checked at start-up before anything is
built, and the splits that benchmarks report on (which no training mix may contain).

The module state is :data:`LOADERS` and :data:`EVALUATED_SPLITS`, filled by the decorators when the
dataset modules are imported (as SAM2's and torchtune's builders are); import
:mod:`utils.data.catalog` to have every loader registered.

Every registered dataset also answers ``sample_ids()``: the ``sample_id`` of each item, in item
order, without reading any image (the evaluation runner shards and resumes on them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

Builder = Callable[..., Dataset]
RequiredPaths = Callable[[Path, str], list[Path]]


@dataclass(frozen=True)
class DatasetLoader:
    """A registered loader: its builder, its task family and the paths it needs."""

    name: str
    family: str
    build: Builder
    required_paths: RequiredPaths

    def missing_paths(self, root: Path, split: str) -> list[Path]:
        """The paths this loader needs for ``split`` under ``root`` that do not exist."""
        return [path for path in self.required_paths(root, split) if not path.exists()]


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

EVALUATED_SPLITS: set[tuple[str, str]] = set()
"""``(loader, split)`` pairs that benchmarks report on; a training mix naming one is an error."""


def register_dataset(
    name: str, family: str, required_paths: RequiredPaths, evaluated_splits: Iterable[str] = ()
) -> Callable[[Builder], Builder]:
    """Decorator: register a builder as loader ``name`` of task ``family`` (e.g. ``ref_vos``, ``vqa``).

    ``evaluated_splits`` are the loader's benchmark splits; they join :data:`EVALUATED_SPLITS`.
    """

    def register(build: Builder) -> Builder:
        if name in LOADERS:
            raise ValueError(f"dataset loader {name!r} is registered twice")
        LOADERS[name] = DatasetLoader(name, family, build, required_paths)
        EVALUATED_SPLITS.update((name, split) for split in evaluated_splits)
        return build

    return register


def registered_names() -> str:
    """``"name (family), ..."`` of every registered loader, sorted, for messages."""
    return ", ".join(f"{name} ({LOADERS[name].family})" for name in sorted(LOADERS))

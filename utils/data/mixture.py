"""The training mix: registered datasets drawn by weight, checked in full before any is built.

A run's ``data:`` section lists its datasets by name with a loader, a root, a split, a weight and
loader options; ``not_implemented:`` lists, in the same shape, the parts of a reference mix whose
loaders are not written yet, so that such a recipe fails at start-up naming them::

    data:
      num_frames: 8
      samples_per_epoch: 10000
      datasets:
        mevis_train: {loader: mevis, root: "${oc.env:UNIGR_DATA_ROOT,data}/mevis", split: train, weight: 6}
      not_implemented:
        refcoco: {loader: refcoco, root: "${oc.env:UNIGR_DATA_ROOT,data}/refer_seg", split: train, weight: 1}

A dataset set to ``null`` (``data.datasets.<name>=null`` on the command line, or in a config that
inherits a recipe) is left out of the mix.

Item ``i`` of :class:`WeightedMixture` depends only on ``(seed, i)``, so a resumable or sharded
sampler reproduces it exactly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import numpy as np
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from utils.data.catalog import EVALUATED_SPLITS, LOADERS, registered_names
from utils.data.registry import DatasetSpec
from utils.data.schema import Sample
from utils.data.videoinfer import check_no_test_videos

ENTRY_KEYS = ("loader", "root", "split", "weight")
"""Required keys of a dataset entry; ``options`` (a mapping passed to the builder) is optional."""


class DataConfigError(ValueError):
    """The ``data:`` section cannot be trained on; the message lists every problem found."""


class WeightedMixture(Dataset):
    """``samples_per_epoch`` items, each a draw from one dataset with probability proportional to its weight.

    Item ``index`` seeds ``numpy.random.default_rng([seed, index])``, which picks the dataset by
    weight and then one of its items uniformly; the sample comes back with ``meta["dataset"]``
    set to the dataset's name. A dataset's error is raised again, with the same type, naming the
    dataset, its item and the mixture index.
    """

    def __init__(
        self, datasets: Mapping[str, Dataset], weights: Mapping[str, float], samples_per_epoch: int, seed: int
    ):
        if not datasets or set(datasets) != set(weights):
            raise ValueError(f"datasets {sorted(datasets)} and weights {sorted(weights)} must name the same sets")
        bad = {name: weight for name, weight in weights.items() if not weight > 0}
        if bad:
            raise ValueError(f"weights must be positive: {bad}")
        empty = [name for name, dataset in datasets.items() if len(dataset) == 0]
        if empty:
            raise ValueError(f"datasets with no items: {empty}")
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        self.datasets = dict(datasets)
        self.names = list(datasets)
        total = sum(weights[name] for name in self.names)
        self.shares = {name: weights[name] / total for name in self.names}
        self._probabilities = np.array([self.shares[name] for name in self.names])
        self.samples_per_epoch, self.seed = samples_per_epoch, seed

    def __len__(self) -> int:
        return self.samples_per_epoch

    def locate(self, index: int) -> tuple[str, int]:
        """``(dataset name, item)`` that mixture item ``index`` reads."""
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"mixture index {index} outside [0, {self.samples_per_epoch})")
        rng = np.random.default_rng([self.seed, index])
        name = self.names[int(rng.choice(len(self.names), p=self._probabilities))]
        return name, int(rng.integers(len(self.datasets[name])))

    def __getitem__(self, index: int) -> Sample:
        name, item = self.locate(index)
        try:
            sample = self.datasets[name][item]
        except Exception as error:
            _reraise_in_context(error, f"dataset {name!r} item {item} (mixture index {index})")
        sample.meta["dataset"] = name
        return sample

    def describe(self) -> str:
        """One line per dataset: its share of draws and its size."""
        return "\n".join(
            f"{name}: {self.shares[name]:.1%} of draws, {len(self.datasets[name])} items" for name in self.names
        )


def build_training_mixture(data_cfg: Mapping, seed: int) -> WeightedMixture:
    """Check the ``data:`` section (:func:`check_training_data`), then build every dataset and mix them."""
    data = _plain(data_cfg)
    specs = check_training_data(data)
    datasets = {}
    for spec in specs:
        try:
            options = loader_options(spec, data)
            datasets[spec.name] = LOADERS[spec.loader].build(
                spec.root, spec.split, num_frames=data["num_frames"], train=True, seed=seed, **options
            )
        except Exception as error:
            _reraise_in_context(error, f"building dataset {spec.name!r} ({spec.loader} {spec.split})")
    check_benchmark_videos(specs, datasets)
    return WeightedMixture(datasets, {spec.name: spec.weight for spec in specs}, data["samples_per_epoch"], seed)


def check_benchmark_videos(specs: list[DatasetSpec], datasets: Mapping[str, Dataset]) -> None:
    """Refuse a mix where a dataset trains on a video another benchmark tests on.

    VideoInfer's split follows ReVOS (its videos are ReVOS videos): when the mix has VideoInfer and its
    ``test.json`` is present, no dataset of the mix that lists its videos (``videos()``: VideoInfer's
    train split, ReVOS, MeViS, ...) may contain one of VideoInfer's test videos.
    """
    for spec in specs:
        if spec.loader != "videoinfer" or not (spec.root / "test.json").is_file():
            continue
        for name, dataset in datasets.items():
            if hasattr(dataset, "videos"):
                check_no_test_videos(dataset.videos(), spec.root, f"training dataset {name!r}")


def check_training_data(data_cfg: Mapping) -> list[DatasetSpec]:
    """The datasets of a ``data:`` section, or one :class:`DataConfigError` listing every problem.

    Checked, reading no file (existence only): the entries' shape and positive weights, that every
    loader is registered (``not_implemented`` entries always fail, by name), that the loader accepts
    the options, that no split of :data:`EVALUATED_SPLITS` is trained on, that no
    ``(loader, root, split)`` is listed twice, and that every path each loader needs exists.
    """
    data = _plain(data_cfg)
    problems = [f"data.{key} is missing" for key in ("num_frames", "samples_per_epoch") if key not in data]
    samples = data.get("samples_per_epoch", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        problems.append(f"data.samples_per_epoch must be a positive integer, got {samples!r}")
    datasets, pending = data.get("datasets"), data.get("not_implemented") or {}
    if isinstance(datasets, dict):  # null entries are switched off
        datasets = {name: entry for name, entry in datasets.items() if entry is not None}
    if not isinstance(datasets, dict) or not datasets:
        problems.append("data.datasets must map at least one dataset name to {loader, root, split, weight}")
        datasets = {}
    if not isinstance(pending, dict):
        problems.append(f"data.not_implemented must be a mapping like data.datasets, got {pending!r}")
        pending = {}
    specs = [spec for name, entry in datasets.items() if (spec := _parse(name, entry, problems))]
    pending_specs = [spec for name, entry in pending.items() if (spec := _parse(name, entry, problems))]
    for spec in pending_specs:
        problems.append(
            f"{spec.name}: loader {spec.loader!r} is not implemented yet (listed under data.not_implemented)"
            if spec.loader not in LOADERS
            else f"{spec.name}: loader {spec.loader!r} is registered now; move {spec.name} to data.datasets"
        )
    first_reader: dict[tuple[str, Path, str], str] = {}
    missing = []
    for spec in specs:
        if spec.loader not in LOADERS:
            problems.append(f"{spec.name}: loader {spec.loader!r} is not registered")
            continue
        problems += _spec_problems(spec, data.get("num_frames"))
        chosen = spec.options.get("frame_sampling")
        if chosen is not None and chosen != data.get("frame_sampling", "uniform"):
            problems.append(
                f"{spec.name}: options.frame_sampling {chosen!r} differs from data.frame_sampling "
                f"{data.get('frame_sampling', 'uniform')!r} (saved with the model; evaluation samples frames with it)"
            )
        key = (spec.loader, spec.root.resolve(), spec.split)
        if key in first_reader:
            problems.append(f"{spec.name}: {spec.loader} {spec.split!r} at {spec.root} is also {first_reader[key]}")
        first_reader.setdefault(key, spec.name)
        absent = LOADERS[spec.loader].missing_paths(spec.root, spec.split)
        if absent:
            missing.append(f"{spec.name}: {', '.join(map(str, absent))}")
    if missing:
        problems.append("training data missing:\n    " + "\n    ".join(missing))
    if any(spec.loader not in LOADERS for spec in specs + pending_specs):
        problems.append(f"registered loaders: {registered_names()}")
    if problems:
        raise DataConfigError("the data config cannot be trained on:\n  " + "\n  ".join(problems))
    return specs


def loader_options(spec: DatasetSpec, data: Mapping) -> dict:
    """The dataset's options, plus ``data.frame_sampling`` for a loader that chooses its own frames (3D scenes):
    the strategy saved with the model, which evaluation gives the same loader."""
    options = dict(spec.options)
    takes = "frame_sampling" in inspect.signature(LOADERS[spec.loader].build).parameters
    if takes and "frame_sampling" in data:
        options.setdefault("frame_sampling", data["frame_sampling"])
    return options


def _spec_problems(spec: DatasetSpec, num_frames: int | None) -> list[str]:
    """What is wrong with one dataset of a registered loader: an evaluated split, options it does not take."""
    problems = []
    if (spec.loader, spec.split) in EVALUATED_SPLITS:
        problems.append(
            f"{spec.name}: {spec.loader} split {spec.split!r} is evaluated by a benchmark "
            "(EVALUATED_SPLITS) and must not be trained on"
        )
    try:
        inspect.signature(LOADERS[spec.loader].build).bind(
            spec.root, spec.split, num_frames=num_frames, train=True, seed=0, **spec.options
        )
    except TypeError as error:
        problems.append(f"{spec.name}: options {spec.options} do not fit loader {spec.loader}: {error}")
    return problems


def _parse(name: str, entry: object, problems: list[str]) -> DatasetSpec | None:
    """``entry`` as a :class:`DatasetSpec`, or ``None`` after adding what is wrong with it to ``problems``."""
    if not isinstance(entry, dict):
        problems.append(f"{name}: expected a mapping with {list(ENTRY_KEYS)} (+ options), got {entry!r}")
        return None
    missing = [key for key in ENTRY_KEYS if entry.get(key) is None]
    unknown = sorted(set(entry) - {*ENTRY_KEYS, "options"})
    if missing or unknown:
        problems.append(f"{name}: missing {missing}, unknown {unknown} (an entry has {list(ENTRY_KEYS)} + options)")
        return None
    weight, options = entry["weight"], entry.get("options") or {}
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
        problems.append(f"{name}: weight must be a positive number, got {weight!r}")
        return None
    if not isinstance(options, dict):
        problems.append(f"{name}: options must be a mapping, got {options!r}")
        return None
    return DatasetSpec(name, str(entry["loader"]), Path(str(entry["root"])), str(entry["split"]), weight, options)


def _plain(data_cfg: Mapping) -> dict:
    """The section as plain Python with interpolations (``${oc.env:...}``) resolved."""
    if OmegaConf.is_config(data_cfg):
        return OmegaConf.to_container(data_cfg, resolve=True)
    return dict(data_cfg)


def _reraise_in_context(error: Exception, context: str) -> NoReturn:
    """Raise ``error`` again, same type (load-error handling still applies), ``context`` before its message."""
    try:
        wrapped = type(error)(f"{context}: {error}")
    except TypeError:  # a constructor that takes more than a message (e.g. UnicodeDecodeError)
        wrapped = None
    if wrapped is None:
        error.add_note(context)
        raise error
    raise wrapped from error

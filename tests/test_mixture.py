"""The training mix: draws follow the weights, item i is fixed by (seed, i), and a bad config fails at start-up."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from utils.data.catalog import EVALUATED_SPLITS, LOADERS
from utils.data.mixture import DataConfigError, WeightedMixture, build_training_mixture, check_training_data
from utils.data.registry import register_dataset
from utils.data.robust import BadSample, SkipBadSamples
from utils.data.schema import Sample
from utils.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FAKE_SIZES = {"fake_a": 3, "fake_b": 5, "fake_c": 11}


class _Items(Dataset):
    """``size`` tiny samples named ``<loader>/<i>``; the ``bad`` items raise as a missing file would."""

    def __init__(self, loader: str, size: int, bad: set[int]):
        self.loader, self.size, self.bad = loader, size, bad

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if index in self.bad:
            raise FileNotFoundError(f"missing frame /data/{self.loader}/{index}.jpg")
        frames = np.zeros((1, 2, 2, 3), dtype=np.uint8)
        return Sample(f"{self.loader}/{index}", frames, ["0"], [], timestamps=np.zeros(1), meta={"item": index})


@pytest.fixture
def fake_loaders() -> list[tuple[str, str]]:
    """Registers ``fake_a/b/c`` (needing ``<root>/<split>``) for one test; yields the builds as (loader, root)."""
    builds: list[tuple[str, str]] = []

    def make(loader: str, size: int):
        def build(root: Path, split: str, *, num_frames: int, train: bool, seed: int, bad: tuple = ()) -> _Items:
            builds.append((loader, str(root)))
            return _Items(loader, size, set(bad))

        return build

    for loader, size in FAKE_SIZES.items():
        register_dataset(loader, family="test", required_paths=lambda root, split: [root / split])(make(loader, size))
    yield builds
    for loader in FAKE_SIZES:
        del LOADERS[loader]


def _data(datasets: dict, **extra) -> dict:
    return {"num_frames": 4, "samples_per_epoch": 20_000, "datasets": datasets, **extra}


def _entry(loader: str, root: Path, weight: float = 1, split: str = "train", **options) -> dict:
    (root / split).mkdir(parents=True, exist_ok=True)
    return {"loader": loader, "root": str(root), "split": split, "weight": weight, "options": options}


def test_draws_follow_the_weights_and_items_are_uniform(fake_loaders, tmp_path: Path) -> None:
    weights = {"a": 1, "b": 2, "c": 7}
    data = _data({name: _entry(f"fake_{name}", tmp_path / name, weight) for name, weight in weights.items()})
    mixture = build_training_mixture(data, seed=0)
    samples = [mixture[i] for i in range(len(mixture))]
    names = [sample.meta["dataset"] for sample in samples]
    for name, weight in weights.items():
        assert abs(names.count(name) / len(names) - weight / 10) < 0.015, name
    items_of_c = [sample.meta["item"] for sample in samples if sample.meta["dataset"] == "c"]
    assert np.abs(np.bincount(items_of_c, minlength=11) / len(items_of_c) - 1 / 11).max() < 0.01
    assert mixture.describe().splitlines()[0] == "a: 10.0% of draws, 3 items"


def test_item_depends_only_on_seed_and_index(fake_loaders, tmp_path: Path) -> None:
    data = _data({"a": _entry("fake_a", tmp_path / "a"), "c": _entry("fake_c", tmp_path / "c", 3)})
    forward = [build_training_mixture(data, seed=1)[i].sample_id for i in range(200)]
    other = build_training_mixture(data, seed=1)
    assert [other[i].sample_id for i in reversed(range(200))] == forward[::-1]
    assert [build_training_mixture(data, seed=2)[i].sample_id for i in range(200)] != forward
    with pytest.raises(IndexError):
        other[len(other)]


def test_a_dataset_error_keeps_its_type_and_names_dataset_item_and_index(fake_loaders, tmp_path: Path) -> None:
    mixture = build_training_mixture(_data({"b": _entry("fake_b", tmp_path / "b", bad=[2])}), seed=0)
    index = next(i for i in range(len(mixture)) if mixture.locate(i) == ("b", 2))
    with pytest.raises(FileNotFoundError, match=rf"dataset 'b' item 2 \(mixture index {index}\): missing frame"):
        mixture[index]
    skipped = SkipBadSamples(mixture)[index]
    assert isinstance(skipped, BadSample) and "dataset 'b' item 2" in skipped.error


def test_unregistered_loader_fails_naming_the_registered_ones(fake_loaders, tmp_path: Path) -> None:
    data = _data({"future_train": _entry("future_loader", tmp_path / "future")})
    with pytest.raises(DataConfigError, match="loader 'future_loader' is not registered") as error:
        build_training_mixture(data, seed=0)
    assert "registered loaders: " in str(error.value) and "mevis (ref_vos)" in str(error.value)
    assert "revos (reason_vos)" in str(error.value) and "fake_a (test)" in str(error.value)


def test_not_implemented_entries_fail_at_startup_by_name(fake_loaders, tmp_path: Path) -> None:
    pending = {"future": _entry("future_loader", tmp_path), "later": _entry("later_loader", tmp_path, 18)}
    data = _data({"a": _entry("fake_a", tmp_path / "a")}, not_implemented=pending)
    with pytest.raises(DataConfigError) as error:
        build_training_mixture(data, seed=0)
    assert "future: loader 'future_loader' is not implemented yet" in str(error.value)
    assert "later: loader 'later_loader' is not implemented yet" in str(error.value)
    assert fake_loaders == [], "a dataset was built although the config is refused"


def test_missing_paths_of_all_datasets_are_listed_in_one_error_before_anything_is_built(
    fake_loaders, tmp_path: Path
) -> None:
    data = _data(
        {
            "a": {"loader": "fake_a", "root": str(tmp_path / "nowhere_a"), "split": "train", "weight": 1},
            "b": {"loader": "fake_b", "root": str(tmp_path / "nowhere_b"), "split": "train", "weight": 1},
            "c": _entry("fake_c", tmp_path / "c"),
        }
    )
    with pytest.raises(DataConfigError, match="training data missing") as error:
        build_training_mixture(data, seed=0)
    assert f"a: {tmp_path / 'nowhere_a' / 'train'}" in str(error.value)
    assert f"b: {tmp_path / 'nowhere_b' / 'train'}" in str(error.value)
    assert "c:" not in str(error.value) and fake_loaders == []


@pytest.mark.parametrize("loader, split", sorted(EVALUATED_SPLITS))
def test_an_evaluated_split_in_the_mix_is_refused_by_name(loader: str, split: str, tmp_path: Path) -> None:
    data = _data({"leak": {"loader": loader, "root": str(tmp_path), "split": split, "weight": 1}})
    with pytest.raises(DataConfigError, match=re.escape(f"leak: {loader} split '{split}' is evaluated")):
        check_training_data(data)


def test_the_same_loader_root_and_split_twice_is_refused(fake_loaders, tmp_path: Path) -> None:
    data = _data({"a": _entry("fake_a", tmp_path / "a"), "again": _entry("fake_a", tmp_path / "x" / ".." / "a", 2)})
    with pytest.raises(DataConfigError, match="again: fake_a 'train' at .* is also a"):
        check_training_data(data)


@pytest.mark.parametrize("weight", [0, -1, "high", True, float("inf")])
def test_weights_must_be_positive_numbers(fake_loaders, tmp_path: Path, weight: object) -> None:
    with pytest.raises(DataConfigError, match="a: weight must be a positive number"):
        check_training_data(_data({"a": _entry("fake_a", tmp_path / "a", weight)}))


def test_options_a_loader_does_not_take_are_refused_before_building(fake_loaders, tmp_path: Path) -> None:
    with pytest.raises(DataConfigError, match="a: options .* do not fit loader fake_a"):
        build_training_mixture(_data({"a": _entry("fake_a", tmp_path / "a", frames_per_clip=3)}), seed=0)
    assert fake_loaders == []


def test_a_loader_name_cannot_be_registered_twice() -> None:
    before = LOADERS["mevis"]
    with pytest.raises(ValueError, match="'mevis' is registered twice"):
        register_dataset("mevis", family="ref_vos", required_paths=lambda root, split: [])(lambda: None)
    assert LOADERS["mevis"] is before


def test_mixture_rejects_weights_and_datasets_that_do_not_match() -> None:
    items = _Items("x", 2, set())
    with pytest.raises(ValueError, match="same sets"):
        WeightedMixture({"x": items}, {"y": 1.0}, 10, seed=0)
    with pytest.raises(ValueError, match="no items"):
        WeightedMixture({"x": items, "empty": _Items("e", 0, set())}, {"x": 1.0, "empty": 1.0}, 10, seed=0)


def test_quickstart_config_builds_a_mixture_over_the_synthetic_sets(mevis_root: Path, tmp_path: Path) -> None:
    from scripts import generate_synthetic_referring

    referring = tmp_path / "referring"
    generate_synthetic_referring.main(
        ["--out", str(referring), "--num-train", "2", "--num-test", "1", "--seed", "0", "--size", "64"]
    )
    roots = [
        f"data.datasets.synthetic_mevis.root={mevis_root}",
        f"data.datasets.synthetic_region_qa.root={referring / 'VideoRefer-700K'}",
    ]
    cfg = load_config(CONFIGS / "quickstart.yaml", roots)
    mixture = build_training_mixture(cfg.data, seed=cfg.seed)
    assert len(mixture) == cfg.data.samples_per_epoch
    assert mixture.names == ["synthetic_mevis", "synthetic_region_qa"]
    drawn = {mixture[i].meta["dataset"]: mixture[i] for i in range(12)}
    assert drawn["synthetic_mevis"].sample_id.startswith("mevis/train/")
    assert (
        drawn["synthetic_region_qa"].regions
        and "<object0><region>" in drawn["synthetic_region_qa"].conversation[0]["content"]
    )
    without = load_config(CONFIGS / "quickstart.yaml", [*roots, "data.datasets.synthetic_region_qa=null"])
    assert build_training_mixture(without.data, seed=0).names == ["synthetic_mevis"]
    segmentation = drawn["synthetic_mevis"]
    assert segmentation.masks.shape[:2] == (1, segmentation.frames.shape[0])


def test_revos_loader_reads_the_revos_layout(mevis_root: Path, tmp_path: Path) -> None:
    revos = tmp_path / "ReVOS"
    revos.mkdir()
    shutil.copy(mevis_root / "train" / "meta_expressions.json", revos / "meta_expressions_train_.json")
    shutil.copy(mevis_root / "train" / "mask_dict.json", revos / "mask_dict.json")
    (revos / "JPEGImages").symlink_to(mevis_root / "train" / "JPEGImages")
    entry = {"root": str(revos), "split": "train", "weight": 1}
    mixture = build_training_mixture(_data({"revos_train": {"loader": "revos", **entry}}, samples_per_epoch=5), 0)
    same = build_training_mixture(
        _data({"m": {**entry, "loader": "mevis", "root": str(mevis_root)}}, samples_per_epoch=5), 0
    )
    assert mixture[3].sample_id.replace("revos/", "mevis/", 1) == same[3].sample_id
    assert np.array_equal(mixture[3].masks, same[3].masks)


@pytest.mark.parametrize("name", ["unigr_7b.yaml", "unigr_3b.yaml"])
def test_recipes_mirror_rga3s_mix_and_stop_at_start_up_naming_what_is_missing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIGR_DATA_ROOT", str(tmp_path))
    cfg = load_config(CONFIGS / name)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    entries = data["datasets"]
    assert "not_implemented" not in data  # every loader of RGA3's mix exists
    assert sum(entry["weight"] for entry in entries.values()) == 66  # RGA3: 4,18,4,4,8,4,3,4,6(x2),5
    assert {n: entries[n]["weight"] for n in ("mevis_train", "revos_train", "vip_llava", "ref_youtube_vos")} == {
        "mevis_train": 6,
        "revos_train": 5,
        "vip_llava": 18,
        "ref_youtube_vos": 6,
    }
    with pytest.raises(DataConfigError, match="training data missing") as error:
        check_training_data(cfg.data)
    assert "not registered" not in str(error.value) and "do not fit" not in str(error.value)
    assert all(f"\n    {dataset}: {tmp_path}" in str(error.value) for dataset in entries)
    assert f"mevis_train: {tmp_path / 'mevis' / 'train' / 'meta_expressions.json'}" in str(error.value)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_names_dataset_roots_through_variables(path: Path) -> None:
    data = OmegaConf.to_container(load_config(path).data, resolve=False)
    entries = {**data["datasets"], **data.get("not_implemented", {})}
    for name, entry in ((name, entry) for name, entry in entries.items() if entry is not None):  # null: left out
        assert entry["root"].startswith("${oc.env:UNIGR_DATA_ROOT,data}/"), name
        assert (entry["loader"], entry["split"]) not in EVALUATED_SPLITS, name


class _Videos(Dataset):
    def __init__(self, videos: set[str]):
        self._videos = videos

    def videos(self) -> set[str]:
        return self._videos


def test_a_mix_with_videoinfer_refuses_datasets_that_show_its_test_videos(tmp_path: Path) -> None:
    from utils.data.mixture import check_benchmark_videos
    from utils.data.registry import DatasetSpec
    from utils.synthetic.videoinfer_format import write_tiny_videoinfer

    test_records = write_tiny_videoinfer(tmp_path, "test")
    write_tiny_videoinfer(tmp_path, "train")
    leaked = test_records[0].video
    specs = [DatasetSpec("videoinfer", "videoinfer", tmp_path, "train", 1.0)]
    check_benchmark_videos(specs, {"revos": _Videos({"other_video"})})
    with pytest.raises(ValueError, match=rf"dataset 'revos': 1 videos are also in VideoInfer's test.*{leaked}"):
        check_benchmark_videos(specs, {"revos": _Videos({leaked, "other_video"})})

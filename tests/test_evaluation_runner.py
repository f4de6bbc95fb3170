"""The evaluation runner: sharded, resumable inference into a prediction store; scoring refuses incomplete sets."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation import run_eval, run_inference
from evaluation.prediction_store import IncompletePredictions, PredictionStore
from evaluation.runner import MAX_INITIAL_FAILURES, DistributedEnv
from evaluation.runner import run_inference as run_loop
from evaluation.scoring import score_jf
from utils.data.mevis import MeViSDataset


def _infer(mevis_root: Path, out: Path, *extra: str, split: str = "valid_u") -> None:
    run_inference.main(
        [
            "--benchmark",
            "mevis",
            "--predictor",
            "all_objects",
            "--data-root",
            str(mevis_root),
            "--split",
            split,
            "--out",
            str(out),
            "--device",
            "cpu",
            *extra,
        ]
    )


def _eval(mevis_root: Path, pred: Path, split: str = "valid_u") -> dict:
    return run_eval.main(
        ["--benchmark", "mevis", "--data-root", str(mevis_root), "--split", split, "--pred", str(pred)]
    )


class GroundTruthPredictor:
    """Predicts each sample's own target: scores 1 and tells every expression apart."""

    def predict(self, sample):
        return sample.masks.any(0), "oracle"


class FailingPredictor:
    """Fails on the listed sample ids, predicts the ground truth elsewhere."""

    def __init__(self, bad: set[str]):
        self.bad = bad

    def predict(self, sample):
        if sample.sample_id in self.bad:
            raise ValueError("sequence too long")
        return sample.masks.any(0), ""


@pytest.fixture(scope="module")
def all_objects(mevis_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("all_objects")
    _infer(mevis_root, out)
    return out


def test_all_objects_baseline_predicts_the_union_of_a_videos_targets(all_objects: Path, mevis_root: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    store = PredictionStore(all_objects)
    for video in {v for v, _ in dataset.keys()}:
        samples = [dataset[i] for i, (v, _) in enumerate(dataset.keys()) if v == video]
        union = np.any([s.masks[0] for s in samples], axis=0)
        for s in samples:
            np.testing.assert_array_equal(store.read_masks(s.sample_id, s.frame_names), union)


def test_eval_scores_every_expression_by_type_and_writes_metrics(all_objects: Path, mevis_root: Path) -> None:
    metrics = _eval(mevis_root, all_objects)
    written = json.loads((all_objects / "metrics_mevis_valid_u.json").read_text())
    assert written["overall"] == metrics["overall"]
    dataset = MeViSDataset(mevis_root, "valid_u")
    assert metrics["overall"]["count"] == len(dataset) == len(metrics["per_sample"])
    assert set(metrics["groups"]) == {"attribute", "motion"}
    assert 0 < metrics["overall"]["J&F"] < 0.8  # the union is never the single target
    assert metrics["overall"]["distinct_pairs"] == 0.0  # same mask whatever the expression
    assert "submission" not in metrics  # valid_u has no server


def test_ground_truth_predictions_score_one_and_distinct(mevis_root: Path, tmp_path: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    store = PredictionStore(tmp_path)
    run_loop(dataset, GroundTruthPredictor(), store)
    metrics = score_jf(dataset, store)
    assert metrics["overall"]["J&F"] == pytest.approx(1.0)
    assert metrics["overall"]["distinct_pairs"] == 1.0
    per_type = [group["distinct_pairs"] for group in metrics["groups"].values()]
    assert all(share == 1.0 for share in per_type if share == share)  # NaN: a type with no pair in a video


def test_two_ranks_split_the_samples_and_together_complete_the_set(mevis_root: Path, tmp_path: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    summaries = [
        run_loop(dataset, GroundTruthPredictor(), PredictionStore(tmp_path, f"rank{r}"), DistributedEnv(r, 2))
        for r in range(2)
    ]
    assert [s.predicted for s in summaries] == [(len(dataset) + 1) // 2, len(dataset) // 2]
    per_rank = [
        {json.loads(line)["sample_id"] for line in (tmp_path / "records" / f"rank{r}.jsonl").read_text().splitlines()}
        for r in range(2)
    ]
    assert not per_rank[0] & per_rank[1]
    assert per_rank[0] | per_rank[1] == set(dataset.sample_ids())
    PredictionStore(tmp_path).require_complete(dataset.sample_ids())


def test_rerun_skips_finished_samples_and_leaves_their_files_alone(
    all_objects: Path, mevis_root: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "store"
    shutil.copytree(all_objects, out)
    dataset = MeViSDataset(mevis_root, "valid_u")
    lost = dataset.sample_ids()[1]
    records = out / "records" / "rank0.jsonl"
    records.write_text("".join(line + "\n" for line in records.read_text().splitlines() if lost not in line))
    before = {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png") if lost not in str(p)}
    capsys.readouterr()
    _infer(mevis_root, out)
    total = len(dataset)
    assert f"{total - 1} of {total} samples already predicted" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    PredictionStore(out).require_complete(dataset.sample_ids())


def test_a_torn_last_record_line_is_ignored_and_that_sample_redone(mevis_root: Path, tmp_path: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    store = PredictionStore(tmp_path)
    run_loop(dataset, GroundTruthPredictor(), store)
    records = tmp_path / "records" / "rank0.jsonl"
    lines = records.read_text().splitlines()
    records.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # crash mid-write
    assert len(store.done_ids()) == len(dataset) - 1
    summary = run_loop(dataset, GroundTruthPredictor(), store)
    assert summary.predicted == 1
    store.require_complete(dataset.sample_ids())


def test_incomplete_predictions_are_refused_naming_the_missing(all_objects: Path, mevis_root: Path, tmp_path: Path):
    partial = tmp_path / "partial"
    shutil.copytree(all_objects, partial)
    missing = MeViSDataset(mevis_root, "valid_u").sample_ids()[0]
    records = partial / "records" / "rank0.jsonl"
    records.write_text("".join(line + "\n" for line in records.read_text().splitlines() if missing not in line))
    with pytest.raises(IncompletePredictions, match=missing):
        _eval(mevis_root, partial)


def test_a_failing_sample_is_counted_and_named_and_a_rerun_retries_it(mevis_root: Path, tmp_path: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    bad = dataset.sample_ids()[2]
    store = PredictionStore(tmp_path)
    summary = run_loop(dataset, FailingPredictor({bad}), store)
    assert (summary.predicted, summary.failed) == (len(dataset) - 1, 1)
    assert store.errors() == {bad: "ValueError: sequence too long"}
    with pytest.raises(IncompletePredictions, match="sequence too long"):
        store.require_complete(dataset.sample_ids())
    assert run_loop(dataset, GroundTruthPredictor(), store).predicted == 1
    assert store.errors() == {}


def test_a_run_whose_first_samples_all_fail_stops(mevis_root: Path, tmp_path: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    assert len(dataset) > MAX_INITIAL_FAILURES
    with pytest.raises(RuntimeError, match="all failed"):
        run_loop(dataset, FailingPredictor(set(dataset.sample_ids())), PredictionStore(tmp_path))


def test_a_split_without_masks_gets_a_submission_zip_in_the_server_layout(mevis_root: Path, tmp_path: Path) -> None:
    online = tmp_path / "data"
    shutil.copytree(mevis_root, online)
    shutil.copytree(online / "valid_u", online / "valid")
    (online / "valid" / "mask_dict.json").unlink()
    dataset = MeViSDataset(online, "valid")
    store = PredictionStore(tmp_path / "pred")
    for index in range(len(dataset)):
        sample = dataset[index]
        store.write(sample.sample_id, sample.frame_names, np.ones(sample.frames.shape[:3], bool), {"answer": ""})
    result = _eval(online, tmp_path / "pred", split="valid")
    assert "overall" not in result
    with zipfile.ZipFile(result["submission"]) as archive:
        names = set(archive.namelist())
        video, exp_id = dataset.keys()[0]
        frame = dataset.frame_names(video)[0]
        assert f"{video}/{exp_id}/{frame}.png" in names  # at the zip root, as MeViS's server wants
        assert len(names) == sum(len(dataset.frame_names(v)) for v, _ in dataset.keys())
        with archive.open(f"{video}/{exp_id}/{frame}.png") as png:
            assert set(np.unique(np.asarray(Image.open(png)))) == {255}


def test_unigr_predictor_writes_full_size_masks_and_answers(tiny_model, mevis_root: Path, tmp_path: Path) -> None:
    model, processor = tiny_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    run_inference.main(
        [
            "--benchmark",
            "mevis",
            "--data-root",
            str(mevis_root),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tmp_path / "model"),
            "--num-frames",
            "4",
            "--device",
            "cpu",
        ]
    )
    dataset = MeViSDataset(mevis_root, "valid_u")
    store = PredictionStore(tmp_path / "out")
    sample = dataset[0]
    assert store.read_masks(sample.sample_id, sample.frame_names).shape == (6, 64, 64)
    assert list(store.records()) == dataset.sample_ids()
    assert all(isinstance(r["answer"], str) for r in store.records().values())


@pytest.mark.parametrize("suffix", [".png", ".gif", ".mp4"])
def test_overlay_has_a_row_per_source_and_tints_the_mask(all_objects: Path, mevis_root: Path, tmp_path: Path, suffix):
    from evaluation.visualize import LABEL_HEIGHT, LABEL_WIDTH, MASK_COLOUR, mask_boundary, save_sample_overlay

    dataset = MeViSDataset(mevis_root, "valid_u")
    out = save_sample_overlay(dataset, dataset.sample_ids()[0], {"all": all_objects}, tmp_path / f"o{suffix}")
    if suffix == ".mp4":
        import cv2

        capture = cv2.VideoCapture(str(out))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = capture.read()
        assert ok and count == 6 and first.shape == (LABEL_HEIGHT + 2 * 64, LABEL_WIDTH + 64, 3)
        return
    image = Image.open(out)
    columns = 6 if suffix == ".png" else 1
    assert image.size == (LABEL_WIDTH + columns * 64, LABEL_HEIGHT + 2 * 64)
    if suffix == ".gif":
        assert image.n_frames == 6
        return
    pixels = np.asarray(image.convert("RGB"))
    sample = dataset[0]
    mask = sample.masks[0, 0]
    y, x = np.argwhere(mask & ~mask_boundary(mask))[0]  # inside: tinted towards the mask colour
    pixel = pixels[LABEL_HEIGHT + y, LABEL_WIDTH + x].astype(float)
    assert np.linalg.norm(pixel - MASK_COLOUR) < np.linalg.norm(sample.frames[0, y, x] - MASK_COLOUR)
    y, x = np.argwhere(mask_boundary(mask))[0]  # outline: white
    assert (pixels[LABEL_HEIGHT + y, LABEL_WIDTH + x] == 255).all()

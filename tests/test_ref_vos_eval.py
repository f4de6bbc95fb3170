"""Referring VOS inference + J&F evaluation: predictions on disk, resume, refusal to score incomplete sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation.mask_predictions import read_masks
from evaluation.ref_vos import evaluate, inference
from utils.data.mevis import MeViSDataset


def _infer(predictor: str, mevis_root: Path, out: Path, *extra: str) -> Path:
    args = ["--predictor", predictor, "--data-root", str(mevis_root), "--split", "valid_u", "--out", str(out)]
    return inference.main([*args, *extra])


@pytest.fixture(scope="module")
def all_objects(mevis_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _infer("all_objects", mevis_root, tmp_path_factory.mktemp("all_objects"))


def test_all_objects_baseline_predicts_the_union_of_objects(all_objects: Path, mevis_root: Path) -> None:
    dataset = MeViSDataset(mevis_root, "valid_u")
    for video in {v for v, _ in dataset.keys()}:
        samples = [dataset[i] for i, (v, _) in enumerate(dataset.keys()) if v == video]
        union = np.any([s.masks[0] for s in samples], axis=0)
        for s in samples:
            np.testing.assert_array_equal(read_masks(all_objects, video, s.meta["exp_id"], s.frame_names), union)


def test_evaluate_scores_every_expression_by_type(all_objects: Path, mevis_root: Path, tmp_path: Path) -> None:
    metrics = evaluate.main(
        [
            "--pred",
            str(all_objects),
            "--data-root",
            str(mevis_root),
            "--split",
            "valid_u",
            "--out",
            str(tmp_path / "metrics.json"),
        ]
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["overall"] == metrics["overall"]
    dataset = MeViSDataset(mevis_root, "valid_u")
    assert metrics["overall"]["count"] == len(dataset) == len(metrics["per_expression"])
    assert set(metrics["by_type"]) == {"attribute", "motion"}
    assert 0 < metrics["overall"]["J&F"] < 0.8  # the union is never the single target
    assert metrics["overall"]["distinct_pairs"] == 0.0  # same mask whatever the expression


def test_ground_truth_scores_one_and_distinct(mevis_root: Path, tmp_path: Path) -> None:
    from evaluation.mask_predictions import write_masks

    dataset = MeViSDataset(mevis_root, "valid_u")
    for i in range(len(dataset)):
        sample = dataset[i]
        write_masks(tmp_path, sample.meta["video"], sample.meta["exp_id"], sample.frame_names, sample.masks[0])
    metrics = evaluate.evaluate(tmp_path, mevis_root, "valid_u")
    assert metrics["overall"]["J&F"] == pytest.approx(1.0)
    assert metrics["overall"]["distinct_pairs"] == 1.0


def test_incomplete_predictions_are_refused_naming_the_missing(
    all_objects: Path, mevis_root: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(all_objects, partial)
    video, exp_id = MeViSDataset(mevis_root, "valid_u").keys()[0]
    shutil.rmtree(partial / video / exp_id)
    with pytest.raises(evaluate.IncompletePredictions, match=f"{video}/{exp_id}"):
        evaluate.evaluate(partial, mevis_root, "valid_u")


def test_inference_resumes_by_skipping_finished_expressions(mevis_root: Path, tmp_path: Path, capsys) -> None:
    masks_root = _infer("all_objects", mevis_root, tmp_path)
    video, exp_id = MeViSDataset(mevis_root, "valid_u").keys()[1]
    shutil.rmtree(masks_root / video / exp_id)
    before = {p: p.stat().st_mtime_ns for p in masks_root.rglob("*.png")}
    capsys.readouterr()
    _infer("all_objects", mevis_root, tmp_path)
    total = len(MeViSDataset(mevis_root, "valid_u"))
    assert f"{total - 1} of {total} expressions already predicted" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert (masks_root / video / exp_id).is_dir()


def test_unigr_predictor_writes_full_size_masks_and_answers(tiny_model, mevis_root: Path, tmp_path: Path) -> None:
    model, processor = tiny_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    masks_root = _infer("unigr", mevis_root, tmp_path / "out", "--model", str(tmp_path / "model"), "--num-frames", "4")
    dataset = MeViSDataset(mevis_root, "valid_u")
    sample = dataset[0]
    masks = read_masks(masks_root, sample.meta["video"], sample.meta["exp_id"], sample.frame_names)
    assert masks.shape == (6, 64, 64)
    answers = [json.loads(line) for line in (tmp_path / "out" / "answers.jsonl").read_text().splitlines()]
    assert [a["sample_id"] for a in answers] == [dataset[i].sample_id for i in range(len(dataset))]


def test_overlay_grid_has_a_row_per_source_and_a_column_per_frame(all_objects: Path, mevis_root: Path, tmp_path: Path):
    from PIL import Image

    from evaluation.visualize import LABEL_HEIGHT, LABEL_WIDTH, MASK_COLOUR, mask_boundary, save_sample_overlay

    video, exp_id = MeViSDataset(mevis_root, "valid_u").keys()[0]
    out = save_sample_overlay(
        MeViSDataset(mevis_root, "valid_u"), f"{video}/{exp_id}", {"all": all_objects}, tmp_path / "o.png"
    )
    image = np.asarray(Image.open(out))
    assert image.shape == (LABEL_HEIGHT + 2 * 64, LABEL_WIDTH + 6 * 64, 3)
    sample = MeViSDataset(mevis_root, "valid_u")[0]
    mask = sample.masks[0, 0]
    y, x = np.argwhere(mask & ~mask_boundary(mask))[0]  # inside: tinted towards the mask colour
    pixel = image[LABEL_HEIGHT + y, LABEL_WIDTH + x].astype(float)
    assert np.linalg.norm(pixel - MASK_COLOUR) < np.linalg.norm(sample.frames[0, y, x] - MASK_COLOUR)
    y, x = np.argwhere(mask_boundary(mask))[0]  # outline: white
    assert (image[LABEL_HEIGHT + y, LABEL_WIDTH + x] == 255).all()

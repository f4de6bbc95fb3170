"""Every benchmark end to end on data in its official format: inference into a store, then its official scoring."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from baselines.all_objects import AllObjectsPredictor
from evaluation import run_eval
from evaluation.benchmarks import BENCHMARKS, build_benchmark_dataset
from evaluation.prediction_store import PredictionStore
from evaluation.runner import run_inference
from utils.synthetic.image_formats import write_reasonseg, write_refer
from utils.synthetic.video_formats import write_reasonvos, write_ref_davis17, write_ref_youtube_vos, write_revos

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_FOLDERS = {"refcoco+": "refcoco", "refcocog": "refcoco", "refclef": "refcoco"}


class GroundTruthPredictor:
    def predict(self, sample):
        return sample.masks.any(0), ""


class WholeFramePredictor:
    def predict(self, sample):
        return np.ones(sample.frames.shape[:3], dtype=bool), ""


def _predict(name: str, root: Path, out: Path, predictor_type=GroundTruthPredictor, split: str | None = None) -> Path:
    dataset, _ = build_benchmark_dataset(name, root, split)
    predictor = predictor_type(dataset) if predictor_type is AllObjectsPredictor else predictor_type()
    run_inference(dataset, predictor, PredictionStore(out), desc=name)
    return out


def _eval(name: str, root: Path, pred: Path, *extra: str) -> dict:
    return run_eval.main(["--benchmark", name, "--data-root", str(root), "--pred", str(pred), *extra])


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_has_its_inference_and_eval_scripts(name: str) -> None:
    folder = ROOT / "evaluation" / BENCHMARK_FOLDERS.get(name, name)
    for script in ("run_inference.sh", "run_eval.sh"):
        text = (folder / script).read_text()
        assert os.access(folder / script, os.X_OK) and "launch.sh" in text


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("benchmarks")
    write_ref_youtube_vos(root / "ref_youtube_vos")
    write_ref_davis17(root / "ref_davis17", num_videos=2)
    write_reasonvos(root / "reasonvos")
    write_revos(root / "revos")
    for dataset in ("refcoco", "refcoco+", "refcocog", "refclef"):
        write_refer(root / "refer_seg", dataset)
    write_reasonseg(root / "reason_seg", "val")
    return {
        "ref_youtube_vos": root / "ref_youtube_vos",
        "ref_davis17": root / "ref_davis17",
        "reasonvos": root / "reasonvos",
        "revos": root / "revos",
        **{name: root / "refer_seg" for name in ("refcoco", "refcoco+", "refcocog", "refclef")},
        "reasonseg": root / "reason_seg",
    }


@pytest.mark.parametrize(
    "name, metric",
    [
        ("reasonvos", "J&F"),
        ("revos", "J&F"),
        ("ref_davis17", "J&F"),
        ("refcoco", "gIoU"),
        ("refcoco+", "gIoU"),
        ("refcocog", "cIoU"),
        ("refclef", "gIoU"),
        ("reasonseg", "cIoU"),
    ],
)
def test_the_ground_truth_scores_one_and_the_whole_frame_scores_less(
    name: str, metric: str, data: dict[str, Path], tmp_path: Path
) -> None:
    oracle = _eval(name, data[name], _predict(name, data[name], tmp_path / "oracle"))
    assert oracle["overall"][metric] == pytest.approx(1.0, abs=1e-4)
    assert oracle["overall"]["count"] == len(oracle["per_sample"]) > 0
    everything = _eval(name, data[name], _predict(name, data[name], tmp_path / "all", WholeFramePredictor))
    assert everything["overall"][metric] < 0.95
    written = json.loads((tmp_path / "all" / f"metrics_{name}_{BENCHMARKS[name].split}.json").read_text())
    assert written["overall"] == everything["overall"]


def test_ref_davis17_reports_each_annotator_run_and_the_per_expression_protocol(data, tmp_path: Path) -> None:
    metrics = _eval("ref_davis17", data["ref_davis17"], _predict("ref_davis17", data["ref_davis17"], tmp_path))
    assert set(metrics["groups"]) == {"annotator 0", "annotator 1", "annotator 2", "annotator 3", "per-expression"}
    for row in metrics["groups"].values():
        assert row["J&F"] == pytest.approx(1.0)
    assert "J-Recall" in metrics["groups"]["annotator 0"]
    # The every-object baseline: one mask for all objects; matching gives it to one object, the others get nothing.
    baseline = _eval(
        "ref_davis17",
        data["ref_davis17"],
        _predict("ref_davis17", data["ref_davis17"], tmp_path / "all", AllObjectsPredictor),
    )
    assert baseline["overall"]["J&F"] < 0.8


def test_revos_a_and_r_follow_the_chosen_mask_scale(data: dict[str, Path], tmp_path: Path) -> None:
    pred = _predict("revos", data["revos"], tmp_path)
    intended = _eval("revos", data["revos"], pred)
    assert set(intended["groups"]) == {"referring", "reason"}
    assert intended["overall"]["A"] == pytest.approx(1.0) and intended["overall"]["R"] == pytest.approx(1.0)
    as_255 = _eval("revos", data["revos"], pred, "--ar-scale", "255")
    assert as_255["overall"]["J&F"] == intended["overall"]["J&F"]
    assert as_255["overall"]["A"] < intended["overall"]["A"]  # every foreground pixel counts as wrong
    # R weighs false-positive pixels by the saved value: the every-object baseline's get 255x the weight.
    baseline = _predict("revos", data["revos"], tmp_path / "all", AllObjectsPredictor)
    r_1 = _eval("revos", data["revos"], baseline)["overall"]["R"]
    r_255 = _eval("revos", data["revos"], baseline, "--ar-scale", "255")["overall"]["R"]
    assert 0.2 < r_1 < 1 and r_255 < r_1 / 2
    assert as_255["ar_scale"] == 255


def test_a_saved_scale_other_than_the_files_is_refused(data: dict[str, Path], tmp_path: Path) -> None:
    pred = _predict("reasonvos", data["reasonvos"], tmp_path)
    with pytest.raises(ValueError, match="not 0/100"):
        _eval("reasonvos", data["reasonvos"], pred, "--mask-scale", "100")


def test_reasonseg_leaves_the_ignore_region_out(data: dict[str, Path], tmp_path: Path) -> None:
    dataset, _ = build_benchmark_dataset("reasonseg", data["reasonseg"])
    store = PredictionStore(tmp_path)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample.meta["void"].any()
        store.write(sample.sample_id, sample.frame_names, sample.masks.any(0) | sample.meta["void"], {})
    metrics = _eval("reasonseg", data["reasonseg"], tmp_path)
    assert metrics["overall"]["gIoU"] == pytest.approx(1.0, abs=1e-4)


def test_ref_youtube_vos_valid_gives_the_server_zip_and_train_layout_gt_scores_locally(data, tmp_path: Path) -> None:
    root = data["ref_youtube_vos"]
    dataset, _ = build_benchmark_dataset("ref_youtube_vos", root)
    store = PredictionStore(tmp_path / "valid")
    for index in range(len(dataset)):
        sample = dataset[index]
        store.write(sample.sample_id, sample.frame_names, np.zeros(sample.frames.shape[:3], bool), {})
    result = _eval("ref_youtube_vos", root, tmp_path / "valid")
    assert "overall" not in result
    with zipfile.ZipFile(result["submission"]) as archive:
        names = archive.namelist()
    videos = {sample_id.split("/")[2] for sample_id in dataset.sample_ids()}
    assert {name.split("/")[0] for name in names} == {"Annotations"}
    assert {name.split("/")[1] for name in names} == videos  # the public valid videos only, no test ones
    local = _eval(
        "ref_youtube_vos",
        root,
        _predict("ref_youtube_vos", root, tmp_path / "train", split="train"),
        "--split",
        "train",
    )
    assert local["overall"]["J&F"] == pytest.approx(1.0)


def test_the_shell_scripts_shard_over_two_torchrun_processes_and_score(mevis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    env = {**os.environ, "NPROC_PER_NODE": "2", "OMP_NUM_THREADS": "1"}
    common = ["--split", "valid_u"]
    subprocess.run(
        [
            "bash",
            "evaluation/mevis/run_inference.sh",
            "unused",
            str(mevis_root),
            str(out),
            *common,
            "--predictor",
            "all_objects",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in (out / "records").iterdir()) == ["rank0.jsonl", "rank1.jsonl"]
    done = subprocess.run(
        ["bash", "evaluation/mevis/run_eval.sh", str(mevis_root), str(out), *common],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "J&F" in done.stdout and (out / "metrics_mevis_valid_u.json").is_file()


@pytest.mark.parametrize("name", ["refcoco", "reasonseg", "revos"])
def test_the_tiny_model_predicts_image_and_video_benchmarks_through_the_runner(
    name: str, data: dict[str, Path], tiny_model, tmp_path: Path
) -> None:
    """Images take Qwen's image path and a one-frame SAM2 state, videos the video path; every sample is
    predicted at its frames' full size, none fails, and the store scores."""
    from evaluation.video_seg_predictor import UniGRVideoSegPredictor

    model, processor = tiny_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    dataset, _ = build_benchmark_dataset(name, data[name])
    predictor = UniGRVideoSegPredictor(tmp_path / "model", max_new_tokens=4)
    summary = run_inference(dataset, predictor, PredictionStore(tmp_path / "store"), desc=name)
    assert summary.failed == 0 and summary.predicted == len(dataset)
    metrics = _eval(name, data[name], tmp_path / "store")
    assert metrics["overall"]["count"] == len(dataset)

"""ScanRefer / Multi3DRefer / Scan2Cap / ScanQA / SQA3D through the evaluation runner, on tiny synthetic rooms.

Stores are written by hand (reference answers, wrong ids, wrong answers) and scored by
:mod:`evaluation.scene3d_scoring` against what the rooms' ground truth says; the tiny quick-start model runs
``run_inference`` / ``run_eval`` end to end; and the frames a model sees at evaluation are checked to be the
frames training gives it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation import run_eval, run_inference
from evaluation.benchmarks import BENCHMARKS, build_benchmark_dataset
from evaluation.metrics import captions
from evaluation.prediction_store import IncompletePredictions, PredictionStore
from evaluation.scene3d_scoring import (
    RELEASED_CODE,
    sample_metadata,
    score_multi3drefer,
    score_scan2cap,
    score_scanqa,
    score_scanrefer,
    score_sqa3d,
)
from evaluation.scoring import ScoreOptions
from utils.data.mixture import DataConfigError, build_training_mixture
from utils.data.scene3d import NO_OBJECT_ANSWER
from utils.scene3d.boxes import box_iou_3d
from utils.scene3d.object_ids import format_object_id
from utils.synthetic.rooms import RoomConfig
from utils.synthetic.scene3d_formats import BENCHMARKS as SCENE_BENCHMARKS
from utils.synthetic.scene3d_formats import generate_scene_benchmarks, write_llava

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "assets" / "unigr_tiny_quickstart"
CONFIG = RoomConfig(height=48, width=64, num_frames=6, miss_rate=0.3, spurious_rate=0.0)
"""Tiny rooms; some targets have no proposal (the reference says there is none), no spurious proposals."""
SIMPLE = ScoreOptions(caption_tokenizer="simple")
FRAME_KEYS = ("frame_indices",)
"""``meta`` keys about the frames, which scoring does not read."""


@pytest.fixture(autouse=True)
def without_meteor(monkeypatch):
    """METEOR's jar takes ~10 s to start (checked in the metric tests); these tests leave it out."""
    monkeypatch.setattr(captions, "java_available", lambda: False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rooms of ``val`` and one of ``test`` (SQA3D's published split), every benchmark in the official layout
    and, in ``llava/`` (scene folders in ``../scenes``), in Video-3D LLM's."""
    root = tmp_path_factory.mktemp("scene3d_benchmarks")
    for split, count in (("val", 2), ("test", 1)):
        rooms = generate_scene_benchmarks(root, split, count, seed=1, config=CONFIG)
        for benchmark in SCENE_BENCHMARKS:
            write_llava(root / "llava", benchmark, split, rooms)
    return root


def metas(dataset) -> list[dict]:
    return [sample_metadata(dataset, i)[3] for i in range(len(dataset))]


def write_answers(root: Path, sample_ids: list[str], answers: list[str]) -> PredictionStore:
    store = PredictionStore(root)
    for sample_id, answer in zip(sample_ids, answers, strict=True):
        store.write(sample_id, [], None, {"answer": answer})
    return store


def reference_store(dataset, root: Path) -> PredictionStore:
    """Every sample answered with its reference (``meta["answer"]``)."""
    return write_answers(root, dataset.sample_ids(), [meta["answer"] for meta in metas(dataset)])


# ---- the metadata scoring reads ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["official", "llava"])
@pytest.mark.parametrize("benchmark", SCENE_BENCHMARKS)
def test_scoring_reads_each_samples_meta_without_its_frames_in_both_layouts(
    benchmark: str, layout: str, data_root: Path, tmp_path: Path
) -> None:
    if layout == "official":
        dataset, split = build_benchmark_dataset(benchmark, data_root)
    else:
        options = ["layout=llava", f"scene_root={data_root / 'scenes'}"]
        dataset, split = build_benchmark_dataset(benchmark, data_root / "llava", None, options)
    assert split == ("test" if benchmark == "sqa3d" else "val") and dataset.layout == layout and len(dataset) > 0
    scored = BENCHMARKS[benchmark].score(dataset, reference_store(dataset, tmp_path), SIMPLE)
    assert scored["overall"]["count"] == len(dataset)
    for index in (0, len(dataset) - 1):
        sample = dataset[index]
        sample_id, question, proposals, meta = sample_metadata(dataset, index)
        assert (sample_id, question) == (sample.sample_id, sample.conversation[0]["content"])
        np.testing.assert_array_equal(proposals, sample.proposals)
        expected = {key: value for key, value in sample.meta.items() if key not in FRAME_KEYS}
        assert sorted(meta) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_equal(meta[key], value, err_msg=f"{sample_id} meta[{key!r}]")


# ---- reference answers ---------------------------------------------------------------------------


def test_reference_answers_hit_scanrefer_wherever_the_reference_names_a_proposal(data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset("scanrefer", data_root)
    result = score_scanrefer(dataset, reference_store(dataset, tmp_path))
    ious = np.array([meta["target_ious"][0] for meta in metas(dataset)])
    named = np.array([meta["answer"] != NO_OBJECT_ANSWER for meta in metas(dataset)])
    unique = np.array([meta["unique"] for meta in metas(dataset)])
    assert named.any() and not named.all() and ((ious >= 0.25) & (ious < 0.5)).any()  # misses, hits and 0.25-only
    overall = result["overall"]
    assert overall["Acc@0.25"] == pytest.approx(np.mean(named & (ious >= 0.25)))
    assert overall["Acc@0.5"] == pytest.approx(np.mean(named & (ious >= 0.5)))
    assert result["groups"]["unique"]["Acc@0.25"] == pytest.approx(np.mean(named[unique]))
    assert (overall["count"], result["groups"]["multiple"]["count"]) == (len(dataset), int((~unique).sum()))
    assert (overall["no_prediction"], overall["out_of_range"], overall["several_ids"]) == ((~named).sum(), 0, 0)
    per_sample = [result["per_sample"][sample_id]["IoU"] for sample_id in dataset.sample_ids()]
    np.testing.assert_allclose(per_sample, np.where(named, ious, 0.0))


def test_reference_answers_score_multi3drefer_f1_by_hand(data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset("multi3drefer", data_root)
    result = score_multi3drefer(dataset, reference_store(dataset, tmp_path))
    expected = {0.25: [], 0.5: []}
    for meta in metas(dataset):
        named = [p for p in meta["target_proposals"] if p >= 0]
        assert len(set(named)) == len(named)  # each ground-truth box has its own proposal
        total = len(named) + len(meta["gt_boxes"])
        for k, values in expected.items():
            hits = sum(iou >= k for iou in meta["target_ious"])  # every box of IoU >= 0.25 is named
            values.append(2 * hits / total if total else 1.0)
    assert min(expected[0.25]) < 1.0  # some targets are missed
    assert result["overall"]["F1@0.25"] == pytest.approx(np.mean(expected[0.25]))
    assert result["overall"]["F1@0.5"] == pytest.approx(np.mean(expected[0.5]))
    assert result["groups"]["zt_wo_d"]["F1@0.25"] == 1.0 and result["overall"]["count"] == len(dataset)


def test_reference_captions_score_m_at_iou_only_where_the_asked_proposal_covers_the_object(
    data_root: Path, tmp_path
) -> None:
    dataset, _ = build_benchmark_dataset("scan2cap", data_root)
    result = score_scan2cap(dataset, reference_store(dataset, tmp_path), SIMPLE)
    ious = np.array([meta["proposal_iou"] for meta in metas(dataset)])
    assert (ious < 0.25).any() and (ious >= 0.5).any()
    per_sample = result["per_sample"]
    assert [per_sample[i]["proposal"] for i in dataset.sample_ids()] == [m["proposal_id"] for m in metas(dataset)]
    np.testing.assert_allclose([per_sample[i]["IoU"] for i in dataset.sample_ids()], ious)
    overall, released = result["overall"], result["groups"][RELEASED_CODE]
    for k in ("0.25", "0.5"):
        hits = int((ious >= float(k)).sum())
        assert overall[f"hits@{k}"] == released[f"hits@{k}"] == hits
        # every caption is one of its references: ROUGE-L 1 per object hit, 0 per object missed
        assert overall[f"ROUGE-L@{k}"] == pytest.approx(hits / len(dataset))
        assert released[f"ROUGE-L@{k}"] > overall[f"ROUGE-L@{k}"]  # "sos eos" earns some ROUGE-L
    assert overall["METEOR@0.25"] == "not run" and overall["count"] == len(dataset)


@pytest.mark.parametrize("benchmark, score", [("scanqa", score_scanqa), ("sqa3d", score_sqa3d)])
def test_reference_answers_match_exactly(benchmark: str, score, data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset(benchmark, data_root)
    result = score(dataset, reference_store(dataset, tmp_path), SIMPLE)
    assert result["overall"]["EM"] == result["overall"]["EM-refined"] == result["overall"]["EM-raw"] == 1.0
    assert result["overall"]["count"] == len(dataset)
    if benchmark == "scanqa":
        assert result["overall"]["ROUGE-L"] == pytest.approx(1.0) and result["overall"]["CIDEr"] > 0
    else:
        types = [meta["question_type"] for meta in metas(dataset)]
        assert {name: row["count"] for name, row in result["groups"].items() if row["count"]} == {
            name: types.count(name) for name in set(types)
        }


# ---- wrong answers -------------------------------------------------------------------------------


def test_wrong_ids_out_of_range_ids_and_no_object_answers_score_as_counted_by_hand(data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset("scanrefer", data_root)
    rows = metas(dataset)
    hit = next(i for i, meta in enumerate(rows) if meta["target_ious"][0] >= 0.5)
    answers = []
    for index, meta in enumerate(rows):
        proposals = sample_metadata(dataset, index)[2]
        far = int(np.argmin(box_iou_3d(np.asarray(meta["gt_boxes"], np.float64), proposals.astype(np.float64))[0]))
        wrong, right = format_object_id(far), meta["target_proposals"][0]
        both = f"{wrong} and {format_object_id(right)}." if right >= 0 else f"{wrong}."
        pattern = [f"{wrong}.", "<OBJ999>.", NO_OBJECT_ANSWER, both]
        answers.append(meta["answer"] if index == hit else pattern[index % 4])
    result = score_scanrefer(dataset, write_answers(tmp_path, dataset.sample_ids(), answers))
    overall = result["overall"]
    assert overall["Acc@0.25"] == overall["Acc@0.5"] == pytest.approx(1 / len(dataset))  # only the reference hits
    assert overall["out_of_range"] == sum(a == "<OBJ999>." for a in answers)
    assert overall["no_prediction"] == sum(a in ("<OBJ999>.", NO_OBJECT_ANSWER) for a in answers)
    assert overall["several_ids"] == sum(" and " in a for a in answers)  # the first id named is the box
    assert result["per_sample"][dataset.sample_ids()[1 if hit != 1 else 5]]["out_of_range"] == [999]


def test_multi3drefer_no_object_answers_score_only_the_zero_target_descriptions(data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset("multi3drefer", data_root)
    rows = metas(dataset)
    zero = [i for i, meta in enumerate(rows) if meta["eval_type"].startswith("zt")]
    answers = [NO_OBJECT_ANSWER] * len(dataset)
    answers[zero[0]] = f"{format_object_id(0)}."  # a box where there is none: F1 0
    result = score_multi3drefer(dataset, write_answers(tmp_path, dataset.sample_ids(), answers))
    assert result["overall"]["F1@0.25"] == pytest.approx((len(zero) - 1) / len(dataset))
    assert result["groups"]["mt"]["F1@0.5"] == 0.0


def test_wrong_answers_match_as_counted_by_hand(data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset("scanqa", data_root)
    references = [meta["answer"] for meta in metas(dataset)]
    answers = [f"The {references[0].upper()}.", references[1]] + ["xyzzy"] * (len(dataset) - 2)
    result = score_scanqa(dataset, write_answers(tmp_path / "scanqa", dataset.sample_ids(), answers), SIMPLE)
    n = len(dataset)
    assert (result["overall"]["EM"], result["overall"]["EM-raw"]) == (pytest.approx(2 / n), pytest.approx(1 / n))
    assert result["per_sample"][dataset.sample_ids()[0]] == {
        "EM": True,
        "EM-refined": True,
        "EM-raw": False,
        "category": metas(dataset)[0]["question_type"],
    }
    dataset, _ = build_benchmark_dataset("sqa3d", data_root)
    rows = metas(dataset)
    answers = [meta["answer"] if i % 2 == 0 else "xyzzy" for i, meta in enumerate(rows)]
    result = score_sqa3d(dataset, write_answers(tmp_path / "sqa3d", dataset.sample_ids(), answers))
    for name in {meta["question_type"] for meta in rows}:
        members = [i for i, meta in enumerate(rows) if meta["question_type"] == name]
        assert result["groups"][name]["EM"] == pytest.approx(np.mean([i % 2 == 0 for i in members]))
    assert result["overall"]["EM"] == pytest.approx(np.mean([i % 2 == 0 for i in range(len(rows))]))


def test_an_incomplete_scene_store_is_refused_naming_the_missing(data_root: Path, tmp_path) -> None:
    dataset, _ = build_benchmark_dataset("scan2cap", data_root)
    store = write_answers(tmp_path, dataset.sample_ids()[1:], ["a chair."] * (len(dataset) - 1))
    with pytest.raises(IncompletePredictions, match=dataset.sample_ids()[0]):
        score_scan2cap(dataset, store)


# ---- the runner with the tiny model ----------------------------------------------------------------


@pytest.mark.parametrize("benchmark", ["scanrefer", "scanqa"])
def test_run_inference_and_run_eval_score_the_tiny_model_and_the_blind_baseline(
    benchmark: str, data_root: Path, tmp_path: Path, capsys
) -> None:
    dataset, _ = build_benchmark_dataset(benchmark, data_root)
    common = ["--benchmark", benchmark, "--data-root", str(data_root)]
    for predictor in ("unigr", "blind"):
        out = tmp_path / predictor
        summary = run_inference.main(
            [*common, "--model", str(TINY_MODEL), "--out", str(out), "--predictor", predictor]
            + ["--max-new-tokens", "2", "--num-frames", "2"]
        )
        assert (summary.predicted, summary.failed) == (len(dataset), 0)
        assert not (out / "masks").exists()
        scored = run_eval.main([*common, "--pred", str(out)])
        assert scored["overall"]["count"] == len(dataset)
        table = capsys.readouterr().out
        assert all(column in table for column in BENCHMARKS[benchmark].columns)
        assert (out / f"metrics_{benchmark}_val.json").is_file()


# ---- the frames the model sees: training's ----------------------------------------------------------


def test_a_scene_dataset_sampling_frames_unlike_the_saved_strategy_is_refused(tmp_path: Path) -> None:
    generate_scene_benchmarks(tmp_path, "train", 1, seed=2, config=RoomConfig(height=48, width=64, num_frames=6))
    entry = {"loader": "scanrefer", "root": str(tmp_path), "split": "train", "weight": 1.0}
    entry["options"] = {"frame_sampling": "mc-ratio95"}
    data = {"num_frames": 3, "frame_sampling": "mc-ratio90", "samples_per_epoch": 3, "datasets": {"s": entry}}
    with pytest.raises(DataConfigError, match="differs from data.frame_sampling 'mc-ratio90'"):
        build_training_mixture(data, seed=0)


def test_evaluation_gives_the_model_the_frames_and_pixel_sizes_training_gives_it(tmp_path: Path) -> None:
    from evaluation.answer_predictor import UniGRAnswerPredictor
    from utils.data.collate import SampleCollator

    num_frames, sampling = 3, "mc-ratio90"  # no jitter in training (uniform's jitter would move the frames)
    generate_scene_benchmarks(tmp_path, "train", 1, seed=2, config=RoomConfig(height=48, width=64, num_frames=12))
    entry = {"loader": "scanrefer", "root": str(tmp_path), "split": "train", "weight": 1.0}
    data = {"num_frames": num_frames, "frame_sampling": sampling, "samples_per_epoch": 3}
    data["datasets"] = {"scanrefer_train": entry}
    mixture = build_training_mixture(data, seed=5)  # data.frame_sampling reaches the loader, as it is saved
    evaluated, _ = build_benchmark_dataset(
        "scanrefer", tmp_path, "train", num_frames=num_frames, frame_sampling=sampling
    )
    predictor = UniGRAnswerPredictor(TINY_MODEL, num_frames=num_frames, max_new_tokens=1)
    training_collator = SampleCollator.for_model(predictor.model, predictor.processor)
    for index in range(len(mixture)):
        trained = mixture[index]
        shown = evaluated[mixture.locate(index)[1]]
        assert shown.sample_id == trained.sample_id
        assert shown.meta["frame_indices"] == trained.meta["frame_indices"]
        assert len(trained.meta["frame_indices"]) == num_frames and trained.frame_names == shown.frame_names
        assert shown.conversation[0] == trained.conversation[0]
        inputs, seen = predictor.llm_inputs(shown)
        assert seen == list(range(num_frames))  # the predictor keeps every frame the loader chose
        batch = training_collator([trained])
        assert inputs["video_grid_thw"].tolist() == batch["video_grid_thw"].tolist()
        assert inputs["pixel_values_videos"].shape == batch["pixel_values_videos"].shape

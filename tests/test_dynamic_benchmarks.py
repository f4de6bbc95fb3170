"""DSR-Bench, VLM4D and 4D-Bench (QA and captioning): their loaders on released layouts, their scorers, the final-
answer parser, VLM4D's official table and the frames the LLM is shown.

VLM4D is read from its real question files (``shared/fixtures/annotations/vlm4d``); the other releases are
written tiny by :mod:`utils.synthetic.dynamic_bench_files`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluation import dynamic_scoring, run_eval, run_inference
from evaluation.benchmarks import BENCHMARKS, build_benchmark_dataset
from evaluation.judge import JudgeConfig
from evaluation.metrics import captions
from evaluation.prediction_store import IncompletePredictions, PredictionStore
from evaluation.runner import run_inference as run_loop
from evaluation.scoring import ScoreOptions
from evaluation.vlm4d import official_table
from tests.test_judge import KEY_ENV, JudgeServer, completion
from utils.data.dsr_bench import QUESTION_TYPES, answer_letters, lettered_options, question_type
from utils.synthetic.dynamic_bench_files import write_dsr_bench, write_fourd_bench
from utils.video.sampling import uniform_indices

ROOT = Path(__file__).resolve().parents[1]
VLM4D_FIXTURES = ROOT.parent / "shared" / "fixtures" / "annotations" / "vlm4d"
DYNAMIC = ("dsr_bench", "vlm4d", "fourd_bench_qa", "fourd_bench_caption")

ABS = "Between 1.0s and 4.0s, from the perspective of the man at 2.0s, "
REL = "Between 1.0s and 4.0s, following the perspective of the man, "
DSR_ROWS = [
    {
        "videoID": "clip_a",
        "question": ABS + "how does the distance between the dog and the car change?",
        "options": ["A. Become larger.", "B. Become smaller.", "C. Keep nearly constant.", "D. Larger, then smaller."],
        "answer": "B",
        "task_type": "abs_dis",
    },
    {
        "videoID": "clip_a",
        "question": REL + "compare the speed between the dog and the car.",
        "options": [
            "The former is faster.",
            "The latter is faster.",
            "Nearly the same.",
            "The former, then the latter.",
        ],
        "answer": "(C)",
        "task_type": "rel_spd_comp",
    },
    {
        "videoID": "clip_b.mp4",
        "question": "Which object ends up closest to the camera?",
        "options": ["(A) the dog", "(B) the car", "(C) the man", "(D) the ball"],
        "answer": "the ball",
        "task_type": "",
    },
]


class TablePredictor:
    """Answers from a table by sample id."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def predict(self, sample):
        return None, self.answers[sample.sample_id]


class OraclePredictor:
    def predict(self, sample):
        return None, sample.meta["answer"]


def stored(root: Path, replies: dict[str, str], writer: str = "rank0") -> PredictionStore:
    """A store holding ``replies`` by sample id (``writer``'s records win over earlier ranks'), no video read."""
    store = PredictionStore(root, writer)
    for sample_id, reply in replies.items():
        store.write(sample_id, [], None, {"answer": reply})
    return store


@pytest.fixture(autouse=True)
def without_meteor(monkeypatch):
    """METEOR's jar takes ~10 s to start; test_qa_metrics.py covers it."""
    monkeypatch.setattr(captions, "java_available", lambda: False)


@pytest.fixture(scope="module")
def dsr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dsr")
    write_dsr_bench(root, DSR_ROWS, num_frames=40, type_column="task_type")
    return root


@pytest.fixture(scope="module")
def vlm4d_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VLM4D's real question files, without their videos (scoring reads none)."""
    if not VLM4D_FIXTURES.is_dir():
        pytest.skip(f"no VLM4D fixtures at {VLM4D_FIXTURES}")
    root = tmp_path_factory.mktemp("vlm4d")
    for name in ("real_mc.json", "synthetic_mc.json"):
        shutil.copy(VLM4D_FIXTURES / name, root / name)
    return root


FOURD_QUESTIONS = {
    "obj1_0": {
        "Question": "What does the robot do with its arm?",
        "Choices": ["(A) Waves it", "(B) Lifts a box", "(C) Nothing", "(D) Points down"],
        "Answer index": 2,
        "Category": "Action",
    },
    "obj1_1": {
        "Question": "How many legs does the robot have?",
        "A": "one",
        "B": "two",
        "C": "three",
        "D": "four",
        "Answer index": 4,
        "Category": "Counting",
    },
    "obj2_0": {
        "Question": "Which way does the fish swim?",
        "Choice A": "left",
        "Choice B": "right",
        "Choice C": "up",
        "Choice D": "down",
        "Answer index": 1,
        "Category": "Action",
    },
}
FOURD_CAPTIONS = {
    "obj1": [f"A silver robot lifts a box with its arm, take {i}." for i in range(5)],
    "obj2": [f"A small orange fish swims to the left, take {i}." for i in range(5)],
}


@pytest.fixture(scope="module")
def fourd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fourd_bench(tmp_path_factory.mktemp("fourd"), FOURD_QUESTIONS, FOURD_CAPTIONS)


# ---- the final-answer parser -------------------------------------------------------------------------------

OPTIONS = ["(A) left", "(B) right", "(C) not moving", "(D) moving"]


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("A is wrong because the car moves right, so the answer is C", "C"),
        ("(A) would mean left, but the car goes right. Final answer: (B)", "B"),
        ("Option A looks plausible. After watching again, the correct option is D.", "D"),
        ("**Answer:** B", "B"),
        ("Answer: I think the answer is B", "B"),
        ("Not A. B is correct.", "B"),
        ("(C)", "C"),
        ("c.", "C"),
        ("right", "B"),
        ("The car is not moving at all.", "C"),
        ("The car keeps moving toward the right.", None),  # two options named, no answer stated
        ("The answer is E.", None),  # not an option
        ("I cannot tell from these frames.", None),
    ],
)
def test_final_choice_takes_the_answer_a_reply_ends_with_not_its_first_letter(reply: str, letter: str | None) -> None:
    assert dynamic_scoring.final_choice(reply, OPTIONS) == letter


# ---- DSR-Bench ---------------------------------------------------------------------------------------------

TEMPLATE_QUESTIONS = {
    "rel_dis": REL + "how does the distance between the dog and the car change?",
    "rel_dir": REL + "how does the direction of the dog to the car change?",
    "rel_ori": REL + "how does the orientation of the dog change?",
    "rel_spd": REL + "how does the speed of the dog change?",
    "rel_spd_comp": REL + "compare the speed between the dog and the car.",
    "rel_dir_pred": "Following the perspective of the man, predict the moving direction of the dog",
    "abs_dis": ABS + "how does the distance between the dog and the car change?",
    "abs_dir": ABS + "how does the direction of the dog to the car change?",
    "abs_ori": ABS + "how does the orientation of the dog change?",
    "abs_spd": ABS + "how does the speed of the dog change?",
    "abs_spd_comp": ABS + "compare the speed between the dog and the car.",
    "abs_dir_pred": "From the perspective of the man at 3.5s, predict the moving direction of the dog",
    "non_temp": "Which object ends up closest to the camera?",
}


@pytest.mark.parametrize("expected", QUESTION_TYPES)
def test_dsr_question_types_are_derived_from_the_template_wording(expected: str) -> None:
    assert question_type(TEMPLATE_QUESTIONS[expected]) == expected


def test_dsr_options_and_answers_are_read_in_every_released_form() -> None:
    lettered = ["(A) up", "(B) down"]
    for form in (
        ["up", "down"],
        ["A. up", "B. down"],
        '["A) up", "B) down"]',
        "A: up\nB: down",
        {"A": "up", "B": "down"},
    ):
        assert lettered_options(form, "row") == lettered
    assert lettered_options(np.array(["up", "down"], dtype=object), "row") == lettered
    for answer in ("B", "(B)", "b.", "B. down", "down"):
        assert answer_letters(answer, lettered, "row") == ["B"]
    with pytest.raises(ValueError, match="row 7"):
        answer_letters("sideways", lettered, "row 7")
    with pytest.raises(ValueError, match="expected 'B'"):
        lettered_options(["A. up", "C. down"], "row")


def test_dsr_bench_shows_32_uniform_frames_by_default_with_its_options_and_question_types(dsr_root: Path) -> None:
    dataset, split = build_benchmark_dataset("dsr_bench", dsr_root)
    assert split == "test" and len(dataset) == 3
    sample = dataset[0]
    assert sample.frames.shape == (32, 32, 48, 3) and sample.medium == "video"
    assert sample.meta["frame_indices"] == uniform_indices(40, 32)
    assert np.allclose(sample.timestamps, np.array(uniform_indices(40, 32)) / 10.0, atol=1e-3)
    assert sample.meta["options"][1] == "(B) Become smaller." and sample.meta["answer"] == "(B) Become smaller."
    assert (
        sample.conversation[1]["content"] == "(B) Become smaller." and "(D) Larger" in sample.conversation[0]["content"]
    )
    metas = [dataset.sample_meta(i) for i in range(3)]
    assert [m["category"] for m in metas] == ["abs_dis", "rel_spd_comp", "non_temp"]
    assert [m["category_source"] for m in metas] == ["column:task_type", "column:task_type", "wording"]
    assert metas[2]["answer"] == "(D) the ball" and dataset[2].frames.shape[0] == 32  # videoID with its suffix
    benchmark = BENCHMARKS["dsr_bench"]
    assert (benchmark.num_frames, benchmark.frames_by_loader, benchmark.predicts) == (32, True, "text")


def test_dsr_question_types_come_from_the_wording_when_the_parquet_has_no_type_column(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "task_type"} for row in DSR_ROWS]
    write_dsr_bench(tmp_path, rows, num_frames=4)
    dataset, _ = build_benchmark_dataset("dsr_bench", tmp_path)
    metas = [dataset.sample_meta(i) for i in range(len(dataset))]
    assert [(m["category"], m["category_source"]) for m in metas] == [
        ("abs_dis", "wording"),
        ("rel_spd_comp", "wording"),
        ("non_temp", "wording"),
    ]


def test_a_missing_dsr_video_is_an_error_naming_the_sample(dsr_root: Path, tmp_path: Path) -> None:
    shutil.copy(dsr_root / "benchmark.parquet", tmp_path / "benchmark.parquet")
    dataset, _ = build_benchmark_dataset("dsr_bench", tmp_path)
    assert dataset.sample_meta(0)["answer"] == "(B) Become smaller."  # scoring needs no video
    with pytest.raises(FileNotFoundError, match=r"dsr_bench/test/1: missing video .*clip_a"):
        dataset[1]


def test_dsr_bench_is_scored_overall_and_per_question_type_through_run_eval(dsr_root: Path, tmp_path: Path) -> None:
    dataset, _ = build_benchmark_dataset("dsr_bench", dsr_root)
    ids = dataset.sample_ids()
    run_loop(
        dataset,
        TablePredictor(dict(zip(ids, ["B", "(A) is wrong; the answer is (C).", "?"]))),
        PredictionStore(tmp_path),
    )
    metrics = run_eval.main(["--benchmark", "dsr_bench", "--data-root", str(dsr_root), "--pred", str(tmp_path)])
    assert metrics["overall"]["accuracy"] == pytest.approx(2 / 3) and metrics["overall"]["unparsed"] == 1
    assert {name: row["accuracy"] for name, row in metrics["groups"].items()} == {
        "abs_dis": 1.0,
        "non_temp": 0.0,
        "rel_spd_comp": 1.0,
    }
    assert json.loads((tmp_path / "metrics_dsr_bench_test.json").read_text())["per_sample"][ids[1]]["predicted"] == "C"


class FramesRecorder:
    """Stands in for the answer predictor: records the frame count asked for and the frames of each sample."""

    instances: list = []

    def __init__(self, model_dir, num_frames=None, *args, **kwargs):
        self.num_frames, self.seen = num_frames, []
        FramesRecorder.instances.append(self)

    def predict(self, sample):
        self.seen.append(len(sample.frames))
        return None, "(A)"


@pytest.mark.parametrize("extra, frames", [([], 32), (["--num-frames", "4"], 4)], ids=["default", "--num-frames"])
def test_run_inference_shows_the_llm_the_benchmarks_32_frames_unless_told_otherwise(
    extra: list[str], frames: int, dsr_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from evaluation import answer_predictor
    from model.configuration_unigr import UniGRConfig

    class SavedConfig:
        inputs = {"num_frames": 8, "frame_sampling": "uniform"}  # what the model was trained with

    monkeypatch.setattr(UniGRConfig, "from_pretrained", classmethod(lambda cls, path: SavedConfig()))
    monkeypatch.setattr(answer_predictor, "UniGRAnswerPredictor", FramesRecorder)
    FramesRecorder.instances = []
    argv = ["--benchmark", "dsr_bench", "--data-root", str(dsr_root), "--out", str(tmp_path), "--model", "m"]
    summary = run_inference.main([*argv, "--device", "cpu", *extra])
    (predictor,) = FramesRecorder.instances
    assert summary.predicted == 3 and predictor.num_frames == frames and predictor.seen == [frames] * 3


# ---- VLM4D -------------------------------------------------------------------------------------------------


def vlm4d_dataset(root: Path, split: str = "all"):
    return build_benchmark_dataset("vlm4d", root, split)[0]


def test_vlm4d_questions_load_with_text_and_integer_answers_as_letters_and_the_official_splits(
    vlm4d_root: Path,
) -> None:
    dataset = vlm4d_dataset(vlm4d_root)
    metas = {sample_id: dataset.sample_meta(i) for i, sample_id in enumerate(dataset.sample_ids())}
    assert len(metas) == 1371 + 445
    counts = {}
    for meta in metas.values():
        counts[meta["category"]] = counts.get(meta["category"], 0) + 1
    assert counts == {"real/exo": 922, "real/ego": 449, "synthetic/directional": 400, "synthetic/false_premise": 45}
    first = metas["vlm4d/real/validation_1"]
    assert first["answer"] == "(B) there are no buses in the video" and first["source"] == "real"
    numeric = next(m for m in metas.values() if m["answer_text"].isdigit())
    assert numeric["answer"] == f"({numeric['answer_letters'][0]}) {numeric['answer_text']}"
    assert metas["vlm4d/real/validation_633"]["answer_letters"] == ["C", "D"]  # the answer text under two letters
    assert metas["vlm4d/synthetic/validation_2"]["category"] == "synthetic/false_premise"  # "no car there"
    not_moving = [m for m in metas.values() if m["source"] == "synthetic" and m["answer_text"] == "not moving"]
    assert not_moving and {m["category"] for m in not_moving} == {"synthetic/directional"}
    assert len(vlm4d_dataset(vlm4d_root, "synthetic")) == 445
    with pytest.raises(FileNotFoundError, match=r"vlm4d/real/validation_1: missing video .*videos_real/davis/"):
        dataset[0]


def vlm4d_replies(dataset) -> dict[str, str]:
    """The right option's text as the reply (the fourth ego question: a wrong letter; the first exo one: no answer)."""
    replies = {sid: dataset.sample_meta(i)["answer_text"] for i, sid in enumerate(dataset.sample_ids())}
    ego = [sid for i, sid in enumerate(dataset.sample_ids()) if dataset.sample_meta(i)["category"] == "real/ego"]
    wrong = next(
        letter
        for letter in "ABCD"
        if letter not in dataset.sample_meta(dataset.sample_ids().index(ego[3]))["answer_letters"]
    )
    replies[ego[3]] = f"The answer is {wrong}."
    replies["vlm4d/real/validation_1"] = "Hard to say; it could be either."
    return replies


@pytest.fixture(scope="module")
def vlm4d_store(vlm4d_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A store of :func:`vlm4d_replies` for every question but the last: ``(folder, last id, its reply)``."""
    replies = vlm4d_replies(vlm4d_dataset(vlm4d_root))
    last = list(replies)[-1]
    folder = tmp_path_factory.mktemp("vlm4d_store")
    stored(folder, {sample_id: reply for sample_id, reply in replies.items() if sample_id != last})
    return folder, last, replies[last]


def copied(store: tuple[Path, str, str], folder: Path, complete: bool = True) -> Path:
    """A copy of the module's VLM4D store in ``folder``, with the last question's reply when ``complete``."""
    base, last, reply = store
    shutil.copytree(base, folder)
    if complete:
        stored(folder, {last: reply}, writer="rank1")
    return folder


def test_vlm4d_is_scored_per_official_split_and_unread_replies_count_without_a_judge(
    vlm4d_root: Path, vlm4d_store: tuple, tmp_path: Path
) -> None:
    dataset = vlm4d_dataset(vlm4d_root)
    metrics = dynamic_scoring.score_vlm4d(dataset, PredictionStore(copied(vlm4d_store, tmp_path / "pred")))
    groups = metrics["groups"]
    assert groups["real/ego"]["accuracy"] == pytest.approx(448 / 449)
    assert groups["real/exo"]["accuracy"] == pytest.approx(921 / 922) and groups["real/exo"]["unparsed"] == 1
    assert groups["real"]["count"] == 1371 and groups["real"]["correct"] == 1369
    assert groups["synthetic"]["accuracy"] == 1.0 and groups["synthetic/false_premise"]["count"] == 45
    overall = metrics["overall"]
    assert overall["count"] == 1816 and overall["correct"] == 1814 and overall["unparsed"] == 1
    assert overall["judged"] == "not run" and "judge" in metrics["not_run"]
    assert metrics["per_sample"]["vlm4d/real/validation_633"]["correct"]  # either of its two letters


def test_vlm4d_judge_reads_only_the_replies_the_rules_cannot(
    vlm4d_root: Path, vlm4d_store: tuple, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "key")
    dataset = vlm4d_dataset(vlm4d_root, "real")
    folder = copied(vlm4d_store, tmp_path / "pred", complete=False)  # the last question is synthetic
    reply = "Hard to say; the buses are not visible at all, I would go with that."
    store = stored(folder, {"vlm4d/real/validation_1": reply}, writer="rank1")
    with JudgeServer(lambda body, call: completion('{"choice": "B"}')) as server:
        config = JudgeConfig(server.base_url, "judge", api_key_env=KEY_ENV, cache_dir=tmp_path / "cache", backoff=0.0)
        metrics = dynamic_scoring.score_vlm4d(dataset, store, ScoreOptions(judge=config))
        assert len(server.requests) == 1
        asked = server.requests[0]["body"]["messages"][1]["content"]
    assert "buses are not visible" in asked and "(B) there are no buses in the video" in asked
    assert metrics["per_sample"]["vlm4d/real/validation_1"] == {
        "predicted": "B",
        "answer": ["B"],
        "correct": True,
        "category": "real/exo",
        "read_by": "judge",
    }
    assert metrics["overall"]["judged"] == 1 and metrics["overall"]["unparsed"] == 0
    assert metrics["overall"]["correct"] == 1370 and metrics["judge"]["requests"] == 1  # one wrong letter remains


def test_run_eval_prints_the_vlm4d_table_and_refuses_an_incomplete_store(
    vlm4d_root: Path, vlm4d_store: tuple, tmp_path: Path, capsys
) -> None:
    folder = copied(vlm4d_store, tmp_path / "pred", complete=False)
    argv = ["--benchmark", "vlm4d", "--data-root", str(vlm4d_root), "--pred", str(folder)]
    with pytest.raises(IncompletePredictions, match="vlm4d/synthetic/validation_445"):
        run_eval.main(argv)
    _, last, reply = vlm4d_store
    stored(folder, {last: reply}, writer="rank1")
    result = run_eval.main(argv)
    table = capsys.readouterr().out
    assert result["split"] == "all" and result["overall"]["count"] == 1816
    for row in ("real/ego", "real/exo", "synthetic/false_premise", "real", "synthetic", "overall", "not run"):
        assert row in table


def judged(ids: list[int], correct: list[bool], answers: list[str] | None = None) -> list[dict]:
    """Judged questions as VLM4D's acc_evaluation.py writes them (only the keys its statistics read, and some)."""
    rows = [{"id": f"validation_{i}", "correct": c, "response": "..."} for i, c in zip(ids, correct)]
    for row, answer in zip(rows, answers or ["left"] * len(rows)):
        row["ground_truth_answer"] = answer
    return rows


def test_the_official_vlm4d_table_is_read_from_vlm4ds_own_judged_files(tmp_path: Path, capsys) -> None:
    real, synthetic = tmp_path / "real_mc_cot", tmp_path / "synthetic_mc_cot"
    real.mkdir(), synthetic.mkdir()
    (real / "model_a.json").write_text(json.dumps(judged([1, 2, 922, 923, 1371], [True, False, True, True, 0])))
    answers = ["left", "no car there", "not moving", "No"]
    (synthetic / "model_a.json").write_text(json.dumps(judged([1, 2, 3, 4], [1, True, False, False], answers)))
    (real / "model_b.json").write_text(json.dumps(judged([5], [True])))
    (synthetic / "model_b.json").write_text(json.dumps(judged([1], [False], ["no dog there"])))
    (real / "only_real.json").write_text(json.dumps(judged([5], [True])))
    table = official_table.main([str(real), str(synthetic), "--csv", str(tmp_path / "table.csv")])
    assert list(table) == ["model_a.json", "model_b.json"]
    assert list(table["model_a.json"].values()) == [50.0, 66.67, 60.0, 50.0, 50.0, 50.0, 55.56]
    assert list(table["model_b.json"].values()) == [0.0, 100.0, 100.0, 0.0, 0.0, 0.0, 50.0]  # empty groups read 0
    assert "66.67" in capsys.readouterr().out
    lines = (tmp_path / "table.csv").read_text().splitlines()
    assert lines[0].startswith("Model (JSON File),Real Ego-centric Accuracy (%)") and lines[1].endswith(",55.56")


# ---- 4D-Bench ----------------------------------------------------------------------------------------------


def test_fourd_bench_qa_shows_six_frames_of_three_views_and_scores_the_final_answer_per_category(
    fourd_root: Path, tmp_path: Path
) -> None:
    dataset, split = build_benchmark_dataset("fourd_bench_qa", fourd_root)
    assert split == "test" and dataset.sample_ids() == [f"fourd_bench_qa/test/{k}" for k in FOURD_QUESTIONS]
    sample = dataset[0]
    assert sample.medium == "image" and sample.frames.shape == (18, 32, 48, 3)
    assert sample.frame_names[:2] == ["view1_00001", "view1_00003"] and sample.frame_names[-1].startswith("view16_")
    assert sample.meta["answer"] == "(B) Lifts a box" and "(D) Points down" in sample.conversation[0]["content"]
    assert [dataset.sample_meta(i)["answer"] for i in (1, 2)] == ["(D) four", "(A) left"]
    replies = ["A is wrong because it lifts something, so the answer is B", "(A) one? No: (D)", "(B)"]
    run_loop(dataset, TablePredictor(dict(zip(dataset.sample_ids(), replies))), PredictionStore(tmp_path))
    metrics = run_eval.main(["--benchmark", "fourd_bench_qa", "--data-root", str(fourd_root), "--pred", str(tmp_path)])
    assert metrics["groups"]["Action"]["accuracy"] == 0.5 and metrics["groups"]["Counting"]["unparsed"] == 1
    assert metrics["overall"]["accuracy"] == pytest.approx(1 / 3)


def test_fourd_bench_captions_are_scored_against_five_references_after_the_caption_prefix(
    fourd_root: Path, tmp_path: Path
) -> None:
    dataset, _ = build_benchmark_dataset("fourd_bench_caption", fourd_root)
    assert [dataset.sample_meta(i)["references"] for i in range(2)] == list(FOURD_CAPTIONS.values())
    assert dataset[1].frames.shape == (18, 32, 48, 3)
    replies = {
        "fourd_bench_caption/test/obj1": "Sure. Caption: " + FOURD_CAPTIONS["obj1"][2],
        "fourd_bench_caption/test/obj2": FOURD_CAPTIONS["obj2"][0],
    }
    stored(tmp_path, replies)
    metrics = run_eval.main(
        ["--benchmark", "fourd_bench_caption", "--data-root", str(fourd_root), "--pred", str(tmp_path)]
    )
    overall = metrics["overall"]
    assert overall["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and overall["count"] == 2 and overall["empty"] == 0
    assert overall["METEOR"] == "not run" and overall["CIDEr"] > 0
    assert dynamic_scoring.strip_caption_prefix("CAPTION: A fish.") == "A fish."


def test_fourd_bench_qa_without_choices_is_an_error_naming_the_question(tmp_path: Path) -> None:
    questions = {"obj9_0": {"Question": "What?", "Answer index": 1, "Category": "Action"}}
    write_fourd_bench(tmp_path, questions, {}, views=(1,), num_frames=2)
    with pytest.raises(ValueError, match="obj9_0.*no choices"):
        build_benchmark_dataset("fourd_bench_qa", tmp_path)


# ---- registration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DYNAMIC)
def test_dynamic_benchmarks_are_text_benchmarks_with_their_run_scripts(name: str) -> None:
    assert BENCHMARKS[name].predicts == "text"
    for script in ("run_inference.sh", "run_eval.sh"):
        path = ROOT / "evaluation" / name / script
        assert os.access(path, os.X_OK) and f" {name} " in path.read_text()

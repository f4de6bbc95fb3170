"""Text benchmarks (VideoRefer-Bench-Q / -D, VideoInfer) through the runner, their scorers, and the QA predictors.

The datasets here are small lists of region-QA samples (the shared contract: ``<object{k}><region>``
in the question, ``Sample.regions``, ``meta["answer"]`` / ``"category"`` / ``"options"``), served by
a stand-in loader under each benchmark's loader name, so the tests do not depend on the real loaders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation import qa_scoring, run_eval, run_inference
from evaluation.benchmarks import BENCHMARKS, build_benchmark_dataset
from evaluation.judge import JudgeConfig
from evaluation.metrics import captions
from evaluation.prediction_store import IncompletePredictions, PredictionStore
from evaluation.runner import run_inference as run_loop
from evaluation.scoring import ScoreOptions
from evaluation.unigr_predictor import llm_view, region_anchor_frames
from tests.test_judge import KEY_ENV, SECRET, JudgeServer, completion
from utils.data.prompts import object_reference
from utils.data.registry import LOADERS, DatasetLoader
from utils.data.schema import RegionPrompt, Sample
from utils.synthetic.videoinfer_format import write_tiny_videoinfer
from utils.synthetic.videorefer_format import RegionQARecord, write_videorefer_bench_d, write_videorefer_bench_q
from utils.video.sampling import force_in

OPTIONS = ["(A) red", "(B) green", "(C) blue", "(D) yellow"]


class ListDataset:
    """A benchmark split held in memory: ``sample_ids()`` and items, as every loader answers them."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def sample_ids(self) -> list[str]:
        return [s.sample_id for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def region_sample(sample_id: str, question: str, answer: str, meta: dict, num_frames: int = 6, seed: int = 0):
    """A video with one object pointed at by a mask on frames 1 and 4, asked about as ``<object0><region>``."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (num_frames, 64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:30, 20:40] = True
    return Sample(
        sample_id=sample_id,
        frames=frames,
        frame_names=[f"{i:05d}" for i in range(num_frames)],
        conversation=[
            {"role": "user", "content": question.format(obj=object_reference(0))},
            {"role": "assistant", "content": answer},
        ],
        timestamps=np.arange(num_frames) * 0.5,
        regions=[RegionPrompt(frame=1, mask=mask, region=0), RegionPrompt(frame=4, mask=mask, region=0)],
        meta={"answer": answer, **meta},
    )


def choice_dataset() -> ListDataset:
    """Four multiple-choice questions in two categories; the answers are A, B, C, D."""
    samples = []
    for i, category in enumerate(["Basic Questions", "Basic Questions", "Sequential Questions", "Reasoning Questions"]):
        question = "What colour is {obj}?\n" + "\n".join(OPTIONS) + "\nAnswer with the option's letter."
        meta = {"category": category, "options": OPTIONS, "video": f"v{i}"}
        samples.append(region_sample(f"videorefer_bench_q/test/{i}", question, OPTIONS[i], meta, seed=i))
    return ListDataset(samples)


DESCRIPTIONS = ["A brown dog runs to the left.", "A man in a red coat waves.", "A white car turns right."]


def description_dataset() -> ListDataset:
    return ListDataset(
        [
            region_sample(f"videorefer_bench_d/test/{i}", "Describe {obj} in detail.", text, {"video": f"d{i}"})
            for i, text in enumerate(DESCRIPTIONS)
        ]
    )


OPEN_ANSWERS = ["The dog is chasing a ball.", "She is opening the door.", "Because the light turned red."]


def open_dataset() -> ListDataset:
    return ListDataset(
        [
            region_sample(f"videoinfer/test/v{i}/0/{i}", "What is {obj} doing?", text, {"category": "reasoning"})
            for i, text in enumerate(OPEN_ANSWERS)
        ]
    )


class TablePredictor:
    """Answers from a table by sample id; no masks."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def predict(self, sample: Sample) -> tuple[None, str]:
        return None, self.answers[sample.sample_id]


def predicted_store(dataset: ListDataset, answers: list[str], root: Path) -> PredictionStore:
    store = PredictionStore(root)
    summary = run_loop(dataset, TablePredictor(dict(zip(dataset.sample_ids(), answers))), store)
    assert summary.predicted == len(dataset) and summary.failed == 0
    return store


@pytest.fixture(autouse=True)
def without_meteor(monkeypatch):
    """METEOR's jar takes ~10 s to start; it is checked in test_qa_metrics.py, so these tests leave it out."""
    monkeypatch.setattr(captions, "java_available", lambda: False)


@pytest.fixture
def stand_in_loaders(monkeypatch):
    """Register in-memory splits under the benchmarks' loader names (restored after the test)."""

    def register(name: str, dataset: ListDataset) -> None:
        loader = DatasetLoader(name, "region_qa", lambda root, split, **options: dataset, lambda root, split: [])
        monkeypatch.setitem(LOADERS, name, loader)

    return register


# ---- runner and multiple choice ----------------------------------------------------------------


def test_text_predictions_are_stored_without_masks_and_scored_per_category(tmp_path: Path) -> None:
    dataset = choice_dataset()
    store = predicted_store(dataset, ["The answer is (A).", "c", "(C) blue", "I am not sure"], tmp_path)
    assert not (tmp_path / "masks").exists()
    assert [r["answer"] for r in store.records().values()][:2] == ["The answer is (A).", "c"]
    metrics = qa_scoring.score_choice(dataset, store)
    assert metrics["overall"]["accuracy"] == 0.5 and metrics["overall"]["unparsed"] == 1
    assert metrics["groups"]["Basic Questions"]["accuracy"] == 0.5
    assert metrics["groups"]["Reasoning Questions"] == {"accuracy": 0.0, "correct": 0, "unparsed": 1, "count": 1}
    assert metrics["per_sample"][dataset.sample_ids()[1]] == {
        "predicted": "C",
        "answer": "B",
        "correct": False,
        "category": "Basic Questions",
    }


@pytest.mark.parametrize(
    "scorer, make",
    [
        (qa_scoring.score_choice, choice_dataset),
        (qa_scoring.score_description, description_dataset),
        (qa_scoring.score_open_qa, open_dataset),
    ],
)
def test_an_incomplete_text_store_is_refused_naming_the_missing(scorer, make, tmp_path: Path) -> None:
    dataset = make()
    store = PredictionStore(tmp_path)
    for sample_id in dataset.sample_ids()[:-1]:
        store.write(sample_id, [], None, {"answer": "x"})
    options = ScoreOptions(judge=JudgeConfig("http://127.0.0.1:9/v1", "unused"))
    with pytest.raises(IncompletePredictions, match=dataset.sample_ids()[-1]):
        scorer(dataset, store, options)


def test_text_benchmarks_are_registered_as_text_benchmarks() -> None:
    for name, loader in [("videorefer_q", "videorefer_bench_q"), ("videorefer_d", "videorefer_bench_d")]:
        assert (BENCHMARKS[name].loader, BENCHMARKS[name].split, BENCHMARKS[name].predicts) == (loader, "test", "text")
    assert (BENCHMARKS["videoinfer"].loader, BENCHMARKS["videoinfer"].predicts) == ("videoinfer", "text")
    assert BENCHMARKS["mevis"].predicts == "masks"


# ---- judged scorers ----------------------------------------------------------------------------


def description_judge(body: dict, call: int):
    """5 on every dimension for a description equal to the reference, 1 otherwise; one garbage reply
    and one out-of-range score."""
    user = body["messages"][1]["content"]
    reference = user.split("Reference description: ")[1].split("\n")[0]
    predicted = user.split("Predicted description: ")[1]
    if predicted == "garbage":
        return completion("Nice description!")
    score = 5 if predicted == reference else 1
    scores = {name: score for name in qa_scoring.DESCRIPTION_DIMENSIONS}
    if predicted == "odd":
        scores["Hallucination Detection"] = 9
    return completion(json.dumps(scores))


def judge_options(server: JudgeServer, cache: Path) -> ScoreOptions:
    config = JudgeConfig(server.base_url, "judge-model", api_key_env=KEY_ENV, cache_dir=cache, backoff=0.0)
    return ScoreOptions(judge=config)


def test_descriptions_are_scored_per_dimension_by_the_judge_and_cached(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    dataset = description_dataset()
    store = predicted_store(dataset, [DESCRIPTIONS[0], "odd", "garbage"], tmp_path / "store")
    with JudgeServer(description_judge) as server:
        metrics = qa_scoring.score_description(dataset, store, judge_options(server, tmp_path / "cache"))
        assert len(server.requests) == 3
        again = qa_scoring.score_description(dataset, store, judge_options(server, tmp_path / "cache"))
        assert len(server.requests) == 3  # every judgment came from the cache
    overall = metrics["overall"]
    assert (overall["SC"], overall["AD"], overall["TD"]) == (3.0, 3.0, 3.0)  # (5 + 1) / 2
    assert overall["HD"] == 5.0  # the out-of-range 9 is left out, not clipped
    assert overall["average"] == pytest.approx((3 + 3 + 3 + 5) / 4)
    assert (overall["parse_failures"], overall["refusals"], overall["invalid_scores"], overall["count"]) == (1, 0, 1, 3)
    assert metrics["per_sample"][dataset.sample_ids()[2]]["judge"] == "parse_failure"
    assert metrics["judge"]["requests"] == 3 and again["judge"]["requests"] == 0 and again["overall"] == overall
    assert SECRET not in json.dumps(metrics)


def test_descriptions_cannot_be_scored_without_a_judge(tmp_path: Path) -> None:
    dataset = description_dataset()
    store = predicted_store(dataset, DESCRIPTIONS, tmp_path)
    with pytest.raises(qa_scoring.JudgeNotConfigured, match="--judge-base-url"):
        qa_scoring.score_description(dataset, store)


def test_open_answers_get_caption_metrics_and_judge_columns_not_run_without_a_judge(tmp_path: Path) -> None:
    dataset = open_dataset()
    store = predicted_store(dataset, OPEN_ANSWERS, tmp_path)
    metrics = qa_scoring.score_open_qa(dataset, store)
    overall = metrics["overall"]
    assert overall["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and overall["ROUGE-L"] == pytest.approx(1.0)
    assert overall["judge accuracy"] == overall["judge score"] == "not run"
    assert "judge" in metrics["not_run"] and metrics["tokenizer"] == "none"


def open_qa_judge(body: dict, call: int):
    """RGA3-style verdicts: yes/5 for the right answer, no/7 (clipped to 5) and "4.8" (read as 4) otherwise."""
    user = body["messages"][1]["content"]
    correct = user.split("Correct answer: ")[1].split("\n")[0]
    predicted = user.split("Predicted answer: ")[1].split("\n")[0]
    if predicted == correct:
        return completion('{"pred": "yes", "score": 5}')
    if predicted == "refuse":
        return completion(None, refusal="no")
    return completion('{"pred": "no", "score": 7}' if "ball" in predicted else '{"pred": "No.", "score": "4.8"}')


def test_open_answers_get_rga3_judge_accuracy_and_score(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    dataset = open_dataset()
    answers = ["A ball is being chased.", OPEN_ANSWERS[1], "The light."]
    store = predicted_store(dataset, answers, tmp_path / "store")
    with JudgeServer(open_qa_judge) as server:
        metrics = qa_scoring.score_open_qa(dataset, store, judge_options(server, tmp_path / "cache"))
    overall = metrics["overall"]
    assert overall["judge accuracy"] == pytest.approx(1 / 3)
    assert overall["judge score"] == pytest.approx((5 + 5 + 4) / 3)
    assert overall["parse_failures"] == overall["refusals"] == 0
    assert metrics["per_sample"][dataset.sample_ids()[2]]["judge_pred"] == "no"
    question = server.requests[0]["body"]["messages"][1]["content"]
    assert "What is <object0><region> doing?" in question and "JSON" in question


# ---- command line ------------------------------------------------------------------------------


def test_run_eval_scores_a_text_benchmark_with_the_judge_from_the_command_line(
    stand_in_loaders, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    dataset = open_dataset()
    stand_in_loaders("videoinfer", dataset)
    predicted_store(dataset, OPEN_ANSWERS, tmp_path / "pred")
    with JudgeServer(open_qa_judge) as server:
        monkeypatch.setenv("UNIGR_JUDGE_BASE_URL", server.base_url)  # the environment fallback
        argv = ["--benchmark", "videoinfer", "--data-root", str(tmp_path), "--pred", str(tmp_path / "pred")]
        result = run_eval.main([*argv, "--judge-model", "judge-model", "--judge-api-key-env", KEY_ENV])
        assert len(server.requests) == 3
    assert result["overall"]["judge accuracy"] == 1.0 and result["overall"]["judge score"] == 5.0
    assert any((tmp_path / "pred" / "judge_cache").rglob("*.json"))
    written = (tmp_path / "pred" / "metrics_videoinfer_test.json").read_text()
    assert json.loads(written)["overall"] == result["overall"] and SECRET not in written
    table = capsys.readouterr().out
    assert "judge score" in table and "5.00" in table and SECRET not in table  # 0-5 scores are not percentages
    monkeypatch.delenv("UNIGR_JUDGE_BASE_URL")
    no_judge = run_eval.main(argv)
    assert no_judge["overall"]["judge score"] == "not run" and "not run" in capsys.readouterr().out


def test_run_eval_refuses_half_a_judge(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("UNIGR_JUDGE_BASE_URL", raising=False)
    with pytest.raises(SystemExit):
        run_eval.parse_args(["--benchmark", "videoinfer", "--data-root", "x", "--pred", "y", "--judge-model", "m"])


@pytest.mark.parametrize(
    "benchmark, predictor",
    [("videorefer_q", "all_objects"), ("mevis", "blind")],
    ids=["masks-on-text", "text-on-masks"],
)
def test_a_predictor_of_the_wrong_output_kind_is_refused(benchmark: str, predictor: str) -> None:
    with pytest.raises(SystemExit):
        run_inference.parse_args(
            ["--benchmark", benchmark, "--data-root", "x", "--out", "y", "--predictor", predictor, "--model", "m"]
        )


# ---- frames the LLM sees -----------------------------------------------------------------------


def test_region_prompts_follow_their_frames_and_every_object_keeps_one() -> None:
    regions = [RegionPrompt(frame=5, box=np.array([0, 0, 4, 4.0]), region=0)]
    regions += [RegionPrompt(frame=f, box=np.array([0, 0, 4, 4.0]), region=1) for f in (2, 7)]
    assert region_anchor_frames(regions, [1, 4, 7]) == [5, 7]  # object 0 needs its frame 5; object 1 has 7 already
    assert force_in([1, 4, 7], [5, 7]) == [1, 5, 7]  # 5 replaces its nearest free frame
    sample = region_sample("s", "What is {obj}?", "x", {}, num_frames=8)
    sample.regions = regions
    view = llm_view(sample, [1, 5, 7])
    assert [(p.frame, p.region) for p in view.regions] == [(1, 0), (2, 1)]
    assert view.frame_names == ["00001", "00005", "00007"] and view.timestamps.tolist() == [0.5, 2.5, 3.5]


# ---- the predictors with a tiny model ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, processor = tiny_model
    folder = tmp_path_factory.mktemp("tiny_unigr")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def region_model_dir(tiny_parts: dict[str, Path], tiny_cfg: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the region encoder (``<region>`` is a placeholder token filled from the prompts)."""
    from model.builder import add_encoders, build_unigr

    model, processor = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"])
    add_encoders(model, processor, {"region": {}})
    folder = tmp_path_factory.mktemp("tiny_unigr_region")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_the_answer_predictor_sees_frames_and_regions_and_returns_text(region_model_dir: Path) -> None:
    from evaluation.answer_predictor import UniGRAnswerPredictor

    predictor = UniGRAnswerPredictor(region_model_dir, num_frames=2, max_new_tokens=3)
    sample = choice_dataset()[0]
    inputs, indices = predictor.llm_inputs(sample)
    assert len(indices) == 2 and {1, 4} & set(indices)  # a prompted frame is among those seen
    assert "pixel_values_videos" in inputs and "sam_frames" not in inputs
    prompts = inputs["region_prompts"][0]  # the collator's region step, re-indexed onto the frames seen
    assert prompts["frames"].tolist() == [indices.index(f) for f in (1, 4) if f in indices]
    video_token = predictor.model.config.backbone_config.video_token_id
    assert (inputs["input_ids"] == video_token).any()
    masks, text = predictor.predict(sample)
    assert masks is None and isinstance(text, str) and "<|im_end|>" not in text


def test_the_blind_predictor_prompt_has_no_visual_tokens(region_model_dir: Path) -> None:
    from baselines.blind import BlindPredictor

    predictor = BlindPredictor(region_model_dir, max_new_tokens=3)
    sample = choice_dataset()[0]
    inputs, indices = predictor.llm_inputs(sample)
    config = predictor.model.config.backbone_config
    visual = {config.video_token_id, config.image_token_id, config.vision_start_token_id}
    assert indices == [] and not set(inputs["input_ids"][0].tolist()) & visual
    assert not {"pixel_values", "pixel_values_videos", "region_prompts", "sam_frames"} & set(inputs)
    prompt = predictor.tokenizer.decode(inputs["input_ids"][0])
    assert "What colour is <object0><region>?" in prompt and "(D) yellow" in prompt
    masks, text = predictor.predict(sample)
    assert masks is None and isinstance(text, str)


# ---- the released layouts, through the real loaders ----------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny VideoRefer-Bench-Q / -D and VideoInfer test splits, written in their released layouts."""
    root = tmp_path_factory.mktemp("released")
    frames = np.full((6, 32, 48, 3), 40, np.uint8)
    red = np.zeros((6, 32, 48), bool)
    for t in range(6):
        red[t, 8:16, 4 + 6 * t : 12 + 6 * t] = True
    frames[red] = (220, 30, 30)
    names = [f"{t:05d}" for t in range(6)]
    questions = [
        ("What colour is <object0><region>?", ["(A) Red", "(B) Blue"], "(A) Red", "Basic Questions"),
        ("Which way does <object0><region> move?", ["(A) Left", "(B) Right"], "(B) Right", "Sequential Questions"),
    ]
    records = [
        RegionQARecord("DAVIS/JPEGImages/480p/shapes", frames, names, [{1: red[1], 4: red[4]}], q, o, a, c, i)
        for i, (q, o, a, c) in enumerate(questions)
    ]
    write_videorefer_bench_q(root / "videorefer_q", records)
    description = RegionQARecord("clip.mp4", frames, names, [{0: red[0], 3: red[3]}], "", None, DESCRIPTIONS[0], "", 0)
    write_videorefer_bench_d(root / "videorefer_d", [description])
    write_tiny_videoinfer(root / "videoinfer", "test")
    return root


class OraclePredictor:
    """Answers with the reference."""

    def predict(self, sample: Sample) -> tuple[None, str]:
        return None, sample.meta["answer"]


@pytest.mark.parametrize(
    "name, column", [("videorefer_q", "accuracy"), ("videoinfer", "ROUGE-L"), ("videorefer_d", "SC")]
)
def test_the_reference_answers_score_the_maximum_through_the_real_loaders(
    name: str, column: str, released: Path, tmp_path: Path, monkeypatch
) -> None:
    dataset, split = build_benchmark_dataset(name, released / name)
    assert split == "test" and len(dataset) > 0
    summary = run_loop(dataset, OraclePredictor(), PredictionStore(tmp_path))
    assert summary.failed == 0
    argv = ["--benchmark", name, "--data-root", str(released / name), "--pred", str(tmp_path)]
    with JudgeServer(description_judge) as server:
        judge = ["--judge-base-url", server.base_url, "--judge-model", "m"] if name == "videorefer_d" else []
        metrics = run_eval.main([*argv, *judge])
    assert metrics["overall"][column] == pytest.approx(5.0 if name == "videorefer_d" else 1.0, abs=1e-6)
    assert metrics["overall"]["count"] == len(dataset)


def test_run_inference_picks_the_answer_predictor_for_text_benchmarks_and_the_blind_baseline(
    released: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    data_root = released / "videorefer_q"
    common = ["--benchmark", "videorefer_q", "--data-root", str(data_root), "--model", str(tiny_model_dir)]
    for predictor in ("unigr", "blind"):
        out = tmp_path / predictor
        summary = run_inference.main(
            [*common, "--out", str(out), "--predictor", predictor, "--max-new-tokens", "2", "--num-frames", "2"]
        )
        assert (summary.predicted, summary.failed) == (2, 0)
        assert not (out / "masks").exists()
        assert all(isinstance(r["answer"], str) for r in PredictionStore(out).records().values())
        scored = run_eval.main(["--benchmark", "videorefer_q", "--data-root", str(data_root), "--pred", str(out)])
        assert scored["overall"]["count"] == 2


def test_options_only_answers_are_always_one_of_the_option_labels(region_model_dir: Path) -> None:
    from baselines.blind import BlindPredictor
    from evaluation.answer_predictor import UniGRAnswerPredictor

    sample = choice_dataset()[0]
    labels = {f"({chr(ord('A') + i)})" for i in range(len(sample.meta["options"]))}
    for predictor in (
        UniGRAnswerPredictor(region_model_dir, num_frames=2, max_new_tokens=3, options_only="labels"),
        BlindPredictor(region_model_dir, max_new_tokens=3, options_only="labels"),
    ):
        masks, text = predictor.predict(sample)
        assert masks is None and text in labels


def test_options_only_texts_answers_are_always_one_of_the_options_words_scored_as_that_option(
    region_model_dir: Path,
) -> None:
    from baselines.blind import BlindPredictor
    from evaluation.answer_predictor import UniGRAnswerPredictor
    from evaluation.dynamic_scoring import final_choice

    sample = choice_dataset()[0]
    texts = {option[4:]: option[1] for option in sample.meta["options"]}  # "(A) red" -> {"red": "A"}
    for predictor in (
        UniGRAnswerPredictor(region_model_dir, num_frames=2, max_new_tokens=3, options_only="texts"),
        BlindPredictor(region_model_dir, max_new_tokens=3, options_only="texts"),
    ):
        masks, text = predictor.predict(sample)  # generated past max_new_tokens: the whole option
        assert masks is None and text in texts
        assert final_choice(text, sample.meta["options"]) == texts[text]
    with pytest.raises(ValueError, match="options_only"):
        UniGRAnswerPredictor(region_model_dir, num_frames=2, options_only=True)


def test_allowed_sequences_keep_only_the_tokens_that_continue_a_sequence() -> None:
    import torch

    from evaluation.answer_predictor import AllowedSequences

    restrict = AllowedSequences([[5, 1], [5, 2], [7]], prompt_length=2, end_ids=[0])
    scores = torch.zeros(2, 10)
    first = restrict(torch.tensor([[9, 9], [9, 9]]), scores)
    assert (first[0] > float("-inf")).nonzero()[:, 0].tolist() == [5, 7]
    second = restrict(torch.tensor([[9, 9, 5], [9, 9, 7]]), scores)
    assert (second[0] > float("-inf")).nonzero()[:, 0].tolist() == [1, 2]
    assert (second[1] > float("-inf")).nonzero()[:, 0].tolist() == [0]  # [7] is complete: only the end

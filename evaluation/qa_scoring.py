"""Scorers of the text benchmarks (region QA and description): the stored answers against ``meta["answer"]``.

Same shape as :mod:`evaluation.scoring`: ``score(dataset, store, options) -> {"overall", "groups",
"per_sample"}``, refusing an incomplete store. A QA sample (the shared contract of
:class:`~utils.data.schema.Sample`) has ``meta["answer"]`` (the reference), ``meta["category"]``
(question type) and, for multiple choice, ``meta["options"]``; the question is ``meta["question"]``
when a loader sets it, else the last user turn.

* VideoRefer-Bench-Q (:func:`score_choice`): accuracy per category and overall
  (:mod:`evaluation.metrics.qa`), answers with no readable letter counted as wrong and reported.
* VideoRefer-Bench-D (:func:`score_description`): an LLM judge scores each description from 0 to 5
  on four dimensions; each dimension is the mean over the descriptions it scored and the average is
  the mean of the four (``videorefer/eval/videorefer_bench_d/3.analyze_score.py`` in
  DAMO-NLP-SG/VideoRefer; its judge, GPT-4o, reads ``##Correct answer:`` and ``##Predicted answer:``
  after a system prompt defining the dimensions as the benchmark's README does).
* VideoInfer (:func:`score_open_qa`): BLEU-4, METEOR, ROUGE-L and CIDEr
  (:mod:`evaluation.metrics.captions`, tokenised as ``options.caption_tokenizer`` says) and, with a
  judge, RGA3's judge accuracy and score (``evaluation/videoinfer/eval_gpt.ipynb`` in
  qirui-chen/RGA3-release: GPT-4o answers ``pred`` yes/no and an integer ``score`` 0-5 per
  question; accuracy = yes / (yes + no), score = the mean of ``max(min(int(score), 5), 0)``, each
  over the answers that carry that key). Without a judge those two columns read "not run".

The judge prompts below restate those protocols' instructions in this repository's words; they
ask for a JSON object, and judgments that are not one, refusals and out-of-range values are
counted in ``overall`` instead of being dropped silently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from torch.utils.data import Dataset
from tqdm import tqdm

from evaluation.judge import JudgeClient, JudgeConfig, JudgeCounts, Judgment, Messages
from evaluation.metrics.captions import NOT_RUN, caption_scores
from evaluation.metrics.qa import ChoiceResult, accuracy_table, choice_letter
from evaluation.prediction_store import PredictionStore
from evaluation.scoring import ScoreOptions

DESCRIPTION_DIMENSIONS = {
    "Subject Correspondence": "SC",
    "Appearance Description": "AD",
    "Temporal Description": "TD",
    "Hallucination Detection": "HD",
}
"""VideoRefer-Bench-D's dimensions (as its judge names them) -> table columns."""

MAX_SCORE = 5
DEFAULT_OPTIONS = ScoreOptions()

DESCRIPTION_SYSTEM = (
    "You grade a model's description of one object in a video against a reference description written "
    "by a person. Give the predicted description four scores, each an integer from 0 (worst) to 5 (best):\n"
    "- Subject Correspondence: whether it describes the same subject (the same kind of object, animal "
    "or person) as the reference.\n"
    "- Appearance Description: how accurately it gives the subject's looks: colour, shape, texture, "
    "clothing and other visual attributes.\n"
    "- Temporal Description: how accurately it gives what the subject does and how it moves over time.\n"
    "- Hallucination Detection: how free it is of things the reference does not support: invented "
    "objects, actions or attributes, imagined context, wrong inferences (5: nothing invented).\n"
    "Answer with a JSON object only, with exactly these four keys and integer values, for example "
    '{"Subject Correspondence": 4, "Appearance Description": 3, "Temporal Description": 2, '
    '"Hallucination Detection": 4}.'
)

OPEN_QA_SYSTEM = (
    "You check answers to questions about videos. Compare a predicted answer with the correct answer "
    "and decide whether they mean the same thing: judge the meaning, not the wording, and accept "
    "synonyms and paraphrases. Answer with a JSON object only."
)

OPEN_QA_USER = (
    "Question: {question}\n"
    "Correct answer: {reference}\n"
    "Predicted answer: {prediction}\n\n"
    'Return a JSON object with two keys: "pred", the string "yes" if the predicted answer matches the '
    'correct answer in meaning and "no" if it does not, and "score", an integer from 0 to 5 for how '
    'well it matches (5: a full match). For example: {{"pred": "no", "score": 1}}. Write nothing else.'
)


class JudgeNotConfigured(ValueError):
    """A benchmark scored only by an LLM judge was scored without one."""


class JudgeFailed(RuntimeError):
    """Some judgments got no answer from the endpoint (the answered ones are cached; a re-run retries)."""


@dataclass(frozen=True)
class QAItem:
    """One question with its reference and the stored prediction."""

    sample_id: str
    question: str
    reference: str
    prediction: str
    category: str
    options: tuple[str, ...] = ()


def question_text(sample) -> str:
    """``meta["question"]``, else the content of the sample's last user turn."""
    if "question" in sample.meta:
        return str(sample.meta["question"])
    users = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
    if not users:
        raise ValueError(f"{sample.sample_id}: the conversation has no user turn")
    return users[-1]


def qa_items(dataset: Dataset, store: PredictionStore, desc: str) -> list[QAItem]:
    """Every sample's question, reference and stored answer, after checking the store is complete."""
    store.require_complete(dataset.sample_ids())
    records = store.records()
    items = []
    for index in tqdm(range(len(dataset)), desc=desc, unit="sample", dynamic_ncols=True):
        sample = dataset[index]
        if "answer" not in sample.meta:
            raise ValueError(f"{sample.sample_id} has no meta['answer']: it is not a question-answering sample")
        answer = records[sample.sample_id].get("answer")
        if not isinstance(answer, str):
            raise ValueError(f"the stored prediction of {sample.sample_id} has no answer text")
        items.append(
            QAItem(
                sample.sample_id,
                question_text(sample),
                str(sample.meta["answer"]),
                answer,
                str(sample.meta.get("category", "all")),
                tuple(sample.meta.get("options", ())),
            )
        )
    return items


def score_choice(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """Multiple-choice accuracy per ``meta["category"]`` and overall; unreadable answers are wrong and counted."""
    results, per_sample = [], {}
    for item in qa_items(dataset, store, "accuracy"):
        answer = choice_letter(item.reference, item.options)
        if answer is None:
            raise ValueError(f"{item.sample_id}: no option letter in the reference answer {item.reference!r}")
        result = ChoiceResult(item.category, choice_letter(item.prediction, item.options), answer)
        results.append(result)
        per_sample[item.sample_id] = {
            "predicted": result.predicted,
            "answer": answer,
            "correct": result.correct,
            "category": item.category,
        }
    overall, groups = accuracy_table(results)
    return {"overall": overall, "groups": groups, "per_sample": per_sample}


def description_prompt(item: QAItem) -> Messages:
    """The VideoRefer-Bench-D judge prompt for one description."""
    user = f"Reference description: {item.reference}\nPredicted description: {item.prediction}"
    return [{"role": "system", "content": DESCRIPTION_SYSTEM}, {"role": "user", "content": user}]


def open_qa_prompt(item: QAItem) -> Messages:
    """The VideoInfer judge prompt for one answer."""
    user = OPEN_QA_USER.format(question=item.question, reference=item.reference, prediction=item.prediction)
    return [{"role": "system", "content": OPEN_QA_SYSTEM}, {"role": "user", "content": user}]


def run_judge(config: JudgeConfig, prompts: dict[str, Messages], desc: str) -> tuple[dict[str, Judgment], JudgeCounts]:
    """Judge every prompt; raise :class:`JudgeFailed` if any got no answer after the retries."""
    judgments, counts = JudgeClient(config).judge_all(prompts, desc)
    print(
        f"judge {config.model}: {counts.requests} requests, {counts.cached} answers from the cache, "
        f"{counts.parse_failures} without a JSON object, {counts.refusals} refused, {counts.errors} failed"
    )
    if counts.errors:
        first = next(j.detail for j in judgments.values() if j.status == "error")
        raise JudgeFailed(
            f"{counts.errors} of {len(prompts)} judgments got no answer (first: {first}); the others are cached"
            f"{f' in {config.cache_dir}' if config.cache_dir else ''}, run again to retry these"
        )
    return judgments, counts


def judge_summary(config: JudgeConfig, counts: JudgeCounts) -> dict:
    """What the metrics file records about the judge: endpoint, model and how its judgments came out."""
    return {"base_url": config.base_url, "model": config.model, **counts.as_dict()}


def bounded_score(value) -> float | None:
    """A judge's 0-5 score as a float, or ``None`` if it is not a number in that range."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SCORE:
        return None
    return float(value)


def score_description(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """VideoRefer-Bench-D: the judge's four 0-5 scores per description, each dimension's mean, their average."""
    if options.judge is None:
        raise JudgeNotConfigured(
            "VideoRefer-Bench-D is scored by an LLM judge: give --judge-base-url and --judge-model "
            "(or UNIGR_JUDGE_BASE_URL / UNIGR_JUDGE_MODEL)"
        )
    items = qa_items(dataset, store, "VideoRefer-Bench-D")
    judgments, counts = run_judge(options.judge, {item.sample_id: description_prompt(item) for item in items}, "judge")
    per_sample: dict[str, dict] = {}
    scores: dict[str, list[float]] = defaultdict(list)
    invalid = 0
    for item in items:
        judgment = judgments[item.sample_id]
        row: dict = {"judge": judgment.status}
        if judgment.status != "ok":
            row["judge_detail"], row["judge_text"] = judgment.detail, judgment.text
        else:
            for name, column in DESCRIPTION_DIMENSIONS.items():
                value = bounded_score(judgment.parsed.get(name))
                if value is None:
                    invalid += 1
                    continue
                row[column] = value
                scores[column].append(value)
        per_sample[item.sample_id] = row
    overall: dict = {}
    for column in DESCRIPTION_DIMENSIONS.values():
        values = scores[column]
        overall[column] = sum(values) / len(values) if values else float("nan")
    overall["average"] = sum(overall[c] for c in DESCRIPTION_DIMENSIONS.values()) / len(DESCRIPTION_DIMENSIONS)
    overall.update(
        count=len(items),
        parse_failures=counts.parse_failures,
        refusals=counts.refusals,
        invalid_scores=invalid,
    )
    return {"overall": overall, "groups": {}, "per_sample": per_sample, "judge": judge_summary(options.judge, counts)}


def yes_no(value) -> str | None:
    """RGA3's reading of the judge's ``pred``: "yes" if it contains yes, else "no" if it contains no."""
    if not isinstance(value, str):
        return None
    text = value.lower()
    return "yes" if "yes" in text else "no" if "no" in text else None


def rga3_score(value) -> int | None:
    """RGA3's reading of the judge's ``score``: ``max(min(int(score), 5), 0)``, ``None`` if not a number."""
    if isinstance(value, bool):
        return None
    try:
        return max(min(int(float(value)), MAX_SCORE), 0)
    except (TypeError, ValueError, OverflowError):
        return None


def score_open_qa(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """VideoInfer: caption metrics of every answer and, with a judge, its accuracy and mean score."""
    items = qa_items(dataset, store, "VideoInfer")
    captions = caption_scores(
        {item.sample_id: [item.reference] for item in items},
        {item.sample_id: item.prediction for item in items},
        options.caption_tokenizer,
    )
    overall = {**captions["overall"], "count": len(items)}
    per_sample = captions["per_sample"]
    result = {"overall": overall, "groups": {}, "per_sample": per_sample, "tokenizer": captions["tokenizer"]}
    if captions["not_run"]:
        result["not_run"] = dict(captions["not_run"])
    if options.judge is None:
        overall["judge accuracy"] = overall["judge score"] = NOT_RUN
        result.setdefault("not_run", {})["judge"] = "no judge configured (--judge-base-url, --judge-model)"
        return result
    judgments, counts = run_judge(options.judge, {item.sample_id: open_qa_prompt(item) for item in items}, "judge")
    verdicts, scores = [], []
    for item in items:
        judgment, row = judgments[item.sample_id], per_sample[item.sample_id]
        row["judge"] = judgment.status
        if judgment.status != "ok":
            row["judge_detail"], row["judge_text"] = judgment.detail, judgment.text
            continue
        verdict, score = yes_no(judgment.parsed.get("pred")), rga3_score(judgment.parsed.get("score"))
        if verdict is not None:
            row["judge_pred"] = verdict
            verdicts.append(verdict == "yes")
        if score is not None:
            row["judge_score"] = score
            scores.append(score)
    overall["judge accuracy"] = sum(verdicts) / len(verdicts) if verdicts else float("nan")
    overall["judge score"] = sum(scores) / len(scores) if scores else float("nan")
    overall.update(
        parse_failures=counts.parse_failures,
        refusals=counts.refusals,
        without_pred=counts.ok - len(verdicts),
        without_score=counts.ok - len(scores),
    )
    result["judge"] = judge_summary(options.judge, counts)
    return result

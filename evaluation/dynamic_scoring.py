"""Scorers of the dynamic spatial reasoning benchmarks: DSR-Bench, VLM4D, 4D-Bench QA and 4D-Bench captioning.

Same shape as :mod:`evaluation.qa_scoring`: ``score(dataset, store, options) -> {"overall", "groups",
"per_sample"}``, refusing an incomplete store. The datasets (:mod:`utils.data.dsr_bench`, :mod:`utils.data.vlm4d`,
:mod:`utils.data.fourd_bench`) answer ``sample_meta(index)``, so scoring reads no video.

Multiple choice: the chosen letter is read by :func:`final_choice`, which takes the answer a reply *ends up
with* ("A is wrong because ... so the answer is C" -> C), not its first letter, since chain-of-thought replies
name several options on the way; a reply with no readable answer counts as wrong and is reported
(``unparsed``). A question whose right answer appears under several letters (one VLM4D question) accepts
any of them. Accuracy is over questions, overall and per ``meta["category"]``:

* DSR-Bench (:func:`score_dsr_bench`): per question type (:data:`utils.data.dsr_bench.QUESTION_TYPES`);
  DSR Suite's run reports only the overall accuracy, VLMEvalKit's DSRBench the types as well.
* VLM4D (:func:`score_vlm4d`): the groups of its official table (``acc_final_statistics.py``): real ego- /
  exo-centric, real, synthetic directional / false-premise, synthetic, and overall. VLM4D itself has an LLM
  judge read every reply; here the judge (``options.judge``) only reads the replies :func:`final_choice`
  cannot, and returns the option it finds chosen (``{"choice": "B"}`` or ``"none"``). Without a judge those
  replies are ``unparsed`` and ``judged`` reads "not run". :mod:`evaluation.vlm4d.official_table` prints the
  official table from VLM4D's own judged files.
* 4D-Bench QA (:func:`score_fourd_qa`): per ``Category``. 4D-Bench's scripts take the *first* ``(X)``, else
  the first isolated A-D; :func:`final_choice` differs on replies that reason before answering.

4D-Bench captioning (:func:`score_fourd_caption`): BLEU-1..4, METEOR, ROUGE-L and CIDEr of
:mod:`evaluation.metrics.captions` (pycocoevalcap, corpus level) against the five human captions, after
dropping what precedes ``caption:`` as 4D-Bench does. 4D-Bench's own numbers average per-caption scores
(CIDEr from ``cidereval``, METEOR from NLTK) and add BERTScore, SBERT and GPT scores, which are not computed here.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch.utils.data import Dataset
from tqdm import tqdm

from evaluation.judge import Messages
from evaluation.metrics.captions import NOT_RUN, caption_scores
from evaluation.metrics.qa import ChoiceResult, accuracy_table, choice_letter, option_letters
from evaluation.prediction_store import PredictionStore
from evaluation.qa_scoring import judge_summary, run_judge
from evaluation.scoring import ScoreOptions

DEFAULT_OPTIONS = ScoreOptions()

_LETTER = r"\(?\s*([A-Z])\s*\)?(?![\w'])"
_SEP = r"[\s:*=\-]*(?:is|would be|should be|will be)?[\s:*=\-]*(?:(?i:option|choice)\s*)?"
ANSWER_CUES = (
    re.compile(r"(?i:final\s+answer)" + _SEP + _LETTER),
    re.compile(r"(?i:answer)" + _SEP + _LETTER),
    re.compile(r"(?i:correct|right|best)\s+(?i:option|choice)" + _SEP + _LETTER),
    re.compile(r"\(?\b([A-Z])\)?\s+(?i:is)\s+(?:(?i:the)\s+)?(?i:correct|right)\b"),
)
"""Ways of stating the answer, in priority order; within one, the *last* statement naming a valid letter decides."""

PARENTHESISED = re.compile(r"\(([A-Z])\)")
SHORT_REPLY = 40
"""Replies up to this many characters are read whole by :func:`~evaluation.metrics.qa.choice_letter`."""

CAPTION_PREFIX = "caption:"

CHOICE_JUDGE_SYSTEM = (
    "You read a model's reply to a multiple-choice question and report which option the reply finally "
    "chooses. Do not solve the question yourself. Answer with a JSON object only."
)
CHOICE_JUDGE_USER = (
    "Question and options:\n{question}\n{options}\n\nThe model's reply:\n{reply}\n\n"
    'Return a JSON object with one key, "choice": the letter of the option the reply chooses, or "none" if it '
    'chooses none or several. For example: {{"choice": "B"}}. Write nothing else.'
)


def _normalized(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def _chosen_by_text(text: str, valid: dict[str, str]) -> str | None:
    """The one option whose text the reply contains (as whole words), ignoring options inside a longer found one."""
    reply = f" {_normalized(text)} "
    found = {letter: f" {_normalized(content)} " for letter, content in valid.items() if _normalized(content)}
    found = {letter: content for letter, content in found.items() if content in reply}
    kept = {
        letter for letter, content in found.items() if not any(content in o and content != o for o in found.values())
    }
    distinct = {found[letter] for letter in kept}
    return min(kept) if len(distinct) == 1 else None


def final_choice(text: str, options: Sequence[str] = ()) -> str | None:
    """The upper-case letter a reply finally chooses, or ``None``.

    In order: the last explicit statement of the answer ("final answer: C", "so the answer is (C)", "the
    correct option is C", "C is correct"); else, ``None`` if several ``(X)`` are named, the one ``(X)`` if one
    is; a short reply read whole (``"B"``, ``"b."``, ``"B) red"``, exactly an option's text); the one option
    whose text the reply contains.
    With ``options`` (``["(A) text", ...]``), a letter that is not one of them is no answer.
    """
    valid = option_letters(options) if options else {}

    def checked(letter: str | None) -> str | None:
        return letter if letter is not None and (not valid or letter in valid) else None

    for cue in ANSWER_CUES:
        stated = [checked(match.group(1)) for match in cue.finditer(text)]
        stated = [letter for letter in stated if letter is not None]
        if stated:
            return stated[-1]
    letters = set(PARENTHESISED.findall(text))
    if len(letters) > 1:
        return None  # several options named and none stated as the answer
    if letters:
        return checked(letters.pop())
    if len(text.strip()) <= SHORT_REPLY:
        letter = choice_letter(text, options)
        if letter is not None:
            return checked(letter)
    return _chosen_by_text(text, valid) if valid else None


# --- multiple choice -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChoiceItem:
    """One question with its stored reply."""

    sample_id: str
    question: str
    options: tuple[str, ...]
    answers: tuple[str, ...]
    category: str
    reply: str
    meta: dict


def choice_items(dataset: Dataset, store: PredictionStore, desc: str) -> list[ChoiceItem]:
    """Every question's options, right letters and stored reply, after checking the store is complete."""
    sample_ids = dataset.sample_ids()
    store.require_complete(sample_ids)
    records = store.records()
    items = []
    for index in tqdm(range(len(dataset)), desc=desc, unit="sample", dynamic_ncols=True):
        sample_id, meta = sample_ids[index], dataset.sample_meta(index)
        reply = records[sample_id].get("answer")
        if not isinstance(reply, str):
            raise ValueError(f"the stored prediction of {sample_id} has no answer text")
        options = tuple(meta["options"])
        answers = tuple(meta.get("answer_letters") or [choice_letter(meta["answer"], options)])
        if None in answers:
            raise ValueError(f"{sample_id}: no option letter in the reference answer {meta['answer']!r}")
        items.append(ChoiceItem(sample_id, str(meta["question"]), options, answers, str(meta["category"]), reply, meta))
    return items


def choice_judge_prompt(item: ChoiceItem) -> Messages:
    """The prompt asking the judge which option ``item``'s reply chose."""
    user = CHOICE_JUDGE_USER.format(question=item.question, options="\n".join(item.options), reply=item.reply)
    return [{"role": "system", "content": CHOICE_JUDGE_SYSTEM}, {"role": "user", "content": user}]


def judge_letter(parsed: dict | None, options: Sequence[str]) -> str | None:
    """The judge's ``choice`` as a valid letter, or ``None`` ("none", missing, not an option)."""
    value = (parsed or {}).get("choice")
    if not isinstance(value, str):
        return None
    letter = value.strip().strip("().").upper()
    return letter if letter in option_letters(options) else None


def score_choices(
    dataset: Dataset,
    store: PredictionStore,
    options: ScoreOptions = DEFAULT_OPTIONS,
    desc: str = "accuracy",
    judge_fallback: bool = False,
    extra_groups: Callable[[list[ChoiceItem]], dict[str, list[str]]] | None = None,
) -> dict:
    """Accuracy per category and overall, letters read by :func:`final_choice`.

    ``judge_fallback``: replies it cannot read go to ``options.judge`` (when there is one). ``extra_groups``:
    ``items -> {group name: sample ids}``, more rows for the table (VLM4D's real / synthetic).
    """
    items = choice_items(dataset, store, desc)
    letters = {item.sample_id: final_choice(item.reply, item.options) for item in items}
    result: dict = {}
    judged: dict[str, str | None] = {}
    unread = [item for item in items if letters[item.sample_id] is None]
    if judge_fallback and options.judge is not None and unread:
        prompts = {item.sample_id: choice_judge_prompt(item) for item in unread}
        judgments, counts = run_judge(options.judge, prompts, "judge")
        judged = {item.sample_id: judge_letter(judgments[item.sample_id].parsed, item.options) for item in unread}
        letters.update(judged)
        result["judge"] = judge_summary(options.judge, counts)
    results, per_sample = {}, {}
    for item in items:
        predicted = letters[item.sample_id]
        answer = predicted if predicted in item.answers else item.answers[0]
        results[item.sample_id] = ChoiceResult(item.category, predicted, answer)
        per_sample[item.sample_id] = {
            "predicted": predicted,
            "answer": list(item.answers),
            "correct": predicted in item.answers,
            "category": item.category,
            "read_by": "judge" if item.sample_id in judged else "rules",
        }
    overall, groups = accuracy_table(results.values())
    for name, ids in (extra_groups(items) if extra_groups else {}).items():
        groups[name] = accuracy_table([results[i] for i in ids])[0]
    if judge_fallback:
        overall["judged"] = sum(letter is not None for letter in judged.values()) if options.judge else NOT_RUN
        if options.judge is None:
            result["not_run"] = {"judge": f"{len(unread)} replies had no readable answer and no judge was configured"}
    return {"overall": overall, "groups": groups, "per_sample": per_sample, **result}


def score_dsr_bench(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """DSR-Bench: accuracy overall and per question type."""
    return score_choices(dataset, store, options, "DSR-Bench")


def vlm4d_sources(items: list[ChoiceItem]) -> dict[str, list[str]]:
    """VLM4D's real and synthetic rows: the ids of each source present."""
    sources: dict[str, list[str]] = {}
    for item in items:
        sources.setdefault(item.meta["source"], []).append(item.sample_id)
    return sources


def score_vlm4d(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """VLM4D: accuracy overall, per source and per official split; the judge reads what the rules cannot."""
    return score_choices(dataset, store, options, "VLM4D", judge_fallback=True, extra_groups=vlm4d_sources)


def score_fourd_qa(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """4D-Bench QA: accuracy overall and per category, the final answer of each reply."""
    return score_choices(dataset, store, options, "4D-Bench QA")


# --- captioning ----------------------------------------------------------------------------------------------


def strip_caption_prefix(text: str) -> str:
    """The text after the first ``caption:`` (any case), else the whole text, stripped (4D-Bench's reading)."""
    start = text.lower().find(CAPTION_PREFIX)
    return (text[start + len(CAPTION_PREFIX) :] if start != -1 else text).strip()


def score_fourd_caption(dataset: Dataset, store: PredictionStore, options: ScoreOptions = DEFAULT_OPTIONS) -> dict:
    """4D-Bench captioning: caption metrics of every caption against the object's five human captions."""
    sample_ids = dataset.sample_ids()
    store.require_complete(sample_ids)
    records = store.records()
    references, predictions = {}, {}
    for index, sample_id in enumerate(sample_ids):
        reply = records[sample_id].get("answer")
        if not isinstance(reply, str):
            raise ValueError(f"the stored prediction of {sample_id} has no answer text")
        references[sample_id] = list(dataset.sample_meta(index)["references"])
        predictions[sample_id] = strip_caption_prefix(reply)
    scores = caption_scores(references, predictions, options.caption_tokenizer)
    result = {
        "overall": {**scores["overall"], "count": len(sample_ids), "empty": sum(not p for p in predictions.values())},
        "groups": {},
        "per_sample": scores["per_sample"],
        "tokenizer": scores["tokenizer"],
    }
    if scores["not_run"]:
        result["not_run"] = dict(scores["not_run"])
    return result

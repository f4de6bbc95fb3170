"""Multiple-choice answers: the letter a model chose, and accuracy per question category and overall.

VideoRefer-Bench-Q's official scorer (``videorefer/eval/eval_videorefer_bench_q.py`` in
DAMO-NLP-SG/VideoRefer, copied as ``evaluation/videorefer_bench/eval_videorefer_bench_q.py`` in
RGA3-release) takes the letter of the reference from ``"Answer": "(A) A helmet"``, the prediction's
letter from the first ``(X)``, else the first ``X)``, else the prediction's *first character*, and
reports per ``type`` accuracy plus the overall share of right answers (a mean over questions, not
over types). Taking the first character reads "The answer is (B)" right but "Answer: C" as "A" and
"b" only by luck, so :func:`choice_letter` reads the usual ways of writing a choice and returns
``None`` when it finds none: such an answer counts as wrong and is reported (``unparsed``).
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OPTION = re.compile(r"^\s*\(?([A-Za-z])\)?[\s.:)]\s*(.*)$", re.DOTALL)
"""An option as benchmarks write it: ``(A) text``, ``A) text``, ``A. text``, ``A: text``."""

LETTER_PATTERNS = (
    re.compile(r"\(([A-Za-z])\)"),  # "(B)", "The answer is (b) red."
    re.compile(r"^\s*([A-Za-z])\s*(?:[).:,]|$)"),  # "B", "b", "B) red", "C.", "D: blue"
    re.compile(r"\b(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*([A-Z])\b(?!['\w])"),  # "Answer: C", "answer is B"
    re.compile(r"\b(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*([a-z])\s*(?:[).:,]|$)"),  # "answer: c", not "is a hat"
)
"""Ways of writing a chosen letter, tried in order; the first that matches decides."""


def option_letters(options: Sequence[str]) -> dict[str, str]:
    """``{"A": "A helmet", ...}`` from ``["(A) A helmet", ...]``; an option without a letter is an error."""
    letters = {}
    for option in options:
        match = OPTION.match(option)
        if match is None:
            raise ValueError(f"option {option!r} does not start with a letter like '(A)'")
        letters[match.group(1).upper()] = match.group(2).strip()
    return letters


def _normalized(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def choice_letter(text: str, options: Sequence[str] = ()) -> str | None:
    """The upper-case letter ``text`` chooses, or ``None``.

    Reads ``"(B)"``, ``"The answer is (B)."``, ``"b"``, ``"B) red"``, ``"(b) red"``, ``"C."``,
    ``"Answer: C"``, ``"The answer is B"``. With ``options``, a letter that is not one of them is no
    answer, and a reply that is exactly one option's text (``"A helmet"``) chooses that option.
    """
    valid = option_letters(options) if options else {}
    for pattern in LETTER_PATTERNS:
        match = pattern.search(text)
        if match is not None:
            letter = match.group(1).upper()
            return letter if not valid or letter in valid else None
    if valid:
        reply = _normalized(text)
        chosen = [letter for letter, content in valid.items() if reply and _normalized(content) == reply]
        if len(chosen) == 1:
            return chosen[0]
    return None


@dataclass(frozen=True)
class ChoiceResult:
    """One scored question: its category, the letters chosen and right, whether they agree."""

    category: str
    predicted: str | None
    answer: str

    @property
    def correct(self) -> bool:
        return self.predicted == self.answer


def accuracy_table(results: Iterable[ChoiceResult]) -> tuple[dict, dict[str, dict]]:
    """``(overall, {category: row})``; each row has ``accuracy``, ``correct``, ``unparsed`` and ``count``.

    ``overall["accuracy"]`` is the share of all questions answered right (the official scorer's
    "average"); ``overall["category_mean"]`` is the mean of the categories' accuracies.
    """
    by_category: dict[str, list[ChoiceResult]] = defaultdict(list)
    for result in results:
        by_category[result.category].append(result)

    def row(items: list[ChoiceResult]) -> dict:
        correct = sum(item.correct for item in items)
        unparsed = sum(item.predicted is None for item in items)
        return {"accuracy": correct / len(items), "correct": correct, "unparsed": unparsed, "count": len(items)}

    groups = {name: row(items) for name, items in sorted(by_category.items())}
    everything = [item for items in by_category.values() for item in items]
    if not everything:
        raise ValueError("no questions to score")
    overall = row(everything)
    overall["category_mean"] = sum(group["accuracy"] for group in groups.values()) / len(groups)
    return overall, groups

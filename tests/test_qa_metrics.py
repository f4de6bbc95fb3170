"""QA metrics: multiple-choice letters and accuracy per category; caption metrics against hand-checked values."""

from __future__ import annotations

import pytest

from evaluation.metrics import captions
from evaluation.metrics.captions import NOT_RUN, caption_scores, java_available, simple_tokenize, tokenize
from evaluation.metrics.qa import ChoiceResult, accuracy_table, choice_letter, option_letters

OPTIONS = ["(A) A helmet", "(B) A red hat", "(C) Sunglasses", "(D) A watch"]
needs_java = pytest.mark.skipif(not java_available(), reason="java is not on the PATH (METEOR and PTB run jars)")


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("The answer is (B).", "B"),
        ("b", "B"),
        ("B", "B"),
        ("B) red", "B"),
        ("(b) red", "B"),
        ("Answer: C", "C"),
        ("answer: c", "C"),
        ("C.", "C"),
        ("D: A watch", "D"),
        ("The answer is B", "B"),
        ("The correct option is (D) A watch.", "D"),
        ("A helmet", "A"),  # exactly one option's text
        ("a red hat.", "B"),
        ("The answer is a hat", None),  # "a" is an article, not a choice
        ("I don't know", None),
        ("", None),
        ("(E)", None),  # not one of the options
        ("Sunglasses and a watch", None),
    ],
)
def test_the_chosen_letter_is_read_from_common_answer_forms(reply: str, letter: str | None) -> None:
    assert choice_letter(reply, OPTIONS) == letter


def test_without_options_any_letter_is_read_and_first_characters_are_not_guessed() -> None:
    assert choice_letter("(E) none") == "E"
    assert choice_letter("Answer: C") == "C"
    assert choice_letter("Clearly the hat") is None  # the official scorer's first-character rule would say "C"


def test_options_are_read_with_their_letters() -> None:
    assert option_letters(OPTIONS)["B"] == "A red hat"
    with pytest.raises(ValueError, match="does not start with a letter"):
        option_letters(["helmet"])


def test_accuracy_is_per_category_and_over_all_questions_and_unparsed_answers_count_as_wrong() -> None:
    results = [
        ChoiceResult("Basic Questions", "A", "A"),
        ChoiceResult("Basic Questions", "B", "A"),
        ChoiceResult("Basic Questions", None, "C"),
        ChoiceResult("Future Predictions", "D", "D"),
    ]
    overall, groups = accuracy_table(results)
    assert groups["Basic Questions"] == {"accuracy": 1 / 3, "correct": 1, "unparsed": 1, "count": 3}
    assert groups["Future Predictions"] == {"accuracy": 1.0, "correct": 1, "unparsed": 0, "count": 1}
    assert overall["accuracy"] == 0.5 and overall["unparsed"] == 1 and overall["count"] == 4
    assert overall["category_mean"] == pytest.approx((1 / 3 + 1) / 2)


def test_identical_captions_score_the_maximum(monkeypatch) -> None:
    monkeypatch.setattr(captions, "java_available", lambda: False)  # the pure-Python metrics
    texts = {"1": "a man rides a red bike down the hill", "2": "two dogs play with a ball on the grass"}
    scores = caption_scores({k: [v] for k, v in texts.items()}, texts)
    overall = scores["overall"]
    assert overall["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert overall["ROUGE-L"] == pytest.approx(1.0)
    assert overall["CIDEr"] == pytest.approx(10.0)  # CIDEr-D's maximum (x10) when no n-gram is shared
    assert overall["METEOR"] == NOT_RUN and "java" in scores["not_run"]["METEOR"]
    assert scores["tokenizer"] == "none" and set(scores["per_sample"]) == {"1", "2"}


def test_bleu_and_rouge_l_equal_hand_computed_values(monkeypatch) -> None:
    monkeypatch.setattr(captions, "java_available", lambda: False)
    scores = caption_scores(
        {"x": ["the cat is on the mat"], "y": ["a b c d f"]}, {"x": "the cat sat on the mat", "y": "a b c d e"}
    )
    y, x = scores["per_sample"]["y"], scores["per_sample"]["x"]
    # "a b c d e" vs "a b c d f": n-gram precisions 4/5, 3/4, 2/3, 1/2, same length (no brevity penalty)
    assert y["BLEU-4"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4), abs=1e-6)
    assert y["ROUGE-L"] == pytest.approx(0.8)  # LCS 4 of 5 both ways
    # "the cat sat on the mat" vs "the cat is on the mat": 5/6 unigrams, 3/5 bigrams, 1/4 trigrams
    assert x["BLEU-2"] == pytest.approx((5 / 6 * 3 / 5) ** 0.5, abs=1e-6)
    assert x["BLEU-3"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), abs=1e-6)
    # LCS "the cat on the mat" (5 of 6 both ways): F with beta 1.2 is 5/6
    assert x["ROUGE-L"] == pytest.approx(5 / 6)


def test_the_tokenizer_is_explicit_and_changes_the_score(monkeypatch) -> None:
    monkeypatch.setattr(captions, "java_available", lambda: False)
    refs, preds = {"1": ["A red car, moving fast."]}, {"1": "a red car moving fast"}
    raw = caption_scores(refs, preds, "none")
    simple = caption_scores(refs, preds, "simple")
    assert simple["tokenizer"] == "simple" and simple["overall"]["ROUGE-L"] == pytest.approx(1.0)
    assert raw["overall"]["ROUGE-L"] < 1.0  # "A", "car," and "fast." differ from "a", "car", "fast"
    assert simple_tokenize("Don't stop -- the end... OK?") == "don t stop the end ok"
    with pytest.raises(captions.JavaMissing, match="PTB"):
        tokenize({"1": ["x"]}, "ptb")
    with pytest.raises(ValueError, match="unknown caption tokenizer"):
        tokenize({"1": ["x"]}, "bpe")


def test_mismatched_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="same ids"):
        caption_scores({"1": ["a"]}, {"2": "a"})


@needs_java
def test_ptb_tokenisation_and_meteor_run_through_java() -> None:
    tokens = tokenize({"1": ["A red car, moving fast."], "2": ["Don't stop!"]}, "ptb")
    assert tokens == {"1": ["a red car moving fast"], "2": ["do n't stop"]}
    scores = caption_scores(
        {"1": ["a man rides a red bike"], "2": ["two dogs play on the grass"]},
        {"1": "a man rides a red bike", "2": "a cat sleeps"},
        "ptb",
    )
    assert scores["per_sample"]["1"]["METEOR"] == pytest.approx(1.0, abs=1e-3)
    assert 0 <= scores["per_sample"]["2"]["METEOR"] < 0.3
    assert scores["not_run"] == {} and 0 < scores["overall"]["METEOR"] < 1

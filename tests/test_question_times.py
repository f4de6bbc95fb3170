"""Times a question names, token by token (what the GSM's ``question_times`` codes)."""

from __future__ import annotations

import math

import torch

from utils.data.question_times import mentioned_seconds, token_seconds


def _named(pieces: list[str]) -> list[tuple[str, float]]:
    return [(piece, seconds) for piece, seconds in zip(pieces, mentioned_seconds(pieces)) if not math.isnan(seconds)]


def test_every_piece_of_a_time_mention_gets_its_seconds_and_nothing_else_does() -> None:
    pieces = ["how far", " at", " 0", ".", "75", " s", "?", " (A)", " 4.9", " m", " (B)", " 1.2", " m/s"]
    assert _named(pieces) == [(" 0", 0.75), (".", 0.75), ("75", 0.75), (" s", 0.75)]


def test_two_times_of_an_interval_are_told_apart_and_units_may_be_spelt_out() -> None:
    pieces = ["between ", "2.5 s", " and ", "3", " seconds", ", not 12", "s3 s"]
    assert _named(pieces) == [("2.5 s", 2.5), ("3", 3.0), (" seconds", 3.0)]
    assert _named(["versions", " 1.5", "s"]) == [(" 1.5", 1.5), ("s", 1.5)]
    assert _named(["x2.5 s", "v1.0s"]) == []  # digits inside a word name no time


def test_token_seconds_reads_only_the_masked_tokens_of_each_row() -> None:
    class Characters:  # a tokenizer whose token i is the character chr(i)
        def decode(self, ids: list[int]) -> str:
            return "".join(map(chr, ids))

    text = "at 1.5 s; at 2 s"
    ids = torch.tensor([[ord(c) for c in text]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 9:] = False  # the second mention is outside the question
    seconds = token_seconds(ids, mask, Characters())[0]
    assert seconds[3:8].tolist() == [1.5] * 5 and seconds[~seconds.isnan()].numel() == 5

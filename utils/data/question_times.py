"""Times a question names ("at 2.5 s", "between 0 s and 1.25 s"), token by token.

The GSM's ``question_times`` (:mod:`model.encoders.geometry`) gives the question tokens that name a time the same
time code as the geometry tokens of that moment, so Q-Former 2 can match "at 2.5 s" to the frames at 2.5 s without
learning to read numbers. :func:`token_seconds` marks every token that overlaps a time mention (the number and its
unit) with the seconds it names; other tokens get NaN.
"""

from __future__ import annotations

import math
import re

import torch

TIME_MENTION = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)\b")
"""A number of seconds: digits (with a decimal part or not), then ``s`` / ``sec`` / ``second(s)``."""


def mentioned_seconds(pieces: list[str]) -> list[float]:
    """Per text piece (the decoded tokens of one question, in order), the seconds of the time mention it overlaps, or
    NaN."""
    starts = [0]
    for piece in pieces:
        starts.append(starts[-1] + len(piece))
    text = "".join(pieces)
    seconds = [math.nan] * len(pieces)
    for match in TIME_MENTION.finditer(text):
        for index, (start, end) in enumerate(zip(starts, starts[1:])):
            if start < match.end() and match.start() < end:
                seconds[index] = float(match.group(1))
    return seconds


def token_seconds(input_ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> torch.Tensor:
    """``(B, L)`` float: for the tokens of ``mask`` ``(B, L)`` (a question's tokens, read in order per row) the seconds
    of the time mention each overlaps (:func:`mentioned_seconds`), NaN everywhere else."""
    seconds = torch.full(input_ids.shape, math.nan)
    for row in range(len(input_ids)):
        positions = mask[row].nonzero()[:, 0]
        pieces = [tokenizer.decode([token]) for token in input_ids[row, positions].tolist()]
        seconds[row, positions] = torch.tensor(mentioned_seconds(pieces), dtype=seconds.dtype)
    return seconds

"""Prompt templates shared by training, evaluation and the demo, so the model sees the same words everywhere."""

from __future__ import annotations

import re

from utils.data.schema import MEDIA

SEG_TOKEN = "[SEG]"
"""The token whose last hidden state is decoded into a mask by the segmentation head."""

GRD_TOKEN = "[GRD]"
"""The token whose last hidden state the proposal grounding head matches against a 3D scene's object proposals."""

READ_TOKEN = "[READ]"
"""Right after a ``[GRD]``: the token whose input embedding is the object token of the proposal that ``[GRD]``
grounded (:mod:`model.encoders.proposal_tokens`), so the words after it read that object (ground, then read)."""

SIT_TOKEN = "[SIT]"
"""The token whose last hidden state the proposal grounding head turns into the speaker's situation (where they
stand, which way they face) by pointing at two proposals; a later ``[READ]`` then also holds where its object lies
as seen from there (situated reading, SQA3D: :mod:`model.heads.proposal_grounding`)."""

PROPOSAL_GROUNDING_ANSWER = f"Sure, {GRD_TOKEN}."
"""The assistant turn of a 3D grounding question answered by the proposal grounding head: one ``[GRD]`` per
question, also for several or no targets (the head's multi-target mode picks any number of proposals)."""

VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
"""Where the video goes in a user turn; Qwen's processor expands ``<|video_pad|>`` to the video tokens."""

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
"""Where an image goes in a user turn; Qwen's processor expands ``<|image_pad|>`` to the image tokens."""


def _check_medium(medium: str) -> None:
    if medium not in MEDIA:
        raise ValueError(f"medium must be one of {MEDIA}, got {medium!r}")


def referring_seg_question(expressions: list[str], medium: str = "video") -> str:
    """The user turn asking to segment one object per expression (the visual placeholder is added by the collator)."""
    _check_medium(medium)
    if not expressions:
        raise ValueError("a referring segmentation question needs at least one expression")
    if len(expressions) == 1:
        return f"Please segment {expressions[0]} in this {medium}."
    listed = "; ".join(f"{i + 1}. {text}" for i, text in enumerate(expressions))
    return f"Please segment each of these objects in this {medium}, in order: {listed}."


def reasoning_seg_question(query: str, medium: str = "video") -> str:
    """The user turn for a reasoning query (a question or an implicit description, as ReasonSeg/ReVOS phrase them)."""
    _check_medium(medium)
    if not query.strip():
        raise ValueError("a reasoning segmentation question needs a non-empty query")
    return f"{query.strip()} Please answer with a segmentation mask of the {medium}."


def referring_seg_answer(num_objects: int) -> str:
    """The assistant turn: one ``[SEG]`` per object, in the order the question lists them."""
    if num_objects < 1:
        raise ValueError(f"num_objects must be positive, got {num_objects}")
    if num_objects == 1:
        return f"Sure, {SEG_TOKEN}."
    return "Sure, " + ", ".join(SEG_TOKEN for _ in range(num_objects)) + "."


REGION_PLACEHOLDER = "<region>"
"""Where a region's tokens go in a user turn; the k-th occurrence is filled from the regions with ``region == k``."""


def object_reference(index: int) -> str:
    """How a question names its ``index``-th pointed-at object, as VideoRefer-Bench writes it: ``<object0><region>``."""
    if index < 0:
        raise ValueError(f"object index must be >= 0, got {index}")
    return f"<object{index}>{REGION_PLACEHOLDER}"


MULTIPLE_CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
"""The last line of every multiple-choice user turn (the wording VideoRefer's and RGA3's Bench-Q inference use)."""


def multiple_choice_question(question: str, options: list[str]) -> str:
    """The user turn of a multiple-choice question: the question, one ``(A) ...`` option per line, the instruction.

    ``options`` are written as the benchmark writes them (``"(A) A helmet"``); an option without its
    ``(<letter>)`` prefix gets it, one with another option's letter is a ``ValueError``.
    """
    if not question.strip():
        raise ValueError("a multiple-choice question needs a non-empty question")
    if not 2 <= len(options) <= 26:
        raise ValueError(f"a multiple-choice question needs 2 to 26 options, got {len(options)}")
    lines = []
    for position, option in enumerate(options):
        letter, text = chr(ord("A") + position), option.strip()
        prefix = re.match(r"\(([A-Z])\)\s*", text)
        if prefix and prefix.group(1) != letter:
            raise ValueError(f"option {position} is lettered ({prefix.group(1)}), expected ({letter}): {option!r}")
        body = text[prefix.end() :] if prefix else text
        if not body:
            raise ValueError(f"option ({letter}) is empty")
        lines.append(f"({letter}) {body}")
    return "\n".join([question.strip(), "Options:", *lines, MULTIPLE_CHOICE_INSTRUCTION])

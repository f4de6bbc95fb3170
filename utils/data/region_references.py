"""Objects that instruction data names with tags (ViP-LLaVA's ``<bbox0>``, Osprey's ``<region1>``) -> the
shared region-QA references ``<object{k}><region>`` and the sample's visual prompt.

The region encoder (``model/encoders/region.py``) fills the k-th ``<region>`` placeholder of the text
with object k's token, so every object gets exactly one placeholder, and the placeholders appear in
object order. :func:`reference_objects` numbers a conversation's objects to fit:

* an object whose first mention is in a user turn keeps its place: that mention becomes
  ``<object{k}><region>``;
* the item's other objects (named only in assistant turns, or not at all, as Osprey's items hold
  regions their questions do not name) are declared at the start of the first user turn,
  ``"Regions: <object0><region>, <object1><region>.\\n"``, as Osprey's own loaders list every region of
  an item up front (``osprey/datasets/osprey_724k.py``);
* every other mention, in any turn, is the bare ``<object{k}>``;
* k counts the placeholders in text order (declared objects first).

:func:`apply_visual_prompt` then realises the loader option ``visual_prompt``
(:data:`~utils.visual_prompts.overlays.VISUAL_PROMPT_MODES`): ``"region"`` keeps the text as it is;
``"overlay"`` and ``"both"`` word the bare mentions with the object's overlay
(:func:`~utils.visual_prompts.overlays.overlay_phrase`, and in ``"both"`` the tag after it) and hand the
rest to :func:`~utils.visual_prompts.overlays.apply_overlays`, which draws the prompts and words the
``<object{k}><region>`` references.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from utils.data.prompts import object_reference
from utils.data.schema import Sample
from utils.visual_prompts.overlays import SHAPES, apply_overlays, check_mode, overlay_phrase, random_styles

BARE_REFERENCE = re.compile(r"<object(\d+)>(?!<region>)")
"""A mention of object k that is not its ``<region>`` placeholder."""

SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")
"""Text that ends where a sentence starts (so a wording put there is capitalised)."""

DECLARATION = "Regions: {references}.\n"
"""How the first user turn declares the objects no user turn names before an answer does."""


@dataclass
class ReferencedConversation:
    """A conversation with its objects numbered.

    Attributes:
        conversation: the turns, tags replaced by ``<object{k}><region>`` / ``<object{k}>``.
        annotations: ``annotations[k]`` is the index (into the item's boxes / masks) of object k.
    """

    conversation: list[dict[str, str]]
    annotations: list[int]


def reference_objects(
    conversation: list[dict[str, str]],
    tag: re.Pattern,
    annotation_of: Callable[[re.Match], int],
    num_annotations: int,
    where: str,
) -> ReferencedConversation:
    """Replace every ``tag`` match of ``conversation`` by its object's reference (rules in the module docstring).

    ``annotation_of(match)`` is the annotation a match names; every one of the ``num_annotations``
    annotations becomes an object. A match naming an annotation outside ``[0, num_annotations)`` is a
    ``ValueError`` naming ``where``.
    """
    mentions = []  # (turn, match) in text order
    for position, turn in enumerate(conversation):
        for match in tag.finditer(turn["content"]):
            annotation = annotation_of(match)
            if not 0 <= annotation < num_annotations:
                raise ValueError(
                    f"{where}: {match.group(0)!r} names annotation {annotation} but the item has {num_annotations}"
                )
            mentions.append((position, match, annotation))
    first_mention: dict[int, int] = {}
    for position, _, annotation in mentions:
        first_mention.setdefault(annotation, position)
    inline = [a for a in dict.fromkeys(a for _, _, a in mentions) if conversation[first_mention[a]]["role"] == "user"]
    declared = [a for a in range(num_annotations) if a not in inline]
    order = declared + inline
    number = {annotation: k for k, annotation in enumerate(order)}
    placed: set[int] = set(declared)
    turns = []
    for position, turn in enumerate(conversation):

        def replace(match: re.Match, position: int = position, role: str = turn["role"]) -> str:
            k = number[annotation_of(match)]
            if role == "user" and order[k] not in placed:
                placed.add(order[k])
                return object_reference(k)
            return f"<object{k}>"

        turns.append({**turn, "content": tag.sub(replace, turn["content"])})
    if declared:
        references = ", ".join(object_reference(number[a]) for a in declared)
        turns[0] = {**turns[0], "content": DECLARATION.format(references=references) + turns[0]["content"]}
    return ReferencedConversation(turns, order)


def apply_visual_prompt(sample: Sample, mode: str, rng: np.random.Generator, shapes: Sequence[str] = SHAPES) -> Sample:
    """``sample`` (region-QA text and prompts) as ``mode`` asks: unchanged for ``"region"``; for
    ``"overlay"`` / ``"both"`` every object drawn in a random style (``shapes``, distinct colours) and
    named by its wording, the bare ``<object{k}>`` mentions of every turn included."""
    check_mode(mode)
    if mode == "region" or not sample.regions:
        return sample
    count = max(prompt.region for prompt in sample.regions) + 1
    styles = random_styles(count, rng, shapes=shapes)

    def word(match: re.Match) -> str:
        phrase = overlay_phrase(styles[int(match.group(1))])
        if SENTENCE_START.search(match.string[: match.start()]):
            phrase = phrase[0].upper() + phrase[1:]
        return phrase if mode == "overlay" else f"{phrase} {match.group(0)}"

    conversation = [{**turn, "content": BARE_REFERENCE.sub(word, turn["content"])} for turn in sample.conversation]
    return apply_overlays(dataclasses.replace(sample, conversation=conversation), styles, mode, rng)

"""Object ids in text (GPT4Scene style): proposal ``k`` is written ``<OBJ{k:03d}>``; answers name proposals by id.

Grounding in this style is plain language modelling: the model answers with ids, and the answer's ids are
looked up in the scene's proposals ``(N, 6)`` (centre + size) to give the predicted boxes. Parsing is
lenient about what a model may write (``<obj12>``, ``<OBJ 012>``, no zero padding) and keeps each id once,
in order of first mention; ids with no proposal are reported, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

OBJECT_ID_PATTERN = re.compile(r"<\s*obj\s*(\d+)\s*>", re.IGNORECASE)
"""An object id as models write it: ``<OBJ012>``, ``<obj12>``, ``<OBJ 012>``, ``< OBJ012 >``."""

OBJECT_ID_DIGITS = 3
"""Zero padding of a formatted id (ids above 999 take more digits)."""


def format_object_id(index: int) -> str:
    """``<OBJ012>`` for proposal ``index`` (``>= 0``)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"an object id is a proposal index >= 0, got {index!r}")
    return f"<OBJ{int(index):0{OBJECT_ID_DIGITS}d}>"


@dataclass(frozen=True)
class ObjectIdMentions:
    """The object ids a text mentions, each once, in order of first mention.

    Attributes:
        ids: ids that name a proposal (all of them when the number of proposals is not known).
        out_of_range: ids with no proposal (``>=`` the number of proposals).
    """

    ids: tuple[int, ...]
    out_of_range: tuple[int, ...] = ()


def parse_object_ids(text: str, num_proposals: int | None = None) -> ObjectIdMentions:
    """Every ``<OBJ###>`` in ``text`` (see :data:`OBJECT_ID_PATTERN`), split into ids of the ``num_proposals``
    proposals and ids out of range (none when ``num_proposals`` is ``None``)."""
    if num_proposals is not None and num_proposals < 0:
        raise ValueError(f"num_proposals must be >= 0, got {num_proposals}")
    mentioned = list(dict.fromkeys(int(match) for match in OBJECT_ID_PATTERN.findall(text)))
    if num_proposals is None:
        return ObjectIdMentions(tuple(mentioned))
    return ObjectIdMentions(
        ids=tuple(i for i in mentioned if i < num_proposals),
        out_of_range=tuple(i for i in mentioned if i >= num_proposals),
    )


def boxes_for_ids(ids: Sequence[int], proposals: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The boxes of proposals ``ids``: ``(K, 6)`` rows of ``proposals`` ``(N, 6)``, in the order of ``ids``
    (``(0, 6)`` for no ids), the same type as ``proposals``. Every id must be in ``[0, N)``."""
    if proposals.ndim != 2 or proposals.shape[1] != 6:
        raise ValueError(f"proposals must be (N, 6) centre + size boxes, got shape {tuple(proposals.shape)}")
    bad = [i for i in ids if not 0 <= i < len(proposals)]
    if bad:
        raise ValueError(f"object ids {bad} name no proposal (the scene has {len(proposals)})")
    index = np.asarray(ids, dtype=np.int64)
    return proposals[torch.from_numpy(index)] if isinstance(proposals, torch.Tensor) else proposals[index]


def boxes_from_text(
    text: str, proposals: torch.Tensor | np.ndarray
) -> tuple[torch.Tensor | np.ndarray, ObjectIdMentions]:
    """``(boxes (K, 6), mentions)``: the boxes of the proposals an answer names, and what it named (ids out of
    range are in ``mentions.out_of_range`` and give no box)."""
    mentions = parse_object_ids(text, len(proposals))
    return boxes_for_ids(mentions.ids, proposals), mentions

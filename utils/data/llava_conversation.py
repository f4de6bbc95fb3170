"""LLaVA-style instruction items: their ``conversations`` as a :class:`~utils.data.schema.Sample` chat, and their files.

The format (haotian-liu/LLaVA ``docs/Finetune_Custom_Data.md`` and ``llava/train/train.py``,
``LazySupervisedDataset``; used as-is by ViP-LLaVA-Instruct, Osprey-724K and LLaVA-Video-178K): a JSON
list of items ``{"id", "image" | "video", "conversations": [{"from": "human" | "gpt", "value": str}, ...]}``.
The media tag sits at the start (``"<image>\\n..."``) or the end (``"...\\n<image>"``) of the first human
turn; LLaVA-Video-178K writes ``<image>`` for its videos too, other video data ``<video>``.

Conversion (:func:`chat_turns`): ``human`` -> ``user``, ``gpt`` -> ``assistant``; a first turn that is
not the human's is dropped, as LLaVA's ``preprocess`` does; the turns must then alternate and end with
the assistant's. Every media tag is removed and the text stripped (as RGA3's loaders do,
``text.replace('<image>', '').strip()``), because the collator puts the media placeholders in the first
user turn itself. Every assistant turn is kept: the collator trains on all of them, and
``meta["answer"]`` (:func:`final_answer`) is the last one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.data.image_io import read_json, read_rgb

ROLES = {"human": "user", "gpt": "assistant"}
"""LLaVA's speaker names -> the chat roles of :class:`~utils.data.schema.Sample`."""

MEDIA_TAGS = ("<image>", "<video>")
"""Media tags the text may hold; the collator inserts the real placeholders."""


def strip_media_tags(text: str) -> str:
    """``text`` without any :data:`MEDIA_TAGS`, stripped of surrounding whitespace."""
    for tag in MEDIA_TAGS:
        text = text.replace(tag, "")
    return text.strip()


def chat_turns(conversations: object, where: str) -> list[dict[str, str]]:
    """``[{"role", "content"}, ...]`` of an item's ``conversations`` (see the module docstring).

    Raises ``ValueError`` naming ``where`` for a turn that is not ``{"from": "human" | "gpt", "value": str}``,
    turns that do not alternate, a conversation that does not end with the assistant, or a turn left empty.
    """
    if not isinstance(conversations, list) or not conversations:
        raise ValueError(f"{where}: 'conversations' must be a non-empty list of {{'from', 'value'}} turns")
    turns = []
    for position, turn in enumerate(conversations):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            raise ValueError(
                f"{where}: turn {position} is not {{'from': 'human' | 'gpt', 'value': str}}: {str(turn)[:200]}"
            )
        role = ROLES[turn["from"]]
        if not turns and role != "user":
            continue
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"{where}: turn {position} is from {turn['from']!r} but the turns must alternate")
        content = strip_media_tags(turn["value"])
        if not content:
            raise ValueError(f"{where}: turn {position} is empty once its media tag is removed")
        turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the conversation must end with an assistant ('gpt') turn")
    return turns


def final_answer(conversation: list[dict[str, str]]) -> str:
    """The last assistant turn (``meta["answer"]``)."""
    return next(turn["content"] for turn in reversed(conversation) if turn["role"] == "assistant")


def read_items(path: Path) -> list[dict]:
    """The JSON list of items in ``path``; ``ValueError`` naming the file for anything else."""
    items = read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: item {index} is not an object: {str(item)[:200]}")
    return items


def read_image(path: Path, where: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an item's image; errors name the item ``where`` and the file.

    A missing file raises ``FileNotFoundError``; one that does not decode (corrupt, truncated, not an
    image) raises ``ValueError``.
    """
    try:
        return read_rgb(path, where)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ValueError(f"{where}: cannot decode image {path} ({error})") from error


def media_path(folder: Path, relative: object, where: str, key: str = "image") -> Path:
    """``folder / relative`` for an item's ``key`` field, refusing a non-string, absolute or escaping path."""
    if not isinstance(relative, str) or not relative.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty relative path, got {relative!r}")
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{where}: {key!r} must stay inside {folder}, got {relative!r}")
    return folder / path

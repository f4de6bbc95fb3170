"""Sequence packing for training: several samples back to back in one row, each attending only to itself.

A collated training batch (one right-padded sample per row, :class:`utils.data.collate.SampleCollator`) is packed
greedily in sample order into rows of at most ``max_length`` tokens (a sample longer than that gets a row of its
own; none is ever cut). Sample order is kept, so Qwen's visual inputs (``pixel_values*``, ``*_grid_thw``,
``second_per_grid_ts``), whose features fill the visual placeholders in row-major order, and every per-sample list
(``geometry_frames``) pass through unchanged. ``packed_segments`` lists, per row, the ``(start, end)`` of each
sample in it; the model reads it (:meth:`model.modeling_unigr.UniGRForConditionalGeneration.assemble`): each sample
gets its own M-RoPE positions, and its tokens attend only to tokens of the same sample (transformers builds that
block-causal mask from the text positions, which restart at 0 for every sample).

Only batches whose every field is packed correctly are accepted: text answers with images, videos and geometry
tokens (the GSM handles packed rows sample by sample). A batch carrying a field that a row-based part reads
(region prompts, SAM2 frames and masks, scenes and proposals, ...) is refused naming the field. The labels of a
packed row are the samples' labels back to back: a sample's first token is never a target (it opens the system or
user turn), so no loss crosses from one sample into the next.
"""

from __future__ import annotations

import math

import torch

from utils.data.collate import IGNORE_INDEX

TOKEN_FIELDS = {
    "input_ids": None,
    "labels": IGNORE_INDEX,
    "attention_mask": 0,
    "mm_token_type_ids": 0,
    "question_seconds": math.nan,
}
"""``(B, L)`` fields packed token by token -> their padding value (``input_ids``: the tokenizer's pad id)."""
MASK_FIELDS = ("question_mask",)
"""``(B, L)`` bool fields packed token by token (padding: ``False``)."""
PASSED_FIELDS = frozenset(
    {"pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "geometry_frames"}
)
"""Fields in sample order that packing leaves as they are."""


def pack_rows(lengths: list[int], max_length: int) -> list[list[int]]:
    """Samples ``0 .. n-1`` of ``lengths`` tokens, in order, grouped greedily into rows of at most ``max_length``
    tokens (a longer sample alone in its row)."""
    if max_length < 1:
        raise ValueError(f"the packing length must be positive, got {max_length}")
    rows: list[list[int]] = []
    used = max_length
    for index, length in enumerate(lengths):
        if rows and used + length <= max_length:
            rows[-1].append(index)
            used += length
        else:
            rows.append([index])
            used = length
    return rows


def pack_batch(batch: dict, max_length: int, pad_token_id: int) -> dict:
    """The packed form of a collated training ``batch`` (module docstring); ``packed_segments`` added."""
    unknown = sorted(set(batch) - set(TOKEN_FIELDS) - set(MASK_FIELDS) - PASSED_FIELDS)
    if unknown:
        raise ValueError(
            f"sequence packing cannot pack the batch field(s) {unknown}: a part reads them row by row "
            "(pack text answers with images, videos or geometry tokens only, or turn data.pack_length off)"
        )
    if "labels" not in batch:
        raise ValueError("sequence packing is for training batches (labels); generation takes one sample per row")
    attention = batch["attention_mask"].bool()
    if bool((attention[:, :-1] < attention[:, 1:]).any()):
        raise ValueError("sequence packing needs right-padded rows (a training collator's)")
    lengths = attention.sum(dim=1).tolist()
    rows = pack_rows(lengths, max_length)
    width = max(sum(lengths[i] for i in row) for row in rows)
    packed = {key: value for key, value in batch.items() if key in PASSED_FIELDS}
    pads = {**TOKEN_FIELDS, "input_ids": pad_token_id}
    for key in [*TOKEN_FIELDS, *MASK_FIELDS]:
        if key not in batch:
            continue
        source = batch[key]
        target = source.new_full((len(rows), width), pads.get(key, False))
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                target[r, start : start + lengths[i]] = source[i, : lengths[i]]
                start += lengths[i]
        packed[key] = target
    segments = []
    for row in rows:
        ends = torch.tensor([lengths[i] for i in row]).cumsum(0).tolist()
        segments.append(list(zip([0, *ends[:-1]], ends)))
    packed["packed_segments"] = segments
    return packed


class PackingCollator:
    """A training collator whose batches are packed into rows of at most ``max_length`` tokens.

    Args:
        collator: the sample collator (training mode: right padding, labels).
        max_length: the longest packed row, in tokens.
    """

    def __init__(self, collator, max_length: int):
        if collator.inference:
            raise ValueError("sequence packing is for training; an inference collator pads one prompt per row")
        if max_length < 1:
            raise ValueError(f"the packing length must be positive, got {max_length}")
        self.collator, self.max_length = collator, max_length

    def __call__(self, samples: list) -> dict:
        batch = self.collator(samples)
        return pack_batch(batch, self.max_length, self.collator.processor.tokenizer.pad_token_id)

"""A training aid for boxes written as text: supervise where the answer's tokens look.

To write a box, the tokens of the answer must attend to the visual tokens that show its target and read their
place. A real Qwen2.5-VL starts with that routing; a tiny one trained from scratch on boxes in text does not
form it (its attention from the answer to the visual tokens stays uniform, and its answer loss is the same with
another question's frame), because the digits reward looking at the target only once they can be read from it,
and reading them is learned only once it looks. This aid breaks that circle, as stage 0 does for ``[SEG]``
(:mod:`scripts.pretrain_grounding`): one layer's attention, averaged over its heads, is pulled towards the
target's visual tokens, from the answer's positions listed below.

Targets, per sample (:func:`routing_targets`):

* an answer with boxes (``Sample.boxes``, one per ``{...}`` of the answer, in order): each position predicting a
  token of the k-th box (``{`` to ``}``) looks at box k;
* an answer without boxes to a question with one (HOI-QA's "what is in this box", "which hand is this"): the
  position predicting the answer's first token looks at the question's box (the later ones spell the word on;
  pulled to the box too, the last layer's attention had no room left for the spelling: "right hl");
* a 3D scene (a video of posed RGB-D frames): the position predicting the first token of each answer looks at
  the objects its question is about (the loader's ``meta["gt_boxes"]`` per question: ScanQA's objects,
  Scan2Cap's and ScanRefer's target). With object tokens (``model.encoders.proposals``: one ``<proposal>`` token
  per proposal after the video) it looks at the tokens of the proposals that match those objects (3D IoU at
  least :data:`PROPOSAL_MATCH_IOU`), equally weighted (:func:`proposal_turn_weights`); without them, at the video
  tokens, each weighted by its pixels inside their 3D boxes (:func:`~utils.scene3d.proposal_views.proposal_views`);
* a multiple-choice answer (``meta["options"]``; the answer is one option's letter, DSR-Bench's format, or its text,
  :data:`utils.data.llava_video.MC_ANSWERS`): the position predicting each answer's letter (or first token) looks at
  the tokens of the option that letter labels in its question (``(C) 4.9 m``), against every option's tokens
  (:func:`choice_target`). A tiny model must learn both to find the option that fits what it saw and to copy that
  option's letter, and the letter alone rewards neither until both work; this pulls the answer onto the right option,
  so both can form (its query has to come from the video or the geometry tokens to tell the options apart);
* otherwise, nothing (the sample trains by its answer's loss alone).

A box weighs each visual token by the share of the box the token's cell covers (:func:`box_cell_weights`); the
loss is the cross-entropy of the attention against those weights, ``-sum_t q_t log a_t``, averaged over the
supervised positions of the global batch (:func:`routing_counts`). The aid needs the layer's attention weights,
so the model runs with ``attn_implementation: eager``; it changes no weight's shape and nothing is saved with the
model. Config::

    routing_aid: {layer: 1, weight: 1.0}   # null: off
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from model.encoders.proposal_tokens import PROPOSAL_PLACEHOLDER
from model.visual_tokens import VisualTokens, visual_layouts
from utils.data.box_text import grid_to_pixels, parse_grid_boxes
from utils.data.collate import IGNORE_INDEX
from utils.data.llava_video import OPTION_LINE
from utils.data.scene3d import match_proposals
from utils.data.schema import Sample
from utils.scene3d.proposal_views import proposal_views

EPSILON = 1e-6
"""Added to the attention before its log: a target token the layer ignores costs ``-log(1e-6)``, not infinity."""
PROPOSAL_MATCH_IOU = 0.25
"""A question's object is the proposal whose 3D box overlaps its box most, if at least this much (ScanRefer's
Acc@0.25 threshold: a proposal the benchmark would count as finding the object)."""


@dataclass
class RoutingTarget:
    """One sample's supervised attention.

    Attributes:
        queries: ``(Q,)`` sequence positions whose attention is supervised.
        keys: ``(N,)`` sequence positions of the sample's visual tokens.
        weights: ``(Q, N)`` float, each row the target distribution over ``keys`` (sums to 1).
    """

    queries: torch.Tensor
    keys: torch.Tensor
    weights: torch.Tensor


def box_cell_weights(box: np.ndarray, image_size: tuple[float, float], grid: tuple[int, int]) -> torch.Tensor:
    """``(h * w,)`` share of ``box`` (pixels ``x1, y1, x2, y2`` of an image of ``image_size`` ``(width, height)``)
    inside each cell of an ``(h, w)`` token grid over the same image, row-major; sums to 1.

    Qwen's processor resizes a frame whole (no crop), so a box keeps its place relative to the frame. A box of no
    area counts as the cell holding its centre. Raises ``ValueError`` for a box outside the image."""
    h, w = grid
    width, height = image_size
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height):
        raise ValueError(f"box {box.tolist()} is not inside the {width}x{height} image")
    xs = np.clip(np.array([x1, x2]) / width * w, 0, w)
    ys = np.clip(np.array([y1, y2]) / height * h, 0, h)
    edges_x, edges_y = np.arange(w + 1), np.arange(h + 1)
    cover_x = np.clip(np.minimum(edges_x[1:], xs[1]) - np.maximum(edges_x[:-1], xs[0]), 0, None)  # (w,)
    cover_y = np.clip(np.minimum(edges_y[1:], ys[1]) - np.maximum(edges_y[:-1], ys[0]), 0, None)  # (h,)
    share = cover_y[:, None] * cover_x[None]  # (h, w)
    if share.sum() <= 0:
        share = np.zeros((h, w))
        share[min(int(ys.mean()), h - 1), min(int(xs.mean()), w - 1)] = 1.0
    return torch.from_numpy(share / share.sum()).float().flatten()


def answer_box_queries(labels: torch.Tensor, token_texts: list[str]) -> tuple[list[int], list[int]]:
    """The positions predicting an answer token, and per position the index of the ``{...}`` box that token
    belongs to (-1 outside every box).

    Args:
        labels: ``(L,)`` one sample's labels (``IGNORE_INDEX`` off the answer).
        token_texts: the decoded text of each of the sample's ``L`` tokens.
    """
    queries, boxes = [], []
    box, inside = -1, False
    for position in (labels != IGNORE_INDEX).nonzero()[:, 0].tolist():
        if position == 0:
            continue
        text = token_texts[position]
        if "{" in text:
            box, inside = box + 1, True
        queries.append(position - 1)  # the state at p - 1 predicts the token at p
        boxes.append(box if inside else -1)
        if "}" in text:
            inside = False
    return queries, boxes


def answer_starts(labels: torch.Tensor) -> list[int]:
    """The first position of each answer (each run of labelled tokens) in one sample's ``(L,)`` labels."""
    labelled = (labels != IGNORE_INDEX).tolist()
    return [p for p, on in enumerate(labelled) if on and (p == 0 or not labelled[p - 1])]


def question_boxes(sample: Sample) -> list[np.ndarray | None]:
    """Per answer of a scene sample, the ``(K, 6)`` boxes of the objects its question is about
    (``meta["turn_boxes"]``, or ``meta["gt_boxes"]`` for a sample of one question), ``None`` where unknown."""
    return sample.meta.get("turn_boxes", [sample.meta.get("gt_boxes")])


def scene_turn_weights(sample: Sample, layout, tokens: VisualTokens) -> list[torch.Tensor | None]:
    """Per answer of a scene sample, ``(N,)`` weights of its video tokens by their pixels inside the boxes of the
    objects its question is about (``meta["turn_boxes"]``, or ``meta["gt_boxes"]`` for a sample of one question;
    sums to 1), or ``None`` (no boxes, or no pixel)."""
    slots, h, w = layout.grid
    merge = tokens.spatial_merge_size
    result: list[torch.Tensor | None] = []
    for boxes in question_boxes(sample):
        if boxes is None or not len(boxes):
            result.append(None)
            continue
        views = proposal_views(
            sample.scene, sample.frames, boxes, (slots, h * merge, w * merge), merge, tokens.temporal_patch_size
        )
        weights = views.token_weights.sum(0)
        result.append(weights / weights.sum() if weights.sum() > 0 else None)
    return result


def proposal_turn_weights(sample: Sample, num_slots: int) -> list[torch.Tensor | None]:
    """Per answer of a scene sample, ``(num_slots,)`` weights of its ``<proposal>`` tokens (token ``k`` is proposal
    ``k``): equal on the proposals matched to the objects its question is about (``meta["turn_boxes"]``, or
    ``meta["gt_boxes"]``; :func:`~utils.data.scene3d.match_proposals` at :data:`PROPOSAL_MATCH_IOU`), or ``None``
    (no boxes, or none matched)."""
    proposals = sample.proposals if sample.proposals is not None else np.zeros((0, 6))
    result: list[torch.Tensor | None] = []
    for boxes in question_boxes(sample):
        ids = match_proposals(boxes, proposals, PROPOSAL_MATCH_IOU)[0] if boxes is not None else []
        ids = sorted({int(k) for k in ids if 0 <= k < num_slots})
        if not ids:
            result.append(None)
            continue
        weights = torch.zeros(num_slots)
        weights[ids] = 1.0 / len(ids)
        result.append(weights)
    return result


def sample_boxes(sample: Sample) -> tuple[np.ndarray | None, bool]:
    """``(boxes, in_answer)``: the sample's answer boxes (``Sample.boxes``, pixels of the frame as loaded), else
    the boxes of its question (grid boxes of its last user turn, in pixels), else ``(None, False)``."""
    if sample.boxes is not None and len(sample.boxes):
        return np.asarray(sample.boxes)[:, 0], True
    questions = [turn["content"] for turn in sample.conversation if turn["role"] == "user"]
    found = parse_grid_boxes(questions[-1]).boxes if questions else np.zeros((0, 4))
    if not len(found):
        return None, False
    height, width = sample.frames.shape[1:3]
    return grid_to_pixels(found, (width, height)), False


def routing_targets(
    samples: list[Sample],
    batch: dict,
    tokens: VisualTokens,
    decode: Callable[[int], str],
    proposal_token: int | None = None,
) -> list[RoutingTarget | None]:
    """Per sample of a collated ``batch`` (rows in ``samples``' order), its :class:`RoutingTarget`, or ``None``
    (no box, no visual tokens, or no answer token to supervise). ``proposal_token``: the ``<proposal>``
    placeholder's id, where the model has object tokens."""
    if batch.get("packed_segments") is not None:
        raise ValueError("the routing aid reads one sample per row: turn sequence packing off (data.pack_length)")
    targets: list[RoutingTarget | None] = []
    for sample, row, labels, layout in zip(
        samples, batch["input_ids"], batch["labels"], visual_layouts(batch["input_ids"], batch, tokens)
    ):
        if layout is None:
            targets.append(None)
        elif sample.scene is not None:
            slots = (row == proposal_token).nonzero()[:, 0] if proposal_token is not None else None
            targets.append(scene_target(sample, labels, layout, tokens, slots))
        elif sample.meta.get("options"):
            targets.append(choice_target(sample, row, labels, decode))
        else:
            targets.append(frame_target(sample, row, labels, layout, decode))
    return targets


def scene_target(
    sample: Sample, labels: torch.Tensor, layout, tokens: VisualTokens, proposal_slots: torch.Tensor | None = None
) -> RoutingTarget | None:
    """A scene sample's target: each answer's first token looks at its question's objects, at their object tokens
    where the row has them (``proposal_slots``: the positions of its ``<proposal>`` tokens), else at their video
    tokens (module docstring)."""
    if sample.medium != "video":
        return None
    starts = answer_starts(labels)
    if proposal_slots is not None and len(proposal_slots):
        keys, turns = proposal_slots, proposal_turn_weights(sample, len(proposal_slots))
    else:
        keys, turns = layout.positions, scene_turn_weights(sample, layout, tokens)
    if len(starts) != len(turns):
        return None
    chosen = [(start - 1, weights) for start, weights in zip(starts, turns) if weights is not None and start > 0]
    if not chosen:
        return None
    queries = torch.tensor([query for query, _ in chosen])
    return RoutingTarget(queries, keys, torch.stack([weights for _, weights in chosen]))


def frame_target(
    sample: Sample, row: torch.Tensor, labels: torch.Tensor, layout, decode: Callable[[int], str]
) -> RoutingTarget | None:
    """An image or video sample's target from its answer's boxes or its question's (module docstring)."""
    boxes, in_answer = sample_boxes(sample)
    if boxes is None:
        return None
    slots, h, w = layout.grid
    height, width = sample.frames.shape[1:3]
    cells = [box_cell_weights(box, (width, height), (h, w)).repeat(slots) / slots for box in boxes]
    queries, box_of = answer_box_queries(labels, [decode(int(token)) for token in row])
    if in_answer:
        chosen = [(q, k) for q, k in zip(queries, box_of) if 0 <= k < len(cells)]
    else:
        chosen = [(q, 0) for q in queries[:1]]
    if not chosen:
        return None
    weights = torch.stack([cells[k] for _, k in chosen])
    return RoutingTarget(torch.tensor([q for q, _ in chosen]), layout.positions, weights)


def option_spans(question: str) -> dict[str, tuple[int, int]]:
    """``{letter: (start, end)}``: the character span of each option line (``(A) text``, ``A. text``) of a
    multiple-choice user turn, in order from ``A``."""
    spans, offset = {}, 0
    for line in question.splitlines(keepends=True):
        match = OPTION_LINE.match(line)
        if match and match.group(1) == chr(ord("A") + len(spans)):
            spans[match.group(1)] = (offset + len(line) - len(line.lstrip()), offset + len(line.rstrip()))
        offset += len(line)
    return spans


def tokens_covering(ends: np.ndarray, lengths: list[int], start: int, end: int) -> list[int]:
    """The tokens (token ``i`` covers characters ``[ends[i] - lengths[i], ends[i])``) overlapping ``[start, end)``."""
    return [i for i, (stop, length) in enumerate(zip(ends.tolist(), lengths)) if stop > start and stop - length < end]


def choice_target(
    sample: Sample, row: torch.Tensor, labels: torch.Tensor, decode: Callable[[int], str]
) -> RoutingTarget | None:
    """A multiple-choice sample's target: the position predicting each answer's letter looks at the tokens of the
    right option, among all its question's option tokens (module docstring). Turns whose answer is not one of its
    options' letters, or whose options are not found in the tokens, are left out."""
    texts = [decode(int(token)) for token in row]
    lengths = [len(text) for text in texts]
    ends = np.cumsum(lengths)
    full = "".join(texts)
    turns = sample.conversation
    pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
    starts = answer_starts(labels)
    if len(starts) != len(pairs):
        return None
    chosen: list[tuple[int, list[int], list[int]]] = []  # (query, every option's tokens, the right option's)
    for start, (question, answer) in zip(starts, pairs):
        letter, spans = answer.strip().strip("()."), option_spans(question)
        texts = {OPTION_LINE.match(question[s:e]).group(2): key for key, (s, e) in spans.items()}
        letter = texts.get(answer.strip(), letter)  # an answer written as its option's text
        if letter not in spans or start == 0:
            continue
        first, last = spans["A"][0], spans[chr(ord("A") + len(spans) - 1)][1]
        found = full.rfind(question[first:last], 0, int(ends[start - 1]))
        if found < 0:
            continue
        shift = found - first
        right = tokens_covering(ends, lengths, spans[letter][0] + shift, spans[letter][1] + shift)
        every = tokens_covering(ends, lengths, found, found + last - first)
        if right:
            chosen.append((start - 1, every, right))
    if not chosen:
        return None
    keys = sorted({i for _, every, _ in chosen for i in every})
    column = {position: k for k, position in enumerate(keys)}
    weights = torch.zeros(len(chosen), len(keys))
    for q, (_, _, right) in enumerate(chosen):
        weights[q, [column[i] for i in right]] = 1.0 / len(right)
    return RoutingTarget(torch.tensor([query for query, _, _ in chosen]), torch.tensor(keys), weights)


class RoutingTargetCollator:
    """A collator that adds ``routing_targets`` (:func:`routing_targets`) to what ``collator`` returns."""

    def __init__(self, collator: Callable[[list[Sample]], dict], tokens: VisualTokens, tokenizer):
        self.collator, self.tokens, self.tokenizer = collator, tokens, tokenizer
        self.proposal_token = tokenizer.get_added_vocab().get(PROPOSAL_PLACEHOLDER)  # None: no object tokens

    def __call__(self, samples: list[Sample]) -> dict:
        batch = self.collator(samples)
        batch["routing_targets"] = routing_targets(
            samples, batch, self.tokens, self.tokenizer.decode, self.proposal_token
        )
        return batch


@contextmanager
def captured_attention(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, each forward of ``layer`` (a decoder layer's ``self_attn``) appends its ``(B, heads, L,
    L)`` attention weights to the yielded list. Raises ``RuntimeError`` when the layer returns none (an attention
    kernel other than eager)."""
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        if not isinstance(output, tuple) or len(output) < 2 or output[1] is None:
            raise RuntimeError("the routing aid needs attention weights: set model.attn_implementation: eager")
        captured.append(output[1])

    handle = layer.register_forward_hook(keep)
    try:
        yield captured
    finally:
        handle.remove()


def routing_loss(
    attention: torch.Tensor, targets: list[RoutingTarget | None], count: float | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of ``attention`` ``(B, heads, L, L)`` (averaged over heads) against the targets, summed over
    the supervised positions and divided by ``count`` (default: their number here; a trainer passes the global
    batch's, :func:`routing_counts`), and two read-outs divided alike: the attention's mass on the target's visual
    tokens and how often its most attended visual token is one of them. Every call reports the same terms (zero
    without a target), as every rank must."""
    losses, mass, hits = [attention.new_zeros(())], 0.0, 0.0
    for row, target in enumerate(targets):
        if target is None:
            continue
        keys, weights = target.keys.to(attention.device), target.weights.to(attention.device)
        looked = attention[row].mean(0)[target.queries.to(attention.device)][:, keys]  # (Q, N)
        losses.append(-(weights * (looked + EPSILON).log()).sum())
        with torch.no_grad():
            on_target = weights > 0
            mass += float((looked * on_target).sum())
            hits += float(on_target.gather(1, looked.argmax(-1, keepdim=True)).sum())
    local = sum(len(target.queries) for target in targets if target is not None)
    divisor = max(float(count if count is not None else local), 1.0)
    return torch.stack(losses).sum() / divisor, {"routing_mass": mass / divisor, "routing_top_hit": hits / divisor}


def routing_counts(count_fn: Callable[[dict], dict[str, int]]) -> Callable[[dict], dict[str, int]]:
    """``count_fn`` (a trainer's per-micro-batch counts) plus ``num_routing_queries``, the batch's supervised
    positions, so that the aid is averaged over the global batch as the other losses are."""

    def counts(batch: dict) -> dict[str, int]:
        targets = batch.get("routing_targets") or []
        return {**count_fn(batch), "num_routing_queries": sum(len(t.queries) for t in targets if t is not None)}

    return counts


def routing_step(
    step: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]], layer: int, weight: float
) -> Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]]:
    """``step`` (a trainer's step function) plus ``weight`` x :func:`routing_loss` on the attention of the LLM's
    decoder layer ``layer``; the batch's ``routing_targets`` (and ``num_routing_queries``, when the trainer
    counted them) are consumed."""

    def with_aid(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        targets = batch.pop("routing_targets")
        count = batch.pop("num_routing_queries", None)
        unwrapped = model.module if hasattr(model, "module") else model
        with captured_attention(unwrapped.language_model.layers[layer].self_attn) as captured:
            loss, metrics = step(model, batch)
        aid, readouts = routing_loss(captured[-1], targets, count)
        return loss + weight * aid, {**metrics, "routing": aid.item(), **readouts}

    return with_aid

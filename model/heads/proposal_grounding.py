"""The proposal grounding head: ``[GRD]`` hidden states score a scene's 3D object proposals (Video-3D LLM style).

Each ``[GRD]`` last hidden state ``(D_llm,)`` is projected to a query ``(E,)``; with ``query_reads_text`` the query
also attends over the last hidden states of the text before the first ``[GRD]`` (the description), so a small
LLM need not first learn to gather the description into ``[GRD]``. Each proposal box gets a feature ``(E,)``:
an MLP over the LLM's visual tokens pooled by the proposal's pixels (each token weighted by the share of its
pixels whose depth point lies in the box, :mod:`utils.scene3d.proposal_views`), the box's colour statistics at
the depth maps' resolution, and an embedding of the box (centre, size). One learned "no target" feature joins
them as candidate ``P``. A query's logits over the ``P + 1`` candidates are scaled cosines (``similarity: cosine``,
learned scale) or scaled dot products (``similarity: dot``), plus, for the proposals, a direct match of the words it
reads (:meth:`ProposalGroundingHead.word_match`): against their class names (``label_match``, one vocabulary) and,
learned, against their colour statistics (``appearance_match``).

With ``relation`` (3D grounding models' object-relation step, kept to one hop) a second, anchor query scores the
proposals the same way (plus the word match of all the words it reads), and each proposal adds, times a learned
weight that starts at 0, the anchor logits of the other proposals weighted by nearness (a softmax of minus the
distance between box centres over a learned scale, :meth:`ProposalGroundingHead.neighbour_scores`): "the chair
next to the red table" can rise by being next to what matches "red table".

With ``situation`` a ``[SIT]`` (:data:`~utils.data.prompts.SIT_TOKEN`) state locates the speaker (SQA3D's "I am
standing next to the red chair, facing the table"; the token closes the situation in the prompt, so it reads the
situation and the ``[GRD]`` of the answer reads the question after it): two more queries from it, "stand" and "face",
each attending over the situation on its own (:meth:`ProposalGroundingHead.situation_scores`), each point at one
proposal (a cross-entropy over the proposals; targets from the ground-truth pose by :func:`situation_targets`: the
proposal nearest to where the speaker stands, and the one most nearly straight ahead of them), and the pose is the
stand proposal's centre, heading to the face proposal's (:func:`pose_from_proposals`). Poses are ``(4,)``: ``x, y, z``
and the heading, radians about the vertical axis from +x. A ``[READ]`` after a ``[SIT]`` then also holds where its
object lies as seen from that pose (:mod:`model.encoders.proposal_tokens`), so "is it on my left?" is read from the
object's token instead of computed from three objects' positions by a small LLM.

Two tasks share the logits (per sample, ``grounding_multi`` in the batch; ``mode`` when absent):

* single target (ScanRefer): cross-entropy over the ``P + 1`` candidates; the target is the proposal with the
  highest IoU to the ground-truth box when that IoU is ``>= iou_threshold``, else "no target". Prediction:
  the argmax, no box when "no target" wins.
* multi target (Multi3DRefer: zero, one or several targets): a binary cross-entropy per candidate; each
  ground-truth box marks its best proposal (IoU ``>= iou_threshold``) positive, and "no target" is positive
  exactly when no proposal is. Prediction: every proposal with probability ``>= threshold``, none when
  "no target" is more probable than every proposal.

In UniGR the head is ``UniGRConfig.grounding`` (``[GRD]``'s id: ``grd_token_id``). Data: ScanRefer / Multi3DRefer
loaded with ``grounding="head"`` answer with one ``[GRD]`` and hold ``Sample.boxes_3d`` / ``Sample.grounding_multi``;
the collator (:func:`utils.data.collate.grounding_step`) adds the batch keys read below. Inference:
``UniGRForConditionalGeneration.generate`` grounds every generated ``[GRD]`` (``GenerationResult.grounding``).

The other style, proposal ids as text (``<OBJ012>``, GPT4Scene), needs no head: :mod:`utils.scene3d.object_ids`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from model.heads.base import Head, register_head
from model.proposal_features import class_name_embeddings, pool_by_pixel_share
from model.visual_tokens import VisualTokens, visual_layouts
from utils.data.collate import IGNORE_INDEX
from utils.data.prompts import GRD_TOKEN, SIT_TOKEN
from utils.scene3d.boxes import box_iou_3d
from utils.scene3d.proposal_views import APPEARANCE_DIM

MODES = ("single", "multi")
SITUATION_PARTS = ("stand", "face")  # the situation's two queries: where the speaker stands, what they face
SIMILARITIES = ("cosine", "dot")
MAX_LOGIT_SCALE = 100.0  # the learned cosine scale is clamped here (as CLIP does)
INIT_LABEL_SCALE = 5.0  # initial scale of the class-name match logits


@dataclass
class GroundingHeadConfig:
    """Everything the proposal grounding head does; stored as a dict in ``UniGRConfig.grounding``."""

    enabled: bool = True
    mode: str = "single"  # task of samples without a per-sample ``grounding_multi``: "single" | "multi"
    embed_dim: int = 256  # width E of queries and proposal features
    query_reads_text: bool = True  # the query also attends over the text before the first [GRD]
    label_match: bool = True  # proposals' detector class names matched against the question's words
    appearance_match: bool = False  # proposals' colour statistics matched against the question's words (learned)
    text_read_scale: float | None = None  # text reads: cosine attention times this (bounded, so their weights stay
    # soft) | None: dot products / sqrt(E)
    similarity: str = "cosine"  # "cosine": learned scale times cosine | "dot": dot product / sqrt(E)
    init_logit_scale: float = 10.0  # initial scale of the cosine logits
    iou_threshold: float = 0.25  # a proposal matches a ground-truth box at this IoU or above
    threshold: float = 0.5  # multi target: proposals predicted at this probability or above
    single_weight: float = 1.0  # weight of "grd_ce"
    multi_weight: float = 1.0  # weight of "grd_bce"
    multi_positive_weight: float = 1.0  # "grd_bce" weight of positive labels (a scene has far more negatives)
    relation: bool = False  # each proposal also scores by how well its nearest proposals match an anchor query
    init_neighbour_distance: float = 0.5  # relation: initial distance scale (metres) of the nearest-proposal weights
    situation: bool = False  # [SIT] states point at where the speaker stands and what they face (SQA3D)
    situation_weight: float = 1.0  # weight of "sit_ce"

    @classmethod
    def from_dict(cls, values: dict | None) -> GroundingHeadConfig:
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown grounding head options {sorted(unknown)}; known: {sorted(names)}")
        config = cls(**values)
        if config.mode not in MODES:
            raise ValueError(f"grounding.mode must be one of {MODES}, got {config.mode!r}")
        if config.text_read_scale is not None and not 0 < config.text_read_scale <= MAX_LOGIT_SCALE:
            raise ValueError(
                f"grounding.text_read_scale must be in (0, {MAX_LOGIT_SCALE}] or null, got {config.text_read_scale}"
            )
        if config.similarity not in SIMILARITIES:
            raise ValueError(f"grounding.similarity must be one of {SIMILARITIES}, got {config.similarity!r}")
        if config.embed_dim < 1:
            raise ValueError(f"grounding.embed_dim must be at least 1, got {config.embed_dim}")
        if not 0 < config.init_logit_scale <= MAX_LOGIT_SCALE:
            raise ValueError(
                f"grounding.init_logit_scale must be in (0, {MAX_LOGIT_SCALE}], got {config.init_logit_scale}"
            )
        if config.situation and not config.query_reads_text:
            raise ValueError("grounding.situation reads the text through the [GRD] read: set query_reads_text")
        if config.multi_positive_weight <= 0:
            raise ValueError(f"grounding.multi_positive_weight must be positive, got {config.multi_positive_weight}")
        for name in ("iou_threshold", "threshold"):
            if not 0 < getattr(config, name) <= 1:
                raise ValueError(f"grounding.{name} must be in (0, 1], got {getattr(config, name)}")
        return config

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear -> GELU -> Linear``."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))


def text_read(
    attention: nn.ModuleDict,
    hidden: torch.Tensor,
    text_hidden: torch.Tensor,
    reads: torch.Tensor,
    value: nn.Module | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights (O, S), read (O, E))``: the attention of states ``(O, D)`` over the text states ``(S, D)`` each
    ``reads`` (``(O, S)`` bool; none read: zero weights) through ``attention``'s ``query`` / ``key`` and ``value``
    (default: ``attention``'s own). Scores: ``scale`` times the cosine of query and key (bounded: however large the
    projections grow, no token takes more than ``e^s / (e^s + (S - 1) e^-s)`` of the weight, so the softmax does not
    saturate on one token and stop learning where to look), or without ``scale`` their dot product over ``sqrt(E)``."""
    queries, keys = attention["query"](hidden), attention["key"](text_hidden)  # (O, E), (S, E)
    if scale is None:
        scores = queries @ keys.T / math.sqrt(keys.shape[-1])  # (O, S)
    else:
        scores = scale * F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T
    weights = scores.masked_fill(~reads, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
    return weights, weights @ (value or attention["value"])(text_hidden)


def query_of_each_box(counts: list[int], device: torch.device) -> torch.Tensor:
    """``(sum(counts),)`` long: the query each stacked ground-truth box belongs to, from boxes per query."""
    counts = torch.tensor(counts, dtype=torch.long, device=device)
    return torch.repeat_interleave(torch.arange(len(counts), device=device), counts)


def match_targets(
    gt_boxes: torch.Tensor, owner: torch.Tensor, proposals: torch.Tensor, iou_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each ground-truth box's best proposal, if its IoU reaches ``iou_threshold``.

    Args:
        gt_boxes: ``(G, 6)`` ground-truth boxes of a sample's queries, stacked; owner: ``(G,)`` query of each.
        proposals: ``(P, 6)``.
    Returns:
        ``(owner (G',), proposal (G',))`` of the matched ground-truth boxes.
    """
    if len(proposals) == 0 or len(gt_boxes) == 0:
        empty = owner.new_zeros(0)
        return empty, empty
    best_iou, best = box_iou_3d(gt_boxes, proposals).max(dim=1)  # (G,)
    matched = best_iou >= iou_threshold
    return owner[matched], best[matched]


def single_targets(gt_boxes: list[torch.Tensor], proposals: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``(O,)`` class per query over ``P + 1`` candidates: its matched proposal, else ``P`` ("no target").

    ``gt_boxes``: per query ``(K, 6)`` with ``K`` 0 (no target) or 1.
    """
    counts = [len(boxes) for boxes in gt_boxes]
    if any(count > 1 for count in counts):
        raise ValueError(f"single-target grounding takes at most one box per [GRD], got {counts}")
    num_proposals = len(proposals)
    targets = torch.full((len(gt_boxes),), num_proposals, dtype=torch.long, device=proposals.device)
    owner = query_of_each_box(counts, proposals.device)
    matched_owner, matched = match_targets(torch.cat(gt_boxes).to(proposals), owner, proposals, iou_threshold)
    targets[matched_owner] = matched
    return targets


def multi_targets(gt_boxes: list[torch.Tensor], proposals: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``(O, P + 1)`` float labels: 1 for each query's matched proposals, and for "no target" where it has none.

    ``gt_boxes``: per query ``(K, 6)``, ``K >= 0``.
    """
    num_proposals = len(proposals)
    labels = torch.zeros(len(gt_boxes), num_proposals + 1, device=proposals.device)
    owner = query_of_each_box([len(boxes) for boxes in gt_boxes], proposals.device)
    matched_owner, matched = match_targets(torch.cat(gt_boxes).to(proposals), owner, proposals, iou_threshold)
    labels[matched_owner, matched] = 1.0
    labels[:, num_proposals] = (labels[:, :num_proposals].sum(dim=1) == 0).float()
    return labels


def select_proposals(logits: torch.Tensor, multi: bool, threshold: float) -> list[torch.Tensor]:
    """Per query ``(K,)`` indices of the predicted proposals from ``(O, P + 1)`` logits (last: "no target").

    Single: the argmax, nothing when it is "no target". Multi: proposals with sigmoid probability
    ``>= threshold``, nothing when "no target" is more probable than every proposal.
    """
    num_proposals = logits.shape[1] - 1
    if not multi:
        best = logits.argmax(dim=1)
        return [best[j : j + 1] if best[j] < num_proposals else best.new_zeros(0) for j in range(len(logits))]
    probs = logits.sigmoid()
    proposal_probs, no_target = probs[:, :num_proposals], probs[:, num_proposals]
    best = proposal_probs.max(dim=1).values if num_proposals else torch.full_like(no_target, -1.0)
    chosen = (proposal_probs >= threshold) & (best >= no_target)[:, None]  # (O, P)
    return [row.nonzero()[:, 0] for row in chosen]


def situation_targets(pose: torch.Tensor, proposals: torch.Tensor) -> tuple[int, int] | None:
    """``(stand, face)`` proposal indices for a ground-truth pose ``(4,)``: the proposal whose centre is nearest to
    the speaker on the floor plane, and of the others the one whose direction from the speaker is closest to the
    heading; ``None`` for fewer than two proposals."""
    if len(proposals) < 2:
        return None
    offsets = proposals[:, :2].float() - pose[:2].float()  # (P, 2)
    stand = int(offsets.norm(dim=1).argmin())
    heading = torch.stack([torch.cos(pose[3]), torch.sin(pose[3])]).float()
    alignment = F.normalize(offsets, dim=1) @ heading  # (P,) cosine of each direction off the heading
    alignment[stand] = -math.inf
    return stand, int(alignment.argmax())


def pose_from_proposals(stand: int, face: int, proposals: torch.Tensor) -> torch.Tensor:
    """``(4,)`` pose: the ``stand`` proposal's centre, heading to the ``face`` proposal's centre."""
    centre = proposals[stand, :3].float()
    ahead = proposals[face, :2].float() - centre[:2]
    return torch.cat([centre, torch.atan2(ahead[1], ahead[0])[None]])


@register_head
class ProposalGroundingHead(Head):
    """Scores 3D object proposals (plus "no target") with ``[GRD]`` hidden states."""

    name = "grounding"
    loss_names = ("grd_ce", "grd_bce", "sit_ce")
    parameter_groups: ClassVar[dict[str, tuple[str, ...]]] = {"grounding": ("",)}

    def __init__(
        self,
        config: GroundingHeadConfig,
        llm_hidden_size: int,
        grd_token_id: int,
        visual_tokens: VisualTokens,
        sit_token_id: int | None = None,
    ):
        super().__init__()
        if config.situation and sit_token_id is None:
            raise ValueError(f"grounding.situation needs the id of {SIT_TOKEN} (added with the proposals encoder)")
        self.config = config
        self.grd_token_id = grd_token_id
        self.sit_token_id = sit_token_id
        self.visual_tokens = visual_tokens
        dim = config.embed_dim
        self.query_proj = mlp(llm_hidden_size, llm_hidden_size, dim)
        self.text_attention = None
        if config.query_reads_text:
            self.text_attention = nn.ModuleDict(
                {
                    "query": nn.Linear(llm_hidden_size, dim),
                    "key": nn.Linear(llm_hidden_size, dim),
                    "value": mlp(llm_hidden_size, llm_hidden_size, dim),
                }
            )
        self.visual_proj = nn.Linear(llm_hidden_size, dim)
        self.appearance_embed = mlp(APPEARANCE_DIM, dim, dim)
        self.box_embed = mlp(6, dim, dim)
        self.proposal_mlp = mlp(3 * dim, dim, dim)
        self.no_target = nn.Parameter(torch.empty(dim))
        self.label_proj = nn.Linear(llm_hidden_size, dim) if config.label_match else None
        self.label_scale = nn.Parameter(torch.empty(())) if config.label_match else None  # log of its scale
        self.appearance_match = None
        if config.appearance_match:  # words and colour statistics mapped into one space
            self.appearance_match = nn.ModuleDict(
                {"words": nn.Linear(llm_hidden_size, dim), "appearance": mlp(APPEARANCE_DIM, dim, dim)}
            )
        self.appearance_scale = nn.Parameter(torch.empty(())) if config.appearance_match else None  # log of it
        self.logit_scale = None
        if config.similarity == "cosine":
            self.logit_scale = nn.Parameter(torch.empty(()))  # log of the cosine scale
        self.relation = None
        if config.relation:
            self.relation = nn.ParameterDict(
                {
                    "weight": nn.Parameter(torch.empty(())),  # of the relation term in the proposals' logits
                    "log_distance": nn.Parameter(torch.empty(())),  # log of the neighbour weights' distance scale
                }
            )
            self.anchor_proj = nn.Linear(dim, dim)  # the anchor query from the query
        self.situation = None
        if config.situation:  # the stand and face queries from a [SIT] query
            parts = {part: self.situation_part(llm_hidden_size, dim) for part in SITUATION_PARTS}
            self.situation = nn.ModuleDict(parts)

    @staticmethod
    def situation_part(llm_hidden_size: int, dim: int) -> nn.ModuleDict:
        """One situation query ("stand" or "face"): a map of the ``[SIT]`` query and where its text read looks (it
        reads through the ``[GRD]`` read's values, which every grounded phrase trains)."""
        return nn.ModuleDict(
            {
                "proj": nn.Linear(dim, dim),
                "query": nn.Linear(llm_hidden_size, dim),
                "key": nn.Linear(llm_hidden_size, dim),
            }
        )

    @classmethod
    def from_config(cls, values: dict | None, llm_hidden_size: int, model_config) -> ProposalGroundingHead | None:
        """The head for ``UniGRConfig.grounding`` (``None`` when unset or disabled); ``[GRD]``'s id is
        ``model_config.grd_token_id``."""
        if values is None:
            return None
        config = GroundingHeadConfig.from_dict(values)
        if not config.enabled:
            return None
        grd_token_id = getattr(model_config, "grd_token_id", None)
        if grd_token_id is None:
            raise ValueError(f"the grounding head needs the id of {GRD_TOKEN} in the model config (grd_token_id)")
        visual_tokens = VisualTokens.from_backbone_config(model_config.backbone_config)
        sit_token_id = (getattr(model_config, "placeholder_token_ids", None) or {}).get(SIT_TOKEN)
        return cls(config, llm_hidden_size, grd_token_id, visual_tokens, sit_token_id)

    def reset_new_parameters(self, std: float) -> None:
        """Linear weights ``N(0, std)``, zero biases, a ``N(0, std)`` "no target" feature, the configured scale."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.no_target, std=std)
        with torch.no_grad():
            for scale in (self.label_scale, self.appearance_scale):
                if scale is not None:
                    scale.fill_(math.log(INIT_LABEL_SCALE))
        if self.logit_scale is not None:
            with torch.no_grad():
                self.logit_scale.fill_(math.log(self.config.init_logit_scale))
        if self.relation is not None:  # starts as the head without relations
            with torch.no_grad():
                self.relation["weight"].zero_()
                self.relation["log_distance"].fill_(math.log(self.config.init_neighbour_distance))

    # --- scoring -----------------------------------------------------------------------------------

    def proposal_features(
        self,
        visual_hidden: torch.Tensor,
        token_weights: torch.Tensor,
        appearance: torch.Tensor,
        proposals: torch.Tensor,
    ) -> torch.Tensor:
        """``(P, E)`` features of proposals ``(P, 6)``.

        Args:
            visual_hidden: ``(N, D)`` last hidden states of the sample's visual tokens, in sequence order.
            token_weights: ``(P, N)`` share of each token's pixels in each box; appearance: ``(P, 7)``
                (:class:`utils.scene3d.proposal_views.ProposalViews`). A box no pixel lies in gets zero pooled
                tokens.
            proposals: ``(P, 6)`` centre + size.
        """
        dtype = self.visual_proj.weight.dtype
        pooled = pool_by_pixel_share(token_weights, visual_hidden.to(dtype))  # (P, D)
        parts = [self.visual_proj(pooled), self.appearance_embed(appearance.to(dtype))]
        parts.append(self.box_embed(proposals.to(dtype)))
        return self.proposal_mlp(torch.cat(parts, dim=-1))

    def queries(self, grd_hidden: torch.Tensor, text_hidden: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
        """``(O, E)`` queries of ``[GRD]`` states ``(O, D)``; with ``query_reads_text`` each adds its attention
        read of the text states ``(S, D)`` it ``reads`` (``(O, S)`` bool; a query that reads none adds nothing)."""
        dtype = self.visual_proj.weight.dtype
        grd_hidden = grd_hidden.to(dtype)
        queries = self.query_proj(grd_hidden)
        if self.text_attention is None or len(text_hidden) == 0:
            return queries
        scale = self.config.text_read_scale
        _, read = text_read(self.text_attention, grd_hidden, text_hidden.to(dtype), reads, scale=scale)
        return queries + read

    def score(
        self,
        grd_hidden: torch.Tensor,
        text_hidden: torch.Tensor,
        reads: torch.Tensor,
        visual_hidden: torch.Tensor,
        token_weights: torch.Tensor,
        appearance: torch.Tensor,
        proposals: torch.Tensor,
        words: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """``(O, P + 1)`` logits of ``[GRD]`` states ``(O, D)`` over proposals ``(P, 6)`` and "no target" (last).

        ``text_hidden``, ``reads``: as in :meth:`queries`; the others: as in :meth:`proposal_features`.
        ``words``: the read text's input embeddings ``(S, D)`` and the proposals' class names ``(P, D)``
        (:meth:`text_words`), for :meth:`word_match`: each query (and the relation's anchor query) matches the words
        it reads, all alike.
        """
        queries = self.queries(grd_hidden, text_hidden, reads)  # (O, E)
        features = self.proposal_features(visual_hidden, token_weights, appearance, proposals)
        candidates = torch.cat([features, self.no_target[None]], dim=0)  # (P + 1, E)
        logits = self.similarity(queries, candidates)  # (O, P + 1)
        alike = reads.to(logits) / reads.sum(dim=1, keepdim=True).clamp(min=1)  # (O, S)
        match = self.word_match(alike, words, appearance)
        proposal_logits = logits[:, :-1] + match
        if self.relation is not None:
            anchors = self.similarity(self.anchor_proj(queries), features) + match  # (O, P)
            relation = self.relation["weight"] * self.neighbour_scores(anchors, proposals.to(anchors))
            proposal_logits = proposal_logits + relation
        return torch.cat([proposal_logits, logits[:, -1:]], dim=1)

    def word_match(
        self, weights: torch.Tensor, words: tuple[torch.Tensor, torch.Tensor | None] | None, appearance: torch.Tensor
    ) -> torch.Tensor | float:
        """``(O, P)`` logits of the words each query weighs (``weights`` ``(O, S)`` over ``words``: the text's input
        embeddings ``(S, D)``, the proposals' class names ``(P, D)`` or ``None``) against the proposals (0 without
        ``words``).

        Each is a scaled cosine in a space of its own: with ``label_match`` the weighed words against the class
        names through one shared projection (one vocabulary: a name the question uses matches from the first
        step); with ``appearance_match`` the weighed words against the proposals' colour statistics ``(P, 7)``, each
        through a learned map ("red" learns to point where red boxes' statistics land).
        """
        if words is None:
            return 0.0
        dtype = self.visual_proj.weight.dtype
        text = weights.to(dtype) @ words[0].to(dtype)  # (O, D)
        total = 0.0
        if self.label_proj is not None and words[1] is not None:
            asked, classes = (F.normalize(self.label_proj(x), dim=-1) for x in (text, words[1].to(dtype)))
            total = total + self.label_scale.exp().clamp(max=MAX_LOGIT_SCALE) * asked @ classes.T
        if self.appearance_match is not None:
            asked = F.normalize(self.appearance_match["words"](text), dim=-1)
            colours = F.normalize(self.appearance_match["appearance"](appearance.to(dtype)), dim=-1)
            total = total + self.appearance_scale.exp().clamp(max=MAX_LOGIT_SCALE) * asked @ colours.T
        return total

    def situation_scores(
        self,
        sit_hidden: torch.Tensor,
        text_hidden: torch.Tensor,
        reads: torch.Tensor,
        visual_hidden: torch.Tensor,
        token_weights: torch.Tensor,
        appearance: torch.Tensor,
        proposals: torch.Tensor,
        words: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """``(S, 2, P)`` logits of ``[SIT]`` states ``(S, D)`` over the proposals: row 0 where the speaker stands,
        row 1 what they face.

        Each part's query is a map of the ``[SIT]`` query (:meth:`queries`) plus its own attention over the text
        ``(T, D)`` it ``reads`` (``(S, T)``), so "standing next to the red chair" and "facing the table" can be read
        apart, read through the ``[GRD]`` read's values (what a phrase means is learned from every grounded one);
        ``words`` (the text's input embeddings ``(T, D)``, the proposals' class names ``(P, D)``) give each part the
        :meth:`word_match` of the words its attention reads. The others: as in :meth:`score`.
        """
        dtype = self.visual_proj.weight.dtype
        queries = self.queries(sit_hidden, text_hidden, reads)  # (S, E)
        features = self.proposal_features(visual_hidden, token_weights, appearance, proposals)  # (P, E)
        sit_hidden, text_hidden = sit_hidden.to(dtype), text_hidden.to(dtype)
        rows, value = [], self.text_attention["value"]  # every part reads through the [GRD] read's values
        for name in SITUATION_PARTS:
            part = self.situation[name]
            attention, read = text_read(part, sit_hidden, text_hidden, reads, value, self.config.text_read_scale)
            query = part["proj"](queries) + read
            rows.append(self.similarity(query, features) + self.word_match(attention, words, appearance))
        return torch.stack(rows, dim=1)

    def similarity(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``(O, C)`` logits of queries ``(O, E)`` against candidates ``(C, E)`` (``config.similarity``)."""
        if self.logit_scale is None:
            return queries @ candidates.T / math.sqrt(self.config.embed_dim)
        scale = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        return scale * F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T

    def neighbour_scores(self, anchors: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """``(O, P)``: for each proposal, its anchor logits ``(O, P)`` averaged over the other proposals weighted by
        nearness (a softmax of minus the distance between box centres over the learned distance scale), so a
        proposal next to what the anchor query matches ("the chair next to the red table") scores high."""
        if len(proposals) < 2:
            return torch.zeros_like(anchors)
        nearness = -torch.cdist(proposals[:, :3], proposals[:, :3]) / self.relation["log_distance"].exp()  # (P, P)
        itself = torch.eye(len(proposals), dtype=torch.bool, device=nearness.device)
        neighbours = nearness.masked_fill(itself, -math.inf).softmax(dim=-1)  # (P, P)
        return anchors @ neighbours.T

    # --- Head --------------------------------------------------------------------------------------

    def sample_modes(self, batch: dict, batch_size: int) -> list[bool]:
        """Per sample whether it is multi-target (``grounding_multi`` in the batch, else ``config.mode``)."""
        multi = batch.get("grounding_multi")
        if multi is None:
            return [self.config.mode == "multi"] * batch_size
        if len(multi) != batch_size:
            raise ValueError(f"grounding_multi has {len(multi)} entries for {batch_size} samples")
        return [bool(value) for value in multi]

    def counts(self, batch: dict) -> dict[str, int]:
        """Queries (``[GRD]`` with targets) of single- and multi-target samples in the micro-batch (and with
        ``situation`` the ``[SIT]`` poses)."""
        targets = batch.get("gt_boxes_3d") or []
        modes = self.sample_modes(batch, len(targets)) if targets else []
        per_sample = [len(boxes) if boxes is not None else 0 for boxes in targets]
        counts = {
            "num_grounding_single_in_batch": sum(n for n, multi in zip(per_sample, modes) if not multi),
            "num_grounding_multi_in_batch": sum(n for n, multi in zip(per_sample, modes) if multi),
        }
        if self.situation is not None:
            situations = batch.get("gt_situations") or []
            counts["num_situations_in_batch"] = sum(len(poses) for poses in situations if poses is not None)
        return counts

    def predict(self, last_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict) -> dict | None:
        """The grounding of every ``[GRD]`` (and with ``situation`` the pose of every ``[SIT]``); ``None`` when the
        batch has neither.

        Reads ``proposals`` (per sample ``(P_i, 6)``) and ``proposal_views`` (per sample a
        :class:`~utils.scene3d.proposal_views.ProposalViews` over its ``N_i`` visual tokens in sequence order) for
        each sample with a ``[GRD]`` or ``[SIT]``; ``attention_mask`` (when present) marks the padding the text read
        skips. Each query reads the prompt text since the query before it (:meth:`reads_since_previous`).

        Returns:
            ``{"grounding_logits": [(O_i, P_i + 1)], "pred_proposal_ids": [[(K,)] * O_i],
            "pred_boxes_3d": [[(K, 6)] * O_i]}``: per sample its ``O_i`` queries' logits (last column "no
            target"), and per query the chosen proposals and their boxes (``K = 0``: no target); with
            ``situation`` also ``"situation_logits": [(S_i, 2, P_i)]`` and ``"pred_poses": [(S_i, 4)]`` of its
            ``S_i`` ``[SIT]`` tokens (:func:`pose_from_proposals` of the stand and face argmaxes, the face one
            chosen among the other proposals).
        """
        grd = input_ids == self.grd_token_id  # (B, L)
        sit = input_ids == self.sit_token_id if self.situation is not None else torch.zeros_like(grd)
        if not bool(grd.any()) and not bool(sit.any()):
            return None
        proposals = batch.get("proposals") or [None] * len(input_ids)
        views = batch.get("proposal_views") or [None] * len(input_ids)
        modes = self.sample_modes(batch, len(input_ids))
        layouts = visual_layouts(input_ids, batch, self.visual_tokens)
        text = self.text_positions(input_ids, grd | sit, layouts, batch.get("attention_mask"), batch.get("labels"))
        logits, ids, boxes, situation_logits, poses = [], [], [], [], []
        for i, layout in enumerate(layouts):
            width = 0 if proposals[i] is None else len(proposals[i])
            logits.append(last_hidden.new_zeros(0, width + 1))
            ids.append([])
            boxes.append([])
            situation_logits.append(last_hidden.new_zeros(0, 2, width))
            poses.append(last_hidden.new_zeros(0, 4))
            if not bool(grd[i].any()) and not bool(sit[i].any()):
                continue
            needed = {"proposals": proposals[i], "proposal_views": views[i], "visual tokens": layout}
            missing = [name for name, value in needed.items() if value is None]
            if missing:
                token = GRD_TOKEN if bool(grd[i].any()) else SIT_TOKEN
                raise ValueError(f"sample {i} of the batch has {token} but no {', '.join(missing)}")
            expected = (len(proposals[i]), len(layout.positions))
            if tuple(views[i].token_weights.shape) != expected:
                raise ValueError(
                    f"sample {i}: proposal_views has token weights {tuple(views[i].token_weights.shape)} for "
                    f"{expected[0]} proposals and {expected[1]} visual tokens"
                )
            device = last_hidden.device
            sample_proposals = proposals[i].to(device)
            text_positions = text[i].nonzero()[:, 0]  # (S,)
            scene = (
                last_hidden[i, layout.positions],
                views[i].token_weights.to(device),
                views[i].appearance.to(device),
                sample_proposals,
            )
            marks = (grd[i] | sit[i]).nonzero()[:, 0]  # every query's position: each reads the text since the last
            if bool(grd[i].any()):
                grd_positions = grd[i].nonzero()[:, 0]  # (O,)
                reads = self.reads_since_previous(text_positions, grd_positions, marks)
                words = self.text_words(batch, i, input_ids[i, text_positions])
                sample_logits = self.score(
                    last_hidden[i, grd_positions], last_hidden[i, text_positions], reads, *scene, words
                )
                chosen = select_proposals(sample_logits.detach(), modes[i], self.config.threshold)
                logits[i], ids[i] = sample_logits, chosen
                boxes[i] = [sample_proposals[index] for index in chosen]
            if bool(sit[i].any()) and len(sample_proposals):
                sit_positions = sit[i].nonzero()[:, 0]
                reads = self.reads_since_previous(text_positions, sit_positions, marks)
                words = self.text_words(batch, i, input_ids[i, text_positions])
                scores = self.situation_scores(
                    last_hidden[i, sit_positions], last_hidden[i, text_positions], reads, *scene, words
                )
                situation_logits[i], poses[i] = scores, self.poses(scores.detach(), sample_proposals)
        outputs = {"grounding_logits": logits, "pred_proposal_ids": ids, "pred_boxes_3d": boxes}
        if self.situation is not None:
            outputs.update(situation_logits=situation_logits, pred_poses=poses)
        return outputs

    @staticmethod
    def reads_since_previous(text: torch.Tensor, queries: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
        """``(O, S)`` bool: the text positions ``(S,)`` each query at ``queries`` ``(O,)`` reads, those after the
        last query mark (``[GRD]`` or ``[SIT]``, ``marks``) before it: a ``[SIT]`` closing a situation reads the
        situation, the ``[GRD]`` after it the question that follows."""
        before = marks[None] < queries[:, None]  # (O, M)
        previous = torch.where(before, marks[None], marks.new_full((), -1)).amax(dim=1)  # (O,)
        return (text[None] > previous[:, None]) & (text[None] < queries[:, None])

    @staticmethod
    def poses(scores: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """``(S, 4)`` poses of ``(S, 2, P)`` situation logits: stand argmax, face argmax among the others."""
        poses = []
        for stand_logits, face_logits in scores:
            stand = int(stand_logits.argmax())
            if len(proposals) > 1:
                face_logits = face_logits.clone()
                face_logits[stand] = -math.inf
            poses.append(pose_from_proposals(stand, int(face_logits.argmax()), proposals))
        return torch.stack(poses).to(scores.dtype)

    def text_words(
        self, batch: dict, row: int, text_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(the words' input embeddings (S, D), the proposals' class names (P, D) or None)`` for
        :meth:`word_match`, from the LLM's ``input_embeddings`` (the model passes its embedding module) and the batch's
        ``proposal_label_ids`` (class names only with ``label_match``); ``None`` without the embeddings or without a
        match configured. ``text_ids``: ``(S,)`` the token ids the queries read."""
        embeddings, label_ids = batch.get("input_embeddings"), batch.get("proposal_label_ids")
        if embeddings is None or (self.label_proj is None and self.appearance_match is None):
            return None
        classes = None
        if self.label_proj is not None and label_ids is not None and label_ids[row] is not None:
            classes = class_name_embeddings(embeddings, label_ids[row].to(text_ids.device))  # (P, D)
        return embeddings(text_ids), classes

    @staticmethod
    def text_positions(
        input_ids: torch.Tensor,
        grd: torch.Tensor,
        layouts: list,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """``(B, L)`` bool: the prompt tokens queries read: those after the row's last visual token (the questions
        that follow the media, not the system prompt) that are neither queries (``grd``: ``[GRD]`` / ``[SIT]``),
        padding (``attention_mask``) nor answer tokens (``labels`` other than -100), so training reads what
        generation reads (the prompt; ``generate`` passes no answer text before ``[GRD]``). Each query reads those
        between the previous query and itself (:meth:`predict`): in a conversation of several grounded turns, its own
        question.
        ``attention_mask`` and ``labels`` cover the first ``L' <= L`` positions; later ones are not masked."""
        text = ~grd
        for i, layout in enumerate(layouts):
            if layout is not None and len(layout.positions):
                text[i, : int(layout.positions.max()) + 1] = False
        if attention_mask is not None:
            text[:, : attention_mask.shape[1]] &= attention_mask.to(device=text.device).bool()
        if labels is not None:
            text[:, : labels.shape[1]] &= labels.to(device=text.device) == IGNORE_INDEX
        return text

    def losses(self, outputs: dict, batch: dict, counts: dict) -> dict[str, tuple]:
        """``grd_ce`` (single-target samples) and ``grd_bce`` (multi-target), each summed over queries and
        divided by the global batch's queries of its kind; ``grd_bce`` is a query's mean over its candidates.

        Reads ``gt_boxes_3d``: per sample a list of ``(K, 6)`` boxes, one entry per ``[GRD]`` in order (``K = 0``:
        the expression names nothing), or ``None`` for samples without grounding.
        """
        targets = batch.get("gt_boxes_3d") or [None] * len(outputs["grounding_logits"])
        modes = self.sample_modes(batch, len(targets))
        proposals = batch["proposals"]
        single, multi = [], []
        for i, (logits, gt_boxes) in enumerate(zip(outputs["grounding_logits"], targets)):
            if gt_boxes is None or len(logits) == 0:
                continue
            if len(gt_boxes) != len(logits):
                raise ValueError(f"sample {i}: {len(gt_boxes)} target box sets for {len(logits)} {GRD_TOKEN} tokens")
            sample_proposals = proposals[i].to(logits.device)
            if modes[i]:
                labels = multi_targets(list(gt_boxes), sample_proposals, self.config.iou_threshold)
                positive_weight = logits.new_tensor(self.config.multi_positive_weight)
                bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none", pos_weight=positive_weight)
                multi.append(bce.mean(dim=1))
            else:
                classes = single_targets(list(gt_boxes), sample_proposals, self.config.iou_threshold)
                single.append(F.cross_entropy(logits, classes, reduction="none"))
        result = {}
        situation = self.situation_loss(outputs, batch, counts)
        if situation is not None:
            result["sit_ce"] = (situation, self.config.situation_weight)
        if single:
            total = torch.cat(single).sum() / counts["num_grounding_single_in_batch"]
            result["grd_ce"] = (total, self.config.single_weight)
        if multi:
            total = torch.cat(multi).sum() / counts["num_grounding_multi_in_batch"]
            result["grd_bce"] = (total, self.config.multi_weight)
        return result

    def situation_loss(self, outputs: dict, batch: dict, counts: dict) -> torch.Tensor | None:
        """``sit_ce``: per ``[SIT]`` the cross-entropies of its stand and face logits against
        :func:`situation_targets` of its ground-truth pose (the face logits without the stand proposal), summed and
        divided by the global batch's situations; ``None`` without situations. Reads ``gt_situations``: per sample a
        list of ``(4,)`` poses, one per ``[SIT]`` in order, or ``None``."""
        targets = batch.get("gt_situations")
        if self.situation is None or targets is None:
            return None
        terms = []
        for i, (scores, poses) in enumerate(zip(outputs["situation_logits"], targets)):
            if poses is None or len(scores) == 0:
                continue
            if len(poses) != len(scores):
                raise ValueError(f"sample {i}: {len(poses)} situation poses for {len(scores)} {SIT_TOKEN} tokens")
            sample_proposals = batch["proposals"][i].to(scores.device)
            for (stand_logits, face_logits), pose in zip(scores, poses):
                found = situation_targets(pose.to(scores.device), sample_proposals)
                if found is None:
                    continue
                stand, face = found
                others = torch.arange(len(face_logits), device=scores.device) != stand
                face_logits = face_logits.masked_fill(~others, -1e4)
                terms.append(F.cross_entropy(stand_logits, torch.tensor(stand, device=scores.device)))
                terms.append(F.cross_entropy(face_logits, torch.tensor(face, device=scores.device)))
        if not terms:
            return None
        return torch.stack(terms).sum() / counts["num_situations_in_batch"]

    def idle_loss(self, device: torch.device) -> torch.Tensor:
        """Zero times the logits of one zero query, reading one zero text state, over one unit box holding one
        zero visual token."""
        width = self.query_proj[0].in_features
        hidden = torch.zeros(1, width, device=device)
        box = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]], device=device)
        appearance = torch.zeros(1, APPEARANCE_DIM, device=device)
        reads = torch.ones(1, 1, dtype=torch.bool, device=device)
        words = (hidden, hidden)  # the text's input embeddings (T, D), the class names (P, D)
        scene = (hidden, torch.ones(1, 1, device=device), appearance, box)
        total = self.score(hidden, hidden, reads, *scene, words).sum()
        if self.situation is not None:
            total = total + self.situation_scores(hidden, hidden, reads, *scene, words).sum()
        return 0.0 * total

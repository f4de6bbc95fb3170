"""Object tokens of a 3D scene (Chat-Scene / LL3DA style): one LLM token per object proposal, after the video.

For a scene sample with proposals this ``append`` encoder writes into the ``max_proposals`` ``<proposal>``
placeholders the collator puts right after the video (:meth:`model.input_assembly.InputAssembly.after_visual_text`).
Token ``k`` is proposal ``k``, so the ``k``-th appended token is the object GPT4Scene's markers and ids call
``<OBJ{k:03d}>`` (:mod:`utils.scene3d.object_ids`). It is the sum of

* the LLM's own video tokens pooled by the proposal's pixels (each token weighted by the share of its pixels
  whose depth point lies in the box, :mod:`utils.scene3d.proposal_views`), layer-normalised, plus an embedding of
  the box: its centre relative to the mean centre of the scene's proposals, and its size, in units of
  ``box_scale`` metres (relative, so "next to", "left of" do not depend on where the scan's origin is), mapped by
  an MLP, then centred over the scene's proposals and layer-normalised to unit length (no learned scale or shift);
* an embedding of the box's colour statistics at the depth maps' resolution (the merged tokens of a small video
  grid mix an object with its surroundings), centred and normalised alike, a term of its own: mixed into the MLP's
  input with the pooled video tokens, the colour was lost (on the 3D quick start a linear read-out recovered it
  for 52% of held-out objects from the token, and for 100% from the statistics themselves);
* a learned identifier embedding of its index ``k`` (centred over the indices);
* a linear map (no bias) of the detector's class name in the LLM's own input embeddings (``proposal_label_ids``;
  nothing for a proposal without a name). That map starts as the identity, so the token of a chair starts out
  holding the word "chair" as the question does.

Why centred and normalised: with free output scales and shifts, Adam's steps of about the learning rate per weight
moved every token of a new encoder along one shared direction (measured on the 3D quick start after 800 steps: the
tokens' norm grew to 32, 35 times a word embedding's, with a mean pairwise cosine of 0.9995), and the LLM's RMS norm
then leaves what tells the objects apart at a fraction of a percent. Centring removes any component all objects of
a scene share; the unit length keeps the objects' features at a word embedding's scale.

With ``question_match: true`` each object token also says whether the question names its class: 1 where the class
name's tokens (as a word, ``proposal_label_ids``) occur in a row among the tokens of the sample's user turns
(``batch["question_mask"]``; so "chairs" names a chair wherever the tokenizer splits it after "chair"), else 0,
centred over the scene's proposals, times a learned "named" vector. The answer then finds the objects its question
names by looking for that vector, whatever the words, instead of first carrying the question's class into its own
query (a tiny LLM trained for minutes does not: its attention from the answer to the object tokens was no better
than chance at picking the named one). It reads every user turn of a sample, so a sample should hold one question,
as evaluation asks them.

**Ground, then read.** Each ``[READ]`` (:data:`~utils.data.prompts.READ_TOKEN`) of a sample with proposals gets the
object token of the proposal the ``[GRD]`` before it grounded (the ``k``-th ``[READ]`` that of the ``k``-th ``[GRD]``),
or the "no object" embedding when it grounded none, so the words after it are predicted from a position that holds
the object itself instead of from an attention that must first find it among the object tokens. Which proposal: in
training the proposal matching the ``[GRD]``'s first ground-truth box (``batch["gt_boxes_3d"]``, IoU ``>=
read_iou``, as the grounding head's targets), or ``batch["read_proposals"]`` (per sample a list of proposal indices,
-1 for none) when given; in generation the grounding head's choice for the ``[GRD]`` just generated
(:meth:`model.modeling_unigr.UniGRForConditionalGeneration.generate`, through :meth:`read_embedding`).

**Situated reading** (``situated: true``). A ``[READ]`` after a ``[SIT]`` (:data:`~utils.data.prompts.SIT_TOKEN`)
also gets an embedding of where its object lies as seen from the speaker's pose (:func:`situated_features`: the
direction to its centre relative to the heading, as cosine and sine, and its distance in ``box_scale`` units), so
"is the lamp on my left?" reads the sign of one feature of the token. The pose: in training that of the
``[SIT]``'s ground-truth pose (``batch["gt_situations"]``) as the grounding head's situation targets rebuild it from
the proposals (:func:`~model.heads.proposal_grounding.situation_targets`, the same construction generation uses);
in generation the head's pose for the last ``[SIT]`` before it (SQA3D's closes the situation in the prompt).

**Counting by grounding** (``count_read: true``). A ``[READ]`` after a multi-target ``[GRD]`` (a sample with
``grounding_multi``: ScanQA's "How many chairs are in the room?", whose ``object_ids`` are the chairs) holds the mean
of the grounded proposals' object tokens plus a learned embedding of how many they are (``count_embedding``, up to
``max_proposals``), so the number word is read from what the head grounded. The proposals: in training those the
``[GRD]``'s ground-truth boxes match (as the head's multi-target labels), in generation those the head chose.

Slots past the scene's proposals get a learned "no object" embedding plus their identifier. A scene with more
proposals than ``max_proposals`` is an error naming the sample (raise ``max_proposals``; dropping objects silently
would hide them from every answer).

Samples without a scene, proposals or video tokens (images, text, the blind baseline's text-only prompts, which
have no placeholders either) keep the placeholders' own embeddings. Reads ``batch["proposals"]``,
``batch["proposal_views"]`` and ``batch["proposal_label_ids"]`` (:func:`utils.data.collate.grounding_step`; the
collator adds views for a model with this encoder). Packed rows are handled sample by sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.encoders.geometry import sample_segments
from model.heads.proposal_grounding import multi_targets, pose_from_proposals, single_targets, situation_targets
from model.input_assembly import AssemblyContext, InputEncoder, register_encoder
from model.proposal_features import class_name_embeddings, pool_by_pixel_share
from utils.data.prompts import READ_TOKEN, SIT_TOKEN
from utils.scene3d.proposal_views import APPEARANCE_DIM

PROPOSAL_PLACEHOLDER = "<proposal>"
"""The placeholder token of an appended proposal token."""


@register_encoder("proposals")
class ProposalTokenEncoder(InputEncoder):
    """A scene's proposals -> ``max_proposals`` tokens appended after its video (module docstring).

    Args:
        llm_hidden_size: D, the LLM's width.
        max_proposals: appended tokens per sample (the most proposals a scene may have).
        hidden_size: the MLP's width (default D).
        box_scale: metres per unit of the box embedding's input.
        question_match: mark the proposals whose class the question names (module docstring).
        read_iou: a ``[READ]`` in training reads the proposal matching its ``[GRD]``'s box at this IoU or above.
        situated: a ``[READ]`` after a ``[SIT]`` also holds its object's place as seen from the speaker (module
            docstring).
        count_read: a ``[READ]`` after a multi-target ``[GRD]`` holds how many proposals it grounded (module
            docstring).
    """

    kind = "append"
    placeholder = PROPOSAL_PLACEHOLDER
    extra_tokens = (READ_TOKEN, SIT_TOKEN)

    def __init__(
        self,
        llm_hidden_size: int,
        max_proposals: int = 100,
        hidden_size: int | None = None,
        box_scale: float = 1.0,
        question_match: bool = False,
        read_iou: float = 0.25,
        situated: bool = False,
        count_read: bool = False,
    ):
        super().__init__()
        if max_proposals < 1:
            raise ValueError(f"max_proposals must be positive, got {max_proposals}")
        if box_scale <= 0:
            raise ValueError(f"box_scale must be positive, got {box_scale}")
        if not 0 <= read_iou <= 1:
            raise ValueError(f"read_iou must be in [0, 1], got {read_iou}")
        hidden_size = hidden_size or llm_hidden_size
        self.num_appended = max_proposals
        self.box_scale = box_scale
        self.read_iou = read_iou
        self.visual_norm = nn.LayerNorm(llm_hidden_size)
        self.appearance_embedding = nn.Linear(APPEARANCE_DIM, llm_hidden_size)
        self.box_embedding = nn.Linear(6, llm_hidden_size)
        self.label_proj = nn.Linear(llm_hidden_size, llm_hidden_size, bias=False)
        self.mlp = nn.Sequential(
            nn.LayerNorm(llm_hidden_size),
            nn.Linear(llm_hidden_size, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, llm_hidden_size),
        )
        self.identifier_embedding = nn.Embedding(max_proposals, llm_hidden_size)
        self.no_object = nn.Parameter(torch.zeros(llm_hidden_size))
        self.question_match = question_match
        if question_match:
            self.named_embedding = nn.Parameter(torch.zeros(llm_hidden_size))
        self.situated_embedding = nn.Linear(3, llm_hidden_size, bias=False) if situated else None
        self.count_embedding = nn.Embedding(max_proposals + 1, llm_hidden_size) if count_read else None

    def reset_new_parameters(self, std: float) -> None:
        # The box and appearance embeddings keep PyTorch's fan-in initialisation (a few numbers of order 1 in);
        # at the LLM's small ``std`` they would start drowned by the normalised visual feature. So does the MLP: its
        # output is normalised, and at a small ``std`` its spread over the objects would start below the norm's eps.
        for linear in (self.appearance_embedding, self.box_embedding, self.mlp[1], self.mlp[3]):
            linear.reset_parameters()
        nn.init.eye_(self.label_proj.weight)
        nn.init.normal_(self.identifier_embedding.weight, std=std)
        nn.init.normal_(self.no_object, std=std)
        if self.question_match:  # a unit-length direction, as large as the normalised object features
            nn.init.normal_(self.named_embedding, std=self.named_embedding.shape[0] ** -0.5)
        if self.situated_embedding is not None:  # unit-length directions per feature, as named_embedding
            nn.init.normal_(self.situated_embedding.weight, std=self.situated_embedding.weight.shape[0] ** -0.5)
        if self.count_embedding is not None:  # unit-length counts, as large as the normalised object features
            nn.init.normal_(self.count_embedding.weight, std=self.count_embedding.weight.shape[1] ** -0.5)

    def proposal_tokens(
        self,
        video_states: torch.Tensor,
        proposals: torch.Tensor,
        token_weights: torch.Tensor,
        appearance: torch.Tensor,
        class_names: torch.Tensor | None,
        named: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(max_proposals, D)`` tokens of one sample.

        Args:
            video_states: ``(N, D)`` the sample's video tokens as they enter the LLM, in sequence order.
            proposals: ``(P, 6)`` boxes (centre, size; metres). token_weights: ``(P, N)``; appearance: ``(P, 7)``
                (:class:`utils.scene3d.proposal_views.ProposalViews`).
            class_names: ``(P, D)`` class-name embeddings (:func:`model.proposal_features.class_name_embeddings`),
                or ``None`` without detector labels.
            named: ``(P,)`` 1 for a proposal whose class the question names, else 0 (:func:`named_classes`).
        """
        dtype = self.box_embedding.weight.dtype
        count = len(proposals)
        boxes = proposals.to(video_states.device, torch.float32)
        centres = boxes[:, :3] - boxes[:, :3].mean(dim=0, keepdim=True)
        geometry = torch.cat([centres, boxes[:, 3:]], dim=1) / self.box_scale  # (P, 6)
        pooled = pool_by_pixel_share(token_weights.to(video_states.device), video_states.to(dtype))  # (P, D)
        objects = self.mlp(self.visual_norm(pooled) + self.box_embedding(geometry.to(dtype)))  # (P, D)
        colours = self.appearance_embedding(appearance.to(video_states.device, dtype))  # (P, D)
        objects = unit_over_scene(objects) + unit_over_scene(colours)
        if class_names is not None:
            objects = objects + self.label_proj(class_names.to(dtype))
        if self.question_match and named is not None:
            named = named.to(objects.device, dtype)
            objects = objects + (named - named.mean())[:, None] * self.named_embedding
        tokens = self.no_object.expand(self.num_appended, -1)
        tokens = torch.cat([objects, tokens[count:]]) if count else tokens
        identifiers = self.identifier_embedding.weight
        return tokens + identifiers - identifiers.mean(dim=0, keepdim=True)  # (max_proposals, D)

    def read_embedding(
        self,
        object_tokens: torch.Tensor,
        chosen: list[int],
        proposals: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        multi: bool = False,
    ) -> torch.Tensor:
        """``(D,)`` what a ``[READ]`` holds, from a sample's ``(max_proposals, D)`` object tokens (as appended after
        its video) and the proposals its ``[GRD]`` grounded (``chosen``, empty for none).

        Single target: the first chosen proposal's token, or the "no object" embedding when none was; with
        ``situated`` and a speaker ``pose`` ``(4,)``, plus the embedding of where box ``proposals[k]`` lies as seen
        from it. Multi-target (``multi``, with ``count_read``): the mean of the chosen tokens (the "no object"
        embedding for none) plus the embedding of their count.
        """
        if multi and self.count_embedding is not None:
            count = min(len(chosen), self.count_embedding.num_embeddings - 1)
            members = object_tokens[chosen].mean(dim=0) if chosen else self.no_object.to(object_tokens.dtype)
            return members + self.count_embedding.weight[count].to(object_tokens.dtype)
        if not chosen:
            return self.no_object.to(object_tokens.dtype)
        token = object_tokens[chosen[0]]
        if self.situated_embedding is None or pose is None or proposals is None:
            return token
        features = situated_features(proposals[chosen[0], :3].to(token.device), pose.to(token.device), self.box_scale)
        return token + self.situated_embedding(features.to(self.situated_embedding.weight.dtype)).to(token.dtype)

    def read_poses(
        self, batch: dict, sample: int, proposals: torch.Tensor, count: int, where: str
    ) -> list[torch.Tensor | None]:
        """Per ``[SIT]`` of a training sample (``count``), the pose its later ``[READ]`` reads from: the ground-truth
        pose (``batch["gt_situations"]``) rebuilt from the proposals as the head's targets (``None`` where it cannot
        be, fewer than two proposals)."""
        given = batch.get("gt_situations")
        poses = given[sample] if given is not None else None
        if poses is None or len(poses) != count:
            found = "no" if poses is None else len(poses)
            raise ValueError(f"{where}: {found} situation poses (gt_situations) for {count} {SIT_TOKEN}")
        rebuilt = []
        for pose in poses:
            targets = situation_targets(pose.float(), proposals.float())
            rebuilt.append(None if targets is None else pose_from_proposals(*targets, proposals.float()))
        return rebuilt

    def read_targets(self, batch: dict, sample: int, proposals: torch.Tensor, where: str) -> list[list[int]]:
        """Per ``[GRD]`` of a training sample, the proposals its ``[READ]`` reads (empty: none; module docstring):
        the single-target match of its first box, or for a multi-target sample every proposal its boxes match.
        ``batch["read_proposals"]`` (per sample, per ``[GRD]`` an index, -1 for none, or a list) overrides them."""
        given = batch.get("read_proposals")
        if given is not None and given[sample] is not None:
            return [as_chosen(k) for k in given[sample]]
        targets = batch.get("gt_boxes_3d")
        if targets is None or targets[sample] is None:
            raise ValueError(f"{where}: a {READ_TOKEN} without read_proposals or the [GRD] targets (gt_boxes_3d)")
        multi = batch.get("grounding_multi")
        if multi is not None and multi[sample] and self.count_embedding is not None:
            labels = multi_targets([boxes.float() for boxes in targets[sample]], proposals.float(), self.read_iou)
            return [row[:-1].nonzero()[:, 0].tolist() for row in labels]
        first_boxes = [boxes[:1].float() for boxes in targets[sample]]
        chosen = single_targets(first_boxes, proposals.float(), self.read_iou).tolist()  # P: no target
        return [[k] if k < len(proposals) else [] for k in chosen]

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        placeholders = context.input_ids == context.token_ids[self.placeholder]  # (B, L)
        if not bool(placeholders.any()):
            return embeds
        batch = context.batch
        proposals, views = batch.get("proposals"), batch.get("proposal_views")
        label_ids = batch.get("proposal_label_ids")
        question_mask = batch.get("question_mask")
        if self.question_match and question_mask is None:
            raise ValueError("question_match needs the batch's question_mask (collate with SampleCollator.for_model)")
        read_id = context.token_ids.get(READ_TOKEN)
        reads_mask = context.input_ids == read_id if read_id is not None else torch.zeros_like(placeholders)
        sit_id = context.token_ids.get(SIT_TOKEN) if self.situated_embedding is not None else None
        sits_mask = context.input_ids == sit_id if sit_id is not None else torch.zeros_like(placeholders)
        segments = sample_segments(batch.get("packed_segments"), embeds.shape[:2])
        rows = list(embeds.unbind(0))
        for sample, (row, start, end) in enumerate(segments):
            slots = placeholders[row, start:end].nonzero()[:, 0] + start
            boxes = proposals[sample] if proposals is not None else None
            if boxes is None or len(slots) == 0:  # not a scene sample: placeholders keep their own embedding
                continue
            where = f"batch row {row}, sample {sample}"
            if len(slots) != self.num_appended:
                raise ValueError(f"{where}: {len(slots)} {self.placeholder} placeholders, expected {self.num_appended}")
            if len(boxes) > self.num_appended:
                raise ValueError(
                    f"{where}: the scene has {len(boxes)} proposals but the proposal encoder holds "
                    f"{self.num_appended} (raise encoders.proposals.max_proposals)"
                )
            view = views[sample] if views is not None else None
            if view is None:
                raise ValueError(
                    f"{where}: proposal tokens need the sample's proposal_views (collate with SampleCollator.for_model)"
                )
            video = context.video_mask[row, start:end].nonzero()[:, 0] + start
            if view.token_weights.shape != (len(boxes), len(video)):
                raise ValueError(
                    f"{where}: proposal_views has token weights {tuple(view.token_weights.shape)} for "
                    f"{len(boxes)} proposals and {len(video)} video tokens"
                )
            names = None
            if label_ids is not None and label_ids[sample] is not None and context.embed_tokens is not None:
                names = class_name_embeddings(context.embed_tokens, label_ids[sample].to(embeds.device))
            named = None
            if self.question_match and label_ids is not None and label_ids[sample] is not None:
                question = context.input_ids[row, start:end][question_mask[row, start:end].to(embeds.device)]
                named = named_classes(question.tolist(), label_ids[sample].tolist())
            tokens = self.proposal_tokens(embeds[row, video], boxes, view.token_weights, view.appearance, names, named)
            rows[row] = rows[row].index_copy(0, slots, tokens.to(embeds.dtype))
            reads = reads_mask[row, start:end].nonzero()[:, 0] + start
            if len(reads):
                chosen = self.read_targets(batch, sample, boxes, where)
                if len(reads) > len(chosen):
                    raise ValueError(f"{where}: {len(reads)} {READ_TOKEN} for {len(chosen)} grounded objects")
                multi = batch.get("grounding_multi")
                sits = sits_mask[row, start:end].nonzero()[:, 0] + start
                poses = self.read_poses(batch, sample, boxes, len(sits), where) if len(sits) else []
                read = []
                for position, k in zip(reads.tolist(), chosen):
                    latest = int((sits < position).sum()) - 1  # the last [SIT] before this [READ]
                    pose = poses[latest] if latest >= 0 else None
                    read.append(self.read_embedding(tokens, k, boxes, pose, bool(multi[sample]) if multi else False))
                read = torch.stack(read)
                rows[row] = rows[row].index_copy(0, reads, read.to(embeds.dtype))
        return torch.stack(rows)


def unit_over_scene(features: torch.Tensor) -> torch.Tensor:
    """``(P, D)`` features centred over the scene's proposals and layer-normalised to unit length."""
    return F.layer_norm(features - features.mean(dim=0, keepdim=True), features.shape[-1:]) / features.shape[-1] ** 0.5


def as_chosen(proposals: int | list[int]) -> list[int]:
    """Grounded proposals as a list: an index (``-1``: none) or a list of indices."""
    if isinstance(proposals, int):
        return [proposals] if proposals >= 0 else []
    return [int(k) for k in proposals]


def situated_features(centre: torch.Tensor, pose: torch.Tensor, box_scale: float = 1.0) -> torch.Tensor:
    """``(3,)``: where a point ``centre`` ``(3,)`` lies as seen from ``pose`` ``(4,)`` (``x, y, z``, heading from
    +x about the vertical axis) on the floor plane: the cosine and sine of its direction off the heading (sine > 0:
    on the left) and its distance in ``box_scale`` units."""
    offset = centre[:2].float() - pose[:2].float()
    distance = offset.norm()
    angle = torch.atan2(offset[1], offset[0]) - pose[3].float()
    return torch.stack([torch.cos(angle), torch.sin(angle), distance / box_scale])


def named_classes(question_ids: list[int], label_ids: list[list[int]]) -> torch.Tensor:
    """``(P,)`` float: 1 where proposal ``p``'s class-name tokens (``label_ids[p]``, -1 padded) occur in a row in
    ``question_ids``, else 0 (0 for a proposal without a name)."""
    found = []
    for tokens in label_ids:
        name = [token for token in tokens if token >= 0]
        width = len(name)
        hit = width > 0 and any(question_ids[i : i + width] == name for i in range(len(question_ids) - width + 1))
        found.append(float(hit))
    return torch.tensor(found)

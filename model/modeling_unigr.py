"""UniGR: a Qwen2.5-VL (or Qwen2-VL) backbone with plug-in input encoders and output heads.

Everything enters the language model through one :class:`~model.input_assembly.InputAssembly` (text,
Qwen's visual features, then each enabled encoder's contribution), in training, ``forward`` and
:meth:`UniGRForConditionalGeneration.generate` alike; every output head
(:mod:`model.heads.base`) reads the LLM's last hidden states and declares its own losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model
from transformers import AutoModelForImageTextToText, LogitsProcessorList, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput

import model.encoders  # noqa: F401  (registers the input encoders)
from model.configuration_unigr import UniGRConfig
from model.encoders.proposal_tokens import as_chosen
from model.heads.base import HEADS, Head
from model.heads.location_prompt import frame_maps
from model.input_assembly import (
    InputAssembly,
    InputEncoder,
    build_encoders,
    packed_rope_position_ids,
    rope_position_ids,
)
from utils.data.prompts import READ_TOKEN, SIT_TOKEN

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class UniGROutput(ModelOutput):
    """Output of :meth:`UniGRForConditionalGeneration.forward`.

    Attributes:
        loss: weighted sum of ``losses`` (with ``labels``).
        losses: ``{term: value}`` — ``ce`` and each head's terms (e.g. ``bce``, ``dice``, ``objectness``).
        logits: ``(B, L, V)`` language-model logits.
        last_hidden_state: ``(B, L, D)`` the LLM's last hidden states.
        pred_masks: (segmentation head) one ``(O_i, T_i, S, S)`` mask-logit tensor per sample (``O_i`` =
            its number of ``[SEG]`` tokens, 0 for samples without); S = SAM2 image size.
        object_logits: (segmentation head) one ``(O_i, T_i)`` object-score tensor per sample.
        location_maps: (segmentation head with ``location_prompt`` on) per sample ``(logits (O_i, slots,
            h, w), frames_per_slot)`` of its ``[SEG]`` states over its visual tokens, or ``None``.
        grounding_logits: (grounding head) per sample ``(G_i, P_i + 1)`` logits of its ``G_i`` ``[GRD]`` tokens
            over its ``P_i`` proposals and "no target" (last column).
        pred_proposal_ids: (grounding head) per sample, per ``[GRD]``, the ``(K,)`` chosen proposal indices.
        pred_boxes_3d: (grounding head) per sample, per ``[GRD]``, the ``(K, 6)`` boxes of those proposals.
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pred_masks: list[torch.Tensor] | None = None
    object_logits: list[torch.Tensor] | None = None
    location_maps: list[tuple[torch.Tensor, int] | None] | None = None
    grounding_logits: list[torch.Tensor] | None = None
    pred_proposal_ids: list[list[torch.Tensor]] | None = None
    pred_boxes_3d: list[list[torch.Tensor]] | None = None


@dataclass
class GenerationResult:
    """Output of :meth:`UniGRForConditionalGeneration.generate`.

    Attributes:
        sequences: ``(B, L + N)`` prompt and generated ids (finished rows padded with the pad id).
        seg_hidden: per sample ``(O_i, D)`` last hidden states for the generated ``[SEG]`` tokens, in
            order (the ``[SEG]`` state, or the state before it with ``seg_hidden: previous``).
        location_maps: with the segmentation head's location map on, per sample ``(logits (O_i, slots,
            h, w), frames_per_slot)`` of its ``[SEG]`` states over its visual tokens (``None`` without
            visual tokens); otherwise ``None``.
        grd_hidden: with the grounding head, per sample ``(G_i, D)`` last hidden states of the generated
            ``[GRD]`` tokens, in order (each token's own state, as in training); otherwise ``None``.
        grounding: with the grounding head and at least one ``[GRD]`` generated in a sample with a scene,
            :meth:`UniGRForConditionalGeneration.ground`'s result: per sample ``"pred_proposal_ids"`` and
            ``"pred_boxes_3d"`` (per ``[GRD]`` the ``(K,)`` chosen proposals and their ``(K, 6)`` boxes, ``K = 0``
            for "no target") and ``"grounding_logits"``; otherwise ``None``.
        situations: with the grounding head's ``situation`` and a ``[SIT]`` (in the prompt or generated) in a sample
            with a scene, per sample the ``(S_i, 4)`` poses (``x, y, z``, heading) of its ``[SIT]`` tokens; otherwise
            ``None``.
    """

    sequences: torch.Tensor
    seg_hidden: list[torch.Tensor]
    location_maps: list[tuple[torch.Tensor, int] | None] | None = None
    grd_hidden: list[torch.Tensor] | None = None
    grounding: dict | None = None
    situations: list[torch.Tensor] | None = None


class UniGRPreTrainedModel(PreTrainedModel):
    config_class = UniGRConfig
    base_model_prefix = "unigr"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock", "Qwen2VLDecoderLayer"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, then each head rebuilds its derived (non-weight) state."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for _, head in model.heads():
            head.after_load()
        return loaded

    def _init_weights(self, module: torch.nn.Module) -> None:
        # The backbone initialises itself (it is a PreTrainedModel); heads and encoders initialise
        # their own new layers (``reset_new_parameters``) with the LLM's initializer range.
        if isinstance(module, (Head, InputEncoder)):
            module.reset_new_parameters(self.config.backbone_config.get_text_config().initializer_range)


class UniGRForConditionalGeneration(UniGRPreTrainedModel):
    """Backbone + input encoders + optional heads; one class for every task.

    The backbone is the installed transformers Qwen2.5-VL / Qwen2-VL model, built from
    ``config.backbone_config``; LoRA adapters (if configured) go on its language model only. Each
    registered head (:data:`model.heads.base.HEADS`) whose config section is set and enabled is the
    attribute ``<name>_head``.
    """

    def __init__(self, config: UniGRConfig):
        super().__init__(config)
        backbone_config = config.backbone_config
        backbone_config._attn_implementation = config._attn_implementation
        hidden_size = backbone_config.get_text_config().hidden_size
        self.backbone = AutoModelForImageTextToText.from_config(backbone_config)
        self.input_assembly = InputAssembly(build_encoders(config.encoders, hidden_size, backbone_config))
        for name, head_class in HEADS.items():
            setattr(self, f"{name}_head", head_class.from_config(getattr(config, name, None), hidden_size, config))
        if config.lora is not None:
            self._inject_lora(config.lora)
        self.post_init()

    def heads(self) -> list[tuple[str, Head]]:
        """``(name, head)`` of every enabled head."""
        return [(name, head) for name in HEADS if (head := getattr(self, f"{name}_head", None)) is not None]

    @property
    def seg_config(self):
        """The segmentation head's config (``None`` without the head)."""
        return self.seg_head.config if getattr(self, "seg_head", None) is not None else None

    def _inject_lora(self, lora: dict) -> None:
        lora_config = LoraConfig(
            r=lora.get("r", 8),
            lora_alpha=lora.get("alpha", 16),
            lora_dropout=lora.get("dropout", 0.05),
            target_modules=lora.get("target_modules", LORA_TARGETS),
        )
        inject_adapter_in_model(lora_config, self.language_model)

    @property
    def language_model(self) -> torch.nn.Module:
        return self.backbone.model.language_model

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()

    def placeholder_token_ids(self) -> dict[str, int]:
        """Placeholder token -> id of the enabled encoders (``config.placeholder_token_ids``)."""
        return dict(self.config.placeholder_token_ids or {})

    def assemble(self, input_ids: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs_embeds (B, L, D), position_ids)`` for the collated ``batch``: M-RoPE positions ``(3, B, L)``, or
        for packed rows (``batch["packed_segments"]``, :mod:`utils.data.packing`) ``(4, B, L)`` with the per-sample
        text positions first (:func:`~model.input_assembly.packed_rope_position_ids`)."""
        embeds = self.input_assembly(
            self.backbone.model,
            input_ids,
            attention_mask=batch.get("attention_mask"),
            pixel_values=batch.get("pixel_values"),
            image_grid_thw=batch.get("image_grid_thw"),
            pixel_values_videos=batch.get("pixel_values_videos"),
            video_grid_thw=batch.get("video_grid_thw"),
            batch=batch,
            token_ids=self.placeholder_token_ids(),
        )
        if batch.get("packed_segments") is not None:
            position_ids = packed_rope_position_ids(
                self.backbone.model,
                input_ids,
                batch.get("mm_token_type_ids"),
                batch["packed_segments"],
                image_grid_thw=batch.get("image_grid_thw"),
                video_grid_thw=batch.get("video_grid_thw"),
                second_per_grid_ts=batch.get("second_per_grid_ts"),
            )
            return embeds, position_ids
        position_ids = rope_position_ids(
            self.backbone.model,
            input_ids,
            batch.get("mm_token_type_ids"),
            attention_mask=batch.get("attention_mask"),
            image_grid_thw=batch.get("image_grid_thw"),
            video_grid_thw=batch.get("video_grid_thw"),
            second_per_grid_ts=batch.get("second_per_grid_ts"),
        )
        return embeds, position_ids

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **batch,
    ) -> UniGROutput:
        """Language modelling plus every enabled head.

        Args:
            input_ids: ``(B, L)``.
            labels: ``(B, L)`` with -100 on non-target tokens; gives the CE term and the heads' losses.
            num_items_in_batch: what the CE sum is divided by (label tokens; default: this batch's).
                A trainer passes the count of its whole global batch (and each head's counts, e.g.
                ``num_objects_in_batch``, in ``batch``) so losses do not depend on how the batch
                is split over processes and accumulation steps.
            batch: the collator's other keys: ``attention_mask``, ``mm_token_type_ids``, Qwen's
                image / video inputs, and what encoders and heads read (``sam_frames``, ``gt_masks``, ...).
        """
        embeds, position_ids = self.assemble(input_ids, batch)
        # Packed rows: no attention mask and no cache, so transformers builds the block-causal mask from the
        # per-sample text positions.
        attention_mask = None if batch.get("packed_segments") is not None else batch.get("attention_mask")
        hidden = self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, L, D)
        logits = self.backbone.lm_head(hidden)
        result = UniGROutput(logits=logits, last_hidden_state=hidden)
        terms: dict[str, tuple[torch.Tensor, float]] = {}
        if labels is not None:
            ce = self.backbone.loss_function(
                logits=logits,
                labels=labels,
                vocab_size=self.config.backbone_config.get_text_config().vocab_size,
                num_items_in_batch=num_items_in_batch,
            )
            terms["ce"] = (ce, self.config.ce_weight)
        head_batch = {**batch, "labels": labels, "input_embeddings": self.get_input_embeddings()}
        for name, head in self.heads():
            outputs = head.predict(hidden, input_ids, head_batch)
            for key, value in (outputs or {}).items():
                if key in UniGROutput.__dataclass_fields__:
                    setattr(result, key, value)
            if labels is None:
                continue
            if outputs is not None:
                counts = head.counts(batch)
                counts.update({key: batch[key] for key in counts if batch.get(key) is not None})
                terms.update(head.losses(outputs, batch, counts))
            idle = outputs is None and self.training and torch.is_grad_enabled()
            terms[f"{name}_idle"] = (head.idle_loss(hidden.device) if idle else hidden.new_zeros(()), 1.0)
            for term in head.loss_names:  # every rank reports the same terms (zero where nothing was predicted)
                terms.setdefault(term, (hidden.new_zeros(()), 0.0))
        if terms:
            result.losses = {term: value for term, (value, _) in terms.items()}
            result.loss = sum(weight * value for value, weight in terms.values())
        return result

    @torch.no_grad()
    def generate(
        self,
        inputs: dict,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        logits_processor: LogitsProcessorList | None = None,
        generator: torch.Generator | None = None,
        streamer: BaseStreamer | None = None,
    ) -> GenerationResult:
        """Generate answers (greedy unless ``do_sample``) and keep the hidden states of generated ``[SEG]`` and
        ``[GRD]``; with the grounding head, the ``[GRD]`` states choose among the prompt's proposals (:meth:`ground`).

        The prompt goes through the same input assembly as training; each new token is one step of the
        LLM with its KV cache, so the ``[SEG]`` and ``[GRD]`` states come from generation itself (no second pass).

        Args:
            inputs: collated prompt (``SampleCollator(..., inference=True)``): ``input_ids`` ``(B, L)``
                left-padded, ``attention_mask`` and the visual inputs.
            logits_processor: extra processors (e.g. constrained decoding), applied before sampling.
            streamer: a transformers streamer (``TextIteratorStreamer``; a batch of one), given the prompt
                and then each new token as it is generated, as ``transformers``' ``generate`` does.
        """
        input_ids = inputs["input_ids"]
        if streamer is not None:
            if input_ids.shape[0] != 1:
                raise ValueError(f"a streamer takes a batch of one, got {input_ids.shape[0]} prompts")
            streamer.put(input_ids.cpu())
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch = {**inputs, "attention_mask": attention_mask}
        embeds, position_ids = self.assemble(input_ids, batch)
        processors = LogitsProcessorList(logits_processor or [])
        if do_sample:
            processors += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]
        generation_config = self.backbone.generation_config
        eos = generation_config.eos_token_id
        eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=input_ids.device)
        pad_id = generation_config.pad_token_id if generation_config.pad_token_id is not None else eos_ids[0]
        seg_id = self.config.seg_token_id
        previous = self.seg_config is not None and self.seg_config.seg_hidden == "previous"
        grd_id = self.config.grd_token_id if self.grounding_head is not None else None
        reader = self.object_reader()
        read_id = self.placeholder_token_ids().get(READ_TOKEN) if reader is not None and grd_id is not None else None
        situating = read_id is not None and self.grounding_head.situation is not None
        sit_id = self.placeholder_token_ids().get(SIT_TOKEN) if situating else None

        cache = DynamicCache(config=self.language_model.config)
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        prompt_hidden = out.last_hidden_state  # (B, L, D)
        hidden = prompt_hidden[:, -1]  # (B, D): left padding puts every prompt's end last
        next_position = position_ids.amax(dim=(0, 2)) + 1  # (B,)
        batch_size = input_ids.shape[0]
        finished = torch.zeros(batch_size, dtype=torch.bool, device=input_ids.device)
        seg_states: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        grd_states: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        sequences = input_ids
        grounded: list[list[int]] = [[] for _ in range(batch_size)]  # per row, what its last [GRD] grounded
        sit_states: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        situation_poses: list[torch.Tensor] | None = None  # per row, the (S, 4) poses of its [SIT]s so far
        if sit_id is not None and bool((input_ids == sit_id).any()):  # [SIT]s of the prompt (SQA3D's situation)
            situation_poses = self.situate(sit_states, prompt_hidden, input_ids, batch)
        proposals = batch.get("proposals") or [None] * batch_size
        multi = batch.get("grounding_multi") or [False] * batch_size
        for _ in range(max_new_tokens):
            scores = processors(sequences, self.backbone.lm_head(hidden).float())
            if do_sample:
                tokens = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
            else:
                tokens = scores.argmax(-1)
            tokens = torch.where(finished, torch.full_like(tokens, pad_id), tokens)
            if previous:  # the state that predicted [SEG] (LISA / RGA3)
                for row in (tokens == seg_id).nonzero()[:, 0].tolist():
                    seg_states[row].append(hidden[row])
            sequences = torch.cat([sequences, tokens[:, None]], dim=1)
            if streamer is not None:
                streamer.put(tokens.cpu())
            attention_mask = torch.cat([attention_mask, (~finished).long()[:, None]], dim=1)
            step_positions = next_position.view(1, -1, 1).expand(3, -1, 1)
            step_embeds = self.get_input_embeddings()(tokens[:, None])  # (B, 1, D)
            if read_id is not None:  # [READ]: the object token of what the row's last [GRD] grounded
                for row in (tokens == read_id).nonzero()[:, 0].tolist():
                    poses = situation_poses[row] if situation_poses is not None else []
                    pose = poses[-1] if len(poses) else None  # the row's last [SIT]
                    step_embeds[row, 0] = self.read_embedding(
                        reader, embeds[row], input_ids[row], grounded[row], proposals[row], pose, multi[row]
                    )
            out = self.language_model(
                inputs_embeds=step_embeds,
                attention_mask=attention_mask,
                position_ids=step_positions,
                past_key_values=cache,
                use_cache=True,
            )
            hidden = out.last_hidden_state[:, -1]
            next_position = next_position + 1
            if not previous:  # the [SEG] token's own state, now that it was fed
                for row in (tokens == seg_id).nonzero()[:, 0].tolist():
                    seg_states[row].append(hidden[row])
            if grd_id is not None:  # the [GRD] token's own state, as the head reads it in training
                just_grounded = (tokens == grd_id).nonzero()[:, 0].tolist()
                for row in just_grounded:
                    grd_states[row].append(hidden[row])
                if read_id is not None and just_grounded:
                    grounded = self.last_grounded(grounded, just_grounded, grd_states, prompt_hidden, input_ids, batch)
            if sit_id is not None:  # [SIT]: the head's pose from the token's own state, for later [READ]s
                just_situated = (tokens == sit_id).nonzero()[:, 0].tolist()
                for row in just_situated:
                    sit_states[row].append(hidden[row])
                if just_situated:
                    situation_poses = self.situate(sit_states, prompt_hidden, input_ids, batch)
            finished |= torch.isin(tokens, eos_ids)
            if bool(finished.all()):
                break
        if streamer is not None:
            streamer.end()
        width = self.config.backbone_config.get_text_config().hidden_size
        seg_hidden = [torch.stack(states) if states else hidden.new_zeros(0, width) for states in seg_states]
        location_maps = None
        if self.seg_config is not None and self.seg_head.location is not None:
            location_maps = self.seg_head.location_maps(seg_hidden, prompt_hidden, input_ids, batch)
        result = GenerationResult(sequences, seg_hidden, location_maps)
        if situation_poses is not None:
            result.situations = situation_poses
        if grd_id is not None:
            result.grd_hidden = [torch.stack(states) if states else hidden.new_zeros(0, width) for states in grd_states]
            result.grounding = self.ground(result.grd_hidden, prompt_hidden, input_ids, batch)
        return result

    def object_reader(self) -> InputEncoder | None:
        """The encoder that fills ``[READ]`` with grounded objects (:mod:`model.encoders.proposal_tokens`), if any."""
        for encoder in self.input_assembly.encoders.values():
            if READ_TOKEN in encoder.extra_tokens:
                return encoder
        return None

    def read_embedding(
        self,
        reader: InputEncoder,
        prompt_embeds: torch.Tensor,
        prompt_ids: torch.Tensor,
        chosen: int | list[int],
        proposals: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        multi: bool = False,
    ) -> torch.Tensor:
        """``(D,)`` input embedding of a generated ``[READ]``: what the ``chosen`` proposals (an index, -1 for none,
        or a list) give as the prompt's assembly appended their object tokens (``prompt_embeds (L, D)``), as
        training fills it (:meth:`ProposalTokenEncoder.read_embedding
        <model.encoders.proposal_tokens.ProposalTokenEncoder.read_embedding>`: situated by the speaker's ``pose``,
        the last ``[SIT]``'s, among the prompt's ``proposals``; counted for a ``multi``-target sample); the token's
        own embedding for a prompt without object tokens (no scene)."""
        slots = (prompt_ids == self.placeholder_token_ids()[reader.placeholder]).nonzero()[:, 0]
        if len(slots) == 0:
            return self.get_input_embeddings().weight[self.placeholder_token_ids()[READ_TOKEN]]
        return reader.read_embedding(prompt_embeds[slots], as_chosen(chosen), proposals, pose, bool(multi))

    def last_grounded(
        self,
        grounded: list[list[int]],
        rows: list[int],
        grd_states: list[list[torch.Tensor]],
        prompt_hidden: torch.Tensor,
        input_ids: torch.Tensor,
        batch: dict,
    ) -> list[list[int]]:
        """``grounded`` with ``rows`` (which just generated a ``[GRD]``) set to the proposals the head chose for that
        ``[GRD]`` (empty for none), as a ``[READ]`` in training reads its ``[GRD]``'s targets."""
        width = prompt_hidden.shape[-1]
        states = [torch.stack(row) if row else prompt_hidden.new_zeros(0, width) for row in grd_states]
        choice = self.ground(states, prompt_hidden, input_ids, batch)
        updated = list(grounded)
        for row in rows:
            chosen = choice["pred_proposal_ids"][row] if choice is not None else []
            updated[row] = chosen[-1].tolist() if chosen else []
        return updated

    def ground(
        self, grd_hidden: list[torch.Tensor], prompt_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict
    ) -> dict | None:
        """The grounding head's choice among each sample's proposals for its generated ``[GRD]`` states.

        The head reads them as in training (:meth:`ProposalGroundingHead.predict
        <model.heads.proposal_grounding.ProposalGroundingHead.predict>`): each sample's states are placed after
        its prompt as ``[GRD]`` positions, and its proposal features pool the prompt's visual tokens.

        Args:
            grd_hidden: per sample ``(G_i, D)`` ``[GRD]`` states (:attr:`GenerationResult.grd_hidden`).
            prompt_hidden: ``(B, L, D)`` last hidden states of the prompt pass; input_ids: ``(B, L)`` the prompt.
            batch: the collated prompt: ``proposals``, ``proposal_views`` (``SampleCollator.for_model``) and the
                visual grids; ``grounding_multi`` picks each sample's single- or multi-target prediction.
        Returns:
            ``predict``'s ``{"grounding_logits", "pred_proposal_ids", "pred_boxes_3d"}``; a sample without
            proposals or proposal views (no scene) gets no groundings (empty lists). ``None`` when no sample
            with a scene generated a ``[GRD]``.
        """
        return self.predict_appended(grd_hidden, self.grounding_head.grd_token_id, prompt_hidden, input_ids, batch)

    def situate(
        self, sit_states: list[list[torch.Tensor]], prompt_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict
    ) -> list[torch.Tensor] | None:
        """Per sample the ``(S_i, 4)`` poses the grounding head gives its prompt's ``[SIT]`` tokens and then its
        generated ``[SIT]`` states (as in training, :meth:`ProposalGroundingHead.predict
        <model.heads.proposal_grounding.ProposalGroundingHead.predict>`); ``None`` when no sample with a scene has
        one."""
        width = prompt_hidden.shape[-1]
        states = [torch.stack(row) if row else prompt_hidden.new_zeros(0, width) for row in sit_states]
        sit_id = self.placeholder_token_ids()[SIT_TOKEN]
        outputs = self.predict_appended(states, sit_id, prompt_hidden, input_ids, batch)
        return None if outputs is None else outputs["pred_poses"]

    def predict_appended(
        self,
        states: list[torch.Tensor],
        token_id: int,
        prompt_hidden: torch.Tensor,
        input_ids: torch.Tensor,
        batch: dict,
    ) -> dict | None:
        """The grounding head's outputs for per-sample generated states ``(G_i, D)`` of token ``token_id`` (``[GRD]``
        or ``[SIT]``), placed after each sample's prompt at positions holding that token (after those the prompt
        holds itself); ``None`` when no sample with proposals and proposal views has one."""
        proposals = batch.get("proposals") or [None] * len(states)
        views = batch.get("proposal_views") or [None] * len(states)
        scene = [proposals[i] is not None and views[i] is not None for i in range(len(states))]
        counts = [len(rows) if scene[i] else 0 for i, rows in enumerate(states)]
        in_prompt = any(scene[i] and bool((input_ids[i] == token_id).any()) for i in range(len(states)))
        if not any(counts) and not in_prompt:
            return None
        appended = prompt_hidden.new_zeros(len(states), max(counts), prompt_hidden.shape[-1])  # (B, G, D)
        appended_ids = torch.full(appended.shape[:2], -1, dtype=input_ids.dtype, device=input_ids.device)  # no token
        for i, count in enumerate(counts):
            appended[i, :count] = states[i][:count]
            appended_ids[i, :count] = token_id
        hidden = torch.cat([prompt_hidden, appended], dim=1)
        head_batch = {**batch, "input_embeddings": self.get_input_embeddings()}
        return self.grounding_head.predict(hidden, torch.cat([input_ids, appended_ids], dim=1), head_batch)

    @torch.no_grad()
    def generate_and_segment(
        self,
        inputs: dict,
        sam2_states: list,
        llm_frames: list[list[int]] | None = None,
        **generate_kwargs,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Generate answers, then segment every generated ``[SEG]`` on all frames of its video.

        Args:
            inputs: the collated prompt (see :meth:`generate`).
            sam2_states: per sample the segmentation head's state on *all* its frames
                (``seg_head.init_state(frames)``; reusable across questions about the same video).
            llm_frames: per sample the indices (into those frames) of the frames the LLM saw: the
                ``[SEG]`` prompt is applied there and propagated to the rest; ``None``: every frame.
            generate_kwargs: passed to :meth:`generate` (``max_new_tokens``, ``do_sample``, ...).
        Returns:
            ``(sequences (B, L'), [low-resolution mask logits (O_i, T_i, h, w)])``, ``O_i`` = ``[SEG]``
            generated (``h = w`` = SAM2's mask size; callers resize them to the frames).
        """
        result = self.generate(inputs, **generate_kwargs)
        masks = []
        for i, state in enumerate(sam2_states):
            if result.seg_hidden[i].shape[0] == 0:  # no [SEG] generated: nothing to segment
                side = self.seg_head.image_size // 4
                masks.append(torch.zeros(0, state.num_frames, side, side))
                continue
            prompts = self.seg_head.prompts_from_hidden(result.seg_hidden[i])
            candidates = llm_frames[i] if llm_frames is not None else None
            location = None
            if result.location_maps is not None and result.location_maps[i] is not None:
                logits, frames_per_slot = result.location_maps[i]
                num_candidates = len(candidates) if candidates is not None else state.num_frames
                location = frame_maps(logits, frames_per_slot, num_candidates)
            masks.append(self.seg_head.propagate(state, prompts, candidates, location)["mask_logits"])
        return result.sequences, masks

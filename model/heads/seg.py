"""The segmentation head: ``[SEG]`` hidden states -> SAM2 prompt tokens -> masks on every frame.

Each ``[SEG]`` hidden state ``(D_llm,)`` goes through a small MLP into ``K`` tokens of SAM2's prompt
space ``(K, C_sam)``; :class:`~model.heads.seg_sam2.PromptableVideoSAM2` decodes them on conditioning
frames and propagates by memory (or prompts every frame, ``propagation: independent``). Objects
(several ``[SEG]``) ride in SAM2's batch dimension. Losses: BCE and DICE on frames where the object
is present, objectness on every frame, each averaged over the objects of the global batch.

With ``location_prompt`` on, each ``[SEG]`` also scores the LLM's visual tokens
(:mod:`model.heads.location_prompt`): the map is SAM2's dense and/or click prompt on the conditioning
frames and is trained by its own loss (``loc``: BCE + ranking). A batch without SAM2 frames but with masks (grounding
pretraining, ``scripts/pretrain_grounding.py``) trains the map alone, SAM2 untouched.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from model.heads.base import Head, register_head
from model.heads.location_prompt import LocationMap, frame_maps, location_loss, location_targets
from model.heads.seg_sam2 import PromptableVideoSAM2, SegHeadConfig, mask_losses
from model.visual_tokens import VisualTokens, visual_layouts


@register_head
class SAM2SegHead(PromptableVideoSAM2, Head):
    """SAM2 plus the projection from LLM ``[SEG]`` hidden states into its prompt space."""

    name = "seg"
    parameter_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "seg_proj": ("text_hidden_proj.", "location."),
        "sam2_encoder": ("sam2.image_encoder.",),
        "sam2_decoder": (
            "sam2.sam_prompt_encoder.",
            "sam2.sam_mask_decoder.",
            "sam2.obj_ptr_proj.",
            "sam2.obj_ptr_tpos_proj.",
            "sam2.no_obj_ptr",
        ),
        "sam2_memory": ("sam2.",),
    }

    def __init__(
        self,
        config: SegHeadConfig,
        llm_hidden_size: int,
        seg_token_id: int | None = None,
        visual_tokens: VisualTokens | None = None,
    ):
        super().__init__(config)
        self.seg_token_id = seg_token_id
        self.visual_tokens = visual_tokens
        self.location = None
        self.loss_names = ("bce", "dice", "objectness")
        if config.location_prompt != "off":
            if visual_tokens is None:
                raise ValueError("seg.location_prompt needs the backbone's visual token ids (visual_tokens)")
            self.location = LocationMap(llm_hidden_size, config.location_dim)
            self.loss_names += ("loc",)
        prompt_dim = self.sam2.sam_prompt_embed_dim
        self.text_hidden_proj = nn.Sequential(
            nn.Linear(llm_hidden_size, llm_hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(llm_hidden_size, prompt_dim * config.num_prompt_tokens),
        )

    @classmethod
    def from_config(cls, values: dict | None, llm_hidden_size: int, model_config) -> SAM2SegHead | None:
        """The head for ``UniGRConfig.seg`` (``None`` when unset or disabled)."""
        if values is None:
            return None
        config = SegHeadConfig.from_dict(values)
        if not config.enabled:
            return None
        visual_tokens = VisualTokens.from_backbone_config(model_config.backbone_config)
        return cls(config, llm_hidden_size, model_config.seg_token_id, visual_tokens)

    def after_load(self) -> None:
        self.rebuild_rope_tables()

    def reset_new_parameters(self, std: float) -> None:
        """Initialise the projection (SAM2 keeps the sam2 package's own initialisation)."""
        layers = list(self.text_hidden_proj) + ([self.location.query, self.location.key] if self.location else [])
        for layer in layers:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=std)
                nn.init.zeros_(layer.bias)

    def prompts_from_hidden(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        """``(O, D_llm)`` [SEG] hidden states -> ``(O, K, C_sam)`` SAM2 sparse prompt tokens."""
        weight = self.text_hidden_proj[0].weight
        prompts = self.text_hidden_proj(seg_hidden.to(weight.dtype))
        return prompts.view(seg_hidden.shape[0], self.config.num_prompt_tokens, self.sam2.sam_prompt_embed_dim)

    def seg_hidden_states(self, last_hidden: torch.Tensor, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """Per sample ``(O_i, D)``: the hidden state of each ``[SEG]`` (or of the token before it)."""
        positions = input_ids == self.seg_token_id  # (B, L)
        if self.config.seg_hidden == "previous":  # the state that predicted [SEG] (LISA / RGA3)
            positions = torch.cat([positions[:, 1:], torch.zeros_like(positions[:, :1])], dim=1)
        return [last_hidden[i][positions[i]] for i in range(len(input_ids))]

    def location_maps(
        self, seg_hidden: list[torch.Tensor], last_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict
    ) -> list[tuple[torch.Tensor, int] | None]:
        """Per sample ``(logits (O_i, slots, h, w), frames_per_slot)`` of its ``[SEG]`` states over its visual
        tokens (``None`` for a sample without visual tokens)."""
        maps = []
        for i, layout in enumerate(visual_layouts(input_ids, batch, self.visual_tokens)):
            if layout is None:
                maps.append(None)
                continue
            logits = self.location(seg_hidden[i], last_hidden[i, layout.positions], layout.grid)
            maps.append((logits, layout.frames_per_slot))
        return maps

    # --- Head --------------------------------------------------------------------------------------

    def counts(self, batch: dict) -> dict[str, int]:
        return {"num_objects_in_batch": sum(masks.shape[0] for masks in batch.get("gt_masks") or [])}

    def predict(self, last_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict) -> dict | None:
        """``{"pred_masks": [(O_i, T_i, S, S)], "object_logits": [(O_i, T_i)]}`` (with ``sam_frames``) and, with
        the location map on, ``"location_maps"`` (see :meth:`location_maps`; also without ``sam_frames`` when
        the batch has ``gt_masks``: stage 0); ``None`` without any ``[SEG]`` or anything to predict."""
        sam_frames = batch.get("sam_frames")
        if not bool((input_ids == self.seg_token_id).any()):
            return None
        if sam_frames is None and (self.location is None or batch.get("gt_masks") is None):
            return None
        seg_hidden = self.seg_hidden_states(last_hidden, input_ids)
        outputs: dict = {}
        locations = None
        if self.location is not None:
            outputs["location_maps"] = self.location_maps(seg_hidden, last_hidden, input_ids, batch)
            if sam_frames is not None:
                locations = [
                    None if item is None else frame_maps(item[0], item[1], frames.shape[0])
                    for item, frames in zip(outputs["location_maps"], sam_frames)
                ]
        if sam_frames is not None:
            segmented = self.segment(seg_hidden, sam_frames, locations)
            outputs["pred_masks"] = [masks for masks, _ in segmented]
            outputs["object_logits"] = [scores for _, scores in segmented]
        return outputs

    def losses(self, outputs: dict, batch: dict, counts: dict) -> dict[str, tuple]:
        gt_masks = batch.get("gt_masks") or []
        cfg = self.config
        num_objects = counts["num_objects_in_batch"]
        result = {}
        if "pred_masks" in outputs:
            terms = [
                mask_losses(masks, scores, gt)
                for masks, scores, gt in zip(outputs["pred_masks"], outputs["object_logits"], gt_masks)
                if gt.shape[0] > 0
            ]
            weights = {"bce": cfg.bce_weight, "dice": cfg.dice_weight, "objectness": cfg.objectness_weight}
            if terms:  # else a batch of QA-only samples
                result = {
                    name: (torch.cat([t[name] for t in terms]).sum() / num_objects, w) for name, w in weights.items()
                }
        if "location_maps" in outputs:
            loc = [
                location_loss(item[0], location_targets(gt, item[0].shape[1:], item[1]))
                for item, gt in zip(outputs["location_maps"], gt_masks)
                if item is not None and gt.shape[0] > 0
            ]
            if loc:
                result["loc"] = (torch.cat(loc).sum() / num_objects, cfg.location_weight)
        return result

    def idle_loss(self, device: torch.device) -> torch.Tensor:
        """Zero times the masks of a 2-frame blank video prompted by a zero state: a real forward through
        the projection, the image encoder, the decoder and the memory, so every parameter gets a gradient."""
        size = self.image_size
        frames = torch.zeros(2, 3, size, size, device=device)
        hidden = torch.zeros(1, self.text_hidden_proj[0].in_features, device=device)
        location = None
        if self.location is not None:
            location = [self.location(hidden, torch.zeros(2, hidden.shape[1], device=device), (1, 1, 2))[:, [0, 0]]]
        ((masks, scores),) = self.segment([hidden], [frames], location)
        return 0.0 * (masks.sum() + scores.sum())

    # --- segmentation ------------------------------------------------------------------------------

    def segment(
        self,
        seg_hidden: list[torch.Tensor],
        sam_frames: list[torch.Tensor],
        locations: list[torch.Tensor | None] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Decode every sample's ``[SEG]`` states into masks on that sample's frames (training path).

        Args:
            seg_hidden: per sample ``(O_i, D)``; sam_frames: per sample ``(T_i, 3, S, S)``.
            locations: per sample ``(O_i, T_i, h, w)`` location-map logits on each frame, or ``None``.
        Returns:
            per sample ``(mask_logits (O_i, T_i, S, S), object_logits (O_i, T_i))``.
        """
        counts = [h.shape[0] for h in seg_hidden]
        device = seg_hidden[0].device
        size = self.image_size
        locations = locations or [None] * len(sam_frames)
        # videos of equal length (and location-map grid) share one SAM2 batch
        keys = [(f.shape[0], None if loc is None else tuple(loc.shape[2:])) for f, loc in zip(sam_frames, locations)]
        results: list = [None] * len(sam_frames)
        for i, (num_frames, _) in enumerate(keys):
            if counts[i] == 0:
                empty = torch.zeros(0, num_frames, size, size, device=device)
                results[i] = (empty, empty[:, :, 0, 0])
        for key in sorted(set(keys), key=str):
            num_frames = key[0]
            samples = [i for i, k in enumerate(keys) if k == key and counts[i] > 0]
            if not samples:
                continue
            frames = torch.cat([sam_frames[i] for i in samples]).to(device)  # (V*T, 3, S, S)
            prompts = self.prompts_from_hidden(torch.cat([seg_hidden[i] for i in samples]))
            per_video = [counts[i] for i in samples]
            video_index = torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(per_video))
            location = None if key[1] is None else torch.cat([locations[i] for i in samples])
            masks = self.segment_videos(self.encode_frames(frames), num_frames, prompts, video_index, location=location)
            split = zip(masks["mask_logits"].split(per_video), masks["object_logits"].split(per_video))
            for i, pair in zip(samples, split):
                results[i] = pair
        return results

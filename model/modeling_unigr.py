"""UniGR: a Qwen2.5-VL backbone whose ``[SEG]`` tokens are decoded into video masks by SAM2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model
from transformers import AutoModelForImageTextToText, PreTrainedModel
from transformers.utils import ModelOutput

from model.configuration_unigr import UniGRConfig
from model.heads.seg_sam2 import SAM2SegHead, SegHeadConfig, mask_losses

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class UniGROutput(ModelOutput):
    """Output of :meth:`UniGRForConditionalGeneration.forward`.

    Attributes:
        loss: weighted sum of the terms below (training only).
        ce_loss, bce_loss, dice_loss, objectness_loss: scalar loss terms.
        logits: ``(B, L, V)`` language-model logits.
        pred_masks: one ``(O_i, T_i, S, S)`` mask-logit tensor per sample (``O_i`` = its number of
            ``[SEG]`` tokens; samples without ``[SEG]`` give ``O_i = 0``); S = SAM2 image size.
    """

    loss: torch.Tensor | None = None
    ce_loss: torch.Tensor | None = None
    bce_loss: torch.Tensor | None = None
    dice_loss: torch.Tensor | None = None
    objectness_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pred_masks: list[torch.Tensor] | None = None


class UniGRPreTrainedModel(PreTrainedModel):
    config_class = UniGRConfig
    base_model_prefix = "unigr"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock", "Qwen2VLDecoderLayer"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, then SAM2's derived (non-weight) state is rebuilt."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if getattr(model, "seg_head", None) is not None:
            model.seg_head.rebuild_rope_tables()
        return loaded

    def _init_weights(self, module: torch.nn.Module) -> None:
        # The backbone initialises itself (it is a PreTrainedModel); SAM2's modules keep the
        # sam2 package's own initialisation. Only the projection into SAM2's prompt space is ours.
        if isinstance(module, SAM2SegHead):
            for layer in module.text_hidden_proj:
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.normal_(
                        layer.weight, std=self.config.backbone_config.get_text_config().initializer_range
                    )
                    torch.nn.init.zeros_(layer.bias)


class UniGRForConditionalGeneration(UniGRPreTrainedModel):
    """Backbone + optional heads; one class for every task.

    The backbone is the installed transformers Qwen2.5-VL / Qwen2-VL model, built from
    ``config.backbone_config``; LoRA adapters (if configured) go on its language model only.
    """

    def __init__(self, config: UniGRConfig):
        super().__init__(config)
        backbone_config = config.backbone_config
        backbone_config._attn_implementation = config._attn_implementation
        self.backbone = AutoModelForImageTextToText.from_config(backbone_config)
        self.seg_config = SegHeadConfig.from_dict(config.seg) if config.seg is not None else None
        self.seg_head = (
            SAM2SegHead(self.seg_config, backbone_config.get_text_config().hidden_size)
            if self.seg_config is not None and self.seg_config.enabled
            else None
        )
        if config.lora is not None:
            self._inject_lora(config.lora)
        self.post_init()

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

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sam_frames: list[torch.Tensor] | None = None,
        gt_masks: list[torch.Tensor] | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        num_objects_in_batch: torch.Tensor | int | None = None,
        **backbone_kwargs,
    ) -> UniGROutput:
        """Language modelling plus ``[SEG]`` segmentation.

        Args:
            input_ids, attention_mask: ``(B, L)``.
            pixel_values_videos, video_grid_thw, second_per_grid_ts: Qwen video inputs.
            labels: ``(B, L)`` with -100 on non-target tokens; gives the CE term.
            sam_frames: per sample ``(T_i, 3, S, S)`` frames in [0, 1] for SAM2; needed to segment.
            gt_masks: per sample ``(O_i, T_i, S, S)`` targets; with ``labels`` gives the mask terms.
            num_items_in_batch, num_objects_in_batch: what the CE sum and the mask-loss sums are
                divided by (label tokens, objects); default: those of this batch. A trainer passes
                the counts of its whole global batch so that losses do not depend on how the
                batch is split over processes and accumulation steps.
        """
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values_videos=pixel_values_videos,
            video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts,
            labels=labels,
            output_hidden_states=sam_frames is not None,
            num_items_in_batch=num_items_in_batch,
            **backbone_kwargs,
        )
        result = UniGROutput(logits=out.logits, ce_loss=out.loss)
        if sam_frames is None or self.seg_head is None:
            result.loss = out.loss
            return result

        segmented = self.segment(out.hidden_states[-1], input_ids, sam_frames)
        result.pred_masks = [mask_logits for mask_logits, _ in segmented]
        if labels is None:
            return result
        cfg = self.seg_config
        result.loss = cfg.ce_weight * out.loss  # a batch of QA-only samples has no gt_masks
        terms = [mask_losses(*pred, gt) for pred, gt in zip(segmented, gt_masks or []) if gt.shape[0] > 0]
        if terms:
            num_objects = sum(len(t["bce"]) for t in terms) if num_objects_in_batch is None else num_objects_in_batch
            weights = {"bce": cfg.bce_weight, "dice": cfg.dice_weight, "objectness": cfg.objectness_weight}
            for name, weight in weights.items():
                value = torch.cat([t[name] for t in terms]).sum() / num_objects
                setattr(result, f"{name}_loss", value)
                result.loss = result.loss + weight * value
        return result

    def segment(
        self, last_hidden: torch.Tensor, input_ids: torch.Tensor, sam_frames: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Decode every ``[SEG]`` of each sample into masks on that sample's frames.

        Args:
            last_hidden: ``(B, L, D)`` last hidden states; input_ids: ``(B, L)``.
            sam_frames: per sample ``(T_i, 3, S, S)``.
        Returns:
            per sample ``(mask_logits (O_i, T_i, S, S), object_logits (O_i, T_i))``.
        """
        head = self.seg_head
        lengths = [f.shape[0] for f in sam_frames]
        seg_positions = input_ids == self.config.seg_token_id  # (B, L)
        objects_per_sample = seg_positions.sum(1).tolist()
        if self.seg_config.seg_hidden == "previous":  # the state that predicted [SEG] (LISA / RGA3)
            seg_positions = torch.cat([seg_positions[:, 1:], seg_positions[:, :1] & False], dim=1)
        size = head.image_size
        results: list = [None] * len(sam_frames)
        for num_frames in sorted(set(lengths)):  # videos of equal length share one SAM2 batch
            samples = [i for i, n in enumerate(lengths) if n == num_frames and objects_per_sample[i] > 0]
            for i in range(len(lengths)):
                if lengths[i] == num_frames and objects_per_sample[i] == 0:
                    empty = last_hidden.new_zeros(0, num_frames, size, size)
                    results[i] = (empty, empty[:, :, 0, 0])
            if not samples:
                continue
            frames = torch.cat([sam_frames[i] for i in samples]).to(last_hidden.device)  # (V*T, 3, S, S)
            seg_hidden = torch.cat([last_hidden[i][seg_positions[i]] for i in samples])  # (O, D)
            prompts = head.prompts_from_hidden(seg_hidden.to(head.text_hidden_proj[0].weight.dtype))
            counts = [objects_per_sample[i] for i in samples]
            video_index = torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(counts))
            masks = head.segment_videos(head.encode_frames(frames), num_frames, prompts, video_index)
            mask_logits = masks["mask_logits"].split(counts)
            object_logits = masks["object_logits"].split(counts)
            for j, i in enumerate(samples):
                results[i] = (mask_logits[j], object_logits[j])
        return results

    @torch.no_grad()
    def generate_and_segment(
        self,
        inputs: dict[str, torch.Tensor],
        sam_frames: list[torch.Tensor],
        max_new_tokens: int = 32,
        **generate_kwargs,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Generate an answer (greedy unless ``generate_kwargs`` say otherwise), then segment every ``[SEG]`` in it.

        Args:
            inputs: processor outputs for the prompt (``input_ids``, ``attention_mask``, video inputs).
            sam_frames: per sample ``(T_i, 3, S, S)`` frames for SAM2.
            generate_kwargs: passed to ``generate`` (e.g. ``prefix_allowed_tokens_fn``, ``num_beams``).
        Returns:
            ``(sequences (B, L'), [mask logits (O_i, T_i, S, S)])`` with ``O_i`` = ``[SEG]`` generated.
        """
        generate_kwargs = {"do_sample": False, **generate_kwargs}
        sequences = self.backbone.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)
        # Per-token inputs cover the prompt; the generated tokens are text, attended to.
        new_tokens = sequences.shape[1] - inputs["input_ids"].shape[1]
        forward_inputs = {k: v for k, v in inputs.items() if k != "input_ids"}
        for key, fill in (("attention_mask", 1), ("mm_token_type_ids", 0)):
            if key in forward_inputs:
                value = forward_inputs[key]
                forward_inputs[key] = torch.cat([value, value.new_full((value.shape[0], new_tokens), fill)], dim=1)
        out = self.forward(sequences, sam_frames=sam_frames, **forward_inputs)
        return sequences, out.pred_masks

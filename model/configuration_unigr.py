"""UniGR configuration: a Qwen2.5-VL (or Qwen2-VL) backbone config, input encoders, one sub-config per head."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


class UniGRConfig(PreTrainedConfig):
    """Configuration of :class:`~model.modeling_unigr.UniGRForConditionalGeneration`.

    Args:
        backbone_config: the Hugging Face config of the vision-language backbone (``qwen2_5_vl``
            by default; ``qwen2_vl`` also works), as a dict or a config object.
        seg: :class:`~model.heads.seg_sam2.SegHeadConfig` fields (SAM2 config name and overrides,
            prompt tokens, propagation mode, loss weights); ``None`` disables the head.
        encoders: ``{name: options}`` of the enabled input encoders (:mod:`model.input_assembly`).
        placeholder_token_ids: the encoders' placeholder tokens -> ids in the tokenizer.
        lora: ``{"r", "alpha", "dropout", "target_modules"}`` for LoRA adapters on the LLM only;
            ``None`` means no adapters.
        seg_token_id: id of ``[SEG]`` in the tokenizer.
        grounding: :class:`~model.heads.proposal_grounding.GroundingHeadConfig` fields (single / multi target,
            query width, similarity, IoU and prediction thresholds, loss weights) of the proposal grounding
            head (``[GRD]`` -> 3D object proposals); ``None`` disables the head.
        grd_token_id: id of ``[GRD]`` in the tokenizer, set with the grounding head (``None`` without it).
        ce_weight: weight of the language-modelling loss.
        inputs: the data settings that shape the model's inputs, saved by training and read by
            inference (:class:`utils.data.input_settings.InputSettings` fields: frames the LLM sees,
            frame sampling, prompt templates).
    """

    model_type = "unigr"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2_5_vl"),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    seg: dict | None = None
    encoders: dict | None = None
    placeholder_token_ids: dict | None = None
    lora: dict | None = None
    seg_token_id: int | None = None
    grounding: dict | None = None
    grd_token_id: int | None = None
    ce_weight: float = 1.0
    inputs: dict | None = None
    tie_word_embeddings: bool = False

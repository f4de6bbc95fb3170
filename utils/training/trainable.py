"""Which parameters train: the whole model, or LoRA adapters plus the new heads."""

from __future__ import annotations

from model.modeling_unigr import UniGRForConditionalGeneration

TRAINABLE_MODES = ("all", "lora_and_heads")


def configure_trainable(model: UniGRForConditionalGeneration, mode: str) -> dict[str, int]:
    """Set ``requires_grad`` by ``mode``; returns parameter counts ``{"trainable", "total"}``.

    ``all``: everything (tiny random models, which have nothing pretrained to keep).
    ``lora_and_heads``: LoRA adapters on the LLM, the [SEG] projection and SAM2's mask decoder.
    """
    if mode not in TRAINABLE_MODES:
        raise ValueError(f"trainable must be one of {TRAINABLE_MODES}, got {mode!r}")
    for name, param in model.named_parameters():
        if mode == "all":
            param.requires_grad = True
        else:
            param.requires_grad = "lora_" in name or name.startswith(
                ("seg_head.text_hidden_proj.", "seg_head.sam2.sam_mask_decoder.")
            )
    if mode == "lora_and_heads" and model.config.lora is None:
        raise ValueError("trainable=lora_and_heads needs model.lora settings")
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}

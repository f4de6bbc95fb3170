"""Every part builds offline and round-trips through its official on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from model.builder import VOCAB_PAD_MULTIPLE, save_tiny_sam2
from model.sam2_builder import build_sam2, load_sam2_checkpoint
from model.tokenizer import QWEN_SPECIAL_TOKENS
from utils.data.prompts import SEG_TOKEN


def test_tiny_backbone_is_a_stock_qwen2_5_vl_folder(tiny_parts) -> None:
    folder = tiny_parts["backbone"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    with safe_open(folder / "model.safetensors", "pt") as f:  # the key layout of the released checkpoints
        assert {"model.embed_tokens.weight", "visual.patch_embed.proj.weight", "lm_head.weight"} <= set(f.keys())
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert model.config.text_config.vocab_size % VOCAB_PAD_MULTIPLE == 0


def test_tiny_tokenizer_has_qwen_special_tokens_chat_template_and_seg(tiny_parts) -> None:
    processor = AutoProcessor.from_pretrained(tiny_parts["backbone"])
    tokenizer = processor.tokenizer
    for token in [*QWEN_SPECIAL_TOKENS, SEG_TOKEN]:
        ids = tokenizer.encode(f"a {token} b", add_special_tokens=False)
        assert tokenizer.convert_tokens_to_ids(token) in ids, token
    text = processor.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert text == system + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(tokenizer.encode("Sure, [SEG].")) == "Sure, [SEG]."


def test_tiny_sam2_checkpoint_has_the_official_layout_and_loads_strictly(tiny_parts, tiny_cfg) -> None:
    state = torch.load(tiny_parts["sam2"], map_location="cpu", weights_only=True)
    assert set(state) == {"model"} and "sam_mask_decoder.iou_token.weight" in state["model"]
    seg = tiny_cfg["seg"]
    model = build_sam2(seg["sam2_config"], seg["sam2_overrides"], checkpoint=tiny_parts["sam2"])
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][name])


def test_sam2_checkpoint_of_another_size_fails_loudly(tiny_parts, tiny_cfg, tmp_path: Path) -> None:
    seg = dict(tiny_cfg["seg"])
    seg["sam2_overrides"] = {**seg["sam2_overrides"], "model.memory_encoder.out_dim": 32}
    other = build_sam2(seg["sam2_config"], seg["sam2_overrides"])
    with pytest.raises(RuntimeError, match="does not match"):
        load_sam2_checkpoint(other, tiny_parts["sam2"])
    with pytest.raises(FileNotFoundError, match="sam2 package"):
        build_sam2("configs/sam2.1/no_such_model.yaml")


def test_tiny_parts_are_deterministic_per_seed(tiny_cfg, tmp_path: Path) -> None:
    a = torch.load(save_tiny_sam2(tiny_cfg, tmp_path / "a.pt", seed=1), weights_only=True)["model"]
    b = torch.load(save_tiny_sam2(tiny_cfg, tmp_path / "b.pt", seed=1), weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

"""Released checkpoints: RGA3's UniGR-7B/3B folders convert into UniGR; a Qwen2-VL folder is a backbone.

The folders are tiny, random, and written in the layouts the released ones have: RGA3's merge
script (transformers 4.49) and GPT4Scene's LLaMA-Factory SFT (transformers <= 4.46) both save
Qwen-VL with the pre-4.52 keys (``model.*``, ``visual.*``, ``lm_head.*``), a flat ``config.json``,
bf16 safetensors, and a processor as ``preprocessor_config.json`` + tokenizer + ``chat_template.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from transformers import (
    AutoProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from model.builder import build_unigr, load_unigr
from model.convert_released import load_rga3, main, rga3_key_to_unigr
from model.sam2_builder import build_sam2, resolve_sam2_config
from utils.data.collate import SampleCollator
from utils.data.prompts import SEG_TOKEN
from utils.data.schema import Sample

# What transformers 4.4x's Qwen2VLImageProcessor.save_pretrained writes (a 112 x 112 pixel budget).
LEGACY_IMAGE_PROCESSOR = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "Qwen2VLImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "max_pixels": 12544,
    "merge_size": 2,
    "min_pixels": 12544,
    "patch_size": 14,
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"max_pixels": 12544, "min_pixels": 12544},
    "temporal_patch_size": 2,
}


def _legacy_key(key: str) -> str:
    """transformers 5 Qwen-VL key -> the pre-4.52 name (``model.language_model.x`` -> ``model.x`` etc.)."""
    return re.sub(r"^model\.language_model\.", "model.", re.sub(r"^model\.visual\.", "visual.", key))


def _legacy_text_fields(text_config: dict, tie_word_embeddings: bool) -> dict:
    """The flat text fields a pre-v5 Qwen(2.5)-VL ``config.json`` carries, RoPE in its ``rope_scaling`` form."""
    rope = text_config["rope_parameters"]
    names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    names += ("num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps")
    return {
        **{name: text_config[name] for name in names},
        "use_cache": True,
        "tie_word_embeddings": tie_word_embeddings,
        "rope_theta": rope["rope_theta"],
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": text_config["num_hidden_layers"],
        "attention_dropout": 0.0,
        "rope_scaling": {"type": "default", "mrope_section": rope["mrope_section"], "rope_type": "default"},
        "bos_token_id": text_config["bos_token_id"],
        "eos_token_id": text_config["eos_token_id"],
    }


def _write_legacy_processor(processor, folder: Path, processor_class: str) -> None:
    processor.tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": processor.chat_template}))
    image = {**LEGACY_IMAGE_PROCESSOR, "processor_class": processor_class}
    (folder / "preprocessor_config.json").write_text(json.dumps(image, indent=2))


def _write_shards(folder: Path, state: dict[str, torch.Tensor], num_shards: int = 3) -> None:
    """Safetensors shards plus ``model.safetensors.index.json``, as ``save_pretrained`` shards a large model."""
    keys = sorted(state)
    weight_map = {}
    for i in range(num_shards):
        name = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::num_shards]}
        save_file(part, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_rga3_folder(
    folder: Path,
    tiny_cfg: dict,
    stock_backbone: Path,
    tie_word_embeddings: bool,
    edit: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> dict[str, torch.Tensor]:
    """A tiny UniGR-7B (untied) or UniGR-3B (tied) folder as RGA3's merge script writes it; returns its tensors.

    Its tokenizer already holds ``[SEG]``, and ``resize_token_embeddings(len(tokenizer))`` makes the
    embedding exactly that long. ``edit`` may change the state dict before it is written.
    """
    folder.mkdir(parents=True)
    processor = AutoProcessor.from_pretrained(stock_backbone)
    qwen_config = Qwen2_5_VLConfig.from_pretrained(stock_backbone)
    qwen_config.text_config.vocab_size = len(processor.tokenizer)
    qwen_config.tie_word_embeddings = tie_word_embeddings
    torch.manual_seed(0)
    qwen = Qwen2_5_VLForConditionalGeneration(qwen_config)
    state = {_legacy_key(k): v for k, v in qwen.state_dict().items()}
    if tie_word_embeddings:  # save_pretrained drops the tied copy
        del state["lm_head.weight"]
    seg = tiny_cfg["seg"]
    sam2 = build_sam2(seg["sam2_config"], seg["sam2_overrides"])
    for key, value in sam2.state_dict().items():  # the vendored SAM2 calls CXBlock.gamma "g_weight"
        state["grounding_encoder.sam2_model." + key.replace(".gamma", ".g_weight")] = value
    hidden, out_dim = qwen_config.text_config.hidden_size, sam2.sam_prompt_embed_dim
    fcs = torch.nn.Sequential(
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out_dim), torch.nn.Dropout(0.0)
    )
    state.update({f"text_hidden_fcs.0.{k}": v for k, v in fcs.state_dict().items()})
    state = {k: v.detach().to(torch.bfloat16) for k, v in state.items()}
    if edit is not None:
        edit(state)
    _write_shards(folder, state)

    text = qwen_config.text_config.to_dict()
    vision = qwen_config.vision_config
    rga3_config = {
        "architectures": ["UniGRModel"],
        "model_type": "qwen2_5_vl",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.49.0.dev0",
        **_legacy_text_fields(text, tie_word_embeddings),
        "image_token_id": qwen_config.image_token_id,
        "video_token_id": qwen_config.video_token_id,
        "vision_start_token_id": qwen_config.vision_start_token_id,
        "vision_end_token_id": qwen_config.vision_end_token_id,
        "vision_token_id": processor.tokenizer.convert_tokens_to_ids("<|vision_pad|>"),
        "vision_config": {
            "model_type": "qwen2_5_vl",
            "depth": vision.depth,
            "hidden_act": vision.hidden_act,
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_heads": vision.num_heads,
            "in_chans": 3,
            "out_hidden_size": vision.out_hidden_size,
            "patch_size": vision.patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "spatial_patch_size": vision.patch_size,
            "temporal_patch_size": vision.temporal_patch_size,
            "tokens_per_second": vision.tokens_per_second,
            "window_size": vision.window_size,
            "fullatt_block_indexes": list(vision.fullatt_block_indexes),
        },
        "train_mask_decoder": True,
        "out_dim": out_dim,
        "ce_loss_weight": 0.0,
        "dice_loss_weight": 0.0,
        "bce_loss_weight": 0.0,
        "seg_token_idx": processor.tokenizer(SEG_TOKEN, add_special_tokens=False).input_ids[-1],
        "sam_pretrained": None,
    }
    (folder / "config.json").write_text(json.dumps(rga3_config, indent=2))
    _write_legacy_processor(processor, folder, "Qwen2_5_VLProcessor")
    return state


@pytest.fixture(scope="module")
def tiny_sam2_yaml(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: dict) -> Path:
    """The tiny SAM2 as one YAML file (a config path is what ``--sam2-config`` takes)."""
    seg = tiny_cfg["seg"]
    cfg = OmegaConf.load(resolve_sam2_config(seg["sam2_config"]))
    for key, value in seg["sam2_overrides"].items():
        OmegaConf.update(cfg, key, value, force_add=True)
    path = tmp_path_factory.mktemp("sam2_yaml") / "sam2_tiny.yaml"
    OmegaConf.save(cfg, path)
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["7B-untied", "3B-tied"])
def rga3_folder(request, tmp_path_factory, tiny_cfg, tiny_parts) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("rga3") / "UniGR"
    return folder, _write_rga3_folder(folder, tiny_cfg, tiny_parts["backbone"], request.param)


def _segment_sample() -> Sample:
    rng = np.random.default_rng(0)
    return Sample(
        sample_id="synthetic/0",
        frames=rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
        frame_names=[f"{t:05d}" for t in range(4)],
        conversation=[
            {"role": "user", "content": "Please segment the red square moving left."},
            {"role": "assistant", "content": f"Sure, {SEG_TOKEN}."},
        ],
        masks=rng.random((1, 4, 64, 64)) > 0.5,
        timestamps=np.arange(4) / 6.0,
    )


def _pred_masks(model, processor) -> list[torch.Tensor]:
    batch = SampleCollator(processor, model.seg_head.image_size)([_segment_sample()])
    with torch.no_grad():
        return model.eval()(**batch).pred_masks


def _assert_holds_source(model, source: dict[str, torch.Tensor]) -> None:
    """Every source tensor sits, unchanged, under its UniGR name."""
    state = model.state_dict()
    for key, tensor in source.items():
        torch.testing.assert_close(state[rga3_key_to_unigr(key)], tensor.float(), rtol=0, atol=0, msg=key)


def test_rga3_folder_loads_every_weight_unchanged_and_segments(rga3_folder, tiny_sam2_yaml) -> None:
    folder, source = rga3_folder
    model, processor = load_rga3(folder, str(tiny_sam2_yaml))
    _assert_holds_source(model, source)
    backbone = model.backbone
    if "lm_head.weight" not in source:  # UniGR-3B: tied embeddings
        assert backbone.lm_head.weight is backbone.get_input_embeddings().weight
    assert model.config.seg_token_id == processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert model.seg_config.num_prompt_tokens == 1 and model.seg_config.propagation == "independent"
    (masks,) = _pred_masks(model, processor)
    assert masks.shape == (1, 4, 128, 128) and torch.isfinite(masks).all()


def test_rga3_cli_writes_a_unigr_folder_that_loads_back(rga3_folder, tiny_sam2_yaml, tmp_path: Path) -> None:
    folder, source = rga3_folder
    main(["rga3", "--src", str(folder), "--out", str(tmp_path), "--sam2-config", str(tiny_sam2_yaml)])
    model, processor = load_unigr(tmp_path)
    _assert_holds_source(model, source)
    (masks,) = _pred_masks(model, processor)
    assert masks.shape == (1, 4, 128, 128)


def test_rga3_key_names_map_to_unigr_modules() -> None:
    assert rga3_key_to_unigr("model.layers.0.self_attn.q_proj.weight") == (
        "backbone.model.language_model.layers.0.self_attn.q_proj.weight"
    )
    assert rga3_key_to_unigr("visual.blocks.0.attn.qkv.weight") == "backbone.model.visual.blocks.0.attn.qkv.weight"
    assert rga3_key_to_unigr("lm_head.weight") == "backbone.lm_head.weight"
    assert rga3_key_to_unigr("grounding_encoder.sam2_model.memory_encoder.fuser.layers.1.g_weight") == (
        "seg_head.sam2.memory_encoder.fuser.layers.1.gamma"
    )
    assert rga3_key_to_unigr("text_hidden_fcs.0.2.bias") == "seg_head.text_hidden_proj.2.bias"
    assert rga3_key_to_unigr("mm_projector.weight") is None


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda s: s.update({"grounding_encoder.sam2_model.extra_head.weight": torch.zeros(2)}), "extra_head"),
        (lambda s: s.update({"mm_projector.weight": torch.zeros(2)}), "mm_projector.weight"),
        (lambda s: s.pop("text_hidden_fcs.0.2.bias"), "seg_head.text_hidden_proj.2.bias"),
        (lambda s: s.pop("model.layers.1.mlp.up_proj.weight"), "language_model.layers.1.mlp.up_proj.weight"),
    ],
    ids=["unexpected-sam2-key", "unexpected-unknown-key", "missing-projection", "missing-llm-weight"],
)
def test_rga3_folder_with_extra_or_missing_key_is_an_error_naming_it(
    edit, named: str, tmp_path: Path, tiny_cfg, tiny_parts, tiny_sam2_yaml
) -> None:
    _write_rga3_folder(tmp_path / "UniGR", tiny_cfg, tiny_parts["backbone"], False, edit)
    with pytest.raises(RuntimeError, match=re.escape(named)):
        load_rga3(tmp_path / "UniGR", str(tiny_sam2_yaml))


def test_rga3_folder_of_another_sam2_size_is_an_error(tmp_path: Path, tiny_cfg, tiny_parts) -> None:
    _write_rga3_folder(tmp_path / "UniGR", tiny_cfg, tiny_parts["backbone"], False)
    seg = tiny_cfg["seg"]
    wider = {
        **seg["sam2_overrides"],
        "model.image_encoder.trunk.embed_dim": 32,
        "model.image_encoder.neck.backbone_channel_list": [256, 128, 64, 32],
    }
    with pytest.raises(RuntimeError, match="does not match the configured model"):
        load_rga3(tmp_path / "UniGR", seg["sam2_config"], wider)


def test_rga3_seg_token_must_match_the_tokenizer(tmp_path: Path, tiny_cfg, tiny_parts, tiny_sam2_yaml) -> None:
    folder = tmp_path / "UniGR"
    _write_rga3_folder(folder, tiny_cfg, tiny_parts["backbone"], False)
    config = json.loads((folder / "config.json").read_text())
    config["seg_token_idx"] -= 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="seg_token_idx"):
        load_rga3(folder, str(tiny_sam2_yaml))


def _write_qwen2_vl_folder(folder: Path, stock_backbone: Path, legacy: bool) -> dict[str, torch.Tensor]:
    """A tiny Qwen2-VL folder: transformers 5's ``save_pretrained``, or GPT4Scene's pre-4.52 layout."""
    stock = AutoProcessor.from_pretrained(stock_backbone)
    tokenizer = stock.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    text_config = Qwen2_5_VLConfig.from_pretrained(stock_backbone).text_config.to_dict()
    text_config.pop("model_type")
    config = Qwen2VLConfig(
        text_config=text_config,
        vision_config={"depth": 2, "embed_dim": 64, "hidden_size": text_config["hidden_size"], "num_heads": 2},
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(1)
    model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(folder)
    state = model.state_dict()
    if not legacy:
        Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(size=stock.image_processor.size),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(size=stock.video_processor.size),
            chat_template=stock.chat_template,
        ).save_pretrained(folder)
        return state
    (folder / "model.safetensors").unlink()
    _write_shards(folder, {_legacy_key(k): v.to(torch.bfloat16) for k, v in state.items()})
    vision = config.vision_config
    legacy_config = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.1",
        **_legacy_text_fields(text_config, config.tie_word_embeddings),
        "image_token_id": config.image_token_id,
        "video_token_id": config.video_token_id,
        "vision_start_token_id": config.vision_start_token_id,
        "vision_end_token_id": config.vision_end_token_id,
        "vision_token_id": ids("<|vision_pad|>"),
        "vision_config": {
            "model_type": "qwen2_vl",
            "depth": vision.depth,
            "embed_dim": vision.embed_dim,
            "hidden_size": vision.hidden_size,
            "hidden_act": vision.hidden_act,
            "mlp_ratio": vision.mlp_ratio,
            "num_heads": vision.num_heads,
            "in_chans": 3,
            "patch_size": vision.patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "spatial_patch_size": vision.patch_size,
            "temporal_patch_size": vision.temporal_patch_size,
        },
    }
    (folder / "config.json").write_text(json.dumps(legacy_config, indent=2))
    _write_legacy_processor(stock, folder, "Qwen2VLProcessor")
    return {k: v.to(torch.bfloat16).float() for k, v in state.items()}


@pytest.mark.parametrize("legacy", [False, True], ids=["transformers5-save", "gpt4scene-pre-4.52-layout"])
def test_qwen2_vl_folder_serves_as_unigr_backbone(legacy: bool, tmp_path: Path, tiny_cfg, tiny_parts) -> None:
    source = _write_qwen2_vl_folder(tmp_path / "qwen2_vl", tiny_parts["backbone"], legacy)
    model, processor = build_unigr(tmp_path / "qwen2_vl", tiny_cfg["seg"], tiny_parts["sam2"])
    assert isinstance(model.backbone, Qwen2VLForConditionalGeneration)
    backbone = model.backbone.state_dict()
    for key, tensor in source.items():
        torch.testing.assert_close(backbone[key], tensor, rtol=0, atol=0, msg=key)
    assert model.config.seg_token_id == processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    (masks,) = _pred_masks(model, processor)
    assert masks.shape == (1, 4, 128, 128) and torch.isfinite(masks).all()

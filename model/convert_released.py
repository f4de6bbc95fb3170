"""Load the reference system's released checkpoints into UniGR.

**RGA3's UniGR-7B / UniGR-3B** folders are written by its ``merge_lora_weights_and_save_hf_model.py``
with transformers 4.49: a ``Qwen2_5_VLForConditionalGeneration`` subclass whose ``config.json`` is
the flat pre-v5 Qwen2.5-VL config (``model_type: qwen2_5_vl``) plus ``out_dim``, ``seg_token_idx``
and a few training fields, and whose safetensors shards hold

* the backbone in the pre-4.52 key layout: ``model.*`` (language model), ``visual.*``, ``lm_head.*``
  (absent when ``tie_word_embeddings``, as in the 3B);
* SAM2 Hiera-L (SAM2 v1, ``sam2_hiera_large.pt``) under ``grounding_encoder.sam2_model.*``, from a
  vendored copy whose module names are the ``sam2`` package's except ``CXBlock.gamma``, renamed
  ``g_weight``;
* the ``[SEG]`` projection ``text_hidden_fcs.0 = Sequential(Linear(D, D), ReLU, Linear(D, out_dim),
  Dropout)``: one prompt token of SAM2's 256-d prompt space.

Every key is renamed to UniGR's layout and loaded strictly: a key with no place in UniGR, or a
UniGR weight the folder does not hold, is an error naming it. GPT4Scene's released Qwen2-VL-7B needs
no conversion: it is a stock Qwen2-VL folder, usable directly as ``build_unigr``'s backbone.

    python -m model.convert_released rga3 --src UniGR-7B --out unigr-7b-converted
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoProcessor, ProcessorMixin, Qwen2_5_VLConfig
from transformers.initialization import no_init_weights

from model.configuration_unigr import UniGRConfig
from model.heads.seg_sam2 import SegHeadConfig
from model.modeling_unigr import UniGRForConditionalGeneration
from utils.data.prompts import SEG_TOKEN

RGA3_SAM2_CONFIG = "configs/sam2/sam2_hiera_l.yaml"  # RGA3 hard-codes Hiera-L and loads sam2_hiera_large.pt
# Fields RGA3's UniGRConfig adds to the Qwen2.5-VL config; the rest is the backbone's.
RGA3_EXTRA_FIELDS = (
    "train_mask_decoder",
    "out_dim",
    "ce_loss_weight",
    "dice_loss_weight",
    "bce_loss_weight",
    "seg_token_idx",
    "sam_pretrained",
)
# Bookkeeping fields of a saved config that describe the file, not the architecture.
FILE_FIELDS = ("architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path", "model_type")

# (source pattern, UniGR name); the first matching rule renames a key. The backbone rules are
# transformers' own conversion for pre-4.52 Qwen2(.5)-VL checkpoints, rooted at ``backbone.``;
# keys already in the new layout (a folder re-saved by transformers >= 4.52) are accepted too.
RGA3_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^visual\.", "backbone.model.visual."),
    (r"^model\.visual\.", "backbone.model.visual."),
    (r"^model\.language_model\.", "backbone.model.language_model."),
    (r"^model\.", "backbone.model.language_model."),
    (r"^lm_head\.", "backbone.lm_head."),
    (r"^grounding_encoder\.sam2_model\.(.+)\.g_weight$", r"seg_head.sam2.\1.gamma"),
    (r"^grounding_encoder\.sam2_model\.", "seg_head.sam2."),
    (r"^text_hidden_fcs\.0\.", "seg_head.text_hidden_proj."),
)


def rga3_key_to_unigr(key: str) -> str | None:
    """UniGR's name for an RGA3 state-dict key, or ``None`` if no rule covers it."""
    for pattern, replacement in RGA3_KEY_RULES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


def rga3_config_to_unigr(
    rga3_config: dict,
    seg_token_id: int,
    sam2_config: str = RGA3_SAM2_CONFIG,
    sam2_overrides: dict | None = None,
    propagation: str = "independent",
) -> UniGRConfig:
    """UniGR's config for an RGA3 ``config.json`` (as a dict).

    The backbone config is the Qwen2.5-VL part (transformers reads the flat pre-v5 layout). The seg
    head gets one prompt token (RGA3's ``out_dim`` is one SAM2 prompt embedding) and
    ``propagation="independent"`` by default: RGA3 trains SAM2 with the prompt on every frame and
    no memory.
    """
    if rga3_config.get("model_type") != "qwen2_5_vl":
        raise ValueError(f"not an RGA3 UniGR config: model_type {rga3_config.get('model_type')!r}, want 'qwen2_5_vl'")
    backbone_fields = {k: v for k, v in rga3_config.items() if k not in RGA3_EXTRA_FIELDS + FILE_FIELDS}
    seg = SegHeadConfig.from_dict(
        {
            "sam2_config": sam2_config,
            "sam2_overrides": dict(sam2_overrides or {}),
            "num_prompt_tokens": 1,
            "propagation": propagation,
            "seg_hidden": "previous",  # RGA3 projects the hidden state of the token before [SEG]
        }
    )
    return UniGRConfig(
        backbone_config=Qwen2_5_VLConfig(**backbone_fields).to_dict(),
        seg=seg.to_dict(),
        lora=None,
        seg_token_id=seg_token_id,
    )


def safetensors_shards(folder: Path) -> list[Path]:
    """The safetensors files of a Hugging Face folder: those its index names, else ``model.safetensors``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"{folder} has neither model.safetensors.index.json nor model.safetensors")


def _renamed_shards(folder: Path) -> Iterator[tuple[dict[str, torch.Tensor], list[str]]]:
    """Per shard: ``({UniGR name: tensor}, [source keys no rule covers])``."""
    for shard in safetensors_shards(folder):
        renamed, unknown = {}, []
        for key, tensor in load_file(shard).items():
            name = rga3_key_to_unigr(key)
            if name is None:
                unknown.append(key)
            else:
                renamed[name] = tensor
        yield renamed, unknown


def _names(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_rga3(
    src: str | Path,
    sam2_config: str = RGA3_SAM2_CONFIG,
    sam2_overrides: dict | None = None,
    propagation: str = "independent",
    attn_implementation: str = "sdpa",
) -> tuple[UniGRForConditionalGeneration, ProcessorMixin]:
    """Load an RGA3 UniGR-7B/3B folder into :class:`UniGRForConditionalGeneration` (float32).

    Args:
        src: the released folder (``config.json``, safetensors shards with their index, processor).
        sam2_config, sam2_overrides: the SAM2 architecture its ``grounding_encoder`` holds.
        propagation: the seg head's mode (see :class:`SegHeadConfig`).
    Raises:
        RuntimeError: naming every source key with no place in UniGR, every UniGR weight the folder
            lacks, or a tensor whose shape differs (e.g. another SAM2 size).
        ValueError: if the tokenizer's ``[SEG]`` id is not the config's ``seg_token_idx``.
    """
    src = Path(src)
    rga3_config = json.loads((src / "config.json").read_text())
    processor = AutoProcessor.from_pretrained(src)
    seg_token_id = processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    if seg_token_id != rga3_config.get("seg_token_idx"):
        raise ValueError(
            f"{src}: the tokenizer's {SEG_TOKEN} id is {seg_token_id}, config.json's seg_token_idx is "
            f"{rga3_config.get('seg_token_idx')}"
        )
    config = rga3_config_to_unigr(rga3_config, seg_token_id, sam2_config, sam2_overrides, propagation)
    config._attn_implementation = attn_implementation
    with no_init_weights():  # every weight is overwritten below; tying is part of the skipped init
        model = UniGRForConditionalGeneration(config)
    model.tie_weights()
    if model.seg_head.sam2.sam_prompt_embed_dim != rga3_config.get("out_dim"):
        raise RuntimeError(
            f"{src}: out_dim {rga3_config.get('out_dim')} is not the SAM2 prompt size "
            f"{model.seg_head.sam2.sam_prompt_embed_dim} of {sam2_config}"
        )

    expected = set(model.state_dict())
    loaded: set[str] = set()
    unexpected: list[str] = []
    for renamed, unknown in _renamed_shards(src):
        unexpected += unknown
        unexpected += [name for name in renamed if name not in expected]
        twice = loaded & renamed.keys()
        if twice:
            raise RuntimeError(f"{src}: weights given twice: {_names(sorted(twice))}")
        try:
            model.load_state_dict({k: v for k, v in renamed.items() if k in expected}, strict=False)
        except RuntimeError as error:  # shapes differ: another size than the configured one
            raise RuntimeError(f"{src} does not match the configured model ({sam2_config}): {error}") from error
        loaded |= renamed.keys() & expected
    embeddings = model.get_input_embeddings().weight
    tied = {name for name, p in model.named_parameters(remove_duplicate=False) if p is embeddings}
    missing = sorted(expected - loaded - (tied if tied & loaded else set()))
    if missing or unexpected:
        raise RuntimeError(
            f"{src} does not match UniGR: missing {len(missing)} [{_names(missing)}], "
            f"unexpected {len(unexpected)} [{_names(sorted(unexpected))}]"
        )
    return model.eval(), processor


def convert_rga3(
    src: str | Path,
    out: str | Path,
    sam2_config: str = RGA3_SAM2_CONFIG,
    propagation: str = "independent",
) -> Path:
    """Write an RGA3 folder as a UniGR folder (``save_pretrained`` of model and processor)."""
    model, processor = load_rga3(src, sam2_config, propagation=propagation)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m model.convert_released", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rga3 = commands.add_parser("rga3", help="RGA3's UniGR-7B / UniGR-3B folder -> a UniGR folder")
    rga3.add_argument("--src", type=Path, required=True, help="the released folder")
    rga3.add_argument("--out", type=Path, required=True, help="where to write the UniGR folder")
    rga3.add_argument(
        "--sam2-config",
        default=RGA3_SAM2_CONFIG,
        help="sam2 package config name or YAML path of the SAM2 in the folder (default: RGA3's Hiera-L)",
    )
    rga3.add_argument("--propagation", choices=["independent", "memory"], default="independent")
    args = parser.parse_args(argv)
    out = convert_rga3(args.src, args.out, args.sam2_config, args.propagation)
    print(f"wrote {out}; load it with model.builder.load_unigr")


if __name__ == "__main__":
    main()

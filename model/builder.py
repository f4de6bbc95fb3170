"""Assemble UniGR from parts: a Qwen2.5-VL folder, a SAM2 config + official checkpoint, head configs.

The same code path serves real sizes (a downloaded ``Qwen2.5-VL-7B-Instruct`` folder and
``sam2.1_hiera_large.pt``) and the tiny quick start, whose parts are first written to disk in
exactly those formats by :func:`save_tiny_backbone` and :func:`save_tiny_sam2`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.initialization import meta_device_safe_creation_ops

from model.configuration_unigr import UniGRConfig
from model.heads.proposal_grounding import GroundingHeadConfig, ProposalGroundingHead
from model.heads.seg import SAM2SegHead
from model.heads.seg_sam2 import SegHeadConfig
from model.input_assembly import InputAssembly, build_encoders, encoder_classes
from model.modeling_unigr import UniGRForConditionalGeneration
from model.sam2_builder import build_sam2, load_sam2_checkpoint, save_sam2_checkpoint
from model.tokenizer import add_grd_token, add_seg_token, train_tiny_tokenizer
from model.visual_tokens import VisualTokens

VOCAB_PAD_MULTIPLE = 64


def save_tiny_backbone(model_cfg: dict, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random tiny Qwen2.5-VL in the stock Hugging Face folder layout (model, tokenizer, processor)."""
    tokenizer = train_tiny_tokenizer(model_cfg["tokenizer"]["corpus"], model_cfg["tokenizer"]["vocab_size"])
    config = backbone_config(model_cfg["backbone"], tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = build_processor(tokenizer, **model_cfg["processor"])
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def backbone_config(backbone_cfg: dict, tokenizer: PreTrainedTokenizerBase) -> Qwen2_5_VLConfig:
    """A model config's ``backbone`` section as a Qwen2.5-VL config using ``tokenizer``'s special-token ids.

    ``text_config.vocab_size`` is kept when given (real sizes: the embedding gets the real
    vocabulary's rows whichever tokenizer stands in); otherwise it is ``len(tokenizer)`` rounded up
    to a multiple of 64. Keys beside ``text_config`` / ``vision_config`` (e.g.
    ``tie_word_embeddings``) go to ``Qwen2_5_VLConfig`` as they are.
    """
    ids = tokenizer.convert_tokens_to_ids
    text_config = dict(backbone_cfg["text_config"])
    text_config.setdefault("vocab_size", -(-len(tokenizer) // VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE)
    if text_config["vocab_size"] < len(tokenizer):
        raise ValueError(f"text_config.vocab_size {text_config['vocab_size']} < tokenizer size {len(tokenizer)}")
    text_config.update(bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"))
    text_config["pad_token_id"] = tokenizer.pad_token_id
    extra = {key: value for key, value in backbone_cfg.items() if key not in ("text_config", "vision_config")}
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=backbone_cfg["vision_config"],
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        **extra,
    )


def build_processor(tokenizer, min_pixels: int, max_pixels: int) -> Qwen2_5_VLProcessor:
    """A Qwen2.5-VL processor around ``tokenizer`` with the given per-frame pixel budget."""
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=tokenizer.chat_template,
    )


def save_tiny_sam2(model_cfg: dict, path: str | Path, seed: int = 0) -> Path:
    """Write a random tiny SAM2 as an official-format checkpoint (``{"model": state_dict}``)."""
    torch.manual_seed(seed)
    seg = model_cfg["seg"]
    sam2 = build_sam2(seg["sam2_config"], seg.get("sam2_overrides"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_sam2_checkpoint(sam2, path)
    return Path(path)


def load_backbone(
    path: str | Path, attn_implementation: str = "sdpa", dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a stock Qwen2.5-VL / Qwen2-VL folder and add ``[SEG]`` and ``[GRD]`` (the embedding never shrinks)."""
    processor = AutoProcessor.from_pretrained(path)
    backbone = AutoModelForImageTextToText.from_pretrained(path, attn_implementation=attn_implementation, dtype=dtype)
    add_seg_token(processor.tokenizer)
    add_grd_token(processor.tokenizer)
    grow_embeddings(backbone, processor.tokenizer)
    return backbone, processor


def grow_embeddings(backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the backbone embedding rows for every token of ``tokenizer`` (a multiple of 64), if it has too few."""
    rows = backbone.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        backbone.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=VOCAB_PAD_MULTIPLE)


def build_unigr(
    backbone_path: str | Path,
    seg: dict | None,
    sam2_checkpoint: str | Path | None = None,
    lora: dict | None = None,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    encoders: dict | None = None,
    grounding: dict | None = None,
) -> tuple[UniGRForConditionalGeneration, ProcessorMixin]:
    """UniGR from a backbone folder, a seg-head config and an official SAM2 checkpoint (and optionally a
    proposal grounding head config, ``grounding``; see :func:`assemble_unigr`).

    The backbone is loaded in ``dtype`` (a 7B in bf16 never exists in float32 in host memory); the
    heads are built in float32 (the trainer casts frozen parts to its compute dtype).
    """
    backbone, processor = load_backbone(backbone_path, attn_implementation, dtype)
    model = assemble_unigr(
        backbone, processor, seg, sam2_checkpoint, lora, attn_implementation, encoders, grounding=grounding
    )
    return model, processor


def assemble_unigr(
    backbone: PreTrainedModel,
    processor: ProcessorMixin,
    seg: dict | None,
    sam2_checkpoint: str | Path | None = None,
    lora: dict | None = None,
    attn_implementation: str = "sdpa",
    encoders: dict | None = None,
    grounding: dict | None = None,
) -> UniGRForConditionalGeneration:
    """UniGR around an in-memory backbone whose tokenizer (``processor.tokenizer``) has ``[SEG]``.

    The SAM2 head is built on the default device in float32, randomly initialised unless
    ``sam2_checkpoint`` (an official SAM2 file) is given; the backbone stays where and as it is.
    ``encoders`` (``{name: options}``) enables input encoders; their placeholder tokens are added to
    the tokenizer (and embedding rows to the backbone where it has too few). ``grounding``
    (:class:`~model.heads.proposal_grounding.GroundingHeadConfig` fields, ``{}`` for the defaults) adds the
    proposal grounding head, randomly initialised in float32, and ``[GRD]`` to the tokenizer where it lacks it.
    """
    placeholders = add_placeholder_tokens(backbone, processor, encoders)
    grd_token_id = add_grounding_token(backbone, processor) if grounding is not None else None
    config = UniGRConfig(
        backbone_config=backbone.config.to_dict(),
        seg=SegHeadConfig.from_dict(seg).to_dict() if seg is not None else None,
        encoders=encoders,
        placeholder_token_ids={token: processor.tokenizer.convert_tokens_to_ids(token) for token in placeholders},
        lora=None,
        seg_token_id=processor.tokenizer.convert_tokens_to_ids("[SEG]"),
        grounding=GroundingHeadConfig.from_dict(grounding).to_dict() if grounding is not None else None,
        grd_token_id=grd_token_id,
    )
    config._attn_implementation = attn_implementation
    # A shell whose backbone and head are replaced by real ones below. SAM2 calls ``.item()`` on a
    # ``torch.linspace`` while it builds; transformers' context keeps that one op off the meta device.
    with torch.device("meta"), meta_device_safe_creation_ops():
        model = UniGRForConditionalGeneration(config)
    model.backbone = backbone
    hidden_size = backbone.config.get_text_config().hidden_size
    model.input_assembly = InputAssembly(build_encoders(encoders, hidden_size, backbone.config))
    model.input_assembly.apply(model._init_weights)
    if model.seg_config is not None:
        visual_tokens = VisualTokens.from_backbone_config(backbone.config)
        model.seg_head = SAM2SegHead(model.seg_config, hidden_size, config.seg_token_id, visual_tokens)
        model._init_weights(model.seg_head)
        if sam2_checkpoint is not None:
            load_sam2_checkpoint(model.seg_head.sam2, sam2_checkpoint)
    model.grounding_head = ProposalGroundingHead.from_config(config.grounding, hidden_size, config)
    if model.grounding_head is not None:
        model._init_weights(model.grounding_head)
    if lora is not None:
        model.config.lora = lora
        model._inject_lora(lora)
    meta = [name for name, p in model.state_dict().items() if p.is_meta]
    if meta:
        raise RuntimeError(f"parameters left uninitialised: {meta[:5]}")
    return model


def add_placeholder_tokens(backbone: PreTrainedModel, processor: ProcessorMixin, encoders: dict | None) -> list[str]:
    """Add the placeholder tokens (and extra tokens) of ``encoders`` to the tokenizer (and embedding rows where the
    backbone has too few); returns them, sorted."""
    classes = encoder_classes(encoders).values()
    tokens = {cls.placeholder for cls in classes if cls.placeholder}
    placeholders = sorted(tokens | {token for cls in classes for token in cls.extra_tokens})
    if placeholders:
        processor.tokenizer.add_tokens(placeholders, special_tokens=True)
        grow_embeddings(backbone, processor.tokenizer)
    return placeholders


def add_grounding_token(backbone: PreTrainedModel, processor: ProcessorMixin) -> int:
    """Add ``[GRD]`` to the tokenizer where it lacks it (a UniGR saved before the grounding head) and embedding rows
    where the backbone has too few; returns its id."""
    token_id = add_grd_token(processor.tokenizer)
    grow_embeddings(backbone, processor.tokenizer)
    return token_id


WEIGHT_SHAPING_GROUNDING_FIELDS = ("enabled", "embed_dim", "similarity", "relation", "situation")
"""Grounding-head fields a model's head weights depend on: a model that has the head cannot change them."""


def add_grounding_head(model: UniGRForConditionalGeneration, processor: ProcessorMixin, grounding: dict) -> None:
    """Give a built or loaded model the proposal grounding head ``grounding``, in place.

    A model without the head gets it freshly initialised (and ``[GRD]``, see :func:`add_grounding_token`); a
    model with it takes the fields that leave its weights as they are (mode, thresholds, loss weights) and
    refuses the others (:data:`WEIGHT_SHAPING_GROUNDING_FIELDS`) by name.
    """
    head = model.grounding_head
    if head is not None:
        merged = head.config.to_dict()
        refused = [key for key in WEIGHT_SHAPING_GROUNDING_FIELDS if key in grounding and grounding[key] != merged[key]]
        if refused:
            raise ValueError(
                f"model.grounding.{refused[0]} cannot change on a model that has the grounding head (its weights "
                f"depend on it); refused: {refused}"
            )
        head.config = GroundingHeadConfig.from_dict({**merged, **grounding})
        model.config.grounding = head.config.to_dict()
        return
    backbone = model.backbone
    model.config.grd_token_id = add_grounding_token(backbone, processor)
    model.config.grounding = GroundingHeadConfig.from_dict(grounding).to_dict()
    model.config.backbone_config = backbone.config  # the vocabulary may have grown
    hidden_size = backbone.config.get_text_config().hidden_size
    head = ProposalGroundingHead.from_config(model.config.grounding, hidden_size, model.config)
    if head is not None:
        head.to(next(model.parameters()).device)
        model._init_weights(head)
    model.grounding_head = head


def add_encoders(model: UniGRForConditionalGeneration, processor: ProcessorMixin, encoders: dict) -> None:
    """Enable ``encoders`` (``{name: options}``) on a built or loaded model, in place: encoders it already has
    must have the same options; new ones get their placeholder tokens and freshly initialised weights."""
    current = dict(model.config.encoders or {})
    changed = [name for name in encoders if name in current and current[name] != encoders[name]]
    if changed:
        raise ValueError(f"model.encoders {changed} differ from the model's {current}; options cannot change")
    new = {name: options for name, options in encoders.items() if name not in current}
    if not new:
        return
    backbone = model.backbone
    placeholders = add_placeholder_tokens(backbone, processor, new)
    hidden_size = backbone.config.get_text_config().hidden_size
    built = build_encoders(new, hidden_size, backbone.config)
    for name, encoder in built.items():
        encoder.to(next(model.parameters()).device)
        encoder.apply(model._init_weights)
        model.input_assembly.encoders[name] = encoder
    model.config.encoders = {**current, **new}
    model.config.placeholder_token_ids = {
        **(model.config.placeholder_token_ids or {}),
        **{token: processor.tokenizer.convert_tokens_to_ids(token) for token in placeholders},
    }
    model.config.backbone_config = backbone.config  # the vocabulary may have grown


def load_unigr(
    path: str | Path,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    seg: dict | None = None,
) -> tuple[UniGRForConditionalGeneration, ProcessorMixin]:
    """A UniGR folder written by ``save_pretrained`` (model and processor side by side), in ``dtype``.

    ``seg`` overrides fields of the saved segmentation-head config that do not change its weights
    (propagation, conditioning frames, loss weights, ...); a field that would (the SAM2 config, its
    overrides, the number of prompt tokens) is refused by name.
    """
    config = UniGRConfig.from_pretrained(path)
    if seg:
        config.seg = merge_seg_overrides(config.seg, seg)
    model = UniGRForConditionalGeneration.from_pretrained(
        path, config=config, attn_implementation=attn_implementation, dtype=dtype
    )
    return model, AutoProcessor.from_pretrained(path)


WEIGHT_SHAPING_SEG_FIELDS = ("enabled", "sam2_config", "sam2_overrides", "num_prompt_tokens", "location_dim")
"""Segmentation-head fields a saved model's weights depend on: they cannot be overridden at load time."""


def merge_seg_overrides(saved: dict | None, overrides: dict) -> dict:
    """``saved`` seg-head config with ``overrides`` applied; weight-shaping or unknown fields are refused."""
    if saved is None:
        raise ValueError("the saved model has no segmentation head; model.seg overrides have nothing to change")
    merged = SegHeadConfig.from_dict(saved).to_dict()
    refused = [key for key in overrides if key in WEIGHT_SHAPING_SEG_FIELDS and overrides[key] != merged.get(key)]
    if refused:
        raise ValueError(
            f"model.seg.{refused[0]} cannot change on a pretrained model (its weights depend on it); refused: {refused}"
        )
    if "location_prompt" in overrides and (overrides["location_prompt"] == "off") != (
        merged["location_prompt"] == "off"
    ):
        raise ValueError(
            f"model.seg.location_prompt cannot switch between 'off' and on for a pretrained model (the location map "
            f"has weights); saved {merged['location_prompt']!r}, asked {overrides['location_prompt']!r}"
        )
    merged.update(overrides)
    return SegHeadConfig.from_dict(merged).to_dict()

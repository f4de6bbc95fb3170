"""Pi3's image encoder as transformers' ``Dinov2WithRegistersModel``, and its patch tokens on Qwen's merged grid.

Pi3 (Wang et al., "π³: Scalable Permutation-Equivariant Visual Geometry Learning") encodes every frame with a
DINOv2 ViT-L/14 with 4 register tokens (518 px pre-training grid, layer scale, no mask token). This module builds
that encoder from transformers' classes, maps the ``encoder.*`` keys of Pi3's released ``model.safetensors`` onto it
strictly, runs it on frames and regroups its 14-px patch tokens so that each Qwen2.5-VL merged video token
(``temporal_patch`` frames x ``merge`` x ``merge`` patches) gets the geometry tokens it covers.

Key mapping (Pi3 -> transformers, ``i`` = block index)::

    cls_token                  -> embeddings.cls_token
    register_tokens            -> embeddings.register_tokens
    pos_embed                  -> embeddings.position_embeddings
    patch_embed.proj.*         -> embeddings.patch_embeddings.projection.*
    blocks.i.norm1.*           -> encoder.layer.i.norm1.*
    blocks.i.attn.qkv.*        -> encoder.layer.i.attention.{q,k,v}_proj.*   (rows split in thirds, q first)
    blocks.i.attn.proj.*       -> encoder.layer.i.attention.o_proj.*
    blocks.i.ls1.gamma         -> encoder.layer.i.layer_scale1.lambda1
    blocks.i.norm2.*           -> encoder.layer.i.norm2.*
    blocks.i.mlp.fc{1,2}.*     -> encoder.layer.i.mlp.fc{1,2}.*
    blocks.i.ls2.gamma         -> encoder.layer.i.layer_scale2.lambda1
    norm.*                     -> layernorm.*

Pi3 deletes DINOv2's mask token; transformers' ``embeddings.mask_token`` (read only when ``bool_masked_pos`` is
given) is set to zeros.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PI3_ENCODER_PREFIX = "encoder."
MASK_TOKEN_KEY = "embeddings.mask_token"

# (Pi3 key pattern, transformers key template); the fused qkv projection is handled on its own.
_PI3_TO_HF = (
    (r"cls_token", "embeddings.cls_token"),
    (r"register_tokens", "embeddings.register_tokens"),
    (r"pos_embed", "embeddings.position_embeddings"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layer.\1.norm1.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layer.\1.attention.o_proj.\2"),
    (r"blocks\.(\d+)\.ls1\.gamma", r"encoder.layer.\1.layer_scale1.lambda1"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layer.\1.norm2.\2"),
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"encoder.layer.\1.mlp.\2.\3"),
    (r"blocks\.(\d+)\.ls2\.gamma", r"encoder.layer.\1.layer_scale2.lambda1"),
    (r"norm\.(weight|bias)", r"layernorm.\1"),
)
_PI3_QKV = re.compile(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_HF_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)")
_HF_TO_PI3 = (
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.register_tokens", "register_tokens"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"encoder\.layer\.(\d+)\.norm1\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.o_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.layer_scale1\.lambda1", r"blocks.\1.ls1.gamma"),
    (r"encoder\.layer\.(\d+)\.norm2\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"encoder\.layer\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"encoder\.layer\.(\d+)\.layer_scale2\.lambda1", r"blocks.\1.ls2.gamma"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
)


def pi3_encoder_config(**overrides) -> Dinov2WithRegistersConfig:
    """The released Pi3 encoder: DINOv2 ViT-L/14, 4 registers, 518-px position grid, layer scale 1.0.

    ``overrides`` replace any field (tests pass tiny sizes).
    """
    sizes = dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        mlp_ratio=4,
        image_size=518,
        patch_size=14,
        num_register_tokens=4,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
        use_swiglu_ffn=False,
    )
    sizes.update(overrides)
    return Dinov2WithRegistersConfig(**sizes)


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, template in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, template, key)
    return None


def _encoder_parameter_names(config: Dinov2WithRegistersConfig) -> set[str]:
    with torch.device("meta"):
        return set(Dinov2WithRegistersModel(config).state_dict())


def encoder_state_dict_from_pi3(
    pi3_state_dict: dict[str, torch.Tensor],
    config: Dinov2WithRegistersConfig,
    prefix: str = PI3_ENCODER_PREFIX,
    source: str = "Pi3 state dict",
) -> dict[str, torch.Tensor]:
    """Rename the ``prefix``-ed keys of a Pi3 state dict to a ``Dinov2WithRegistersModel(config)`` state dict.

    Keys without ``prefix`` are ignored (they belong to the decoder and heads). Every prefixed key must map and every
    model parameter must be covered (``embeddings.mask_token``, absent from Pi3, is filled with zeros).

    Raises:
        ValueError: naming ``source`` and the Pi3 keys that match no encoder parameter, or the encoder parameters
            that no Pi3 key provides.
    """
    mapped: dict[str, torch.Tensor] = {}
    unmatched = []
    for key, value in pi3_state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        qkv = _PI3_QKV.fullmatch(name)
        if qkv is not None:
            layer, kind = qkv.groups()
            for letter, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                mapped[f"encoder.layer.{layer}.attention.{letter}_proj.{kind}"] = part.clone()  # not a view of qkv
            continue
        target = _rename(name, _PI3_TO_HF)
        if target is None:
            unmatched.append(key)
        else:
            mapped[target] = value
    expected = _encoder_parameter_names(config)
    unknown = sorted(unmatched + [prefix + key for key in mapped if key not in expected])
    if unknown:
        raise ValueError(f"{source}: encoder keys that match no Dinov2WithRegistersModel parameter: {unknown}")
    mapped.setdefault(MASK_TOKEN_KEY, torch.zeros(1, config.hidden_size))
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise ValueError(f"{source}: encoder parameters missing (transformers names, prefix {prefix!r}): {missing}")
    return mapped


def encoder_state_dict_to_pi3(
    hf_state_dict: dict[str, torch.Tensor], prefix: str = PI3_ENCODER_PREFIX
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encoder_state_dict_from_pi3`: Pi3 key layout (``prefix`` + DINOv2 names, fused qkv).

    The mask token is dropped, as in Pi3.

    Raises:
        ValueError: naming the transformers keys that have no Pi3 counterpart.
    """
    pi3: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unmatched = []
    for key, value in hf_state_dict.items():
        if key == MASK_TOKEN_KEY:
            continue
        qkv = _HF_QKV.fullmatch(key)
        if qkv is not None:
            layer, letter, kind = qkv.groups()
            qkv_parts.setdefault((layer, kind), {})[letter] = value
            continue
        target = _rename(key, _HF_TO_PI3)
        if target is None:
            unmatched.append(key)
        else:
            pi3[prefix + target] = value
    incomplete = sorted(f"layer {layer} {kind}" for (layer, kind), parts in qkv_parts.items() if len(parts) != 3)
    if unmatched or incomplete:
        raise ValueError(f"no Pi3 name for encoder keys {sorted(unmatched)}; incomplete q/k/v: {incomplete}")
    for (layer, kind), parts in qkv_parts.items():
        pi3[f"{prefix}blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return pi3


def load_pi3_encoder(
    checkpoint: str | Path,
    config: Dinov2WithRegistersConfig | None = None,
    prefix: str = PI3_ENCODER_PREFIX,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Dinov2WithRegistersModel:
    """The frozen (eval, no grad) Pi3 encoder read from the ``prefix``-ed keys of Pi3's ``model.safetensors``.

    Raises:
        FileNotFoundError: if ``checkpoint`` does not exist.
        ValueError: if the encoder keys do not match ``config`` exactly (see :func:`encoder_state_dict_from_pi3`).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"Pi3 checkpoint not found: {checkpoint}")
    config = config if config is not None else pi3_encoder_config()
    with safe_open(str(checkpoint), framework="pt") as handle:
        pi3_state = {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}
    state = encoder_state_dict_from_pi3(pi3_state, config, prefix, str(checkpoint))
    with torch.device("meta"):
        encoder = Dinov2WithRegistersModel(config)
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise ``(T, 3, H, W)`` frames in ``[0, 1]``.

    Raises:
        ValueError: if the frames are not ``(T, 3, H, W)`` or hold values outside ``[0, 1]``.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    low, high = frames.min().item(), frames.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(f"frames must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    mean = frames.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = frames.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (frames - mean) / std


def resize_to_patch_multiple(frames: torch.Tensor, patch_size: int = 14) -> torch.Tensor:
    """Bilinearly resize ``(T, 3, H, W)`` frames to the nearest multiples of ``patch_size`` (at least one patch)."""
    height, width = frames.shape[-2:]
    size = tuple(max(patch_size, round(side / patch_size) * patch_size) for side in (height, width))
    if size == (height, width):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)


def encode_frames(encoder: Dinov2WithRegistersModel, frames: torch.Tensor) -> torch.Tensor:
    """Patch tokens of ``(T, 3, H, W)`` frames in ``[0, 1]``: ``(T, H / 14, W / 14, C)``, CLS and registers dropped.

    ``H`` and ``W`` must be multiples of the encoder's patch size (Qwen's 14-px patches); see
    :func:`resize_to_patch_multiple`.

    Raises:
        ValueError: on a bad shape, values outside ``[0, 1]`` or sides that are not patch multiples.
    """
    patch = encoder.config.patch_size
    height, width = frames.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(f"frame size {height}x{width} is not a multiple of the {patch}-px patch")
    pixels = normalize_frames(frames).to(encoder.embeddings.patch_embeddings.projection.weight.dtype)
    hidden = encoder(pixel_values=pixels).last_hidden_state  # (T, 1 + registers + h * w, C)
    patches = hidden[:, 1 + encoder.config.num_register_tokens :]  # (T, h * w, C)
    return patches.reshape(frames.shape[0], height // patch, width // patch, -1)


def group_like_qwen(tokens: torch.Tensor, temporal_patch: int = 2, merge: int = 2) -> torch.Tensor:
    """Group per-frame patch tokens ``(T, h, w, C)`` into one group per Qwen2.5-VL merged video token.

    Returns ``(ceil(T / temporal_patch) * h / merge * w / merge, merge * merge * temporal_patch, C)``. Groups follow
    Qwen's merged-token order (slot, block row, block column); inside a group the order is Qwen's patch order
    (row in block, column in block) and then the frame within the slot, so entries
    ``[k * temporal_patch, (k + 1) * temporal_patch)`` are the frames of the merged token's ``k``-th patch. A frame
    count that is not a multiple of ``temporal_patch`` is padded with copies of the last frame, as Qwen's video
    processor does.

    Raises:
        ValueError: if ``tokens`` is not 4-D or ``h`` / ``w`` are not multiples of ``merge``.
    """
    if tokens.ndim != 4:
        raise ValueError(f"tokens must be (T, h, w, C), got {tuple(tokens.shape)}")
    frames, height, width, channels = tokens.shape
    if height % merge or width % merge:
        raise ValueError(f"token grid {height}x{width} is not a multiple of the spatial merge {merge}")
    if pad := -frames % temporal_patch:
        tokens = torch.cat([tokens, tokens[-1:].expand(pad, -1, -1, -1)], dim=0)
    slots = tokens.shape[0] // temporal_patch
    grid = tokens.reshape(slots, temporal_patch, height // merge, merge, width // merge, merge, channels)
    grid = grid.permute(0, 2, 4, 3, 5, 1, 6)  # (slot, block row, block col, row in block, col in block, frame, C)
    return grid.reshape(slots * (height // merge) * (width // merge), merge * merge * temporal_patch, channels)

"""What trains: module groups, each frozen / LoRA / full, with its own learning rate and weight decay.

Every parameter of UniGR belongs to exactly one group (first matching prefix wins). The backbone's groups
are listed here; each head declares its own (:attr:`model.heads.base.Head.parameter_groups`) and each
input encoder is a group `encoder_<name>`:

==============  ==========================================================================
group           parameters
==============  ==========================================================================
embeddings      the LLM's input embedding and output matrix (``new_tokens`` mode: only the
                rows of tokens UniGR added, e.g. ``[SEG]``, train)
llm             the rest of the language model (``lora``: only its LoRA adapters train)
merger          Qwen's vision-to-LLM projector (``visual.merger``)
vision          the rest of Qwen's vision tower
seg_proj        (seg head) the projection from ``[SEG]`` hidden states into SAM2's prompt space
sam2_encoder    (seg head) SAM2's Hiera image encoder and FPN neck
sam2_decoder    (seg head) SAM2's prompt encoder, mask decoder and object-pointer projections
sam2_memory     (seg head) the rest of SAM2 (memory attention, memory encoder, memory embeddings)
grounding       (grounding head) the [GRD] query, proposal-feature MLPs and the "no target" candidate
==============  ==========================================================================

Weight decay never applies to biases, norms (any 1-D tensor) or embedding rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.heads.base import HEADS
from model.input_assembly import ENCODERS

BACKBONE_GROUPS: dict[str, tuple[str, ...]] = {
    "embeddings": ("backbone.model.language_model.embed_tokens.", "backbone.lm_head."),
    "llm": ("backbone.model.language_model.",),
    "merger": ("backbone.model.visual.merger.",),
    "vision": ("backbone.model.visual.",),
}


def group_prefixes() -> dict[str, tuple[str, ...]]:
    """Every module group -> its parameter-name prefixes: the backbone's, then each registered head's
    own declaration (:attr:`model.heads.base.Head.parameter_groups`, under ``<name>_head.``), then
    each input encoder (its :attr:`model.input_assembly.InputEncoder.parameter_groups` under
    ``input_assembly.encoders.<name>.``, by default the one group ``encoder_<name>``). The first matching prefix
    wins, so a declaration lists its narrower groups first."""
    prefixes = dict(BACKBONE_GROUPS)
    for name, head in HEADS.items():
        for group, inside in head.parameter_groups.items():
            prefixes[group] = tuple(f"{name}_head.{prefix}" for prefix in inside)
    for name, encoder in ENCODERS.items():
        for group, inside in (encoder.parameter_groups or {f"encoder_{name}": ("",)}).items():
            prefixes[group] = tuple(f"input_assembly.encoders.{name}.{prefix}" for prefix in inside)
    return prefixes


MODES = ("frozen", "lora", "full", "new_tokens")


@dataclass
class GroupConfig:
    """One row of a run config's ``model.groups``: ``{mode, lr, weight_decay}`` (``None`` = the ``train`` value)."""

    mode: str = "full"
    lr: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"group mode must be one of {MODES}, got {self.mode!r}")


def group_of(name: str, prefixes: dict[str, tuple[str, ...]] | None = None) -> str:
    """The group a parameter name belongs to (LoRA adapters belong to the layer they adapt).

    ``prefixes``: :func:`group_prefixes`, when the caller looks up many names.
    """
    for group, group_prefix in (prefixes or group_prefixes()).items():
        if name.startswith(group_prefix):
            return group
    raise ValueError(f"parameter {name} is in no module group; its head or encoder must declare it")


def configure_trainable(
    model: nn.Module,
    groups: dict[str, dict],
    lr: float,
    weight_decay: float,
    new_token_ids: list[int],
) -> list[dict]:
    """Set ``requires_grad`` per group and return AdamW parameter groups with their own LR / decay.

    Args:
        model: UniGR; ``model.config.lora`` must be set exactly when the ``llm`` group is ``lora``.
        groups: ``{group: {mode, lr, weight_decay}}``; every group the model has must be listed.
        lr, weight_decay: defaults for groups that leave theirs ``None``.
        new_token_ids: embedding rows that train in ``new_tokens`` mode.
    Returns:
        optimizer groups ``{"name", "params", "lr", "weight_decay"}`` (``name`` is ``<group>`` or
        ``<group>/no_decay``), empty ones dropped.
    """
    prefixes = group_prefixes()
    group_of_param = {name: group_of(name, prefixes) for name, _ in model.named_parameters()}
    unknown, missing = set(groups) - set(prefixes), set(group_of_param.values()) - set(groups)
    if unknown or missing:
        raise ValueError(f"model.groups: unknown {sorted(unknown)}, missing {sorted(missing)}")
    configs = {name: GroupConfig(**dict(values)) for name, values in groups.items()}
    for name, config in configs.items():
        if config.mode == "lora" and name != "llm":
            raise ValueError(f"group {name}: LoRA adapters exist on the LLM only")
        if config.mode == "new_tokens" and name != "embeddings":
            raise ValueError(f"group {name}: new_tokens mode is for the embeddings group only")
    has_lora = getattr(model.config, "lora", None) is not None
    if has_lora != (configs["llm"].mode == "lora"):
        raise ValueError("model.lora must be set exactly when model.groups.llm.mode is 'lora'")

    buckets: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        group = group_of_param[name]
        mode = configs[group].mode
        param.requires_grad = mode in ("full", "new_tokens") or (mode == "lora" and "lora_" in name)
        if not param.requires_grad:
            continue
        if mode == "new_tokens":
            _train_rows_only(param, new_token_ids)
        decays = param.dim() > 1 and group != "embeddings"
        buckets.setdefault(group if decays else f"{group}/no_decay", []).append(param)

    optimizer_groups = []
    for bucket, params in buckets.items():
        config = configs[bucket.split("/")[0]]
        decay = config.weight_decay if config.weight_decay is not None else weight_decay
        optimizer_groups.append(
            {
                "name": bucket,
                "params": params,
                "lr": config.lr if config.lr is not None else lr,
                "weight_decay": 0.0 if bucket.endswith("/no_decay") else decay,
            }
        )
    return optimizer_groups


def cast_frozen(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast every parameter that does not train to ``dtype`` and every one that does to float32.

    Frozen parts (a LoRA-adapted LLM's base weights, a frozen vision tower or SAM2 encoder) then take
    half the memory under bf16, while the optimizer keeps float32 master weights. Returns the number
    of parameters cast to ``dtype``.
    """
    frozen = 0
    for param in model.parameters():
        target = torch.float32 if param.requires_grad else dtype
        if param.dtype != target:
            param.data = param.data.to(target)
        frozen += 0 if param.requires_grad else param.numel()
    return frozen


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"trainable", "total"}`` parameter counts."""
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def _train_rows_only(param: nn.Parameter, rows: list[int]) -> None:
    """Zero the gradient of every row of a ``(V, D)`` matrix except ``rows``."""
    if not rows:
        raise ValueError("embeddings mode new_tokens needs the ids of the added tokens")
    keep = torch.zeros(param.shape[0], 1, dtype=param.dtype, device=param.device)
    keep[rows] = 1
    param.register_hook(lambda grad: grad * keep.to(grad.device, grad.dtype))

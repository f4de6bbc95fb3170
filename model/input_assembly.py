"""What enters the language model: one assembly step shared by training, ``forward`` and ``generate``.

Order of assembly (each stage sees the previous stage's output):

1. text embeddings of ``input_ids``;
2. Qwen's visual features scattered into the visual placeholders (images through Qwen's image
   path, videos through its video path, exactly as the stock model does);
3. every enabled :class:`InputEncoder`, by :attr:`InputEncoder.kind` in :data:`KIND_ORDER`:
   ``"add"`` adds to visual tokens (e.g. a 3D position encoding), ``"fill"`` writes the embeddings
   of its placeholder tokens in the text (e.g. ``<region>`` tokens from a region encoder),
   ``"append"`` writes tokens placed right after the media (e.g. geometry tokens): the collator
   inserts their placeholders there (:meth:`InputAssembly.after_visual_text`), so they are ordinary
   positions of the sequence;
4. M-RoPE position ids from ``input_ids`` and the visual grids (``get_rope_index``): visual tokens
   get 3D positions, every other token — appended and filled ones included — the next 1D position.

A new encoder is a class registered with :func:`register_encoder` and switched on by
``UniGRConfig.encoders`` (``{name: options}``); nothing in the forward pass changes. With no
encoder enabled the assembly equals the stock Qwen2.5-VL forward (a test checks the logits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

KIND_ORDER = ("add", "fill", "append")
"""The order in which encoder contributions are applied."""


@dataclass
class AssemblyContext:
    """What an encoder may read.

    Attributes:
        input_ids: ``(B, L)``; attention_mask: ``(B, L)`` or ``None``.
        image_mask, video_mask: ``(B, L)`` bool, the positions of image / video tokens.
        image_grid_thw, video_grid_thw: ``(I, 3)`` / ``(V, 3)`` merged-token grids (before merging
            2x2 patches), or ``None``.
        visual_features: ``{"image": (N_i, D), "video": (N_v, D)}`` the backbone's visual tokens, in
            placeholder order.
        batch: the collated batch's typed fields (``regions``, ``scenes``, ``proposals``, ...).
        token_ids: placeholder token -> id, for the encoders' placeholders.
        embed_tokens: the LLM's input embedding module (for encoders that embed words, e.g. class names).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    image_mask: torch.Tensor
    video_mask: torch.Tensor
    image_grid_thw: torch.Tensor | None
    video_grid_thw: torch.Tensor | None
    visual_features: dict[str, torch.Tensor]
    batch: dict
    token_ids: dict[str, int] = field(default_factory=dict)
    embed_tokens: nn.Module | None = None


class InputEncoder(nn.Module):
    """An encoder that contributes to the LLM's input embeddings.

    Subclasses set :attr:`kind` and, for ``fill`` / ``append``, :attr:`placeholder` (a token the
    builder adds to the tokenizer); an ``append`` encoder also sets ``num_appended`` (tokens per
    sample). They build from their config section with :meth:`from_options` and implement :meth:`forward`.
    """

    kind: ClassVar[str]
    placeholder: ClassVar[str | None] = None
    extra_tokens: ClassVar[tuple[str, ...]] = ()
    """Special tokens besides the placeholder that the encoder fills wherever they occur (the builder adds them to
    the tokenizer and ``config.placeholder_token_ids``)."""
    parameter_groups: ClassVar[dict[str, tuple[str, ...]] | None] = None
    """Module groups (``model.groups``) -> parameter-name prefixes inside the encoder, narrowest first; ``None``:
    one group ``encoder_<name>`` (:func:`utils.training.trainable.group_prefixes`)."""
    num_appended: int = 0

    @classmethod
    def from_options(cls, options: dict, llm_hidden_size: int, backbone_config=None) -> InputEncoder:
        """The encoder for its ``UniGRConfig.encoders`` entry; ``backbone_config`` (the Qwen config, object or
        dict) for encoders that need more than the LLM's width."""
        return cls(**options, llm_hidden_size=llm_hidden_size)

    def reset_new_parameters(self, std: float) -> None:
        """Initialise the parameters UniGR adds (pretrained parts keep theirs); ``std``: the LLM's init range."""

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        """``(B, L, D)`` embeddings -> ``(B, L, D)`` embeddings with this encoder's contribution."""
        raise NotImplementedError


ENCODERS: dict[str, type[InputEncoder]] = {}
"""Encoder name -> class; filled by :func:`register_encoder`."""


def register_encoder(name: str) -> Callable[[type[InputEncoder]], type[InputEncoder]]:
    """Class decorator registering an :class:`InputEncoder` under ``name`` (names are unique)."""

    def register(cls: type[InputEncoder]) -> type[InputEncoder]:
        if name in ENCODERS:
            raise ValueError(f"input encoder {name!r} is already registered")
        if cls.kind not in KIND_ORDER:
            raise ValueError(f"input encoder {name!r} has kind {cls.kind!r}; expected one of {KIND_ORDER}")
        if cls.kind in ("fill", "append") and not cls.placeholder:
            raise ValueError(f"input encoder {name!r} ({cls.kind}) needs a placeholder token")
        ENCODERS[name] = cls
        return cls

    return register


def encoder_classes(configs: dict | None) -> dict[str, type[InputEncoder]]:
    """The registered classes of ``{name: options}``; an unknown name is an error naming the known ones."""
    unknown = sorted(set(configs or {}) - set(ENCODERS))
    if unknown:
        raise ValueError(f"unknown input encoders {unknown}; registered: {sorted(ENCODERS)}")
    return {name: ENCODERS[name] for name in configs or {}}


def build_encoders(configs: dict | None, hidden_size: int, backbone_config=None) -> dict[str, InputEncoder]:
    """``{name: options}`` -> ``{name: encoder}``."""
    return {
        name: cls.from_options(dict((configs or {})[name] or {}), hidden_size, backbone_config)
        for name, cls in encoder_classes(configs).items()
    }


class InputAssembly(nn.Module):
    """Text + visual features + encoder contributions -> ``inputs_embeds`` (positions: :func:`rope_position_ids`).

    Args:
        encoders: the enabled encoders by name (their parameters: ``input_assembly.encoders.<name>.*``).
    """

    def __init__(self, encoders: dict[str, InputEncoder]):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)

    def after_visual_text(self) -> str:
        """Placeholder text the collator puts right after the media: ``append`` encoders' tokens, in order."""
        return "".join(e.placeholder * e.num_appended for e in self.encoders.values() if e.kind == "append")

    def forward(
        self,
        backbone_model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        batch: dict | None = None,
        token_ids: dict[str, int] | None = None,
    ) -> torch.Tensor:
        """``(B, L, D)`` input embeddings.

        Args:
            backbone_model: the Qwen2.5-VL / Qwen2-VL ``*Model`` (``backbone.model``).
            input_ids, attention_mask: ``(B, L)``.
            pixel_values, image_grid_thw: Qwen's image inputs; pixel_values_videos, video_grid_thw:
                its video inputs.
            batch: typed fields for encoders; token_ids: their placeholder ids.
        """
        config = backbone_model.config
        embeds = backbone_model.get_input_embeddings()(input_ids)
        image_mask = input_ids == config.image_token_id
        video_mask = input_ids == config.video_token_id
        features: dict[str, torch.Tensor] = {}
        if pixel_values is not None:
            image = backbone_model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
            features["image"] = torch.cat(image.pooler_output).to(embeds.device, embeds.dtype)  # (N_i, D)
            embeds = _scatter(embeds, image_mask, features["image"], "image")
        if pixel_values_videos is not None:
            video = backbone_model.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)
            features["video"] = torch.cat(video.pooler_output).to(embeds.device, embeds.dtype)  # (N_v, D)
            embeds = _scatter(embeds, video_mask, features["video"], "video")
        if not self.encoders:
            return embeds
        context = AssemblyContext(
            input_ids,
            attention_mask,
            image_mask,
            video_mask,
            image_grid_thw,
            video_grid_thw,
            features,
            batch or {},
            token_ids or {},
            backbone_model.get_input_embeddings(),
        )
        for kind in KIND_ORDER:
            for encoder in self.encoders.values():
                if encoder.kind == kind:
                    embeds = encoder(embeds, context)
        return embeds


def _scatter(embeds: torch.Tensor, mask: torch.Tensor, features: torch.Tensor, what: str) -> torch.Tensor:
    """Write ``features`` ``(N, D)`` into the ``N`` positions of ``mask`` ``(B, L)``."""
    if int(mask.sum()) != features.shape[0]:
        raise ValueError(f"{int(mask.sum())} {what} placeholder tokens for {features.shape[0]} {what} features")
    return embeds.masked_scatter(mask[..., None].to(embeds.device), features)


def rope_position_ids(
    backbone_model: nn.Module,
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(3, B, L)`` M-RoPE position ids (temporal, height, width); plain 1D positions for text-only batches."""
    if mm_token_type_ids is None or (image_grid_thw is None and video_grid_thw is None):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        else:
            positions = positions.expand(input_ids.shape[0], -1)
        return positions[None].expand(3, -1, -1)
    position_ids, _ = backbone_model.get_rope_index(
        input_ids,
        mm_token_type_ids=mm_token_type_ids,
        image_grid_thw=image_grid_thw,
        video_grid_thw=video_grid_thw,
        second_per_grid_ts=second_per_grid_ts,
        attention_mask=attention_mask,
    )
    return position_ids


def packed_rope_position_ids(
    backbone_model: nn.Module,
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor | None,
    packed_segments: list[list[tuple[int, int]]],
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(4, B, L)`` position ids of packed rows (:mod:`utils.data.packing`): row 0 the text positions, restarting at
    0 for every sample (transformers builds the block-causal mask from them when no attention mask is given), rows
    1-3 each sample's own M-RoPE positions (:func:`rope_position_ids` of the sample alone). Tokens after a row's last
    sample (padding) form one more block."""
    config = backbone_model.config
    grids = {"image": image_grid_thw, "video": video_grid_thw}
    used = {"image": 0, "video": 0}
    positions = torch.zeros(4, *input_ids.shape, dtype=torch.long, device=input_ids.device)
    for row, spans in enumerate(packed_segments):
        for start, end in [*spans, (spans[-1][1], input_ids.shape[1])]:  # the samples, then the padding
            if end <= start:
                continue
            ids = input_ids[row : row + 1, start:end]
            starts = (ids[0, :-1] == config.vision_start_token_id).nonzero()[:, 0] + 1
            follows = ids[0, starts].tolist()
            counts = {"image": follows.count(config.image_token_id), "video": follows.count(config.video_token_id)}
            sample_grids = {kind: grids[kind][used[kind] : used[kind] + n] if n else None for kind, n in counts.items()}
            used = {kind: used[kind] + counts[kind] for kind in used}
            seconds = None
            if second_per_grid_ts is not None and counts["video"]:
                seconds = second_per_grid_ts[used["video"] - counts["video"] : used["video"]]
            types = mm_token_type_ids[row : row + 1, start:end] if mm_token_type_ids is not None else None
            rope = rope_position_ids(
                backbone_model, ids, types, None, sample_grids["image"], sample_grids["video"], seconds
            )  # (3, 1, n)
            positions[1:, row, start:end] = rope[:, 0]
            positions[0, row, start:end] = torch.arange(end - start, device=input_ids.device)
    return positions

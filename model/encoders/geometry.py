"""The Geometry Selection Module (DSR Suite's GSM): question-selected 3D geometry tokens appended after the video.

For a video sample this ``append`` encoder writes ``num_queries`` tokens into the ``<geometry>`` placeholders that
the collator puts right after the video (:meth:`model.input_assembly.InputAssembly.after_visual_text`):

1. geometry tokens: frozen Pi3 reads every frame, ImageNet-normalised, at exactly Qwen's size (``grid_h * 14`` x
   ``grid_w * 14`` of the sample's ``video_grid_thw`` row; the collator's ``geometry_frames``). Its per-patch
   features (``pi3_features``, :data:`PI3_FEATURES`) are either ``encoder``: the DINOv2 ViT-L/14-with-registers
   encoder's patch tokens, frame by frame (:mod:`model.geometry.pi3_encoder`; what DSR Suite's GSM reads), or
   ``decoder``: the whole Pi3's decoder output after its alternating frame / global attention across all the
   sample's frames (:meth:`model.geometry.pi3.Pi3Model.decoder_tokens`, what Pi3's point and camera heads read, as
   spatial MLLMs read VGGT's aggregator tokens), so multi-view depth rather than one frame's. The features are
   grouped like Qwen's merged video tokens (:func:`~model.geometry.pi3_encoder.group_like_qwen`: 2 frames x 2 x 2
   patches) and the spatial merger (Qwen's merger recipe: layer norm per patch, then an MLP on the ``8 * C``
   group) maps each group to one geometry token of the LLM's width, so there is one geometry token per video token;
2. Q-Former 1: ``num_queries`` learned queries attend to the question (the text embeddings of the sample's user
   turns, the collator's ``question_mask``);
3. Q-Former 2: its outputs attend to the geometry tokens (they select the geometry the question asks about); its
   ``num_queries`` outputs, projected to the LLM's width, are the appended tokens. With ``token_positions`` each
   geometry token, as Q-Former 2 reads it, also carries where and when it is (:meth:`GeometryEncoder.token_codes`:
   a sinusoidal code of its cell's normalised centre and of its slot's time in seconds, through a learned
   projection), so a question about one moment can select that moment's geometry, and Q-Former 1 reads the
   question's tokens with their order (:meth:`GeometryEncoder.question_codes`); without it (DSR Suite's GSM) the
   geometry tokens are an unordered set to Q-Former 2 and the question a bag of words to Q-Former 1.

Samples without geometry frames (images, text only) keep the placeholders' own embeddings. Packed rows (several
samples back to back, ``batch["packed_segments"]``: per row the ``(start, end)`` of each sample) are handled
sample by sample, so each sample's queries read only its own question and its own geometry.

Parameters: ``pi3.*`` (frozen: it always runs without gradients) and the GSM (spatial merger, queries, both
Q-Formers, output projection), declared as the module groups ``encoder_geometry_pi3`` and ``encoder_geometry``
(:attr:`GeometryEncoder.parameter_groups`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import Dinov2WithRegistersModel

from model.encoders.position2d import cell_centres
from model.encoders.position3d import sinusoidal_position_code
from model.geometry.pi3 import Pi3Config, Pi3Model
from model.geometry.pi3_encoder import encode_frames, group_like_qwen, load_pi3_encoder, pi3_encoder_config
from model.input_assembly import AssemblyContext, InputEncoder, register_encoder
from model.visual_tokens import VisualTokens

GEOMETRY_PLACEHOLDER = "<geometry>"
"""The placeholder token of an appended geometry token."""
PI3_FEATURES = ("encoder", "decoder")
"""What the GSM reads of Pi3: its encoder's per-frame patch tokens, or its decoder's multi-view ones."""
CELL_RESOLUTION = 100.0
"""Units per frame side of a geometry token's cell centre in its code (one unit: one hundredth of the frame)."""
TIME_RESOLUTION = 10.0
"""Units per second of a geometry token's time in its code (one unit: a tenth of a second)."""


class QFormerLayer(nn.Module):
    """One pre-norm Q-Former layer: self-attention among the queries, cross-attention to a memory, MLP.

    Args:
        hidden_size: H, the queries' and the memory's width.
        num_heads: attention heads (must divide ``hidden_size``).
        mlp_ratio: the MLP's width over ``hidden_size``.
        top_k: each query and head reads only the ``top_k`` memory entries it matches best (its attention
            renormalised over them); ``None``: all of them. The weights the layer returns stay the full attention,
            so a target on them reaches every entry.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: int = 4, top_k: int | None = None):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"Q-Former width {hidden_size} is not a multiple of its {num_heads} heads")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.top_k = top_k
        self.self_norm = nn.LayerNorm(hidden_size)
        self.self_attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(hidden_size)
        self.memory_norm = nn.LayerNorm(hidden_size)
        self.cross_attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_ratio * hidden_size), nn.GELU(), nn.Linear(mlp_ratio * hidden_size, hidden_size)
        )

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, H)`` queries, ``(B, M, H)`` memory (``memory_mask`` ``(B, M)`` bool: the entries to read, default
        all) -> ``(B, N, H)`` queries and ``(B, N, M)`` their cross-attention weights (mean over heads).

        ``attention`` ``(B, N, M)``: weights that replace the cross-attention's own (every head reads the memory's
        values with them), a diagnostic of what the layer passes on when it looks where it should.
        ``keys`` ``(B, M, H)``: added to the memory where it is matched (the attention's keys) but not where it is
        read (its values): what helps find an entry without being passed on.
        ``logit_bias`` ``(B, M)``: added to every query's and head's attention logits over the memory (a prior on which
        entries to read: :class:`WordMatching`'s).
        """
        normed = self.self_norm(queries)
        queries = queries + self.self_attention(normed, normed, normed, need_weights=False)[0]
        read, weights = self.cross_attend(
            self.cross_norm(queries), self.memory_norm(memory), memory_mask, attention, keys, logit_bias
        )
        queries = queries + read
        return queries + self.mlp(self.mlp_norm(queries)), weights

    def cross_attend(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        attention: torch.Tensor | None,
        keys: torch.Tensor | None,
        logit_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention with ``cross_attention``'s weights (as ``nn.MultiheadAttention`` computes it, plus
        ``top_k``, the ``logit_bias`` and the imposed ``attention``): normed ``(B, N, H)`` queries and ``(B, M, H)``
        memory -> ``(B, N, H)`` read and the ``(B, N, M)`` weights (mean over heads; the imposed ones if given)."""
        attend = self.cross_attention
        batch, count, width = queries.shape
        heads = attend.num_heads
        weight, bias = attend.in_proj_weight, attend.in_proj_bias

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, H / heads)
            return x.view(batch, x.shape[1], heads, width // heads).transpose(1, 2)

        query = split(F.linear(queries, weight[:width], bias[:width]))
        key = split(
            F.linear(memory if keys is None else memory + keys, weight[width : 2 * width], bias[width : 2 * width])
        )
        value = split(F.linear(memory, weight[2 * width :], bias[2 * width :]))
        logits = query @ key.transpose(-1, -2) / math.sqrt(width // heads)  # (B, heads, N, M)
        if logit_bias is not None:
            logits = logits + logit_bias[:, None, None].to(logits.dtype)
        if memory_mask is not None:
            logits = logits.masked_fill(~memory_mask[:, None, None], float("-inf"))
        weights = logits.softmax(-1)
        if attention is not None:
            reading = attention[:, None].to(value.dtype)  # every head reads with the imposed weights
        elif self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            reading = logits.masked_fill(logits < kth, float("-inf")).softmax(-1)
        else:
            reading = weights
        read = (reading @ value).transpose(1, 2).reshape(batch, count, width)
        return attend.out_proj(read), (weights.mean(1) if attention is None else attention)


class QFormer(nn.Module):
    """``num_layers`` :class:`QFormerLayer` s: queries read a memory (the question, or the geometry tokens), each
    reading its ``top_k`` best-matched entries (``None``: all)."""

    def __init__(self, hidden_size: int, num_layers: int, num_heads: int, top_k: int | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"a Q-Former needs at least one layer, got {num_layers}")
        self.layers = nn.ModuleList(QFormerLayer(hidden_size, num_heads, top_k=top_k) for _ in range(num_layers))

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        last_attention: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, H)`` queries, ``(B, M, H)`` memory, optional ``(B, M)`` mask of the entries to read ->
        ``(B, N, H)`` queries and the last layer's ``(B, N, M)`` cross-attention weights (``last_attention``: imposed
        on the last layer; ``keys``: added to the memory's keys in every layer; ``logit_bias``: added to every layer's
        logits; see :meth:`QFormerLayer.forward`)."""
        for index, layer in enumerate(self.layers):
            imposed = last_attention if index == len(self.layers) - 1 else None
            queries, weights = layer(queries, memory, memory_mask, imposed, keys, logit_bias)
        return queries, weights


class WordMatching(nn.Module):
    """Which geometry tokens the question's words name: a prior for Q-Former 2's attention, by late interaction.

    Each of ``num_heads`` heads projects the question's tokens and the geometry tokens (their keys, as Q-Former 2
    matches them) to ``hidden_size / num_heads`` and scores every geometry token by its best-matching question token
    (the maximum over the real tokens of their scaled dot product); the heads' scores add up. As Grounding DINO's
    language-guided query selection scores image tokens by their best-matching word, a word ("red", a time) finds its
    tokens directly, without the learned queries first having to find the word in a long prompt; with several heads
    one can match the object's name and another its moment, and their sum picks that object at that moment.

    Args:
        hidden_size: H, the width of the question and geometry tokens it reads.
        num_heads: heads (must divide ``hidden_size``).
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"word matching width {hidden_size} is not a multiple of its {num_heads} heads")
        self.num_heads = num_heads
        self.word_proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size))
        self.token_proj = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size))

    def forward(
        self, question: torch.Tensor, tokens: torch.Tensor, question_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, Q, H)`` question tokens (``question_mask`` ``(B, Q)`` bool: the real ones, default all), ``(B, M, H)``
        geometry tokens -> ``(B, M)`` logit bias: per token, the sum over heads of its best word match."""
        batch, length, width = question.shape
        size = width // self.num_heads
        words = self.word_proj(question).view(batch, length, self.num_heads, size)
        keys = self.token_proj(tokens).view(batch, tokens.shape[1], self.num_heads, size)
        scores = torch.einsum("bqhd,bmhd->bhqm", words, keys) / math.sqrt(size)  # (B, heads, Q, M)
        if question_mask is not None:
            scores = scores.masked_fill(~question_mask[:, None, :, None], float("-inf"))
        return scores.amax(2).sum(1)


@register_encoder("geometry")
class GeometryEncoder(InputEncoder):
    """Pi3 geometry tokens selected by the question -> ``num_queries`` tokens appended after the video.

    Args:
        llm_hidden_size: D, the LLM's width.
        visual_tokens: where the visual tokens are and Qwen's merge sizes (the builder passes the backbone's).
        pi3_checkpoint: Pi3's released ``model.safetensors``: its ``encoder.*`` keys are loaded strictly
            (``pi3_features: encoder``), or all of it (``decoder``).
        pi3_config: overrides of :func:`~model.geometry.pi3_encoder.pi3_encoder_config` (``encoder``) or
            :class:`~model.geometry.pi3.Pi3Config` fields (``decoder``); tests pass tiny sizes.
        pi3_features: one of :data:`PI3_FEATURES`.
        token_positions: give the geometry tokens Q-Former 2 reads their place and time (see the module doc).
        center_tokens: subtract the mean of the sample's Pi3 features (per channel, over all its patches) before the
            spatial merger. Pi3's patch features share one dominant component (after a layer norm, the mean token's
            norm is 10.5 of the tokens' 11.3 on the tiny Pi3's decoder, 7.6 of 8.0 on its encoder), so the geometry
            tokens differ by a few per cent and Q-Former 2 reads nearly the same set for every video.
        num_queries: N, the learned queries and appended tokens per sample.
        qformer_layers: layers of each Q-Former.
        qformer_heads: attention heads of the Q-Formers.
        qformer_hidden_size: H, the Q-Formers' width; question and geometry tokens are projected from D to H
            (unless H = D) and the outputs back to D. At Qwen2.5-VL-7B's D = 3584 and the defaults the GSM has
            175 M parameters (spatial merger 97 M, Q-Formers 67 M); H = D would give 932 M.
        question_times: with ``token_positions``, the question tokens that name a time ("at 2.5 s", the batch's
            ``question_seconds``, :func:`utils.data.question_times.token_seconds`) carry that time in their code, on
            the axis where a geometry token's code carries its slot's time, so matching a question's moment to its
            frames needs no reading of digits (the tiny model's tokenizer spells numbers digit by digit).
        appearance_keys: Q-Former 2 also finds the geometry tokens by what their cells look like: each geometry
            token's key adds the sample's video token of the same cell (Qwen's merged visual feature, before any
            encoder adds to it, through a layer norm and a projection), its value stays geometry alone
            (:meth:`QFormerLayer.forward`'s ``keys``), so what the GSM passes on is still geometry. Pi3's released
            encoder is DINOv2, whose tokens tell things apart by their look; a Pi3 trained on geometry alone (the
            tiny one) hardly does, and a question names objects by their look ("the red ball").
        selection_top_k: each query (and head) of Q-Former 2 reads only the ``selection_top_k`` geometry tokens it
            matches best (``None``: all, softly): a learned soft selection that puts half its weight on the asked
            tokens still mixes in what the rest hold, while the weights it returns (for the probe's selection
            target) stay the full attention.
        word_matching: Q-Former 2's attention logits also get :class:`WordMatching`'s prior (with ``qformer_heads``
            heads): each geometry token scored by the question token that matches it best. Trained from scratch,
            Q-Former 1's learned queries find the time a question names but not its object's name in a prompt of
            dozens of tokens, so Q-Former 2 picks the asked object among the objects in view barely better than
            evenly (``scripts/probe_gsm.py``'s ``attention_on_asked_among_objects``); a word scoring tokens directly
            needs no such search.
        gsm_checkpoint: a safetensors file of the GSM's own weights (:meth:`gsm_state_dict`) that a new GSM starts
            from instead of random ones (``scripts/probe_gsm.py --save`` writes one: the GSM trained alone first).
    """

    kind = "append"
    placeholder = GEOMETRY_PLACEHOLDER
    parameter_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "encoder_geometry_pi3": ("pi3.",),
        "encoder_geometry": ("",),
    }
    """Module groups (first matching prefix wins) -> prefixes under ``input_assembly.encoders.geometry.``."""

    def __init__(
        self,
        llm_hidden_size: int,
        visual_tokens: VisualTokens,
        pi3_checkpoint: str,
        pi3_config: dict | None = None,
        num_queries: int = 32,
        qformer_layers: int = 2,
        qformer_heads: int = 16,
        qformer_hidden_size: int = 1024,
        pi3_features: str = "encoder",
        token_positions: bool = False,
        center_tokens: bool = False,
        appearance_keys: bool = False,
        question_times: bool = False,
        selection_top_k: int | None = None,
        word_matching: bool = False,
        gsm_checkpoint: str | None = None,
    ):
        super().__init__()
        if question_times and not token_positions:
            raise ValueError("question_times codes the question's times as token_positions codes the geometry's")
        self.question_times = question_times
        self.gsm_checkpoint = gsm_checkpoint
        if num_queries < 1:
            raise ValueError(f"num_queries must be positive, got {num_queries}")
        if pi3_features not in PI3_FEATURES:
            raise ValueError(f"pi3_features must be one of {PI3_FEATURES}, got {pi3_features!r}")
        self.visual_tokens = visual_tokens
        self.num_appended = num_queries
        self.pi3_features = pi3_features
        self.center_tokens = center_tokens
        self.pi3 = _frozen_pi3(pi3_checkpoint, pi3_config or {}, pi3_features)
        width = self.pi3.config.hidden_size * (2 if pi3_features == "decoder" else 1)  # the decoder's last two blocks
        group = visual_tokens.spatial_merge_size**2 * visual_tokens.temporal_patch_size
        hidden, llm = qformer_hidden_size, llm_hidden_size
        self.patch_norm = nn.LayerNorm(width, eps=1e-6)
        self.spatial_merger = nn.Sequential(
            nn.Linear(group * width, group * width), nn.GELU(), nn.Linear(group * width, llm)
        )
        self.queries = nn.Parameter(torch.zeros(num_queries, hidden))
        self.question_proj = nn.Linear(llm, hidden) if hidden != llm else nn.Identity()
        self.geometry_proj = nn.Linear(llm, hidden) if hidden != llm else nn.Identity()
        self.question_qformer = QFormer(hidden, qformer_layers, qformer_heads)
        self.geometry_qformer = QFormer(hidden, qformer_layers, qformer_heads, selection_top_k)
        self.output_norm = nn.LayerNorm(hidden)
        self.output_proj = nn.Linear(hidden, llm)
        self.position_proj = nn.Linear(hidden, hidden) if token_positions else None
        self.question_position_proj = nn.Linear(hidden, hidden) if token_positions else None
        self.appearance_proj = (
            nn.Sequential(nn.LayerNorm(llm), nn.Linear(llm, hidden)) if appearance_keys else None
        )  # video tokens -> Q-Former 2's keys
        self.word_matching = WordMatching(hidden, qformer_heads) if word_matching else None

    @classmethod
    def from_options(cls, options: dict, llm_hidden_size: int, backbone_config=None) -> GeometryEncoder:
        if backbone_config is None:
            raise ValueError("the geometry encoder needs the backbone config (its visual token ids and merge sizes)")
        if "pi3_checkpoint" not in options:
            raise ValueError("the geometry encoder needs pi3_checkpoint (Pi3's model.safetensors)")
        return cls(llm_hidden_size, VisualTokens.from_backbone_config(backbone_config), **options)

    def reset_new_parameters(self, std: float) -> None:
        # Pi3 keeps its pretrained weights; everything else is new.
        for name, module in self.named_modules():
            if name.startswith("pi3"):
                continue
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):  # Xavier, as PyTorch: attention that is not uniform at
                nn.init.xavier_uniform_(module.in_proj_weight)  # the start (at std 0.02 its logits are ~0.05)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        nn.init.normal_(self.queries, std=std)
        if self.gsm_checkpoint is not None:
            self.load_gsm(self.gsm_checkpoint)

    def gsm_state_dict(self) -> dict[str, torch.Tensor]:
        """The GSM's own weights (everything but the frozen Pi3), as :meth:`load_gsm` reads them."""
        return {name: tensor for name, tensor in self.state_dict().items() if not name.startswith("pi3.")}

    def load_gsm(self, path: str) -> None:
        """Load the GSM's weights (:meth:`gsm_state_dict`, e.g. from ``scripts/probe_gsm.py --save``) strictly from the
        safetensors file ``path``; a missing, unexpected or misshapen key is an error naming it."""
        state = load_file(path)
        own = self.gsm_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = sorted(name for name in set(own) & set(state) if own[name].shape != state[name].shape)
        if missing or unexpected or wrong:
            raise ValueError(
                f"{path} does not fit this GSM: missing {missing}, unexpected {unexpected}, shapes {wrong}"
            )
        self.load_state_dict(state, strict=False)  # every GSM key is there (checked); Pi3 keeps its weights

    def geometry_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """``(T, 3, h * 14, w * 14)`` frames in ``[0, 1]`` -> ``(ceil(T / 2) * h / 2 * w / 2, D)`` geometry tokens,
        one per Qwen merged video token, in Qwen's order."""
        return self.merge_groups(self.pi3_groups(frames))

    @torch.no_grad()
    def pi3_groups(self, frames: torch.Tensor) -> torch.Tensor:
        """The frozen half of :meth:`geometry_tokens`: ``(T, 3, h * 14, w * 14)`` frames -> Pi3's patch features
        (centred with ``center_tokens``) grouped like Qwen's merged video tokens, ``(N, 8, C)``."""
        if self.pi3_features == "decoder":
            patches = self.pi3.decoder_tokens(frames[None])[0]  # (T, h, w, 2C), every frame seeing the others
        else:
            patches = encode_frames(self.pi3, frames)  # (T, h, w, C)
        if self.center_tokens:  # what tells this sample's tokens apart, without the component they all share
            patches = patches - patches.mean(dim=(0, 1, 2), keepdim=True)
        return group_like_qwen(patches, self.visual_tokens.temporal_patch_size, self.visual_tokens.spatial_merge_size)

    def merge_groups(self, groups: torch.Tensor) -> torch.Tensor:
        """The trained half of :meth:`geometry_tokens`: ``(..., N, 8, C)`` :meth:`pi3_groups` -> ``(..., N, D)``
        geometry tokens through the spatial merger."""
        groups = self.patch_norm(groups.to(self.patch_norm.weight.dtype))
        return self.spatial_merger(groups.flatten(-2))

    def token_codes(self, grid: list[int], seconds_per_slot: float) -> torch.Tensor:
        """``(N, H)`` parameter-free codes of the geometry tokens of a video grid ``(slots, h, w)`` (``h``, ``w``
        before merging), in Qwen's order: per token its merged cell's normalised centre times
        :data:`CELL_RESOLUTION` and its slot's start time times :data:`TIME_RESOLUTION` (slot ``s`` starts at
        ``s * seconds_per_slot``), through :func:`~model.encoders.position3d.sinusoidal_position_code`."""
        slots, height, width = grid
        merge = self.visual_tokens.spatial_merge_size
        device = self.queries.device
        cells = cell_centres(height // merge, width // merge, device) * CELL_RESOLUTION  # (h' * w', 2)
        times = torch.arange(slots, device=device, dtype=torch.float32) * seconds_per_slot * TIME_RESOLUTION
        coordinates = torch.cat(
            [cells.repeat(slots, 1), times.repeat_interleave(len(cells))[:, None]], dim=1
        )  # (slots * h' * w', 3)
        return sinusoidal_position_code(coordinates, self.queries.shape[1])

    def question_codes(self, length: int, seconds: torch.Tensor | None = None) -> torch.Tensor:
        """``(length, H)`` parameter-free codes of the question tokens' order (token ``i`` at ``i`` on the first axis of
        :func:`~model.encoders.position3d.sinusoidal_position_code`), so Q-Former 1 reads the question as a
        sequence (who is the observer, which time) rather than a bag of words. With ``seconds`` ``(B, length)`` (the
        time each token names, NaN if none): ``(B, length, H)``, a token that names a time also carrying it on the
        third axis in :meth:`token_codes`' units (the others at 0 there, as without ``seconds``)."""
        device = self.queries.device
        shape = (length,) if seconds is None else tuple(seconds.shape)
        coordinates = torch.zeros(*shape, 3, device=device)
        coordinates[..., 0] = torch.arange(length, device=device)
        if seconds is not None:
            coordinates[..., 2] = torch.nan_to_num(seconds.to(device, torch.float32), nan=0.0) * TIME_RESOLUTION
        return sinusoidal_position_code(coordinates.view(-1, 3), self.queries.shape[1]).view(*shape, -1)

    def select(
        self,
        question: torch.Tensor,
        geometry: torch.Tensor,
        codes: torch.Tensor | None = None,
        appearance: torch.Tensor | None = None,
        question_seconds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(Q, D)`` question embeddings, ``(N, D)`` geometry tokens (and, with ``token_positions``, their ``(N, H)``
        :meth:`token_codes`; with ``appearance_keys``, the ``(N, D)`` video tokens of the same cells; with
        ``question_times``, the ``(Q,)`` seconds each question token names) -> ``(num_queries, D)`` appended tokens."""
        appearance = None if appearance is None else appearance[None]
        seconds = None if question_seconds is None else question_seconds[None]
        return self.select_batch(
            question[None], geometry[None], codes, appearance=appearance, question_seconds=seconds
        )[0][0]

    def select_batch(
        self,
        question: torch.Tensor,
        geometry: torch.Tensor,
        codes: torch.Tensor | None = None,
        question_mask: torch.Tensor | None = None,
        selection: torch.Tensor | None = None,
        appearance: torch.Tensor | None = None,
        question_seconds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`select` for ``B`` samples of one video grid: ``(B, Q, D)`` question embeddings (``question_mask``
        ``(B, Q)``: the real tokens of padded questions), ``(B, N, D)`` geometry tokens, their ``(N, H)`` codes ->
        ``(B, num_queries, D)`` appended tokens and Q-Former 2's last ``(B, num_queries, N)`` attention over the
        geometry tokens (what the queries selected). ``selection`` ``(B, N)``: a distribution over the geometry tokens
        that every query of Q-Former 2's last layer reads with instead of its own attention (a diagnostic:
        ``scripts/probe_gsm.py --oracle-selection``). ``appearance`` ``(B, N, D)``: the video tokens of the geometry
        tokens' cells, required with ``appearance_keys``. ``question_seconds`` ``(B, Q)``: the time each question token
        names (NaN: none), required with ``question_times``."""
        dtype = self.queries.dtype
        question = self.question_proj(question.to(dtype))  # (B, Q, H)
        geometry = self.geometry_proj(geometry.to(dtype))  # (B, N, H)
        if self.position_proj is not None:
            if codes is None:
                raise ValueError("a GSM with token_positions needs the geometry tokens' codes")
            geometry = geometry + self.position_proj(codes.to(dtype))[None]
            if self.question_times and question_seconds is None:
                raise ValueError("a GSM with question_times needs the time each question token names")
            order = self.question_codes(question.shape[1], question_seconds if self.question_times else None)
            question = question + self.question_position_proj(order.to(dtype)).expand_as(question)
        queries = self.queries[None].expand(len(question), -1, -1)
        asked, _ = self.question_qformer(queries, question, question_mask)  # (B, num_queries, H)
        keys = None
        if self.appearance_proj is not None:
            if appearance is None:
                raise ValueError("a GSM with appearance_keys needs the video tokens of the geometry tokens' cells")
            keys = self.appearance_proj(appearance.to(dtype))  # (B, N, H)
        prior = None
        if self.word_matching is not None:  # (B, N) each geometry token's best word match, as Q-Former 2 keys it
            prior = self.word_matching(question, geometry if keys is None else geometry + keys, question_mask)
        imposed = None if selection is None else selection[:, None].expand(-1, len(self.queries), -1)
        selected, attention = self.geometry_qformer(asked, geometry, None, imposed, keys, prior)  # (B, n, H), (B, n, N)
        return self.output_proj(self.output_norm(selected)), attention

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        placeholder = context.token_ids[self.placeholder]
        placeholders = context.input_ids == placeholder  # (B, L)
        frames = context.batch.get("geometry_frames")
        if frames is None:
            if bool((placeholders & context.video_mask.any(1, keepdim=True)).any()):
                raise ValueError(
                    f"a video sample has {self.placeholder} placeholders but the batch has no geometry_frames "
                    "(collate with SampleCollator.for_model)"
                )
            return embeds
        question_mask = context.batch.get("question_mask")
        if question_mask is None:
            raise ValueError(
                "the geometry encoder needs the batch's question_mask (collate with SampleCollator.for_model)"
            )
        question_mask = question_mask.to(embeds.device)
        question_seconds = None
        if self.question_times:
            if "question_seconds" not in context.batch:
                raise ValueError(
                    "question_times needs the batch's question_seconds (collate with SampleCollator.for_model)"
                )
            question_seconds = context.batch["question_seconds"].to(embeds.device)  # (B, L)
        segments = sample_segments(context.batch.get("packed_segments"), embeds.shape[:2])
        if len(frames) != len(segments):
            raise ValueError(f"{len(frames)} geometry_frames entries for {len(segments)} samples in the batch")
        grids = iter(context.video_grid_thw.tolist() if context.video_grid_thw is not None else [])
        seconds = context.batch.get("second_per_grid_ts")
        seconds = iter(seconds.tolist() if seconds is not None else [])
        rows = list(embeds.unbind(0))
        video_order = None  # (B, L) each video token's index among the batch's video features
        if self.appearance_proj is not None:
            video_order = context.video_mask.flatten().cumsum(0).view_as(context.video_mask) - 1
        for sample, ((row, start, end), sample_frames) in enumerate(zip(segments, frames, strict=True)):
            video = context.video_mask[row, start:end]
            grid = next(grids) if bool(video.any()) else None  # Qwen's rows follow the video samples, in order
            slot_seconds = next(seconds, None) if grid is not None else None
            if sample_frames is None:  # an image or text-only sample: placeholders keep their own embedding
                continue
            where = f"batch row {row}, sample {sample} (positions {start}..{end})"
            slots = placeholders[row, start:end].nonzero()[:, 0] + start
            if grid is None:
                raise ValueError(f"{where}: geometry frames but no video tokens")
            if len(slots) != self.num_appended:
                raise ValueError(f"{where}: {len(slots)} {self.placeholder} placeholders, expected {self.num_appended}")
            self._check_frames(sample_frames, grid, int(video.sum()), where)
            question = embeds[row, start:end][question_mask[row, start:end]]  # (Q, D)
            if len(question) == 0:
                raise ValueError(f"{where}: no question tokens for the geometry queries to read")
            geometry = self.geometry_tokens(sample_frames.to(embeds.device))
            codes = None
            if self.position_proj is not None:
                if slot_seconds is None:
                    raise ValueError(f"{where}: token_positions needs the batch's second_per_grid_ts")
                codes = self.token_codes(grid, slot_seconds)
            appearance = None
            if self.appearance_proj is not None:  # Qwen's own video tokens of the sample, before any encoder adds
                appearance = context.visual_features["video"][video_order[row, start:end][video]]  # (N, D)
            named = None
            if question_seconds is not None:  # (Q,) the time each question token names
                named = question_seconds[row, start:end][question_mask[row, start:end]]
            tokens = self.select(question, geometry, codes, appearance, named)  # (num_queries, D)
            rows[row] = rows[row].index_copy(0, slots, tokens.to(embeds.dtype))
        return torch.stack(rows)

    def _check_frames(self, frames: torch.Tensor, grid: list[int], video_tokens: int, where: str) -> None:
        """Raise unless ``frames`` ``(T, 3, H, W)`` are the sample's frames at Qwen's size for ``grid`` (t, h, w)."""
        patch, temporal = self.pi3.config.patch_size, self.visual_tokens.temporal_patch_size
        slots, height, width = grid
        merged = slots * height * width // self.visual_tokens.spatial_merge_size**2
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (3, height * patch, width * patch):
            raise ValueError(
                f"{where}: geometry frames {tuple(frames.shape)}, expected (T, 3, {height * patch}, {width * patch}) "
                f"for the video grid {grid}"
            )
        if -(-frames.shape[0] // temporal) != slots or merged != video_tokens:
            raise ValueError(
                f"{where}: {frames.shape[0]} geometry frames and {video_tokens} video tokens do not fit the grid {grid}"
            )


def _frozen_pi3(checkpoint: str, config: dict, features: str) -> Dinov2WithRegistersModel | Pi3Model:
    """Pi3's encoder (``features == "encoder"``) or the whole Pi3, frozen, read strictly from ``checkpoint``; an empty
    shell under the meta device (a UniGR checkpoint brings its weights)."""
    if features == "encoder":
        encoder_config = pi3_encoder_config(**config)
        if torch.get_default_device().type == "meta":
            return Dinov2WithRegistersModel(encoder_config).eval().requires_grad_(False)
        try:
            return load_pi3_encoder(checkpoint, encoder_config)
        except RuntimeError as error:  # the names fit but the shapes do not
            raise ValueError(f"{checkpoint}: the Pi3 encoder does not fit pi3_config {config}") from error
    pi3_config = Pi3Config(**config)
    if torch.get_default_device().type == "meta":
        return Pi3Model(pi3_config).eval().requires_grad_(False)
    try:
        return Pi3Model.from_pi3_checkpoint(checkpoint, pi3_config)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint}: the Pi3 model does not fit pi3_config {config}") from error


def sample_segments(packed: list | None, shape: tuple[int, int]) -> list[tuple[int, int, int]]:
    """``(row, start, end)`` of every sample of a ``(B, L)`` batch, in batch order.

    ``packed``: per row the ``(start, end)`` of each sample packed into it (``batch["packed_segments"]``), or
    ``None`` for one sample per row (the whole row).
    """
    rows, length = shape
    if packed is None:
        return [(row, 0, length) for row in range(rows)]
    if len(packed) != rows:
        raise ValueError(f"packed_segments has {len(packed)} rows for a batch of {rows}")
    segments = []
    for row, spans in enumerate(packed):
        previous = 0
        for start, end in spans:
            if not previous <= start < end <= length:
                raise ValueError(f"packed_segments row {row}: segment ({start}, {end}) overlaps or leaves the row")
            segments.append((row, int(start), int(end)))
            previous = end
    return segments

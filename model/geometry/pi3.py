"""The full Pi3 feed-forward reconstructor (encoder, alternating-attention decoder, point / confidence / pose heads).

Pi3 (Wang et al., "π³: Scalable Permutation-Equivariant Visual Geometry Learning", ``yyfz/Pi3``) maps ``N`` frames to
per-frame local point maps, confidences and camera-to-world poses with no reference frame. We use it to generate
geometry for training data. Its module names are mirrored here so that the released ``model.safetensors`` loads key
for key; only the DINOv2 encoder is transformers' ``Dinov2WithRegistersModel`` (renamed by
:mod:`model.geometry.pi3_encoder`).

Checkpoint layout (``i`` = block index)::

    encoder.*                                   DINOv2 ViT-L/14 + 4 registers (see pi3_encoder)
    register_token                              (1, 1, 5, D) decoder register tokens
    decoder.i.{norm1,norm2}.{weight,bias}       alternating frame (even i) / global (odd i) attention blocks
    decoder.i.attn.{qkv,proj}.{weight,bias}
    decoder.i.attn.{q_norm,k_norm}.{weight,bias}
    decoder.i.{ls1,ls2}.gamma
    decoder.i.mlp.{fc1,fc2}.{weight,bias}
    {point,conf,camera}_decoder.projects.*      head transformers: projection, blocks (no layer scale, no qk-norm),
    {point,conf,camera}_decoder.blocks.i.*      output projection
    {point,conf,camera}_decoder.linear_out.*
    {point,conf}_head.proj.*                    per-patch linear to 14 x 14 pixels
    camera_head.res_conv.j.res_conv{1,2,3}.*    residual MLPs, then mean pooling and
    camera_head.more_mlps.{0,2}.*               two ReLU MLP layers,
    camera_head.fc_t.*, camera_head.fc_rot.*    translation and 9-D rotation (SVD-projected onto SO(3))
    image_mean, image_std                       ImageNet constants (checked, not stored on the model)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from model.geometry.pi3_encoder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PI3_ENCODER_PREFIX,
    encode_frames,
    encoder_state_dict_from_pi3,
    encoder_state_dict_to_pi3,
    pi3_encoder_config,
)

NORMALISATION_KEYS = {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD}


@dataclass
class Pi3Config:
    """Pi3's sizes; the defaults are the released model (ViT-L encoder, 36-block "large" decoder).

    Attributes:
        hidden_size: encoder and decoder width (the decoder reads the encoder tokens unprojected).
        encoder_layers / encoder_heads / encoder_registers / encoder_image_size: the DINOv2 encoder.
        patch_size: pixels per patch side.
        decoder_layers / decoder_heads: alternating frame / global attention blocks.
        decoder_registers: register tokens prepended to every frame in the decoder.
        decoder_layerscale: layer-scale init of the decoder blocks.
        mlp_ratio: MLP width / block width, everywhere.
        head_hidden_size / head_layers / head_heads: the point, confidence and camera head transformers.
        camera_hidden_size: width of the camera head transformer's output and of the pose MLPs.
        camera_res_blocks: residual MLP blocks of the camera head.
        rope_base: frequency base of the 2-D rotary position embedding ("rope100").
    """

    hidden_size: int = 1024
    encoder_layers: int = 24
    encoder_heads: int = 16
    encoder_registers: int = 4
    encoder_image_size: int = 518
    patch_size: int = 14
    decoder_layers: int = 36
    decoder_heads: int = 16
    decoder_registers: int = 5
    decoder_layerscale: float = 0.01
    mlp_ratio: int = 4
    head_hidden_size: int = 1024
    head_layers: int = 5
    head_heads: int = 16
    camera_hidden_size: int = 512
    camera_res_blocks: int = 2
    rope_base: float = 100.0

    def __post_init__(self) -> None:
        if self.decoder_layers < 2:
            raise ValueError(f"Pi3 reads the last two decoder blocks; decoder_layers={self.decoder_layers}")

    @classmethod
    def tiny(cls) -> Pi3Config:
        """A few-thousand-parameter Pi3 with the released structure, for tests."""
        return cls(
            hidden_size=16,
            encoder_layers=2,
            encoder_heads=2,
            encoder_registers=2,
            encoder_image_size=28,
            decoder_layers=4,
            decoder_heads=2,
            decoder_registers=3,
            head_hidden_size=16,
            head_layers=1,
            head_heads=2,
            camera_hidden_size=8,
        )

    def encoder_config(self) -> Dinov2WithRegistersConfig:
        return pi3_encoder_config(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.encoder_layers,
            num_attention_heads=self.encoder_heads,
            num_register_tokens=self.encoder_registers,
            image_size=self.encoder_image_size,
            patch_size=self.patch_size,
            mlp_ratio=self.mlp_ratio,
        )


@dataclass
class Pi3Output:
    """Pi3's predictions for ``B`` clips of ``N`` frames of ``H x W`` pixels.

    Attributes:
        points: ``(B, N, H, W, 3)`` world points, ``camera_poses`` applied to ``local_points``.
        local_points: ``(B, N, H, W, 3)`` points in each frame's camera (OpenCV axes, z = depth), up to one
            scale shared by the clip.
        conf: ``(B, N, H, W, 1)`` confidence logits (Pi3's demo keeps pixels with ``sigmoid(conf) > 0.1``).
        camera_poses: ``(B, N, 4, 4)`` camera-to-world rigid transforms.
    """

    points: torch.Tensor
    local_points: torch.Tensor
    conf: torch.Tensor
    camera_poses: torch.Tensor


class Pi3RotaryEmbedding2D(nn.Module):
    """2-D RoPE: the first half of each head's channels rotates with the row, the second half with the column."""

    def __init__(self, base: float) -> None:
        super().__init__()
        self.base = base

    def _rotate(self, states: torch.Tensor, coordinate: torch.Tensor) -> torch.Tensor:
        dim = states.shape[-1]
        inv_freq = self.base ** -(torch.arange(0, dim, 2, device=states.device, dtype=torch.float32) / dim)
        angles = coordinate[..., None].float() * inv_freq  # (B, L, dim / 2)
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, L, dim)
        first, second = states.chunk(2, dim=-1)
        rotated = torch.cat([-second, first], dim=-1)
        return states * angles.cos().to(states.dtype) + rotated * angles.sin().to(states.dtype)

    def forward(self, states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``states (B, heads, L, head_dim)`` rotated by integer ``positions (B or 1, L, 2)`` (row, column)."""
        rows, cols = states.chunk(2, dim=-1)
        return torch.cat([self._rotate(rows, positions[..., 0]), self._rotate(cols, positions[..., 1])], dim=-1)


class Pi3Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, optional per-head q/k LayerNorm and 2-D RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, rope_base: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.rope = Pi3RotaryEmbedding2D(rope_base)

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``hidden (B, L, C)``, ``positions (B or 1, L, 2)`` -> ``(B, L, C)``."""
        batch, length, channels = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, head_dim)
        query = self.rope(self.q_norm(query).to(value.dtype), positions)
        key = self.rope(self.k_norm(key).to(value.dtype), positions)
        attended = F.scaled_dot_product_attention(query, key, value)  # (B, heads, L, head_dim)
        return self.proj(attended.transpose(1, 2).reshape(batch, length, channels))


class Pi3LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * self.gamma


class Pi3Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(hidden)))


class Pi3Block(nn.Module):
    """Pre-norm transformer block with RoPE attention and optional layer scale."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: int, rope_base: float, qk_norm: bool, layerscale: float | None
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Pi3Attention(dim, num_heads, qk_norm, rope_base)
        self.ls1 = Pi3LayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Pi3Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = Pi3LayerScale(dim, layerscale) if layerscale else nn.Identity()

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.ls1(self.attn(self.norm1(hidden), positions))
        return hidden + self.ls2(self.mlp(self.norm2(hidden)))


class Pi3HeadDecoder(nn.Module):
    """A head's per-frame transformer: ``(B*N, L, in_dim) -> (B*N, L, out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int, config: Pi3Config) -> None:
        super().__init__()
        width = config.head_hidden_size
        self.projects = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(
            Pi3Block(width, config.head_heads, config.mlp_ratio, config.rope_base, qk_norm=False, layerscale=None)
            for _ in range(config.head_layers)
        )
        self.linear_out = nn.Linear(width, out_dim)

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden = self.projects(hidden)
        for block in self.blocks:
            hidden = block(hidden, positions)
        return self.linear_out(hidden)


class Pi3PixelHead(nn.Module):
    """Linear per-patch head: each token predicts ``patch x patch`` pixels of ``channels`` values."""

    def __init__(self, dim: int, patch_size: int, channels: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(dim, channels * patch_size**2)

    def forward(self, tokens: torch.Tensor, patch_rows: int, patch_cols: int) -> torch.Tensor:
        """``tokens (B, h*w, dim)`` -> ``(B, h*patch, w*patch, channels)``."""
        batch = tokens.shape[0]
        features = self.proj(tokens).transpose(1, 2).reshape(batch, -1, patch_rows, patch_cols)
        return F.pixel_shuffle(features, self.patch_size).permute(0, 2, 3, 1)


class Pi3ResidualMlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.res_conv1 = nn.Linear(dim, dim)
        self.res_conv2 = nn.Linear(dim, dim)
        self.res_conv3 = nn.Linear(dim, dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        update = F.relu(self.res_conv3(F.relu(self.res_conv2(F.relu(self.res_conv1(hidden))))))
        return hidden + update


def project_to_rotation(matrices: torch.Tensor) -> torch.Tensor:
    """``(B, 9)`` raw outputs -> ``(B, 3, 3)`` rotations: rows L2-normalised, then the nearest SO(3) matrix (SVD)."""
    rows = F.normalize(matrices.reshape(-1, 3, 3).float(), dim=-1)  # the SVD needs float32
    left, _, right_t = torch.linalg.svd(rows)
    flip = torch.ones(rows.shape[0], 3, device=rows.device, dtype=rows.dtype)
    flip[:, 2] = torch.det(left @ right_t)
    return left @ torch.diag_embed(flip) @ right_t


class Pi3CameraHead(nn.Module):
    """Pooled per-frame tokens -> a camera-to-world pose."""

    def __init__(self, dim: int, res_blocks: int) -> None:
        super().__init__()
        self.res_conv = nn.ModuleList(Pi3ResidualMlp(dim) for _ in range(res_blocks))
        self.more_mlps = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.fc_t = nn.Linear(dim, 3)
        self.fc_rot = nn.Linear(dim, 9)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, h*w, dim)`` -> ``(B, 4, 4)`` rigid transforms."""
        for block in self.res_conv:
            tokens = block(tokens)
        features = self.more_mlps(tokens.mean(dim=1))  # (B, dim)
        pose = torch.zeros(tokens.shape[0], 4, 4, device=tokens.device, dtype=torch.float32)
        pose[:, :3, :3] = project_to_rotation(self.fc_rot(features))
        pose[:, :3, 3] = self.fc_t(features)
        pose[:, 3, 3] = 1.0
        return pose


class Pi3Model(nn.Module):
    """Pi3: frames ``(B, N, 3, H, W)`` in ``[0, 1]`` (``H``, ``W`` multiples of 14) -> :class:`Pi3Output`.

    For bfloat16 keep the float32 weights and run under ``torch.autocast``, as Pi3 does: the point, confidence and
    pose heads then run in float32.
    """

    def __init__(self, config: Pi3Config | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else Pi3Config()
        config = self.config
        width = config.hidden_size
        self.encoder = Dinov2WithRegistersModel(config.encoder_config())
        self.decoder = nn.ModuleList(
            Pi3Block(
                width,
                config.decoder_heads,
                config.mlp_ratio,
                config.rope_base,
                qk_norm=True,
                layerscale=config.decoder_layerscale,
            )
            for _ in range(config.decoder_layers)
        )
        self.register_token = nn.Parameter(torch.randn(1, 1, config.decoder_registers, width) * 1e-6)
        self.point_decoder = Pi3HeadDecoder(2 * width, config.head_hidden_size, config)
        self.point_head = Pi3PixelHead(config.head_hidden_size, config.patch_size, 3)
        self.conf_decoder = Pi3HeadDecoder(2 * width, config.head_hidden_size, config)
        self.conf_head = Pi3PixelHead(config.head_hidden_size, config.patch_size, 1)
        self.camera_decoder = Pi3HeadDecoder(2 * width, config.camera_hidden_size, config)
        self.camera_head = Pi3CameraHead(config.camera_hidden_size, config.camera_res_blocks)

    def _token_positions(self, patch_rows: int, patch_cols: int, device: torch.device) -> torch.Tensor:
        """``(1, registers + h*w, 2)``: registers at (0, 0), patch (r, c) at (r + 1, c + 1)."""
        rows, cols = torch.meshgrid(
            torch.arange(patch_rows, device=device), torch.arange(patch_cols, device=device), indexing="ij"
        )
        patches = torch.stack([rows, cols], dim=-1).reshape(-1, 2) + 1
        registers = torch.zeros(self.config.decoder_registers, 2, dtype=patches.dtype, device=device)
        return torch.cat([registers, patches])[None]

    def decode(self, patch_tokens: torch.Tensor, clips: int, positions: torch.Tensor) -> torch.Tensor:
        """Alternating frame / global attention over ``patch_tokens (B*N, h*w, D)``.

        Returns ``(B*N, registers + h*w, 2D)``: the outputs of the last two blocks, concatenated.
        """
        frames_total, _, width = patch_tokens.shape
        frames = frames_total // clips
        registers = self.register_token.reshape(1, -1, width).expand(frames_total, -1, -1)
        hidden = torch.cat([registers.to(patch_tokens.dtype), patch_tokens], dim=1)  # (B*N, L, D)
        length = hidden.shape[1]
        clip_positions = positions.repeat(1, frames, 1)  # (1, N*L, 2)
        last_two = []
        for index, block in enumerate(self.decoder):
            if index % 2 == 0:
                hidden = block(hidden.reshape(frames_total, length, width), positions)
            else:
                hidden = block(hidden.reshape(clips, frames * length, width), clip_positions)
            if index >= len(self.decoder) - 2:
                last_two.append(hidden.reshape(frames_total, length, width))
        return torch.cat(last_two, dim=-1)

    def _decoded(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames (B, N, 3, H, W)`` -> the decoder's output ``(B*N, registers + h*w, 2D)`` and the token positions
        ``(1, registers + h*w, 2)``."""
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, N, 3, H, W), got {tuple(frames.shape)}")
        patch = self.config.patch_size
        rows, cols = frames.shape[-2] // patch, frames.shape[-1] // patch
        tokens = encode_frames(self.encoder, frames.flatten(0, 1))  # (B*N, h, w, D)
        positions = self._token_positions(rows, cols, frames.device)
        return self.decode(tokens.flatten(1, 2), frames.shape[0], positions), positions

    def decoder_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (B, N, 3, H, W)`` in ``[0, 1]`` -> ``(B, N, h, w, 2D)``: each patch's output of the last two decoder
        blocks (what the heads read), after attention across all ``N`` frames of its clip.

        Raises:
            ValueError: on a bad shape, values outside ``[0, 1]`` or sides that are not multiples of 14.
        """
        hidden, _ = self._decoded(frames)
        clips, count, _, height, width = frames.shape
        patch = self.config.patch_size
        patches = hidden[:, self.config.decoder_registers :]  # (B*N, h*w, 2D)
        return patches.reshape(clips, count, height // patch, width // patch, patches.shape[-1])

    def forward(self, frames: torch.Tensor) -> Pi3Output:
        """``frames (B, N, 3, H, W)`` in ``[0, 1]`` -> :class:`Pi3Output`.

        Raises:
            ValueError: on a bad shape, values outside ``[0, 1]`` or sides that are not multiples of 14.
        """
        hidden, positions = self._decoded(frames)  # (B*N, L, 2D), (1, L, 2)
        clips, count, _, height, width = frames.shape
        rows, cols = height // self.config.patch_size, width // self.config.patch_size
        skip = self.config.decoder_registers
        point_hidden = self.point_decoder(hidden, positions)[:, skip:]  # (B*N, h*w, head width)
        conf_hidden = self.conf_decoder(hidden, positions)[:, skip:]
        camera_hidden = self.camera_decoder(hidden, positions)[:, skip:]  # (B*N, h*w, camera width)

        with torch.autocast(device_type=frames.device.type, enabled=False):  # the heads run unautocast, as in Pi3
            head_dtype = self.point_head.proj.weight.dtype
            raw_points = self.point_head(point_hidden.to(head_dtype), rows, cols)  # (B*N, H, W, 3)
            xy, log_depth = raw_points.split([2, 1], dim=-1)
            depth = log_depth.exp()
            local_points = torch.cat([xy * depth, depth], dim=-1)
            conf = self.conf_head(conf_hidden.to(head_dtype), rows, cols)  # (B*N, H, W, 1)
            poses = self.camera_head(camera_hidden.to(head_dtype)).to(head_dtype)  # (B*N, 4, 4)
            points = torch.einsum("nij,nhwj->nhwi", poses[:, :3, :3], local_points) + poses[:, None, None, :3, 3]

        def per_clip(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.reshape(clips, count, *tensor.shape[1:])

        return Pi3Output(per_clip(points), per_clip(local_points), per_clip(conf), per_clip(poses))

    @classmethod
    def from_pi3_checkpoint(
        cls,
        path: str | Path,
        config: Pi3Config | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Pi3Model:
        """The frozen (eval, no grad) model from Pi3's released ``model.safetensors``, loaded strictly.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: naming the file and every unexpected or missing key (see :func:`load_pi3_state_dict`).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Pi3 checkpoint not found: {path}")
        with torch.device("meta"):
            model = cls(config)
        load_pi3_state_dict(model, load_file(str(path)), source=str(path), assign=True)
        return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def pi3_state_dict(model: Pi3Model) -> dict[str, torch.Tensor]:
    """``model``'s weights in Pi3's checkpoint layout (DINOv2 encoder names, ImageNet normalisation buffers)."""
    state = model.state_dict()
    encoder = {key[len(PI3_ENCODER_PREFIX) :]: value for key, value in state.items() if key.startswith("encoder.")}
    pi3 = encoder_state_dict_to_pi3(encoder, PI3_ENCODER_PREFIX)
    pi3.update({key: value for key, value in state.items() if not key.startswith("encoder.")})
    pi3.update({key: torch.tensor(values).view(1, 3, 1, 1) for key, values in NORMALISATION_KEYS.items()})
    return pi3


def load_pi3_state_dict(
    model: Pi3Model, state_dict: dict[str, torch.Tensor], source: str = "Pi3 state dict", assign: bool = False
) -> None:
    """Load a state dict in Pi3's layout into ``model``, strictly.

    The encoder keys go through :func:`model.geometry.pi3_encoder.encoder_state_dict_from_pi3`; every other key must
    be a parameter of ``model``; ``image_mean`` / ``image_std`` must hold the ImageNet constants.

    Raises:
        ValueError: naming ``source`` and the unexpected, missing or mismatching keys.
    """
    encoder = encoder_state_dict_from_pi3(state_dict, model.encoder.config, PI3_ENCODER_PREFIX, source)
    rest = {key: value for key, value in state_dict.items() if not key.startswith(PI3_ENCODER_PREFIX)}
    wrong_constants = []
    for key, values in NORMALISATION_KEYS.items():
        stored = rest.pop(key, None)
        if stored is None or not torch.allclose(stored.float().flatten(), torch.tensor(values)):
            wrong_constants.append(key)
    expected = {key for key in model.state_dict() if not key.startswith(PI3_ENCODER_PREFIX)}
    unexpected, missing = sorted(set(rest) - expected), sorted(expected - set(rest))
    if unexpected or missing or wrong_constants:
        raise ValueError(
            f"{source} does not match Pi3Model({model.config}): unexpected keys {unexpected}, missing keys {missing}, "
            f"missing or non-ImageNet normalisation constants {wrong_constants}"
        )
    rest.update({PI3_ENCODER_PREFIX + key: value for key, value in encoder.items()})
    model.load_state_dict(rest, strict=True, assign=assign)

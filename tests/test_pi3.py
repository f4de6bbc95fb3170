"""Pi3 in our code: the released checkpoint layout, strict loading, outputs, the encoder mapping and Qwen grouping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Qwen2VLVideoProcessor

from model.geometry import (
    Pi3Config,
    Pi3Model,
    encode_frames,
    encoder_state_dict_from_pi3,
    encoder_state_dict_to_pi3,
    group_like_qwen,
    load_pi3_encoder,
    load_pi3_state_dict,
    pi3_state_dict,
    resize_to_patch_multiple,
)
from model.geometry.pi3 import Pi3RotaryEmbedding2D

CONFIG = Pi3Config.tiny()


def _linear(name: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def _norm(name: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (dim,), f"{name}.bias": (dim,)}


def _pi3_block(name: str, dim: int, heads: int, qk_norm: bool, layerscale: bool) -> dict[str, tuple[int, ...]]:
    """Keys of yyfz/Pi3's ``BlockRope`` (and DINOv2's ``NestedTensorBlock``): norm1, attn.qkv, [attn.q_norm,
    attn.k_norm], attn.proj, [ls1.gamma], norm2, mlp.fc1, mlp.fc2, [ls2.gamma]."""
    hidden = 4 * dim
    keys = {**_norm(f"{name}.norm1", dim), **_linear(f"{name}.attn.qkv", 3 * dim, dim)}
    keys.update(_linear(f"{name}.attn.proj", dim, dim))
    if qk_norm:
        keys.update(_norm(f"{name}.attn.q_norm", dim // heads) | _norm(f"{name}.attn.k_norm", dim // heads))
    keys.update(_norm(f"{name}.norm2", dim) | _linear(f"{name}.mlp.fc1", hidden, dim))
    keys.update(_linear(f"{name}.mlp.fc2", dim, hidden))
    if layerscale:
        keys.update({f"{name}.ls1.gamma": (dim,), f"{name}.ls2.gamma": (dim,)})
    return keys


def _head_decoder(name: str, in_dim: int, width: int, out_dim: int, config: Pi3Config) -> dict[str, tuple[int, ...]]:
    """Keys of yyfz/Pi3's ``TransformerDecoder``: projects, blocks.j (no layer scale, no qk-norm), linear_out."""
    keys = _linear(f"{name}.projects", width, in_dim)
    for block in range(config.head_layers):
        keys.update(_pi3_block(f"{name}.blocks.{block}", width, config.head_heads, qk_norm=False, layerscale=False))
    return keys | _linear(f"{name}.linear_out", out_dim, width)


def expected_pi3_keys(config: Pi3Config) -> dict[str, tuple[int, ...]]:
    """Every key (with its shape) of yyfz/Pi3's ``Pi3`` state dict, written from its module structure."""
    dim, patch, heads = config.hidden_size, config.patch_size, config.head_hidden_size
    grid = (config.encoder_image_size // patch) ** 2
    keys: dict[str, tuple[int, ...]] = {
        "encoder.cls_token": (1, 1, dim),
        "encoder.pos_embed": (1, grid + 1, dim),
        "encoder.register_tokens": (1, config.encoder_registers, dim),
        "encoder.patch_embed.proj.weight": (dim, 3, patch, patch),
        "encoder.patch_embed.proj.bias": (dim,),
        **_norm("encoder.norm", dim),
        "register_token": (1, 1, config.decoder_registers, dim),
        "image_mean": (1, 3, 1, 1),
        "image_std": (1, 3, 1, 1),
    }
    for block in range(config.encoder_layers):
        keys.update(_pi3_block(f"encoder.blocks.{block}", dim, config.encoder_heads, qk_norm=False, layerscale=True))
    for block in range(config.decoder_layers):
        keys.update(_pi3_block(f"decoder.{block}", dim, config.decoder_heads, qk_norm=True, layerscale=True))
    keys.update(_head_decoder("point_decoder", 2 * dim, heads, heads, config))
    keys.update(_head_decoder("conf_decoder", 2 * dim, heads, heads, config))
    keys.update(_head_decoder("camera_decoder", 2 * dim, heads, config.camera_hidden_size, config))
    keys.update(_linear("point_head.proj", 3 * patch**2, heads) | _linear("conf_head.proj", patch**2, heads))
    camera = config.camera_hidden_size
    for block in range(config.camera_res_blocks):
        for layer in ("res_conv1", "res_conv2", "res_conv3"):
            keys.update(_linear(f"camera_head.res_conv.{block}.{layer}", camera, camera))
    keys.update(_linear("camera_head.more_mlps.0", camera, camera) | _linear("camera_head.more_mlps.2", camera, camera))
    return keys | _linear("camera_head.fc_t", 3, camera) | _linear("camera_head.fc_rot", 9, camera)


def _random_model(seed: int) -> Pi3Model:
    torch.manual_seed(seed)
    model = Pi3Model(CONFIG).eval()
    with torch.no_grad():  # layer scales and registers are tiny at init; make every parameter matter
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model


def _frames(clips: int = 1, count: int = 3, height: int = 28, width: int = 42, seed: int = 0) -> torch.Tensor:
    return torch.rand(clips, count, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    """Equal up to ``tolerance`` times the largest magnitude (the random weights give points in the thousands, and
    the rotation's SVD may differ in the last bits)."""
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())


@pytest.fixture(scope="module")
def model() -> Pi3Model:
    return _random_model(seed=0)


@pytest.fixture(scope="module")
def checkpoint(model: Pi3Model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pi3") / "model.safetensors"
    save_file({key: value.contiguous() for key, value in pi3_state_dict(model).items()}, str(path))
    return path


def test_exported_state_dict_has_exactly_pi3_keys_and_shapes(model) -> None:
    exported = {key: tuple(value.shape) for key, value in pi3_state_dict(model).items()}
    expected = expected_pi3_keys(CONFIG)
    assert sorted(set(exported) ^ set(expected)) == []
    assert exported == expected


def test_released_default_config_has_pi3_large_sizes() -> None:
    with torch.device("meta"):
        released = Pi3Model()
    exported = {key: tuple(value.shape) for key, value in pi3_state_dict(released).items()}
    assert exported == expected_pi3_keys(Pi3Config())
    assert exported["encoder.pos_embed"] == (1, 1370, 1024)
    assert exported["point_head.proj.weight"] == (3 * 14 * 14, 1024)
    assert sum(key.startswith("decoder.") and key.endswith("ls1.gamma") for key in exported) == 36


def test_checkpoint_loads_strictly_frozen_and_reproduces_outputs(model, checkpoint) -> None:
    loaded = Pi3Model.from_pi3_checkpoint(checkpoint, CONFIG)
    assert not any(parameter.requires_grad for parameter in loaded.parameters())
    frames = _frames()
    with torch.no_grad():
        expected, actual = model(frames), loaded(frames)
    for name in ("points", "local_points", "conf", "camera_poses"):
        _assert_close_to_scale(getattr(actual, name), getattr(expected, name), 1e-6)


def test_outputs_have_documented_shapes_and_poses_are_rigid(model) -> None:
    clips, count, height, width = 2, 3, 28, 42
    with torch.no_grad():
        out = model(_frames(clips, count, height, width))
    assert out.points.shape == out.local_points.shape == (clips, count, height, width, 3)
    assert out.conf.shape == (clips, count, height, width, 1)
    assert out.camera_poses.shape == (clips, count, 4, 4)
    rotation, translation = out.camera_poses[..., :3, :3], out.camera_poses[..., :3, 3]
    torch.testing.assert_close(
        rotation @ rotation.transpose(-1, -2), torch.eye(3).expand_as(rotation), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.det(rotation), torch.ones(clips, count), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.camera_poses[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand(clips, count, 4))
    assert (out.local_points[..., 2] > 0).all()
    world = torch.einsum("bnij,bnhwj->bnhwi", rotation, out.local_points) + translation[:, :, None, None]
    torch.testing.assert_close(out.points, world)
    assert translation.abs().sum() > 0 and not torch.allclose(rotation, torch.eye(3).expand_as(rotation))


def test_heads_run_in_float32_under_bfloat16_autocast(model) -> None:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_frames())
    assert out.camera_poses.dtype == out.local_points.dtype == out.conf.dtype == torch.float32
    rotation = out.camera_poses[..., :3, :3]
    torch.testing.assert_close(
        rotation @ rotation.transpose(-1, -2), torch.eye(3).expand_as(rotation), atol=1e-5, rtol=0
    )


def test_rope_rotates_head_halves_by_row_and_column() -> None:
    states = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)  # (B, heads, L, head_dim 4): one frequency per axis
    row, col = 0.7, -1.3
    rotated = Pi3RotaryEmbedding2D(base=100.0)(states, torch.tensor([[[row, col]]]))
    expected = torch.tensor(
        [
            1 * math.cos(row) - 2 * math.sin(row),
            2 * math.cos(row) + 1 * math.sin(row),
            3 * math.cos(col) - 4 * math.sin(col),
            4 * math.cos(col) + 3 * math.sin(col),
        ]
    )
    torch.testing.assert_close(rotated.flatten(), expected)
    wide = torch.randn(2, 3, 5, 16)  # relative positions only: shifting both query and key changes nothing
    positions = torch.randint(0, 9, (2, 5, 2))
    rope = Pi3RotaryEmbedding2D(base=100.0)
    scores = rope(wide, positions) @ rope(wide, positions).transpose(-1, -2)
    shifted = rope(wide, positions + 4) @ rope(wide, positions + 4).transpose(-1, -2)
    torch.testing.assert_close(shifted, scores, atol=1e-4, rtol=1e-4)


def test_outputs_permute_with_the_frames_and_frames_see_each_other(model) -> None:
    frames = _frames(count=3)
    order = torch.tensor([2, 0, 1])
    changed = frames.clone()
    changed[:, 0] = torch.rand_like(changed[:, 0])
    with torch.no_grad():
        out, permuted, disturbed = model(frames), model(frames[:, order]), model(changed)
    _assert_close_to_scale(permuted.camera_poses, out.camera_poses[:, order], 1e-5)
    _assert_close_to_scale(permuted.local_points, out.local_points[:, order], 1e-5)
    assert not torch.allclose(disturbed.local_points[:, 1], out.local_points[:, 1])


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda state: state.update({"decoder.0.attn.rope_cache": torch.zeros(1)}), "decoder.0.attn.rope_cache"),
        (lambda state: state.pop("camera_head.fc_t.bias"), "camera_head.fc_t.bias"),
        (lambda state: state.pop("image_std"), "image_std"),
        (lambda state: state.update({"encoder.mask_token": torch.zeros(1, 16)}), "encoder.mask_token"),
        (lambda state: state.pop("encoder.blocks.1.ls2.gamma"), "encoder.layer.1.layer_scale2.lambda1"),
    ],
    ids=["unexpected", "missing", "missing-constant", "unexpected-encoder", "missing-encoder"],
)
def test_mismatching_checkpoint_key_raises_naming_it(model, edit, named) -> None:
    state = pi3_state_dict(model)
    edit(state)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        load_pi3_state_dict(Pi3Model(CONFIG), state, source="edited.safetensors")


def _reference_dinov2_patch_tokens(state: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
    """DINOv2-with-registers forward written directly on Pi3-layout tensors: ``(T, 3, H, W) -> (T, h, w, C)``."""
    prefix, heads, patch, registers = "encoder.", CONFIG.encoder_heads, CONFIG.patch_size, CONFIG.encoder_registers
    weight = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    pixels = (frames - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    rows, cols = frames.shape[2] // patch, frames.shape[3] // patch
    tokens = F.conv2d(pixels, weight["patch_embed.proj.weight"], weight["patch_embed.proj.bias"], stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2)  # (T, h*w, C)
    dim = tokens.shape[-1]
    pos = weight["pos_embed"]
    side = math.isqrt(pos.shape[1] - 1)
    grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=True, align_corners=False)
    tokens = tokens + grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
    cls = weight["cls_token"] + pos[:, :1]
    x = torch.cat([cls.expand(len(frames), -1, -1), weight["register_tokens"].expand(len(frames), -1, -1), tokens], 1)
    for block in range(CONFIG.encoder_layers):
        w = {key[len(f"blocks.{block}.") :]: v for key, v in weight.items() if key.startswith(f"blocks.{block}.")}
        h = F.layer_norm(x, (dim,), w["norm1.weight"], w["norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, w["attn.qkv.weight"], w["attn.qkv.bias"]).reshape(*h.shape[:2], 3, heads, -1).unbind(2)
        attn = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dim // heads), dim=-1)
        h = torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(h.shape)
        x = x + w["ls1.gamma"] * F.linear(h, w["attn.proj.weight"], w["attn.proj.bias"])
        h = F.layer_norm(x, (dim,), w["norm2.weight"], w["norm2.bias"], eps=1e-6)
        h = F.linear(
            F.gelu(F.linear(h, w["mlp.fc1.weight"], w["mlp.fc1.bias"])), w["mlp.fc2.weight"], w["mlp.fc2.bias"]
        )
        x = x + w["ls2.gamma"] * h
    x = F.layer_norm(x, (dim,), weight["norm.weight"], weight["norm.bias"], eps=1e-6)
    return x[:, 1 + registers :].reshape(len(frames), rows, cols, dim)


def test_encoder_mapping_reproduces_the_reference_dinov2_forward(model, checkpoint) -> None:
    encoder = load_pi3_encoder(checkpoint, CONFIG.encoder_config())
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    frames = _frames(count=2, height=42, width=56)[0]  # not the 28 x 28 pre-training grid: interpolated positions
    with torch.no_grad():
        tokens = encode_frames(encoder, frames)
    assert tokens.shape == (2, 3, 4, CONFIG.hidden_size)
    reference = _reference_dinov2_patch_tokens(pi3_state_dict(model), frames)
    torch.testing.assert_close(tokens, reference, atol=1e-5, rtol=1e-4)


def test_encoder_mapping_round_trips_pi3_keys(model) -> None:
    pi3 = {key: value for key, value in pi3_state_dict(model).items() if key.startswith("encoder.")}
    hf = encoder_state_dict_from_pi3(pi3, CONFIG.encoder_config())
    assert (hf["embeddings.mask_token"] == 0).all()
    back = encoder_state_dict_to_pi3(hf)
    assert back.keys() == pi3.keys()
    assert all(torch.equal(back[key], pi3[key]) for key in pi3)


def test_encode_frames_rejects_unaligned_sizes_and_unscaled_pixels(model) -> None:
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        Pi3Model.from_pi3_checkpoint("absent.safetensors", CONFIG)
    with pytest.raises(ValueError, match="multiple of the 14-px patch"):
        encode_frames(model.encoder, torch.rand(1, 3, 30, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_frames(model.encoder, torch.rand(1, 3, 28, 28) * 255)
    aligned = resize_to_patch_multiple(torch.rand(2, 3, 30, 45))
    assert aligned.shape == (2, 3, 28, 42) and 0 <= aligned.min() and aligned.max() <= 1


@pytest.mark.parametrize("frames", [4, 3])
def test_group_like_qwen_follows_qwen_video_patch_order(frames) -> None:
    rows, cols, patch = 4, 6, 14
    t = torch.arange(frames).view(frames, 1, 1).expand(frames, rows, cols)
    r = torch.arange(rows).view(1, rows, 1).expand(frames, rows, cols)
    c = torch.arange(cols).view(1, 1, cols).expand(frames, rows, cols)
    tokens = torch.stack([t, r, c], dim=-1).float()  # (T, h, w, 3): each token says where it is
    video = tokens.permute(0, 3, 1, 2).repeat_interleave(patch, 2).repeat_interleave(patch, 3)  # (T, 3, H, W)
    processed = Qwen2VLVideoProcessor()(
        videos=[video],
        do_resize=False,
        do_rescale=False,
        do_normalize=False,
        do_sample_frames=False,
        cap_pixels_per_frame=False,
        return_tensors="pt",
    )
    slots, grid_h, grid_w = processed["video_grid_thw"][0].tolist()
    merged = slots * grid_h * grid_w // 4
    qwen = processed["pixel_values_videos"].view(merged, 4, 3, 2, patch, patch)[..., 0, 0]  # (merged, patch k, C, t)
    expected = qwen.permute(0, 1, 3, 2).reshape(merged, 8, 3)

    grouped = group_like_qwen(tokens)
    assert grouped.shape == (math.ceil(frames / 2) * rows // 2 * cols // 2, 8, 3)
    torch.testing.assert_close(grouped, expected)

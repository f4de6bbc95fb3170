"""Training a tiny Pi3 on the synthetic 4D world: its losses, its targets and the recipe (scripts/pretrain_pi3.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.geometry.pi3 import Pi3Config, Pi3Model
from model.geometry.pi3_encoder import load_pi3_encoder, pi3_encoder_config
from model.geometry.pi3_losses import (
    clip_scale,
    confidence_loss,
    local_point_loss,
    relative_pose_loss,
    relative_poses,
)
from scripts import pretrain_pi3, probe_pi3_depth
from utils.synthetic.dynamic_geometry import GeometryClips, local_points, render_geometry_clips, resize_clip
from utils.synthetic.dynamic_world import DynamicWorldConfig, make_world, render_world
from utils.synthetic.rooms import room_rng

TINY_WORLD = DynamicWorldConfig(height=32, width=48, num_frames=6)


def _rigid(angle: float, translation: list[float]) -> torch.Tensor:
    pose = torch.eye(4)
    c, s = np.cos(angle), np.sin(angle)
    pose[:3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    pose[:3, 3] = torch.tensor(translation)
    return pose


def test_clip_scale_undoes_a_global_scale_and_the_point_loss_is_then_zero() -> None:
    target = torch.rand(2, 3, 4, 5, 3) + torch.tensor([0.0, 0.0, 1.0])
    valid = torch.ones(2, 3, 4, 5)
    predicted = target / torch.tensor([3.0, 0.5]).view(2, 1, 1, 1, 1)
    scale = clip_scale(predicted, target, valid)
    assert torch.allclose(scale, torch.tensor([3.0, 0.5]), atol=1e-5)
    assert float(local_point_loss(predicted, target, valid, scale)) < 1e-5
    assert float(local_point_loss(predicted * 1.1, target, valid, torch.ones(2))) > 0.1


def test_pixels_without_depth_do_not_count_in_the_point_loss() -> None:
    target = torch.rand(1, 2, 3, 3, 3) + torch.tensor([0.0, 0.0, 1.0])
    valid = torch.ones(1, 2, 3, 3)
    valid[0, 0, 0, 0] = 0
    predicted = target.clone()
    predicted[0, 0, 0, 0] = 100.0  # wrong only where there is no depth
    assert float(local_point_loss(predicted, target, valid, torch.ones(1))) < 1e-6


def test_relative_pose_loss_ignores_the_reference_frame_and_scale_but_not_the_motion() -> None:
    truth = torch.stack([_rigid(0.1 * i, [0.5 * i, 0.2, -0.1 * i]) for i in range(4)])[None]  # (1, 4, 4, 4)
    assert torch.allclose(relative_poses(truth)[0, 1, 1], torch.eye(4), atol=1e-6)
    world = _rigid(0.7, [3.0, -2.0, 1.0])
    moved = world @ truth  # the same clip seen from another world frame
    predicted = moved.clone()
    predicted[..., :3, 3] /= 2.0  # and at half the scale
    assert float(relative_pose_loss(predicted, truth, torch.tensor([2.0]))) < 1e-5
    shuffled = predicted[:, [0, 2, 1, 3]]
    assert float(relative_pose_loss(shuffled, truth, torch.tensor([2.0]))) > 0.1


def test_confidence_targets_are_the_pixels_whose_points_are_right() -> None:
    target = torch.ones(1, 1, 1, 2, 3)
    predicted = target.clone()
    predicted[0, 0, 0, 1] = 2.0  # the second pixel is far off
    valid = torch.ones(1, 1, 1, 2)
    confident_right = torch.tensor([10.0, -10.0]).view(1, 1, 1, 2, 1)
    assert float(confidence_loss(confident_right, predicted, target, valid, torch.ones(1))) < 1e-3
    assert float(confidence_loss(-confident_right, predicted, target, valid, torch.ones(1))) > 5


def test_back_projected_floor_pixels_lie_on_the_floor_and_sphere_pixels_on_their_sphere() -> None:
    world = make_world(3, "train", 0, TINY_WORLD)
    rendered = render_world(world, TINY_WORLD, room_rng(3, "train", 0, 1))
    points = local_points(rendered.depths, rendered.intrinsics)  # (T, H, W, 3)
    world_points = np.einsum("tij,thwj->thwi", rendered.poses[:, :3, :3], points) + rendered.poses[:, None, None, :3, 3]
    floor = (rendered.instances == -1) & (rendered.depths > 0)
    assert floor.any() and np.abs(world_points[floor][:, 2]).max() < 1e-3
    t, v, u = np.argwhere(rendered.instances == 0)[0]
    distance = np.linalg.norm(world_points[t, v, u] - world.positions[0, t])
    assert abs(distance - world.radii[0]) < 1e-3


def test_clips_are_resized_to_the_model_size_with_sky_pixels_invalid() -> None:
    world = make_world(3, "train", 1, TINY_WORLD)
    clip = resize_clip(render_world(world, TINY_WORLD, room_rng(3, "train", 1, 1)), (28, 42))
    assert clip.frames.shape == (6, 3, 28, 42) and clip.points.shape == (6, 28, 42, 3)
    assert 0.0 <= float(clip.frames.min()) and float(clip.frames.max()) <= 1.0
    assert torch.equal(clip.valid.bool(), clip.points[..., 2] > 0)
    assert 0 < float(clip.valid.mean()) < 1  # the sky above the arena has no depth
    batch = GeometryClips([clip], frames_per_clip=4, seed=0).batch(3)
    assert batch.frames.shape == (3, 4, 3, 28, 42) and batch.poses.shape == (3, 4, 4, 4)


def test_pretrain_pi3_writes_a_checkpoint_the_gsm_and_pi3_load_and_its_metrics(tmp_path: Path) -> None:
    out = tmp_path / "pi3"
    overrides = [f"output_dir={out}", "train.max_steps=3", "train.batch_size=2", "train.log_every=1"]
    overrides += ["data.train_worlds=3", "data.holdout_worlds=2", "data.height=28", "data.width=42"]
    overrides += [
        "model.hidden_size=16",
        "model.encoder_layers=1",
        "model.decoder_layers=2",
        "model.head_hidden_size=16",
    ]
    overrides += ["model.camera_hidden_size=8", "model.encoder_heads=2", "model.decoder_heads=2", "model.head_heads=2"]
    pretrain_pi3.main(
        ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "pi3" / "tiny_dynamic.yaml"), *overrides]
    )
    described = json.loads((out / "pi3_config.json").read_text())
    config = Pi3Config(**described["pi3"])
    model = Pi3Model.from_pi3_checkpoint(out / "model.safetensors", config)  # every key, strictly
    encoder = load_pi3_encoder(out / "model.safetensors", pi3_encoder_config(**described["encoder"]))
    assert encoder.config.hidden_size == 16 and described["size"] == [28, 42]
    assert torch.equal(encoder.embeddings.cls_token, model.encoder.embeddings.cls_token)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {
        "holdout_depth_abs_rel",
        "encoder_probe_r2_log_depth",
        "decoder_probe_r2_log_depth",
        "encoder_probe_r2_log_depth_random_encoder",
    }
    probes = probe_pi3_depth.main(["--pi3", str(out)])  # the same read-outs of the checkpoint on disk
    assert set(probes) == {key for key in metrics if "probe" in key}
    assert probes["encoder_probe_r2_log_depth"] == metrics["encoder_probe_r2_log_depth"]
    assert probes["decoder_probe_r2_log_depth"] == metrics["decoder_probe_r2_log_depth"]
    curve = json.loads((out / "curve.json").read_text())
    assert [row["step"] for row in curve] == [0, 1, 2] and all(np.isfinite(row["total"]) for row in curve)
    assert any((out / "tb").iterdir())


def test_the_holdout_worlds_are_not_the_training_worlds() -> None:
    train = render_geometry_clips(0, "train", 1, (28, 42), TINY_WORLD)
    held_out = render_geometry_clips(0, "geometry_holdout", 1, (28, 42), TINY_WORLD)
    assert not torch.equal(train[0].poses, held_out[0].poses)

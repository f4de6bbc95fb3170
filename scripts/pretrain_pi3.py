"""Train a (tiny) Pi3 on the synthetic 4D world's posed RGB-D clips, so the GSM has geometry to select from.

The released Pi3 (ViT-L encoder, 36-block decoder) cannot be downloaded here, and a random tiny encoder carries no
geometry, so the DSR quick start's GSM would have nothing to select. This recipe trains the whole tiny Pi3
(:class:`model.geometry.pi3.Pi3Model`: encoder, alternating-attention decoder, point / confidence / camera heads)
with Pi3's scale-invariant objectives (:mod:`model.geometry.pi3_losses`) on the *training* worlds of
:mod:`utils.synthetic.dynamic_world` (generation seed ``data.seed``, split ``train``: the worlds of
``generate_synthetic_dynamic.py --seed 0``'s training split; no evaluated world), at the size the GSM reads them.

Writes ``<output_dir>/model.safetensors`` in Pi3's checkpoint layout (loaded by
:func:`model.geometry.pi3.Pi3Model.from_pi3_checkpoint` and by the GSM's
:func:`~model.geometry.pi3_encoder.load_pi3_encoder`), ``pi3_config.json`` (the :class:`Pi3Config`, and under
``encoder`` the overrides the GSM's ``pi3_config`` option takes), ``curve.json`` and TensorBoard logs, and
``metrics.json``: on held-out worlds (split ``data.holdout_split``) the depth error of the whole model and how
well a linear read-out of the *encoder's* and of the *decoder's* patch tokens (the GSM's two ``pi3_features``)
recovers each patch's log depth (R^2), beside the same read-out of a random encoder of the same size
(:func:`depth_probes`; ``scripts/probe_pi3_depth.py`` measures them for a checkpoint already trained).

    python scripts/pretrain_pi3.py --config configs/pi3/tiny_dynamic.yaml [key=value ...]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.geometry.pi3 import Pi3Config, Pi3Model, pi3_state_dict  # noqa: E402
from model.geometry.pi3_encoder import encode_frames  # noqa: E402
from model.geometry.pi3_losses import clip_scale, confidence_loss, local_point_loss, relative_pose_loss  # noqa: E402
from utils.synthetic.dynamic_geometry import GeometryClip, GeometryClips, render_geometry_clips  # noqa: E402
from utils.training.config import config_from_command_line, save_config  # noqa: E402
from utils.training.trainer import warmup_cosine  # noqa: E402

PROBE_TRAIN_CLIPS = 40
"""Training clips the depth read-outs are fitted on."""


def encoder_overrides(config: Pi3Config) -> dict:
    """The GSM's ``pi3_config`` option for ``config``'s encoder (:func:`~model.geometry.pi3_encoder.pi3_encoder_config`
    fields)."""
    encoder = config.encoder_config()
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_register_tokens", "image_size")
    return {name: getattr(encoder, name) for name in (*fields, "patch_size", "mlp_ratio")}


def losses(model: Pi3Model, clip: GeometryClip, weights: dict) -> dict[str, torch.Tensor]:
    """Pi3's losses of one batch of clips; ``total`` is their weighted sum."""
    output = model(clip.frames)
    scale = clip_scale(output.local_points, clip.points, clip.valid)
    terms = {
        "points": local_point_loss(output.local_points, clip.points, clip.valid, scale),
        "camera": relative_pose_loss(output.camera_poses, clip.poses, scale),
        "conf": confidence_loss(output.conf, output.local_points, clip.points, clip.valid, scale),
    }
    terms["total"] = sum(weights[name] * value for name, value in terms.items())
    return terms


@torch.no_grad()
def depth_error(model: Pi3Model, clips: list[GeometryClip]) -> float:
    """Mean ``|s * z_pred - z| / z`` over the valid pixels of ``clips`` (one scale per clip)."""
    total, count = 0.0, 0.0
    for clip in clips:
        output = model(clip.frames[None])
        points, valid = clip.points[None], clip.valid[None]
        scale = clip_scale(output.local_points, points, valid)
        error = (scale * output.local_points[..., 2] - points[..., 2]).abs() / points[..., 2].clamp_min(1e-6)
        total, count = total + float((error * valid).sum()), count + float(valid.sum())
    return total / count


def encoder_tokens(model: Pi3Model) -> Callable[[torch.Tensor], torch.Tensor]:
    """Frames ``(T, 3, H, W)`` -> the encoder's patch tokens ``(T, h, w, C)``, one frame at a time (the GSM's
    ``pi3_features: encoder``)."""
    return lambda frames: encode_frames(model.encoder, frames)


def decoder_tokens(model: Pi3Model) -> Callable[[torch.Tensor], torch.Tensor]:
    """Frames ``(T, 3, H, W)`` of one clip -> the decoder's patch tokens ``(T, h, w, 2C)``, every frame attending to the
    others (the GSM's ``pi3_features: decoder``)."""
    return lambda frames: model.decoder_tokens(frames[None])[0]


@torch.no_grad()
def patch_depth_dataset(
    tokens_of: Callable[[torch.Tensor], torch.Tensor], clips: list[GeometryClip]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch tokens ``(P, C)`` (``tokens_of`` a clip's frames) and each fully valid patch's mean log depth ``(P,)``."""
    features, targets = [], []
    for clip in clips:
        tokens = tokens_of(clip.frames)  # (T, h, w, C)
        patch = clip.frames.shape[-1] // tokens.shape[2]
        depth = clip.points[..., 2].clamp_min(1e-6).log() * clip.valid
        pooled = torch.nn.functional.avg_pool2d(depth[:, None], patch)[:, 0]  # (T, h, w)
        full = torch.nn.functional.avg_pool2d(clip.valid[:, None], patch)[:, 0] == 1.0
        features.append(tokens[full])
        targets.append(pooled[full])
    return torch.cat(features), torch.cat(targets)


def probe_r2(
    tokens_of: Callable[[torch.Tensor], torch.Tensor],
    train: list[GeometryClip],
    held_out: list[GeometryClip],
    ridge: float = 1e-2,
) -> float:
    """R^2 on ``held_out`` of a ridge regression from patch tokens to log depth fitted on ``train``."""
    x, y = patch_depth_dataset(tokens_of, train)
    x_test, y_test = patch_depth_dataset(tokens_of, held_out)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    design = torch.cat([(x - mean) / std, torch.ones(len(x), 1)], 1).double()
    weights = torch.linalg.solve(design.T @ design + ridge * torch.eye(design.shape[1]).double(), design.T @ y.double())
    predicted = torch.cat([(x_test - mean) / std, torch.ones(len(x_test), 1)], 1).double() @ weights
    return float(1 - ((predicted - y_test) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum())


def depth_probes(model: Pi3Model, train: list[GeometryClip], held_out: list[GeometryClip]) -> dict[str, float]:
    """The read-out R^2 of log depth from the encoder's and the decoder's patch tokens of ``model``, and from the
    encoder of a random Pi3 of the same size."""
    random_model = Pi3Model(model.config).eval()
    return {
        "encoder_probe_r2_log_depth": round(probe_r2(encoder_tokens(model), train, held_out), 4),
        "decoder_probe_r2_log_depth": round(probe_r2(decoder_tokens(model), train, held_out), 4),
        "encoder_probe_r2_log_depth_random_encoder": round(probe_r2(encoder_tokens(random_model), train, held_out), 4),
    }


def main(argv: list[str] | None = None) -> None:
    cfg = config_from_command_line(argv, __doc__)
    torch.manual_seed(cfg.seed)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, output_dir / "config.yaml")
    config = Pi3Config(**OmegaConf.to_container(cfg.model, resolve=True))
    size = (int(cfg.data.height), int(cfg.data.width))
    train_clips = render_geometry_clips(cfg.data.seed, "train", cfg.data.train_worlds, size, progress=True)
    held_out = render_geometry_clips(
        cfg.data.seed, cfg.data.holdout_split, cfg.data.holdout_worlds, size, progress=True
    )
    batches = GeometryClips(train_clips, cfg.data.frames_per_clip, cfg.seed)

    model = Pi3Model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    weights = dict(cfg.train.loss_weights)
    writer = SummaryWriter(output_dir / "tb")
    curve, started = [], time.time()
    progress = tqdm(range(cfg.train.max_steps), desc="pi3")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = cfg.train.lr * warmup_cosine(step, cfg.train.warmup_steps, cfg.train.max_steps, 0.05)
        terms = losses(model, batches.batch(cfg.train.batch_size), weights)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        if step % cfg.train.log_every == 0 or step == cfg.train.max_steps - 1:
            row = {"step": step, **{name: round(float(value.detach()), 5) for name, value in terms.items()}}
            curve.append(row)
            for name in terms:
                writer.add_scalar(f"loss/{name}", row[name], step)
            progress.set_postfix(points=row["points"], camera=row["camera"])
    writer.close()
    minutes = (time.time() - started) / 60

    model.eval()
    metrics = {
        "train_minutes": round(minutes, 2),
        "holdout_depth_abs_rel": round(depth_error(model, held_out), 4),
        "holdout_depth_abs_rel_untrained": round(depth_error(Pi3Model(config).eval(), held_out), 4),
        **depth_probes(model, train_clips[:PROBE_TRAIN_CLIPS], held_out),
    }
    save_file(
        {key: value.contiguous() for key, value in pi3_state_dict(model).items()}, output_dir / "model.safetensors"
    )
    described = {"pi3": dataclasses.asdict(config), "encoder": encoder_overrides(config), "size": list(size)}
    (output_dir / "pi3_config.json").write_text(json.dumps(described, indent=2) + "\n")
    (output_dir / "curve.json").write_text(json.dumps(curve) + "\n")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()

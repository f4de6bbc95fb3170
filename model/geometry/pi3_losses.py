"""Pi3's training objectives, for training a (tiny) Pi3 on posed RGB-D clips.

Pi3 predicts every frame's local point map and camera pose up to one scale per clip and with no reference frame
(permutation equivariant), so its losses compare *relative* quantities after aligning the scale:

* :func:`clip_scale`: the scale ``s`` per clip that best maps the predicted local points onto the true ones
  (weighted least squares, weight ``1 / z`` so near and far pixels count alike; no gradient flows through it);
* :func:`local_point_loss`: ``|s * p - g|_1 / z`` over the pixels with a true depth;
* :func:`relative_pose_loss`: over every ordered pair of frames ``(i, j)``, the L1 distance between the true and
  predicted ``inv(P_i) @ P_j``: rotation entries plus the translation (predicted translations scaled by ``s``);
* :func:`confidence_loss`: binary cross-entropy of the confidence logits against "this pixel's point is within
  :data:`CONFIDENT_ERROR` of the truth (relative to its depth)"; pixels with no true depth (sky) are targets 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONFIDENT_ERROR = 0.05
"""A pixel's confidence target is 1 where ``|s * p - g| / z`` is below this."""


def clip_scale(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B,)`` scales aligning ``predicted`` to ``target`` local points ``(B, N, H, W, 3)`` over ``valid``
    ``(B, N, H, W)`` pixels, detached.

    Raises:
        ValueError: if a clip has no valid pixel.
    """
    counts = valid.flatten(1).sum(1)
    if bool((counts == 0).any()):
        raise ValueError(f"clips {torch.nonzero(counts == 0)[:, 0].tolist()} have no pixel with a true depth")
    weight = valid / target[..., 2].clamp_min(1e-6)  # (B, N, H, W)
    predicted = predicted.detach()
    dot = (weight[..., None] * predicted * target).flatten(1).sum(1)
    norm = (weight[..., None] * predicted * predicted).flatten(1).sum(1).clamp_min(1e-12)
    return (dot / norm).clamp_min(1e-6)


def local_point_loss(
    predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Mean ``|s * p - g|_1 / z`` over the valid pixels; ``predicted`` / ``target`` ``(B, N, H, W, 3)``."""
    error = (scale.view(-1, 1, 1, 1, 1) * predicted - target).abs().sum(-1) / target[..., 2].clamp_min(1e-6)
    return (error * valid).sum() / valid.sum()


def relative_poses(poses: torch.Tensor) -> torch.Tensor:
    """``(B, N, 4, 4)`` camera-to-world poses -> ``(B, N, N, 4, 4)`` with ``[i, j] = inv(P_i) @ P_j``."""
    rotation, translation = poses[..., :3, :3], poses[..., :3, 3]
    inverse = torch.eye(4, dtype=poses.dtype, device=poses.device).expand_as(poses).clone()
    inverse[..., :3, :3] = rotation.transpose(-1, -2)
    inverse[..., :3, 3] = -(rotation.transpose(-1, -2) @ translation[..., None])[..., 0]
    return inverse[:, :, None] @ poses[:, None]


def relative_pose_loss(predicted: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """L1 between the true and predicted relative poses of all frame pairs (rotation entries and metres of
    translation, the predicted translation scaled by ``scale`` ``(B,)``); poses ``(B, N, 4, 4)``."""
    predicted_relative, target_relative = relative_poses(predicted), relative_poses(target)
    rotation = (predicted_relative[..., :3, :3] - target_relative[..., :3, :3]).abs().sum((-1, -2))
    translation = (scale.view(-1, 1, 1, 1) * predicted_relative[..., :3, 3] - target_relative[..., :3, 3]).abs()
    return (rotation + translation.sum(-1)).mean()


def confidence_loss(
    logits: torch.Tensor, predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """BCE of ``logits`` ``(B, N, H, W, 1)`` against "point within :data:`CONFIDENT_ERROR`" (0 where not valid)."""
    with torch.no_grad():
        error = (scale.view(-1, 1, 1, 1, 1) * predicted - target).norm(dim=-1) / target[..., 2].clamp_min(1e-6)
        confident = (error < CONFIDENT_ERROR) & valid.bool()
    return F.binary_cross_entropy_with_logits(logits[..., 0], confident.to(logits.dtype))

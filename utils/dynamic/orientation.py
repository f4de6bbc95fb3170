"""Object orientation from one image crop, with Orient Anything's model (a DINOv2 backbone and a binned head).

Orient Anything (Wang et al., "Orient Anything: Learning Robust Object Orientation Estimation from Rendering
3D Models"; ``SpatialVision/Orient-Anything``, its ``vision_tower.py: DINOv2_MLP`` and ``inference.py``) reads
the class token of a DINOv2 backbone with a two-layer MLP whose ``360 + 180 + 180 + 2`` outputs are the
azimuth bins (1 degree, 0..359), the polar bins (1 degree, argmax - 90), the rotation bins (1 degree,
argmax - 90) and two confidence logits (the softmax's first entry is the confidence that the object has an
orientation). DSR Suite runs the released ``croplargeEX2/dino_weight.pt`` (DINOv2-L) on agents' crops.

:class:`OrientAnything` has the module names of ``DINOv2_MLP``, so that checkpoint loads key for key
(:func:`load_orient_anything`, strict)::

    dinov2.*                                   transformers' Dinov2Model (DINOv2-L: dinov2-large's config);
                                               the checkpoint's transformers-4 attention names are renamed
                                               (:data:`RELEASED_DINOV2_RENAMES`, as transformers' own
                                               conversion mapping for Dinov2Model does)
    down_sampler.net1.0.{weight,bias}          Linear(hidden, 722)
    down_sampler.net1.1.{weight,bias,running_mean,running_var,num_batches_tracked}   BatchNorm1d(722), then ReLU
    down_sampler.net2.0.{weight,bias}          Linear(722, 722)
    down_sampler.net2.1.*                      BatchNorm1d(722)

Input (:func:`object_crop`, :func:`preprocess_crops`): as Orient Anything's demo with background removal, the
object alone (pixels outside its mask black) cropped to its mask's bounding box, padded to a square and then
so that the object spans :attr:`OrientationConfig.foreground_ratio` of it; then the DINOv2 image processor's
steps (shortest side resized to ``resize_size``, bicubic; centre crop ``crop_size``; ImageNet normalisation).

Facing direction (:func:`facing_from_azimuth`): the azimuth is read as the object's front turned ``azimuth``
degrees from pointing straight at the camera towards the camera's left (Orient Anything's axis drawing,
``utils.py: get_proj2D_XYZ``, projects the front to ``(-sin(azimuth), 0)`` on the image at zero polar and
rotation: 90 degrees points image-left; 0 points along the line of sight, read here as towards the camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import Dinov2Config, Dinov2Model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 518,
    "patch_size": 14,
    "mlp_ratio": 4,
    "layerscale_value": 1.0,
    "layer_norm_eps": 1e-6,
}
"""``facebook/dinov2-large``'s architecture (the backbone of ``croplargeEX2/dino_weight.pt``)."""
RELEASED_DINOV2_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)
"""``(released, current)`` parts of the backbone's attention key names (transformers 4 -> 5)."""


@dataclass(frozen=True)
class OrientationConfig:
    """The model's sizes and its input.

    Attributes:
        backbone: :class:`transformers.Dinov2Config` fields (default DINOv2-L).
        azimuth_bins / polar_bins / rotation_bins: head outputs per angle (1-degree bins), then 2 confidence logits.
        resize_size: the crop's shortest side before the centre crop; crop_size: the model's input side.
        foreground_ratio: share of the square crop's side the object spans.
    """

    backbone: dict = field(default_factory=lambda: dict(DINOV2_LARGE))
    azimuth_bins: int = 360
    polar_bins: int = 180
    rotation_bins: int = 180
    resize_size: int = 256
    crop_size: int = 224
    foreground_ratio: float = 0.85

    @classmethod
    def tiny(cls) -> OrientationConfig:
        """A few-thousand-parameter model with the released structure, for tests."""
        backbone = {
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
        }
        return cls(backbone=backbone, resize_size=32, crop_size=28)

    @property
    def num_outputs(self) -> int:
        return self.azimuth_bins + self.polar_bins + self.rotation_bins + 2


class OrientationHead(nn.Module):
    """Orient Anything's ``MLP_dim``: ``Linear, BatchNorm1d, ReLU`` then ``Linear, BatchNorm1d``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net1 = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU())
        self.net2 = nn.Sequential(nn.Linear(out_dim, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net2(self.net1(hidden))


@dataclass
class Orientation:
    """Orientations of ``B`` crops, degrees: ``azimuth`` ``(B,)`` in [0, 360), ``polar`` and ``rotation`` ``(B,)``
    in [-90, 90), ``confidence`` ``(B,)`` in [0, 1]."""

    azimuth: np.ndarray
    polar: np.ndarray
    rotation: np.ndarray
    confidence: np.ndarray


class OrientAnything(nn.Module):
    """Crops ``(B, 3, S, S)`` (normalised) -> orientation logits ``(B, num_outputs)``."""

    def __init__(self, config: OrientationConfig | None = None) -> None:
        super().__init__()
        self.config = config or OrientationConfig()
        backbone = Dinov2Config(**self.config.backbone)
        self.dinov2 = Dinov2Model(backbone)
        self.down_sampler = OrientationHead(backbone.hidden_size, self.config.num_outputs)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        class_token = self.dinov2(pixel_values=pixel_values).last_hidden_state[:, 0]  # (B, hidden)
        return self.down_sampler(class_token)

    def decode(self, logits: torch.Tensor) -> Orientation:
        """Argmax angles and confidence of ``logits`` ``(B, num_outputs)`` (Orient Anything's ``get_3angle``)."""
        config = self.config
        azimuth, polar, rotation, confidence = logits.float().split(
            [config.azimuth_bins, config.polar_bins, config.rotation_bins, 2], dim=-1
        )
        return Orientation(
            azimuth.argmax(-1).cpu().numpy() * 360.0 / config.azimuth_bins,
            polar.argmax(-1).cpu().numpy() * 180.0 / config.polar_bins - 90.0,
            rotation.argmax(-1).cpu().numpy() * 180.0 / config.rotation_bins - 90.0,
            confidence.softmax(-1)[:, 0].cpu().numpy(),
        )

    @torch.no_grad()
    def estimate(self, crops: list[np.ndarray]) -> Orientation:
        """Orientations of ``(S, S, 3)`` uint8 object crops (:func:`object_crop`)."""
        device = next(self.parameters()).device
        pixels = preprocess_crops(crops, self.config).to(device)
        return self.decode(self(pixels))


def load_orient_anything(
    path: str | Path, config: OrientationConfig | None = None, device: str | torch.device = "cpu"
) -> OrientAnything:
    """The eval-mode model with the weights of an Orient Anything checkpoint (``dino_weight.pt``), strictly.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file and its missing and unexpected keys (after :func:`released_to_current`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Orient Anything checkpoint not found: {path}")
    state = {
        released_to_current(key): value
        for key, value in torch.load(path, map_location="cpu", weights_only=True).items()
    }
    model = OrientAnything(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} is not an Orient Anything checkpoint of {model.config}: missing {missing}, unexpected {unexpected}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def released_to_current(key: str) -> str:
    """A checkpoint key with the released (transformers 4) DINOv2 attention names in today's names."""
    for released, current in RELEASED_DINOV2_RENAMES:
        key = key.replace(released, current)
    return key


def object_crop(frame: np.ndarray, mask: np.ndarray, foreground_ratio: float) -> np.ndarray:
    """The object of ``mask`` ``(H, W)`` bool on ``frame`` ``(H, W, 3)`` uint8, alone on black, as a square
    ``(S, S, 3)`` uint8 in which it spans ``foreground_ratio`` of the side. ``ValueError`` on an empty mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        raise ValueError("cannot crop an object with an empty mask")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.where(mask[top:bottom, left:right, None], frame[top:bottom, left:right], 0).astype(np.uint8)
    side = max(crop.shape[:2])
    padded_side = max(side, int(round(side / foreground_ratio)))
    out = np.zeros((padded_side, padded_side, 3), np.uint8)
    y, x = (padded_side - crop.shape[0]) // 2, (padded_side - crop.shape[1]) // 2
    out[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    return out


def preprocess_crops(crops: list[np.ndarray], config: OrientationConfig) -> torch.Tensor:
    """``(B, 3, crop_size, crop_size)`` float: each crop's shortest side resized to ``resize_size`` (bicubic), the
    centre ``crop_size`` square cut out, ImageNet-normalised (the DINOv2 image processor's steps)."""
    images = []
    for crop in crops:
        height, width = crop.shape[:2]
        scale = config.resize_size / min(height, width)
        size = (max(config.crop_size, round(width * scale)), max(config.crop_size, round(height * scale)))
        image = np.asarray(Image.fromarray(crop).resize(size, Image.BICUBIC), dtype=np.float32) / 255.0
        top, left = (image.shape[0] - config.crop_size) // 2, (image.shape[1] - config.crop_size) // 2
        images.append(image[top : top + config.crop_size, left : left + config.crop_size])
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (B, 3, S, S)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def facing_from_azimuth(azimuth: np.ndarray, camera_poses: np.ndarray) -> np.ndarray:
    """``(T, 3)`` horizontal unit facing vectors in a z-up world of objects seen at ``azimuth`` ``(T,)`` degrees
    by cameras ``camera_poses`` ``(T, 4, 4)`` (camera-to-world, OpenCV axes): the front points at the camera
    (the horizontal part of its backward axis) turned ``azimuth`` towards the camera's left (module docstring)."""
    forward = camera_poses[:, :3, 2].copy()
    right = camera_poses[:, :3, 0].copy()
    forward[:, 2] = right[:, 2] = 0.0
    forward /= np.linalg.norm(forward, axis=1, keepdims=True).clip(1e-9)
    right /= np.linalg.norm(right, axis=1, keepdims=True).clip(1e-9)
    radians = np.radians(np.asarray(azimuth, dtype=np.float64))[:, None]
    facing = -np.cos(radians) * forward - np.sin(radians) * right
    return facing / np.linalg.norm(facing, axis=1, keepdims=True).clip(1e-9)

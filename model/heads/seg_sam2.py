"""SAM2 prompted by any sparse prompt tokens: masks on every frame of a video, and SAM2's mask losses.

The segmentation head (:mod:`model.heads.seg`) turns each ``[SEG]`` hidden state into ``K`` tokens of
SAM2's prompt space ``(K, C_sam)``. On the *conditioning* frames those tokens are SAM2's sparse prompt;
the other frames get their masks from SAM2's memory (``propagation="memory"``), exactly as SAM2
tracks a clicked object. Conditioning frames are chosen per object among the frames the language
model saw, by object score (``cond_frames="object_score"``) so that a target absent from the first
frame is still found. ``propagation="independent"`` prompts every frame on its own instead (what
RGA3 does), for comparison. Objects (several ``[SEG]``) ride in SAM2's batch dimension.

Training segments a batch of encoded videos with gradients (:meth:`PromptableVideoSAM2.segment_videos`);
inference keeps a :class:`~model.heads.sam2_video.VideoState` per video (:meth:`~PromptableVideoSAM2.init_state`,
:meth:`~PromptableVideoSAM2.propagate`), shaped like SAM2's own video predictor, so that frames are
encoded in chunks and once per video, whatever the number of expressions. Both run
:func:`~model.heads.sam2_video.segment_objects`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from sam2.modeling.sam.transformer import RoPEAttention
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

from model.heads.location_prompt import LOCATION_PROMPTS
from model.heads.sam2_video import (
    FrameFeatures,
    PreparedFeatures,
    VideoState,
    compute_dtype,
    prepare_features,
    segment_objects,
    upscale_mask_logits,
)
from model.sam2_builder import build_sam2
from utils.video.model_inputs import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class SegHeadConfig:
    """Everything the segmentation head does; stored as a dict in ``UniGRConfig.seg``."""

    enabled: bool = True
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
    sam2_overrides: dict = field(default_factory=dict)
    num_prompt_tokens: int = 1
    propagation: str = "memory"  # "memory" | "independent"
    num_cond_frames: int = 1  # frames per object prompted by [SEG] when propagating by memory
    cond_frames: str = "object_score"  # "object_score": the candidates scoring highest | "first": spread from the first
    encode_chunk_size: int = 8  # frames per image-encoder batch at inference
    seg_hidden: str = "self"  # "self": the [SEG] token's last hidden state; "previous": the token before it
    location_prompt: str = "off"  # "off" | "mask" | "click" | "mask+click": the [SEG] location map as SAM2 prompt
    location_dim: int = 128  # width of the location map's query/key projections
    location_weight: float = 1.0  # weight of the location map's loss "loc" (BCE + ranking)
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    objectness_weight: float = 1.0

    @classmethod
    def from_dict(cls, values: dict | None) -> SegHeadConfig:
        values = dict(values or {})
        if values.pop("ce_weight", 1.0) != 1.0:  # folders saved before the CE weight moved to the model
            raise ValueError("seg.ce_weight is now the model-level ce_weight (UniGRConfig.ce_weight)")
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown seg head options {sorted(unknown)}; known: {sorted(names)}")
        config = cls(**values)
        if config.propagation not in ("memory", "independent"):
            raise ValueError(f"seg.propagation must be 'memory' or 'independent', got {config.propagation!r}")
        if config.seg_hidden not in ("self", "previous"):
            raise ValueError(f"seg.seg_hidden must be 'self' or 'previous', got {config.seg_hidden!r}")
        if config.cond_frames not in ("object_score", "first"):
            raise ValueError(f"seg.cond_frames must be 'object_score' or 'first', got {config.cond_frames!r}")
        if config.location_prompt not in LOCATION_PROMPTS:
            raise ValueError(f"seg.location_prompt must be one of {LOCATION_PROMPTS}, got {config.location_prompt!r}")
        for name in ("num_cond_frames", "encode_chunk_size", "location_dim"):
            if getattr(config, name) < 1:
                raise ValueError(f"seg.{name} must be at least 1, got {getattr(config, name)}")
        return config

    def to_dict(self) -> dict:
        return asdict(self)


class PromptableVideoSAM2(nn.Module):
    """SAM2 that takes any sparse prompt tokens on conditioning frames and propagates by memory."""

    def __init__(self, config: SegHeadConfig):
        super().__init__()
        self.config = config
        self.sam2: SAM2Base = build_sam2(config.sam2_config, config.sam2_overrides)

    def rebuild_rope_tables(self) -> None:
        """Recompute the rotary tables of SAM2's memory attention (plain attributes, not weights).

        A model built on the meta device (as ``from_pretrained`` does) leaves them empty.
        """
        for module in self.sam2.modules():
            if isinstance(module, RoPEAttention):
                side = math.isqrt(module.freqs_cis.shape[0])  # square feature maps, as SAM2 assumes
                module.freqs_cis = module.compute_cis(end_x=side, end_y=side)

    @property
    def image_size(self) -> int:
        return self.sam2.image_size

    def click_prompts(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """SAM2's own encoding of clicks/boxes: ``(O, P, 2)`` pixel coords, ``(O, P)`` labels -> ``(O, P+1, C)``.

        Labels follow SAM2: 1 positive, 0 negative, 2/3 box corners, -1 padding.
        """
        sparse, _ = self.sam2.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse

    def encode_frames(self, frames: torch.Tensor) -> dict:
        """SAM2's image encoder on ``(T, 3, S, S)`` frames, float in [0, 1] or uint8; returns SAM2's backbone output.

        The frames are cast to the weights' dtype (a bf16 head takes float32 frames).
        """
        if frames.dtype == torch.uint8:  # 4x less to keep for a long video (SAM2's frames are rounded to uint8)
            frames = frames.float() / 255
        mean = frames.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = frames.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        frames = (frames - mean) / std
        return self.sam2.forward_image(frames.to(compute_dtype(self.sam2)))

    def segment_videos(
        self,
        backbone_out: dict,
        num_frames: int,
        prompts: torch.Tensor,
        video_index: torch.Tensor,
        candidates: list[int] | None = None,
        location: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masks of ``O`` objects on all ``T`` frames of their videos (training: keeps gradients).

        Args:
            backbone_out: ``encode_frames`` output for ``V`` videos of ``T`` frames, video-major ``(V*T, ...)``.
            num_frames: ``T``.
            prompts: ``(O, K, C_sam)`` prompt tokens, one row per object.
            video_index: ``(O,)`` which of the ``V`` videos each object lives in.
            candidates: frame indices the prompt may condition (the frames the language model saw);
                ``None``: every frame.
            location: ``(O, len(candidates), h, w)`` location-map logits (``config.location_prompt``).
        Returns:
            ``{"mask_logits": (O, T, S, S), "object_logits": (O, T)}`` float32; S = SAM2 image size.
        """
        feats, pos, feat_sizes = prepare_features(self.sam2, backbone_out)  # each (HW, V*T, C)

        def frame_features(t: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            return [x.unflatten(1, (-1, num_frames))[:, :, t] for x in feats], [
                x.unflatten(1, (-1, num_frames))[:, :, t] for x in pos
            ]  # each (HW, V, C)

        out = self._segment(frame_features, feat_sizes, num_frames, prompts, video_index, candidates, location)
        out["mask_logits"] = upscale_mask_logits(out["mask_logits"], (self.image_size,) * 2)
        return out

    def init_state(
        self, frames: torch.Tensor, storage_device: torch.device | str | None = None, chunk_size: int | None = None
    ) -> VideoState:
        """Start inference on one video: ``(T, 3, S, S)`` frames, float in [0, 1] or uint8, on any device
        (kept as given and moved to the head's device a chunk at a time; nothing is encoded yet).

        Args:
            storage_device: where encoded features are cached; default the frames' device.
            chunk_size: frames per image-encoder batch; default ``config.encode_chunk_size``.
        """
        return VideoState(
            frames=frames,
            chunk_size=chunk_size or self.config.encode_chunk_size,
            storage_device=torch.device(storage_device or frames.device),
        )

    @torch.no_grad()
    def propagate(
        self,
        state: VideoState,
        prompts: torch.Tensor,
        candidates: list[int] | None = None,
        location: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masks of ``O`` prompted objects on every frame of ``state``'s video; encodes only uncached frames.

        Args:
            prompts: ``(O, K, C_sam)`` prompt tokens.
            candidates: frame indices the prompt may condition (the frames the language model saw);
                ``None``: every frame.
            location: ``(O, len(candidates), h, w)`` location-map logits (``config.location_prompt``).
        Returns:
            ``{"mask_logits": (O, T, S/4, S/4), "object_logits": (O, T)}``, float32 on the CPU; resize the
            mask logits with :func:`~model.heads.sam2_video.upscale_mask_logits`.
        """
        device = self.sam2.no_mem_embed.device
        out = self._segment(
            lambda t: state.frame_features(t, self._prepared_features, device),
            state.feat_sizes,
            state.num_frames,
            prompts.to(device),
            torch.zeros(prompts.shape[0], dtype=torch.long),
            candidates,
            None if location is None else location.to(device),
        )
        return {name: value.cpu() for name, value in out.items()}

    def _prepared_features(self, frames: torch.Tensor) -> PreparedFeatures:
        """Encoded ``(n, 3, S, S)`` frames, flattened as SAM2's tracking reads them."""
        return prepare_features(self.sam2, self.encode_frames(frames))

    def _segment(
        self,
        frame_features: FrameFeatures,
        feat_sizes: list[tuple[int, int]],
        num_frames: int,
        prompts: torch.Tensor,
        video_index: torch.Tensor,
        candidates: list[int] | None,
        location: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """:func:`~model.heads.sam2_video.segment_objects` with this head's options."""
        return segment_objects(
            self.sam2,
            frame_features,
            feat_sizes,
            num_frames,
            prompts,
            video_index,
            list(range(num_frames)) if candidates is None else sorted(candidates),
            self.config.propagation,
            self.config.cond_frames,
            self.config.num_cond_frames,
            location,
            self.config.location_prompt,
        )


def mask_losses(
    mask_logits: torch.Tensor, object_logits: torch.Tensor, gt_masks: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-object BCE and DICE on frames where the object is present, objectness on every frame (as SAM2 trains).

    Args:
        mask_logits: ``(O, T, S, S)``; object_logits: ``(O, T)``; gt_masks: ``(O, T, S, S)`` in {0, 1}.
    Returns:
        ``bce``, ``dice`` (means over each object's present frames) and ``objectness`` (mean over
        frames), each ``(O,)``; callers sum them and divide by the number of objects.
    """
    gt = gt_masks.float()
    present = (gt.flatten(2).amax(2) > 0).float()  # (O, T)
    num_present = present.sum(1).clamp(min=1)  # (O,)
    bce = F.binary_cross_entropy_with_logits(mask_logits, gt, reduction="none").flatten(2).mean(2)
    prob = mask_logits.sigmoid().flatten(2)
    target = gt.flatten(2)
    dice = 1 - (2 * (prob * target).sum(2) + 1) / (prob.sum(2) + target.sum(2) + 1)  # (O, T)
    objectness = F.binary_cross_entropy_with_logits(object_logits, present, reduction="none")
    return {
        "bce": (bce * present).sum(1) / num_present,
        "dice": (dice * present).sum(1) / num_present,
        "objectness": objectness.mean(1),
    }

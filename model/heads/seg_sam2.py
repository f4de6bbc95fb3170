"""Segmentation head: ``[SEG]`` hidden states -> SAM2 prompt tokens -> masks on every frame.

Each ``[SEG]`` hidden state ``(D_llm,)`` goes through a small MLP into ``K`` tokens of SAM2's
prompt space ``(K, C_sam)``. On the *conditioning* frames those tokens are SAM2's sparse prompt;
the other frames get their masks from SAM2's memory (``propagation="memory"``), exactly as SAM2
tracks a clicked object. ``propagation="independent"`` prompts every frame on its own instead
(what RGA3 does), for comparison. Objects (several ``[SEG]``) ride in SAM2's batch dimension.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from sam2.modeling.sam.transformer import RoPEAttention
from sam2.modeling.sam2_base import NO_OBJ_SCORE, SAM2Base
from torch import nn

from model.sam2_builder import build_sam2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegHeadConfig:
    """Everything the segmentation head does; stored as a dict in ``UniGRConfig.seg``."""

    enabled: bool = True
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
    sam2_overrides: dict = field(default_factory=dict)
    num_prompt_tokens: int = 1
    propagation: str = "memory"  # "memory" | "independent"
    num_cond_frames: int = 1  # frames prompted by [SEG] when propagating, spread uniformly
    seg_hidden: str = "self"  # "self": the [SEG] token's last hidden state; "previous": the token before it
    ce_weight: float = 1.0
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    objectness_weight: float = 1.0

    @classmethod
    def from_dict(cls, values: dict | None) -> SegHeadConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(values or {}) - names
        if unknown:
            raise ValueError(f"unknown seg head options {sorted(unknown)}; known: {sorted(names)}")
        config = cls(**(values or {}))
        if config.propagation not in ("memory", "independent"):
            raise ValueError(f"seg.propagation must be 'memory' or 'independent', got {config.propagation!r}")
        if config.seg_hidden not in ("self", "previous"):
            raise ValueError(f"seg.seg_hidden must be 'self' or 'previous', got {config.seg_hidden!r}")
        return config

    def to_dict(self) -> dict:
        return asdict(self)


def conditioning_frames(num_frames: int, num_cond: int, propagation: str) -> list[int]:
    """Indices of the frames the ``[SEG]`` prompt is applied to: all of them, or ``num_cond`` spread evenly."""
    if propagation == "independent" or num_cond >= num_frames:
        return list(range(num_frames))
    if num_cond == 1:
        return [0]
    step = (num_frames - 1) / (num_cond - 1)
    return sorted({round(i * step) for i in range(num_cond)})


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
        """Run SAM2's image encoder on ``(T, 3, S, S)`` frames in [0, 1]; returns SAM2's backbone output."""
        mean = frames.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = frames.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        frames = (frames - mean) / std
        return self.sam2.forward_image(frames)

    def segment_videos(
        self, backbone_out: dict, num_frames: int, prompts: torch.Tensor, video_index: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Masks of ``O`` objects on all ``T`` frames of their videos, all objects in one SAM2 batch.

        Args:
            backbone_out: ``encode_frames`` output for ``V`` videos of ``T`` frames, video-major ``(V*T, ...)``.
            num_frames: ``T``.
            prompts: ``(O, K, C_sam)`` prompt tokens, one row per object.
            video_index: ``(O,)`` which of the ``V`` videos each object lives in.
        Returns:
            ``{"mask_logits": (O, T, S, S), "object_logits": (O, T)}``; S = SAM2 image size.
        """
        sam = self.sam2
        _, feats, pos, feat_sizes = sam._prepare_backbone_features(backbone_out)  # each (HW, V*T, C)
        cond = conditioning_frames(num_frames, self.config.num_cond_frames, self.config.propagation)
        use_memory = self.config.propagation == "memory" and len(cond) < num_frames
        video_index = video_index.to(feats[-1].device)

        def frame_features(t: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            columns = video_index * num_frames + t  # (O,): frame t of each object's video
            return [x[:, columns] for x in feats], [x[:, columns] for x in pos]  # each (HW, O, C)

        output_dict: dict[str, dict[int, dict]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        outputs: dict[int, dict] = {}
        for t in cond:
            frame_feats, frame_pos = frame_features(t)
            out = self._decode_prompted_frame(t, frame_feats, frame_pos, feat_sizes, prompts, output_dict)
            if use_memory:
                out["maskmem_features"], out["maskmem_pos_enc"] = sam._encode_new_memory(
                    frame_feats, feat_sizes, out["pred_masks_high_res"], out["object_score_logits"], False
                )
            output_dict["cond_frame_outputs"][t] = outputs[t] = out

        later = [(t, False) for t in range(cond[0] + 1, num_frames) if t not in outputs]
        earlier = [(t, True) for t in range(cond[0] - 1, -1, -1)]
        for t, reverse in later + earlier:
            frame_feats, frame_pos = frame_features(t)
            current, sam_outputs, _, _ = sam._track_step(
                t, False, frame_feats, frame_pos, feat_sizes, None, None, output_dict, num_frames, reverse, None
            )
            _, _, _, low_res, high_res, obj_ptr, object_logits = sam_outputs
            current.update(
                pred_masks=low_res, pred_masks_high_res=high_res, obj_ptr=obj_ptr, object_score_logits=object_logits
            )
            sam._encode_memory_in_output(frame_feats, feat_sizes, None, True, high_res, object_logits, current)
            output_dict["non_cond_frame_outputs"][t] = outputs[t] = current

        order = range(num_frames)
        return {
            "mask_logits": torch.stack([outputs[t]["pred_masks_high_res"][:, 0] for t in order], dim=1),
            "object_logits": torch.stack([outputs[t]["object_score_logits"][:, 0] for t in order], dim=1),
        }

    def _decode_prompted_frame(
        self,
        frame_idx: int,
        frame_feats: list[torch.Tensor],
        frame_pos: list[torch.Tensor],
        feat_sizes: list[tuple[int, int]],
        prompts: torch.Tensor,
        output_dict: dict,
    ) -> dict[str, torch.Tensor]:
        """SAM2's mask decoder on a conditioning frame with ``prompts`` as the sparse prompt.

        Mirrors ``SAM2Base._forward_sam_heads`` (single-mask output, object-score gating, object
        pointer) with language tokens in place of encoded clicks.
        """
        sam = self.sam2
        num_objects = prompts.shape[0]
        pix_feat = sam._prepare_memory_conditioned_features(
            frame_idx, True, frame_feats[-1:], frame_pos[-1:], feat_sizes[-1:], output_dict, 1
        )  # (O, C, H/16, W/16)
        high_res = [
            x.permute(1, 2, 0).reshape(num_objects, x.shape[2], *size)
            for x, size in zip(frame_feats[:-1], feat_sizes[:-1])
        ]
        prompt_encoder = sam.sam_prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            num_objects, -1, *prompt_encoder.image_embedding_size
        )
        low_res, _, sam_tokens, object_logits = sam.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=prompts.to(pix_feat.dtype),
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=False,
            high_res_features=high_res if sam.use_high_res_features_in_sam else None,
        )  # low_res: (O, 1, S/4, S/4), object_logits: (O, 1)
        obj_ptr = sam.obj_ptr_proj(sam_tokens[:, 0])
        if sam.pred_obj_scores:
            appearing = (object_logits > 0).float()
            low_res = torch.where(appearing[:, None, None] > 0, low_res, NO_OBJ_SCORE)
            if sam.fixed_no_obj_ptr:
                obj_ptr = appearing * obj_ptr
            obj_ptr = obj_ptr + (1 - appearing) * sam.no_obj_ptr
        low_res = low_res.float()
        high_res_masks = F.interpolate(low_res, size=(sam.image_size,) * 2, mode="bilinear", align_corners=False)
        return {
            "point_inputs": None,
            "mask_inputs": None,
            "pred_masks": low_res,
            "pred_masks_high_res": high_res_masks,
            "obj_ptr": obj_ptr,
            "object_score_logits": object_logits,
        }


class SAM2SegHead(PromptableVideoSAM2):
    """SAM2 plus the projection from LLM ``[SEG]`` hidden states into its prompt space."""

    def __init__(self, config: SegHeadConfig, llm_hidden_size: int):
        super().__init__(config)
        prompt_dim = self.sam2.sam_prompt_embed_dim
        self.text_hidden_proj = nn.Sequential(
            nn.Linear(llm_hidden_size, llm_hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(llm_hidden_size, prompt_dim * config.num_prompt_tokens),
        )

    def prompts_from_hidden(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        """``(O, D_llm)`` [SEG] hidden states -> ``(O, K, C_sam)`` SAM2 sparse prompt tokens."""
        prompts = self.text_hidden_proj(seg_hidden)
        return prompts.view(seg_hidden.shape[0], self.config.num_prompt_tokens, -1)


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

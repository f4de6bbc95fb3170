"""SAM2 video segmentation from arbitrary prompt tokens: one propagation path for training and inference.

The prompt (``(O, K, C)`` tokens per object, e.g. a projected ``[SEG]``) is decoded on the
*conditioning* frames; SAM2's memory carries each object to the other frames, forwards from the
earliest conditioning frame and backwards before it. Conditioning frames are chosen per object among
*candidate* frames (the frames a language model saw): the ``num_cond`` with the highest object score
when the prompt is decoded on each candidate (``"object_score"``), or spread evenly from the first
candidate (``"first"``). Objects whose frame sets differ are tracked in separate SAM2 batches.

Features reach the propagation through a :data:`FrameFeatures` callable, so a training batch (all
frames encoded with gradients) and a :class:`VideoState` (frames encoded lazily in chunks and
cached across prompts, as SAM2's own ``SAM2VideoPredictor`` keeps its ``inference_state``) share it.
Masks come out at SAM2's low resolution ``S/4``; :func:`upscale_mask_logits` resizes them as SAM2 does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE, SAM2Base

from model.heads.location_prompt import dense_prompt, peak_clicks

FrameFeatures = Callable[[int], tuple[list[torch.Tensor], list[torch.Tensor]]]
"""Frame ``t`` -> (features, position encodings), per feature level ``(HW_l, V, C_l)``: frame ``t`` of ``V`` videos."""

PreparedFeatures = tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]
"""SAM2's flattened image features of ``n`` frames: per level ``(HW_l, n, C_l)`` features and position
encodings, and the ``(H_l, W_l)`` sizes (``SAM2Base._prepare_backbone_features``)."""


@dataclass
class VideoState:
    """One video as SAM2 inference sees it; prepared image features are cached across prompts.

    Attributes:
        frames: ``(T, 3, S, S)`` float in [0, 1] or uint8, on any device (moved chunk by chunk to compute).
        chunk_size: frames per image-encoder batch; frame ``t`` is encoded with its chunk
            ``[t // chunk_size * chunk_size, ...)``.
        storage_device: where the cached features live.
        features: frame -> per level ``(HW_l, 1, C_l)`` features, filled as frames are needed.
        pos: per level ``(HW_l, 1, C_l)`` position encodings (the same for every frame).
        feat_sizes: per level ``(H_l, W_l)``; empty until a frame is encoded, then filled in place.
    """

    frames: torch.Tensor
    chunk_size: int
    storage_device: torch.device
    features: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    pos: list[torch.Tensor] = field(default_factory=list)
    feat_sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    def frame_features(
        self, t: int, encode: Callable[[torch.Tensor], PreparedFeatures], device: torch.device
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Frame ``t``'s features and position encodings on ``device``, encoding its chunk on a cache miss."""
        if t not in self.features:
            start = t // self.chunk_size * self.chunk_size
            stop = min(start + self.chunk_size, self.num_frames)
            with torch.no_grad():
                feats, pos, feat_sizes = encode(self.frames[start:stop].to(device))
            self.feat_sizes[:] = feat_sizes  # in place: callers hold this list before the first encoding
            for i in range(stop - start):
                self.features[start + i] = [x[:, i : i + 1].to(self.storage_device) for x in feats]
            self.pos = [x[:, :1].clone().to(self.storage_device) for x in pos]  # drop the other n-1 copies
        return [x.to(device) for x in self.features[t]], [x.to(device) for x in self.pos]


def compute_dtype(sam: SAM2Base) -> torch.dtype:
    """The dtype SAM2's weights hold (that of the first layer frames meet)."""
    return sam.image_encoder.trunk.patch_embed.proj.weight.dtype


def prepare_features(sam: SAM2Base, backbone_out: dict) -> PreparedFeatures:
    """SAM2's flattened features of ``n`` encoded frames, in the weights' dtype.

    SAM2's FPN neck upsamples in float32, so with bf16 weights some levels would come out float32.
    """
    _, feats, pos, feat_sizes = sam._prepare_backbone_features(backbone_out)  # each (HW_l, n, C_l)
    dtype = compute_dtype(sam)
    return [x.to(dtype) for x in feats], [x.to(dtype) for x in pos], feat_sizes


def sam_precision(sam: SAM2Base) -> contextlib.AbstractContextManager:
    """Autocast to SAM2's weight dtype when it is not float32 (SAM2 mixes float32 masks into its layers)."""
    dtype = compute_dtype(sam)
    if dtype == torch.float32:
        return contextlib.nullcontext()  # leaves any autocast of the caller (mixed-precision training) on
    return torch.autocast(sam.no_mem_embed.device.type, dtype=dtype)


def upscale_mask_logits(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(O, T, h, w)`` low-resolution mask logits -> ``(O, T, *size)``, bilinear as SAM2 upsamples them."""
    num_objects, num_frames = mask_logits.shape[:2]
    if num_objects * num_frames == 0:
        return mask_logits.new_zeros(num_objects, num_frames, *size)
    flat = F.interpolate(mask_logits.flatten(0, 1)[:, None], size=size, mode="bilinear", align_corners=False)
    return flat.view(num_objects, num_frames, *size)


def evenly_spaced(candidates: list[int], num: int) -> list[int]:
    """``num`` of ``candidates`` spread evenly, the first and (for ``num > 1``) the last included."""
    if num >= len(candidates):
        return list(candidates)
    if num == 1:
        return [candidates[0]]
    step = (len(candidates) - 1) / (num - 1)
    return [candidates[i] for i in sorted({round(i * step) for i in range(num)})]


def best_scoring_frames(object_logits: torch.Tensor, candidates: list[int], num: int) -> list[tuple[int, ...]]:
    """Per object, the ``num`` candidates (ascending) where its prompt scores highest.

    Args:
        object_logits: ``(O, C)`` object scores of each object's prompt decoded on each candidate.
        candidates: the ``C`` candidate frame indices.
    """
    best = object_logits.float().topk(min(num, len(candidates)), dim=1).indices  # (O, k)
    return [tuple(sorted(candidates[i] for i in row)) for row in best.tolist()]


def decode_prompted_frame(
    sam: SAM2Base,
    feats: list[torch.Tensor],
    feat_sizes: list[tuple[int, int]],
    prompts: torch.Tensor,
    dense: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """SAM2's mask decoder on one frame with ``prompts`` ``(O, K, C)`` as the sparse prompt, no memory.

    Mirrors ``SAM2Base._forward_sam_heads`` (single-mask output, object-score gating, object
    pointer) with prompt tokens in place of encoded clicks. ``feats``: per level ``(HW_l, O, C_l)``.
    ``dense``: ``(O, C, H/16, W/16)`` dense prompt embeddings (an encoded mask prompt); ``None``: SAM2's
    "no mask" embedding.

    Returns:
        ``pred_masks`` ``(O, 1, S/4, S/4)`` float32, ``obj_ptr`` ``(O, C)``, ``object_score_logits`` ``(O, 1)``.
    """
    num_objects = prompts.shape[0]
    pix_feat = sam._prepare_memory_conditioned_features(
        0, True, feats[-1:], None, feat_sizes[-1:], {}, 1
    )  # (O, C, H/16, W/16); a first conditioning frame reads no memory
    high_res = [x.permute(1, 2, 0).reshape(num_objects, x.shape[2], *size) for x, size in zip(feats[:-1], feat_sizes)]
    prompt_encoder = sam.sam_prompt_encoder
    if dense is None:
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            num_objects, -1, *prompt_encoder.image_embedding_size
        )
    low_res, _, sam_tokens, object_logits = sam.sam_mask_decoder(
        image_embeddings=pix_feat,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=prompts.to(pix_feat.dtype),
        dense_prompt_embeddings=dense.to(pix_feat.dtype),
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
    return {"pred_masks": low_res.float(), "obj_ptr": obj_ptr, "object_score_logits": object_logits}


def _high_res(sam: SAM2Base, low_res: torch.Tensor) -> torch.Tensor:
    """``(B, 1, S/4, S/4)`` -> ``(B, 1, S, S)``, as ``SAM2Base._forward_sam_heads`` upsamples."""
    return F.interpolate(low_res, size=(sam.image_size,) * 2, mode="bilinear", align_corners=False)


def _track(
    sam: SAM2Base,
    features: FrameFeatures,
    feat_sizes: list[tuple[int, int]],
    num_frames: int,
    cond: dict[int, dict[str, torch.Tensor]],
) -> dict[int, dict[str, torch.Tensor]]:
    """Outputs on every frame of one batch of objects from their decoded conditioning frames ``cond``.

    ``features`` gives frame ``t`` for exactly this batch (per level ``(HW_l, B, C_l)``). Frames
    after the earliest conditioning frame are tracked forwards, those before it backwards.
    Memory (and only what memory reads) is kept per frame; high-resolution masks are not.
    """
    output_dict: dict[str, dict[int, dict]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    use_memory = len(cond) < num_frames and sam.num_maskmem > 0
    shared_pos_enc: list[list[torch.Tensor]] = []  # memory position encodings depend on shapes only

    def remember(out: dict, feats: list[torch.Tensor], high_res: torch.Tensor) -> dict:
        mem, pos_enc = sam._encode_new_memory(feats, feat_sizes, high_res, out["object_score_logits"], False)
        if not shared_pos_enc:
            shared_pos_enc.append(pos_enc)
        return {**out, "maskmem_features": mem, "maskmem_pos_enc": shared_pos_enc[0]}

    for t in sorted(cond):
        out = {"point_inputs": None, "mask_inputs": None, **cond[t]}
        if use_memory:
            out = remember(out, features(t)[0], _high_res(sam, out["pred_masks"]))
        output_dict["cond_frame_outputs"][t] = out
    first = min(cond)
    forwards = [(t, False) for t in range(first + 1, num_frames) if t not in cond]
    backwards = [(t, True) for t in range(first - 1, -1, -1)]
    for t, reverse in forwards + backwards:
        feats, pos = features(t)
        current, sam_outputs, _, _ = sam._track_step(
            t, False, feats, pos, feat_sizes, None, None, output_dict, num_frames, reverse, None
        )
        _, _, _, low_res, high_res, obj_ptr, object_logits = sam_outputs
        current.update(pred_masks=low_res, obj_ptr=obj_ptr, object_score_logits=object_logits)
        output_dict["non_cond_frame_outputs"][t] = remember(current, feats, high_res)
    return {**output_dict["cond_frame_outputs"], **output_dict["non_cond_frame_outputs"]}


def _frame_prompts(
    sam: SAM2Base,
    prompts: torch.Tensor,
    frame: int,
    candidates: list[int],
    location: torch.Tensor | None,
    location_prompt: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sparse prompt ``(O, K', C)`` and dense prompt (or ``None``) of every object on ``frame``."""
    if location is None or location_prompt == "off" or frame not in candidates:
        return prompts, None
    logits = location[:, candidates.index(frame)]  # (O, h, w)
    dense = dense_prompt(sam, logits) if "mask" in location_prompt else None
    if "click" in location_prompt:
        prompts = torch.cat([prompts, peak_clicks(sam, logits).to(prompts.dtype)], dim=1)
    return prompts, dense


def segment_objects(
    sam: SAM2Base,
    features: FrameFeatures,
    feat_sizes: list[tuple[int, int]],
    num_frames: int,
    prompts: torch.Tensor,
    video_index: torch.Tensor,
    candidates: list[int],
    propagation: str,
    cond_frames: str,
    num_cond: int,
    location: torch.Tensor | None = None,
    location_prompt: str = "off",
) -> dict[str, torch.Tensor]:
    """Low-resolution masks of ``O`` prompted objects on all ``T`` frames of their videos.

    Args:
        sam: SAM2 (its ``training`` flag picks SAM2's training or evaluation memory rules).
        features: frame ``t`` of each of the ``V`` videos (see :data:`FrameFeatures`).
        feat_sizes: per level ``(H_l, W_l)``.
        num_frames: ``T``.
        prompts: ``(O, K, C)`` prompt tokens.
        video_index: ``(O,)`` the video of each object.
        candidates: ascending frame indices the prompt may be decoded on.
        propagation: ``"memory"`` or ``"independent"`` (every frame prompted on its own, no memory).
        cond_frames: with memory, how each object's ``num_cond`` conditioning frames are chosen:
            ``"object_score"`` (:func:`best_scoring_frames` over the candidates) or ``"first"``
            (:func:`evenly_spaced` over the candidates; 1 = the first candidate).
        num_cond: conditioning frames per object.
        location: ``(O, len(candidates), h, w)`` location-map logits of each object on each candidate
            frame (:mod:`model.heads.location_prompt`), added to the prompt on the candidates it is
            decoded on, as ``location_prompt`` says (``"mask"``, ``"click"``, ``"mask+click"``).
    Returns:
        ``{"mask_logits": (O, T, S/4, S/4), "object_logits": (O, T)}``, float32.
    """
    num_objects = prompts.shape[0]
    if num_objects == 0:
        size = sam.image_size // 4
        return {
            "mask_logits": prompts.new_zeros(0, num_frames, size, size),
            "object_logits": prompts.new_zeros(0, num_frames),
        }

    def objects_at(t: int, objects: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats, pos = features(t)
        columns = video_index[objects].to(feats[-1].device)
        return [x[:, columns] for x in feats], [x[:, columns] for x in pos]  # each (HW_l, len(objects), C_l)

    everyone = torch.arange(num_objects)
    with sam_precision(sam):
        if propagation == "independent":
            decode_on = list(range(num_frames))
        elif cond_frames == "first":
            decode_on = evenly_spaced(candidates, num_cond)
        else:
            decode_on = list(candidates)
        decoded = {
            t: decode_prompted_frame(
                sam,
                objects_at(t, everyone)[0],
                feat_sizes,
                *_frame_prompts(sam, prompts, t, candidates, location, location_prompt),
            )
            for t in decode_on
        }
        if propagation == "memory" and cond_frames == "object_score":
            scores = torch.cat([decoded[t]["object_score_logits"] for t in decode_on], dim=1)  # (O, C)
            chosen = best_scoring_frames(scores, decode_on, num_cond)
        else:
            chosen = [tuple(decode_on)] * num_objects
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, frames in enumerate(chosen):
            groups.setdefault(frames, []).append(i)
        masks, objectness = [], []
        for frames, members in groups.items():
            objects = torch.tensor(members)
            cond = {t: {k: v[objects.to(v.device)] for k, v in decoded[t].items()} for t in frames}
            outputs = _track(sam, lambda t, objects=objects: objects_at(t, objects), feat_sizes, num_frames, cond)
            masks.append(torch.stack([outputs[t]["pred_masks"][:, 0] for t in range(num_frames)], dim=1))
            objectness.append(torch.stack([outputs[t]["object_score_logits"][:, 0] for t in range(num_frames)], dim=1))
    order = [i for members in groups.values() for i in members]
    restore = torch.tensor(order).argsort().to(masks[0].device)  # back to the prompts' order
    return {"mask_logits": torch.cat(masks)[restore].float(), "object_logits": torch.cat(objectness)[restore].float()}

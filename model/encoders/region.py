"""The region encoder: what a user points at (masks, boxes or points on frames) -> one LLM token per object.

VideoRefer / UniPixel style. A question names its k-th pointed-at object ``<object{k}><region>``;
the collator rasterises every region prompt to a mask (:func:`utils.data.collate.region_prompts_step`)
and this ``fill`` encoder writes the object's token into the k-th ``<region>`` placeholder:

1. on each prompted frame, the LLM's own visual tokens of that frame's temporal slot are averaged,
   weighted by how much of each merged token the prompt covers (mask pooling on Qwen's grid), and
   layer-normalised;
2. to that feature it adds a learned embedding of the slot (when), of the prompt's box (where: the
   visual tokens carry position only through rotary attention, so the box is what tells the LLM
   where the object is), of the mask's outline inside its box (its shape, finer than the merged
   grid: the mask cropped to its box and resized to :data:`SHAPE_GRID` squared cells, as Osprey's
   mask-aware extractor keeps the mask's own geometry), of its appearance (mean and spread of the
   pixels' colours inside the mask at the frame's full resolution: a merged token of a small video
   grid mixes the object with its surroundings, and the vision tower's attention mixes it with the
   whole frame) and of the prompt's kind (mask / box / points);
3. an MLP maps each prompted frame's vector into the LLM's embedding space, an embedding of the
   object's trajectory (which way its box moved from its first to its last prompted frame,
   :func:`trajectories`) is added to it, and the object's token is the mean over its prompted frames.

Images are one slot; several regions per question, on any frames, with or without overlays drawn on
the pixels. A sample whose ``<region>`` placeholders have no prompts at all (a text-only question)
keeps the placeholder's own embedding; prompts for a placeholder that is not in the text are an error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from model.input_assembly import AssemblyContext, InputEncoder, register_encoder
from model.visual_tokens import VisualTokens, visual_layouts
from utils.data.prompts import REGION_PLACEHOLDER

PROMPT_KINDS = ("mask", "box", "points")
"""``region_prompts["kinds"]`` values index this tuple."""

SHAPE_GRID = 8
"""The mask inside its box is resampled to ``SHAPE_GRID x SHAPE_GRID`` cells for the shape embedding."""


@register_encoder("region")
class RegionEncoder(InputEncoder):
    """Region prompts -> the embeddings of their ``<region>`` placeholders.

    Args:
        llm_hidden_size: D, the LLM's width.
        visual_tokens: where the visual tokens are (the builder passes the backbone's).
        hidden_size: the MLP's width (default D).
        max_slots: slots with their own time embedding; later slots share the last one.
    """

    kind = "fill"
    placeholder = REGION_PLACEHOLDER

    def __init__(
        self,
        llm_hidden_size: int,
        visual_tokens: VisualTokens,
        hidden_size: int | None = None,
        max_slots: int = 64,
    ):
        super().__init__()
        hidden_size = hidden_size or llm_hidden_size
        self.visual_tokens = visual_tokens
        self.visual_norm = nn.LayerNorm(llm_hidden_size)
        self.slot_embedding = nn.Embedding(max_slots, llm_hidden_size)
        self.kind_embedding = nn.Embedding(len(PROMPT_KINDS), llm_hidden_size)
        self.box_embedding = nn.Linear(4, llm_hidden_size)
        self.shape_embedding = nn.Linear(SHAPE_GRID * SHAPE_GRID, llm_hidden_size)
        self.trajectory_embedding = nn.Linear(4, llm_hidden_size)
        self.appearance_embedding = nn.Linear(6, llm_hidden_size)
        self.mlp = nn.Sequential(
            nn.LayerNorm(llm_hidden_size),
            nn.Linear(llm_hidden_size, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, llm_hidden_size),
        )

    @classmethod
    def from_options(cls, options: dict, llm_hidden_size: int, backbone_config=None) -> RegionEncoder:
        if backbone_config is None:
            raise ValueError("the region encoder needs the backbone config (its visual token ids and grid)")
        return cls(llm_hidden_size, VisualTokens.from_backbone_config(backbone_config), **options)

    def reset_new_parameters(self, std: float) -> None:
        # The geometry embeddings keep PyTorch's fan-in initialisation: their inputs are a few numbers in
        # [0, 1], and at the LLM's small ``std`` they would start drowned by the normalised visual feature.
        for linear in (self.box_embedding, self.shape_embedding, self.trajectory_embedding, self.appearance_embedding):
            linear.reset_parameters()
        for module in (self.slot_embedding, self.kind_embedding):
            nn.init.normal_(module.weight, std=std)
        for linear in (self.mlp[1], self.mlp[3]):
            nn.init.normal_(linear.weight, std=std)
            nn.init.zeros_(linear.bias)

    def region_tokens(
        self, visual: torch.Tensor, layout_grid: tuple[int, int, int], per_slot: int, prompts: dict
    ) -> torch.Tensor:
        """One sample: ``(N, D)`` visual states on ``(slots, h, w)`` and its collated prompts -> ``(R, D)``
        tokens for regions ``0 .. R-1`` (``R`` = the largest region index + 1)."""
        slots, height, width = layout_grid
        masks = prompts["masks"].to(visual.device, torch.float32)  # (P, S, S)
        coverage = F.adaptive_avg_pool2d(masks[:, None], (height, width)).flatten(1)  # (P, h*w)
        slot = (prompts["frames"].to(visual.device) // per_slot).clamp(max=slots - 1)  # (P,)
        tokens = visual.view(slots, height * width, -1)[slot]  # (P, h*w, D)
        weights = coverage / coverage.sum(1, keepdim=True).clamp(min=1e-6)
        pooled = torch.einsum("pn,pnd->pd", weights.to(tokens.dtype), tokens)  # (P, D)
        dtype = self.box_embedding.weight.dtype
        boxes = prompts["boxes"].to(visual.device, torch.float32)  # (P, 4) in [0, 1]
        size = masks.shape[-1]
        rois = torch.cat([torch.arange(len(boxes), device=boxes.device)[:, None].float(), boxes * size], 1)
        outline = roi_align(masks[:, None], rois, SHAPE_GRID, aligned=True).flatten(1)  # (P, SHAPE_GRID**2)
        slot_ids = slot.clamp(max=self.slot_embedding.num_embeddings - 1)
        regions = prompts["regions"].to(visual.device)
        vectors = (
            self.visual_norm(pooled.to(dtype))
            + self.slot_embedding(slot_ids)
            + self.kind_embedding(prompts["kinds"].to(visual.device))
            + self.box_embedding(boxes.to(dtype))
            + self.shape_embedding(outline.to(dtype))
            + self.appearance_embedding(prompts["appearance"].to(visual.device, dtype))
        )
        motion = trajectories(prompts["frames"].to(visual.device), regions, boxes).to(dtype)
        per_prompt = self.mlp(vectors) + self.trajectory_embedding(motion)  # (P, D)
        count = int(regions.max()) + 1
        sums = per_prompt.new_zeros(count, per_prompt.shape[1]).index_add(0, regions, per_prompt)
        totals = torch.bincount(regions, minlength=count).clamp(min=1)
        return sums / totals[:, None].to(sums.dtype)

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        batch_prompts = context.batch.get("region_prompts")
        if batch_prompts is None:
            return embeds
        placeholder = context.token_ids[self.placeholder]
        grids = {"video_grid_thw": context.video_grid_thw, "image_grid_thw": context.image_grid_thw}
        layouts = visual_layouts(context.input_ids, grids, self.visual_tokens)
        rows = []
        for row, prompts in enumerate(batch_prompts):
            if prompts is None:  # no prompts: its placeholders (if any) keep their own embedding
                rows.append(embeds[row])
                continue
            where = (context.input_ids[row] == placeholder).nonzero()[:, 0]
            if len(where) == 0:
                raise ValueError(f"batch row {row}: region prompts but no {self.placeholder} in the text")
            layout = layouts[row]
            if layout is None:
                raise ValueError(f"batch row {row}: region prompts need the sample's frames (it has no visual tokens)")
            visual = embeds[row, layout.positions]  # (N, D): the visual features just scattered there
            tokens = self.region_tokens(visual, layout.grid, layout.frames_per_slot, prompts)
            if tokens.shape[0] > len(where):
                raise ValueError(
                    f"batch row {row}: prompts for {tokens.shape[0]} regions but {len(where)} "
                    f"{self.placeholder} placeholders in the text"
                )
            missing = sorted(set(range(len(where))) - set(prompts["regions"].tolist()))
            if missing:
                raise ValueError(f"batch row {row}: no prompt for {self.placeholder} number(s) {missing}")
            rows.append(embeds[row].index_copy(0, where, tokens.to(embeds.dtype)))
        return torch.stack(rows)


TRAJECTORY_UNIT = 0.05
"""Box motion (in frame sizes) at which the trajectory input saturates to a unit direction."""


def trajectories(frames: torch.Tensor, regions: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(P,)`` frames, ``(P,)`` region ids, ``(P, 4)`` boxes -> ``(P, 4)``: for each prompt, its region's box on
    its last prompted frame minus its box on its first, divided by its largest coordinate change or by
    :data:`TRAJECTORY_UNIT`, whichever is larger (a direction for clear motion, small for jitter; zeros
    for a region given on one frame)."""
    out = torch.zeros_like(boxes)
    for region in regions.unique():
        members = (regions == region).nonzero()[:, 0]
        order = members[frames[members].argsort()]
        motion = boxes[order[-1]] - boxes[order[0]]
        out[members] = motion / motion.abs().max().clamp(min=TRAJECTORY_UNIT)
    return out

"""What the model reads of a 3D scene's object proposals, shared by the proposal grounding head and the proposal
encoder: token states pooled by each proposal's pixels, and each proposal's class name in the LLM's own embedding
space."""

from __future__ import annotations

import torch
from torch import nn


def pool_by_pixel_share(token_weights: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``(P, D)``: token states ``(N, D)`` averaged per proposal with ``token_weights`` ``(P, N)`` (the share of each
    token's pixels in the box, :class:`utils.scene3d.proposal_views.ProposalViews`); zeros for a box no pixel lies
    in."""
    weights = token_weights.to(states.dtype)
    return weights @ states / weights.sum(dim=1, keepdim=True).clamp(min=1e-6)


def class_name_embeddings(embeddings: nn.Module, label_ids: torch.Tensor) -> torch.Tensor:
    """``(P, D)``: the mean input embedding of each proposal's class-name tokens ``label_ids`` ``(P, K)``, -1 padded
    (the collator's ``proposal_label_ids``); zeros for a proposal without a name."""
    present = (label_ids >= 0)[..., None]
    tokens = embeddings(label_ids.clamp(min=0)) * present  # (P, K, D)
    return tokens.sum(dim=1) / present.sum(dim=1).clamp(min=1).to(tokens.dtype)

"""What an output head declares, so the model, the trainer and the module groups need no per-head code.

A head reads the LLM's last hidden states (and the batch) and produces an output kind: ``[SEG]`` ->
masks today; proposal scores, boxes as text and others later. Each head class declares

* :attr:`Head.name`: the model holds it as ``<name>_head`` and its config in ``UniGRConfig.<name>``;
* :attr:`Head.parameter_groups`: module groups (``model.groups`` in a run config) -> parameter-name
  prefixes inside the head, first match wins (:mod:`utils.training.trainable` reads them);
* :meth:`Head.counts`: what its losses average over, per micro-batch (the trainer sums them over the
  global batch and passes the totals back, as for the CE's label tokens);
* :meth:`Head.predict` and :meth:`Head.losses`: outputs and weighted loss terms, named in
  :attr:`Head.loss_names` (the model reports every name on every rank, zero where a batch has
  nothing for it, so ranks reduce the same metrics);
* :meth:`Head.idle_loss`: a zero loss through every trainable parameter, used when a micro-batch has
  nothing for the head, so every rank gives gradients to the same parameters (DeepSpeed ZeRO needs it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Head(nn.Module):
    """Base class of UniGR's output heads."""

    name: ClassVar[str]
    loss_names: ClassVar[tuple[str, ...]]
    parameter_groups: ClassVar[dict[str, tuple[str, ...]]]

    @classmethod
    def from_config(cls, values: dict | None, llm_hidden_size: int, model_config) -> Head | None:
        """The head for its ``UniGRConfig.<name>`` section, or ``None`` when it is unset or disabled."""
        raise NotImplementedError

    def after_load(self) -> None:
        """Rebuild derived (non-weight) state after ``from_pretrained`` built the model on the meta device."""

    def reset_new_parameters(self, std: float) -> None:
        """Initialise the parameters UniGR adds (pretrained parts keep theirs); ``std``: the LLM's init range."""

    def counts(self, batch: dict) -> dict[str, int]:
        """``{count name: value}`` of this micro-batch, e.g. ``{"num_objects_in_batch": 3}``."""
        raise NotImplementedError

    def predict(self, last_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict) -> dict | None:
        """The head's outputs for the batch, or ``None`` when no sample uses the head.

        Args:
            last_hidden: ``(B, L, D)`` LLM last hidden states; input_ids: ``(B, L)``.
            batch: the collated batch (typed fields, targets).
        """
        raise NotImplementedError

    def losses(self, outputs: dict, batch: dict, counts: dict[str, int | torch.Tensor]) -> dict[str, tuple]:
        """``{term: (value, weight)}``: each value a sum over the batch divided by its global count."""
        raise NotImplementedError

    def idle_loss(self, device: torch.device) -> torch.Tensor:
        """A zero-valued loss whose graph reaches every trainable parameter of the head."""
        raise NotImplementedError


HEADS: dict[str, type[Head]] = {}
"""Head name -> class; filled by :func:`register_head`."""


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator registering a head under its :attr:`Head.name`."""
    if cls.name in HEADS:
        raise ValueError(f"head {cls.name!r} is already registered")
    HEADS[cls.name] = cls
    return cls

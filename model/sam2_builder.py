"""Build a SAM2 model from an official `sam2` package config and load official checkpoints.

The architecture is data: a config name shipped with the ``sam2`` package (e.g.
``configs/sam2.1/sam2.1_hiera_l.yaml``) or a YAML path, plus dotted overrides that shrink or
adjust it. Weights come from an official ``sam2.1_hiera_*.pt`` file (``{"model": state_dict}``)
loaded strictly, so a wrong size fails loudly instead of running half-random.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sam2.modeling.sam2_base import SAM2Base


def resolve_sam2_config(config: str) -> Path:
    """Path of a SAM2 config: a file on disk, or a config name inside the installed ``sam2`` package."""
    path = Path(config)
    if path.is_file():
        return path
    packaged = Path(str(resources.files("sam2"))) / config
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(f"SAM2 config {config!r} is neither a file nor a config of the sam2 package")


def build_sam2(
    config: str,
    overrides: Mapping[str, object] | None = None,
    checkpoint: str | Path | None = None,
) -> SAM2Base:
    """Instantiate SAM2 from ``config`` with dotted ``overrides`` and, optionally, an official checkpoint.

    Args:
        config: a sam2 package config name or a YAML path.
        overrides: ``{"model.image_size": 128, ...}``, applied on top of the YAML.
        checkpoint: an official SAM2 ``.pt`` file; loaded strictly (missing or unexpected keys raise).
    """
    cfg = OmegaConf.load(resolve_sam2_config(config))
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    model = instantiate(cfg.model, _recursive_=True)
    if checkpoint is not None:
        load_sam2_checkpoint(model, checkpoint)
    return model


def load_sam2_checkpoint(model: SAM2Base, checkpoint: str | Path) -> None:
    """Strictly load an official SAM2 checkpoint (``{"model": state_dict}``) into ``model``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    mismatch = f"SAM2 checkpoint {checkpoint} does not match the configured model"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensor shapes differ: another model size
        raise RuntimeError(f"{mismatch}: {error}") from error
    if missing or unexpected:
        raise RuntimeError(
            f"{mismatch}: missing {sorted(missing)[:10]} ({len(missing)}), "
            f"unexpected {sorted(unexpected)[:10]} ({len(unexpected)})"
        )


def save_sam2_checkpoint(model: SAM2Base, path: str | Path) -> None:
    """Write ``model`` in the official checkpoint layout (``{"model": state_dict}``)."""
    torch.save({"model": model.state_dict()}, path)

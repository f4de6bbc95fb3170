"""Teach a (tiny) SAM2 to follow prompts: clicks, boxes or coarse location maps, masks on every frame.

Real UniGR starts from an official SAM2 that already follows prompts; a random tiny SAM2 does not,
and then its decoder ignores whatever ``[SEG]`` says. This recipe gives the quick start the same
starting point: it trains SAM2 alone and writes an official-format checkpoint (``{"model": state_dict}``)
that ``train.py`` loads strictly, like ``sam2.1_hiera_*.pt``. A batch is prompted either by a click or
a jittered box per object, or (``dense_prompt_prob``) by a coarse, noisy token-grid map of the object
given as SAM2's dense mask prompt — the form in which the segmentation head's location map
(:mod:`model.heads.location_prompt`) reaches SAM2 — with SAM2's padding point as the sparse prompt.

    python scripts/pretrain_sam2_prompts.py --config configs/quickstart_sam2_prompts.yaml [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.heads.location_prompt import location_targets  # noqa: E402
from model.heads.seg_sam2 import PromptableVideoSAM2, SegHeadConfig, mask_losses  # noqa: E402
from model.sam2_builder import load_sam2_checkpoint, save_sam2_checkpoint  # noqa: E402
from utils.data.collate import resize_masks  # noqa: E402
from utils.data.mixture import build_training_mixture  # noqa: E402
from utils.data.schema import Sample  # noqa: E402
from utils.training.config import config_from_command_line, save_config  # noqa: E402
from utils.training.distributed import init_distributed  # noqa: E402
from utils.training.trainer import TrainConfig, Trainer  # noqa: E402
from utils.video.model_inputs import sam2_frames  # noqa: E402

PADDING_LABEL = -1


COARSE_GRIDS = (4, 8, 32)
"""Grid sides the simulated location maps are drawn at: token grids (the tiny backbone's merged grid is 4x4)
and 32, the tiny SAM2's mask-prompt size, where the map is the object's own outline (teaches SAM2 to read it)."""


def coarse_location_maps(masks: torch.Tensor) -> torch.Tensor:
    """Noisy token-grid maps of ``(O, T, S, S)`` masks, as the location map gives them: ``(O, T, g, g)`` logits.

    The grid side ``g`` is drawn from :data:`COARSE_GRIDS`. Tokens an object covers score ``+a``, the
    others ``-a`` (``a`` uniform in [1, 8] per object), plus Gaussian noise; in a third of the maps one
    random token is also raised, as a map with a distractor is.
    """
    side = COARSE_GRIDS[int(torch.randint(len(COARSE_GRIDS), ()))]
    num_objects, num_frames = masks.shape[:2]
    targets = location_targets(masks.flatten(0, 1)[:, None], (1, side, side), 1)[:, 0]  # (O*T, g, g)
    amplitude = 1 + 7 * torch.rand(num_objects * num_frames, 1, 1, device=masks.device)
    logits = amplitude * (2 * targets - 1) + torch.randn_like(targets)
    distracted = torch.rand(num_objects * num_frames, device=masks.device) < 1 / 3
    index = torch.randint(side * side, (num_objects * num_frames,), device=masks.device)
    raised = amplitude[:, 0, 0] * torch.rand(num_objects * num_frames, device=masks.device)
    flat = logits.flatten(1)
    flat[distracted, index[distracted]] = raised[distracted]
    return flat.view(num_objects, num_frames, side, side)


def random_prompt(mask: torch.Tensor, box_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A positive click inside ``mask`` ``(S, S)`` or its jittered box: ``(2, 2)`` xy coords, ``(2,)`` labels.

    An empty mask gives two padding points (no prompt: the model must predict "no object").
    """
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return torch.zeros(2, 2), torch.full((2,), PADDING_LABEL)
    if torch.rand(()) < box_prob:
        box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        extent = (box[2:] - box[:2]).repeat(2)
        box = (box + 0.1 * extent * torch.randn(4)).clamp(0, mask.shape[-1])
        return box.view(2, 2), torch.tensor([2, 3])
    pick = torch.randint(len(xs), ())
    point = torch.stack([xs[pick], ys[pick]]).float() + 0.5
    return torch.stack([point, torch.zeros(2)]), torch.tensor([1, PADDING_LABEL])


class ClickCollator:
    """SAM2 frames and the target's masks; the first object of each sample is the one prompted."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, samples: list[Sample]) -> dict:
        return {
            "frames": [sam2_frames(s.frames, self.image_size, normalize=False) for s in samples],
            "masks": [resize_masks(s.masks, self.image_size)[:1] for s in samples],
        }


def click_step(
    model: torch.nn.Module, batch: dict, weights: SegHeadConfig, every_frame: bool, dense_prompt_prob: float
) -> tuple[torch.Tensor, dict]:
    """Random click, box or coarse-map prompts (one kind per batch); losses on all frames.

    ``every_frame``: each frame is prompted on its own (from its own mask), as SAM is trained on
    images; otherwise frame 0 of each video is prompted and memory carries the object on.
    """
    sam = model.module if hasattr(model, "module") else model
    masks = torch.cat(batch["masks"])  # (V, T, S, S)
    if every_frame:
        masks = masks.flatten(0, 1)[:, None]  # (V*T, 1, S, S): one-frame videos
    location = None
    if torch.rand(()) < dense_prompt_prob:
        coords = torch.zeros(masks.shape[0], 2, 2, device=masks.device)
        labels = torch.full((masks.shape[0], 2), PADDING_LABEL, device=masks.device)
        location = coarse_location_maps(masks)  # (O, T, g, g)
    else:
        prompts = [random_prompt(m[0].bool()) for m in masks]
        coords = torch.stack([c for c, _ in prompts]).to(masks.device)
        labels = torch.stack([lab for _, lab in prompts]).to(masks.device)
    out = sam.segment_videos(
        sam.encode_frames(torch.cat(batch["frames"])),
        masks.shape[1],
        sam.click_prompts(coords, labels),
        torch.arange(masks.shape[0]),
        location=location,
    )
    terms = {
        name: per_object.mean()
        for name, per_object in mask_losses(out["mask_logits"], out["object_logits"], masks).items()
    }
    loss = weights.bce_weight * terms["bce"] + weights.dice_weight * terms["dice"]
    loss = loss + weights.objectness_weight * terms["objectness"]
    return loss, {name: value.item() for name, value in terms.items()}


def main(argv: list[str] | None = None) -> Path:
    cfg = config_from_command_line(argv, __doc__)
    out_path = Path(cfg.sam2_output_checkpoint)
    env = init_distributed(cfg.device)
    if env.is_main:
        save_config(cfg, Path(cfg.output_dir) / "config.yaml")
    dataset = build_training_mixture(cfg.data, cfg.seed)
    torch.manual_seed(cfg.seed)
    seg_config = SegHeadConfig.from_dict(OmegaConf.to_container(cfg.model.seg))
    model = PromptableVideoSAM2(seg_config)
    if cfg.sam2_init_checkpoint:
        load_sam2_checkpoint(model.sam2, cfg.sam2_init_checkpoint)
    model.to(env.device)
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    Trainer(
        model,
        lambda m, b: click_step(m, b, seg_config, cfg.prompt_every_frame, cfg.dense_prompt_prob),
        dataset,
        ClickCollator(model.image_size),
        train_cfg,
        cfg.output_dir,
        env,
    ).fit()
    if env.is_main:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        save_sam2_checkpoint(model.sam2, out_path)
        print(f"saved {out_path}")
    return out_path


if __name__ == "__main__":
    main()

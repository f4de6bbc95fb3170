"""Train UniGR: ``torchrun --nproc_per_node=N train.py --config configs/<run>.yaml [key=value ...]``.

Also runs as plain ``python train.py ...`` (one process). The config names the model parts, the
data, the optimisation and ``output_dir``; the resolved config is written to ``output_dir``.
Re-running the same command resumes from the newest checkpoint in ``output_dir/checkpoints``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from model.builder import build_unigr, load_unigr
from utils.data.collate import IGNORE_INDEX, VideoChatCollator
from utils.data.mixture import build_training_mixture
from utils.training.config import load_config, save_config
from utils.training.distributed import init_distributed
from utils.training.trainable import configure_trainable, parameter_counts
from utils.training.trainer import TrainConfig, Trainer


def unigr_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward pass; the loss and its terms for logging (sums over the global batch's counts)."""
    out = model(**batch)
    terms = {"ce": out.ce_loss, "bce": out.bce_loss, "dice": out.dice_loss, "objectness": out.objectness_loss}
    return out.loss, {name: value.item() for name, value in terms.items() if value is not None}


def unigr_counts(batch: dict) -> dict[str, int]:
    """What UniGR's losses average over: label tokens (CE, after the one-token shift) and objects (masks)."""
    return {
        "num_items_in_batch": int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()),
        "num_objects_in_batch": sum(masks.shape[0] for masks in batch.get("gt_masks", [])),
    }


def build_model(model_cfg: DictConfig):
    """UniGR from a UniGR folder (``pretrained``) or from a backbone folder + SAM2 checkpoint."""
    if model_cfg.get("pretrained"):
        return load_unigr(model_cfg.pretrained, model_cfg.attn_implementation)
    return build_unigr(
        model_cfg.backbone_path,
        OmegaConf.to_container(model_cfg.seg),
        model_cfg.sam2_checkpoint,
        OmegaConf.to_container(model_cfg.lora) if model_cfg.get("lora") else None,
        model_cfg.attn_implementation,
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config YAML")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    env = init_distributed(cfg.device)
    output_dir = Path(cfg.output_dir)
    if env.is_main:
        save_config(cfg, output_dir / "config.yaml")

    dataset = build_training_mixture(cfg.data, cfg.seed)  # every dataset checked before any compute
    torch.manual_seed(cfg.seed)
    model, processor = build_model(cfg.model)
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    optimizer_groups = configure_trainable(
        model,
        OmegaConf.to_container(cfg.model.groups),
        train_cfg.lr,
        train_cfg.weight_decay,
        new_token_ids=[model.config.seg_token_id],
    )
    if train_cfg.gradient_checkpointing:
        model.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.to(env.device)
    if env.is_main:
        counts = parameter_counts(model)
        print(dataset.describe())
        print(f"{counts['trainable']:,} of {counts['total']:,} parameters train")

    collate = VideoChatCollator(processor, model.seg_head.image_size, cfg.data.video_fps)
    trainer = Trainer(
        model, unigr_step, dataset, collate, train_cfg, output_dir, env, optimizer_groups, count_fn=unigr_counts
    )
    trainer.fit()

    final = output_dir / "final"
    weights = trainer.engine.full_state_dict()
    if env.is_main:
        model.save_pretrained(final, state_dict=weights)
        processor.save_pretrained(final)
        print(f"saved {final}")
    if env.world_size > 1:
        torch.distributed.destroy_process_group()
    return final


if __name__ == "__main__":
    main()

"""Train UniGR: ``torchrun --nproc_per_node=N train.py --config configs/<run>.yaml [key=value ...]``.

Also runs as plain ``python train.py ...`` (one process). The config names the model parts, the
data, the optimisation and ``output_dir``; the resolved config is written to ``output_dir``.
Re-running the same command resumes from the newest checkpoint in ``output_dir/checkpoints``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from model.builder import add_encoders, add_grounding_head, build_unigr, load_unigr
from model.modeling_unigr import UniGRForConditionalGeneration
from model.sam2_builder import load_sam2_checkpoint
from model.visual_tokens import VisualTokens
from utils.data.collate import IGNORE_INDEX, SampleCollator
from utils.data.input_settings import InputSettings
from utils.data.mixture import build_training_mixture
from utils.data.packing import PackingCollator
from utils.training.config import config_from_command_line, save_config
from utils.training.distributed import init_distributed
from utils.training.routing_aid import RoutingTargetCollator, routing_counts, routing_step
from utils.training.trainable import cast_frozen, configure_trainable, parameter_counts
from utils.training.trainer import TrainConfig, Trainer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def unigr_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward pass; the loss and its terms for logging (sums over the global batch's counts)."""
    out = model(**batch)
    return out.loss, {name: value.item() for name, value in (out.losses or {}).items()}


def count_fn(model: UniGRForConditionalGeneration):
    """What UniGR's losses average over, per micro-batch: label tokens (CE, after the one-token shift)
    and each enabled head's own counts (e.g. objects for the mask losses)."""
    heads = [head for _, head in model.heads()]

    def counts(batch: dict) -> dict[str, int]:
        result = {"num_items_in_batch": int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())}
        for head in heads:
            result.update(head.counts(batch))
        return result

    return counts


def build_model(cfg: DictConfig, dtype: torch.dtype | None = None):
    """UniGR from a UniGR folder (``model.pretrained``, with ``model.seg`` / ``model.lora`` / ``model.encoders`` /
    ``model.grounding`` applied to it, and its SAM2 replaced by ``model.replace_sam2_checkpoint`` when set) or,
    without ``model.pretrained``, from a backbone folder + SAM2 checkpoint (``model.sam2_checkpoint``); the
    backbone is loaded in ``dtype`` (default: the run's compute dtype) and the data settings that shape inputs
    (``data.num_frames``, ...) are stored in its config. ``model.grounding`` (``{}``: the defaults) enables the
    proposal grounding head (:class:`~model.heads.proposal_grounding.GroundingHeadConfig`)."""
    model_cfg = cfg.model
    dtype = dtype or DTYPES[cfg.train.dtype]
    seg = OmegaConf.to_container(model_cfg.seg) if model_cfg.get("seg") is not None else None
    lora = OmegaConf.to_container(model_cfg.lora) if model_cfg.get("lora") else None
    encoders = OmegaConf.to_container(model_cfg.encoders) if model_cfg.get("encoders") else {}
    encoders = {name: options for name, options in encoders.items() if options is not None} or None  # null: off
    grounding = OmegaConf.to_container(model_cfg.grounding) if model_cfg.get("grounding") is not None else None
    if model_cfg.get("pretrained"):
        model, processor = load_unigr(model_cfg.pretrained, model_cfg.attn_implementation, dtype, seg=seg)
        if model_cfg.get("replace_sam2_checkpoint"):
            load_sam2_checkpoint(model.seg_head.sam2, model_cfg.replace_sam2_checkpoint)
        if encoders is not None:
            add_encoders(model, processor, encoders)
        if grounding is not None:
            add_grounding_head(model, processor, grounding)
        if lora is not None:
            if model.config.lora is not None and model.config.lora != lora:
                raise ValueError(f"model.lora {lora} differs from the pretrained model's adapters {model.config.lora}")
            if model.config.lora is None:
                model.config.lora = lora
                model._inject_lora(lora)
    else:
        model, processor = build_unigr(
            model_cfg.backbone_path,
            seg,
            model_cfg.sam2_checkpoint,
            lora,
            model_cfg.attn_implementation,
            dtype,
            encoders,
            grounding,
        )
    model.config.inputs = InputSettings.from_data_config(cfg.data).to_dict()
    return model, processor


def build_trainable_model(cfg: DictConfig, train_cfg: TrainConfig) -> tuple:
    """``(model, processor, optimizer_groups)``: :func:`build_model` with ``model.groups`` applied (what trains,
    at which learning rate) and frozen weights cast to the run's dtype (trained ones stay float32, the
    optimizer's master copy). Seeded by ``cfg.seed``, so every rank starts from the same weights."""
    torch.manual_seed(cfg.seed)
    model, processor = build_model(cfg)
    new_token_ids = [model.config.seg_token_id]
    if model.grounding_head is not None:
        new_token_ids.append(model.config.grd_token_id)
    optimizer_groups = configure_trainable(
        model,
        OmegaConf.to_container(cfg.model.groups),
        train_cfg.lr,
        train_cfg.weight_decay,
        new_token_ids=new_token_ids,
    )
    cast_frozen(model, DTYPES[train_cfg.dtype])
    return model, processor, optimizer_groups


def main(argv: list[str] | None = None) -> Path:
    cfg = config_from_command_line(argv, __doc__)
    if cfg.get("routing_aid") and cfg.data.get("pack_length"):
        sys.exit("routing_aid reads one sample per row: set data.pack_length: null")
    env = init_distributed(cfg.device)
    output_dir = Path(cfg.output_dir)
    if env.is_main:
        save_config(cfg, output_dir / "config.yaml")

    dataset = build_training_mixture(cfg.data, cfg.seed)  # every dataset checked before any compute
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    model, processor, optimizer_groups = build_trainable_model(cfg, train_cfg)
    torch.manual_seed(cfg.seed + env.rank)  # dropout differs between ranks; data order is seeded by index
    if train_cfg.gradient_checkpointing:
        model.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.to(env.device)
    if env.is_main:
        counts = parameter_counts(model)
        print(dataset.describe())
        print(f"{counts['trainable']:,} of {counts['total']:,} parameters train")

    collate = SampleCollator.for_model(model, processor)
    if cfg.data.get("pack_length"):
        collate = PackingCollator(collate, int(cfg.data.pack_length))
        if env.is_main:
            print(f"sequence packing: each batch's samples back to back in rows of <= {cfg.data.pack_length} tokens")
    step, counts = unigr_step, count_fn(model)
    aid = cfg.get("routing_aid")
    if aid:  # supervised attention from the answer to its box (utils/training/routing_aid.py); nothing is saved
        tokens = VisualTokens.from_backbone_config(model.config.backbone_config)
        collate = RoutingTargetCollator(collate, tokens, processor.tokenizer)
        step, counts = routing_step(unigr_step, int(aid.layer), float(aid.weight)), routing_counts(counts)
        if env.is_main:
            print(f"routing aid: layer {aid.layer}'s attention pulled to what answers are about (weight {aid.weight})")
    trainer = Trainer(model, step, dataset, collate, train_cfg, output_dir, env, optimizer_groups, count_fn=counts)
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


def exit_without_teardown() -> None:
    """End a process of a multi-process run once its work is written: flush the streams and leave at once.

    Interpreter teardown of a torchrun worker after ``destroy_process_group`` sometimes aborts in a C++ thread
    destructor (``terminate called without an active exception``, SIGABRT), failing a run whose work is done;
    everything is already saved and closed here (checkpoints, the final folder, TensorBoard).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_without_teardown()

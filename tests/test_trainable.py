"""What trains: module groups, their modes, learning rates, weight-decay rules and new-token rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.builder import build_unigr
from utils.training.distributed import DistEnv
from utils.training.trainable import BACKBONE_GROUPS, configure_trainable, group_of, group_prefixes
from utils.training.trainer import TrainConfig, Trainer, warmup_cosine

FULL = {group: {"mode": "full"} for group in group_prefixes()}


@pytest.fixture()
def fresh_model(tiny_parts, tiny_cfg):
    model, _ = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"])
    return model


def test_every_parameter_belongs_to_one_nonempty_group(fresh_model) -> None:
    groups = {group_of(name) for name, _ in fresh_model.named_parameters()}
    heads = {group for _, head in fresh_model.heads() for group in type(head).parameter_groups}
    assert groups == set(BACKBONE_GROUPS) | heads  # no encoder on; only the heads the model has
    assert group_of("backbone.model.visual.merger.mlp.0.weight") == "merger"
    assert group_of("backbone.model.language_model.embed_tokens.weight") == "embeddings"
    with pytest.raises(ValueError, match="no module group"):
        group_of("geometry.qformer.weight")


def test_groups_get_their_own_learning_rates_and_decay_rules(fresh_model) -> None:
    groups = {**FULL, "seg_proj": {"mode": "full", "lr": 1e-3, "weight_decay": 0.1}, "vision": {"mode": "frozen"}}
    optimizer_groups = configure_trainable(fresh_model, groups, lr=1e-5, weight_decay=0.05, new_token_ids=[1])
    by_name = {g["name"]: g for g in optimizer_groups}
    assert by_name["seg_proj"]["lr"] == 1e-3 and by_name["seg_proj"]["weight_decay"] == 0.1
    assert by_name["seg_proj/no_decay"]["weight_decay"] == 0.0  # biases
    assert by_name["llm"]["lr"] == 1e-5 and by_name["llm"]["weight_decay"] == 0.05
    assert all(p.dim() == 1 for p in by_name["llm/no_decay"]["params"])  # norms
    assert "vision" not in by_name and "vision/no_decay" not in by_name
    vision = [p for n, p in fresh_model.named_parameters() if group_of(n) == "vision"]
    assert vision and not any(p.requires_grad for p in vision)


def test_group_learning_rates_follow_the_schedule(fresh_model, tmp_path: Path) -> None:
    groups = {**FULL, "seg_proj": {"mode": "full", "lr": 1e-3}}
    optimizer_groups = configure_trainable(fresh_model, groups, lr=1e-4, weight_decay=0.0, new_token_ids=[1])
    cfg = TrainConfig(max_steps=10, warmup_steps=4, min_lr_ratio=0.1, num_workers=0)
    trainer = Trainer(
        fresh_model, None, [0], None, cfg, tmp_path, DistEnv(0, 1, 0, torch.device("cpu")), optimizer_groups
    )
    for step in range(6):
        rates = trainer.engine.learning_rates()
        scale = warmup_cosine(step, 4, 10, 0.1)
        assert rates["seg_proj"] == pytest.approx(1e-3 * scale) and rates["llm"] == pytest.approx(1e-4 * scale)
        trainer.engine.step()


def test_new_tokens_mode_trains_only_the_added_rows(fresh_model) -> None:
    seg_id = fresh_model.config.seg_token_id
    groups = {**FULL, "embeddings": {"mode": "new_tokens"}}
    optimizer_groups = configure_trainable(fresh_model, groups, lr=1e-2, weight_decay=0.1, new_token_ids=[seg_id])
    embedding = fresh_model.get_input_embeddings().weight
    output = fresh_model.backbone.lm_head.weight
    before = embedding.detach().clone(), output.detach().clone()
    optimizer = torch.optim.AdamW(optimizer_groups)
    ids = torch.tensor([[seg_id, 3, 4, seg_id, 5]])
    for _ in range(2):
        loss = fresh_model.backbone(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for weights, old in zip((embedding, output), before):
        changed = (weights.detach() != old).any(1).nonzero().flatten().tolist()
        assert changed == [seg_id]


def test_lora_mode_trains_adapters_and_needs_lora_settings(tiny_parts, tiny_cfg, fresh_model) -> None:
    with pytest.raises(ValueError, match="model.lora must be set"):
        configure_trainable(fresh_model, {**FULL, "llm": {"mode": "lora"}}, 1e-4, 0.0, [1])
    with pytest.raises(ValueError, match="LoRA adapters exist on the LLM only"):
        configure_trainable(fresh_model, {**FULL, "vision": {"mode": "lora"}}, 1e-4, 0.0, [1])
    model, _ = build_unigr(tiny_parts["backbone"], tiny_cfg["seg"], tiny_parts["sam2"], lora={"r": 4})
    configure_trainable(model, {**FULL, "llm": {"mode": "lora"}}, 1e-4, 0.0, [1])
    llm = {n: p.requires_grad for n, p in model.named_parameters() if group_of(n) == "llm"}
    assert all(trains == ("lora_" in name) for name, trains in llm.items())
    assert any(llm.values())

"""merge_lora.py: a run's checkpoint (DDP, DeepSpeed ZeRO-3 shards, or final/) becomes one LoRA-free
Hugging Face folder whose outputs equal the unmerged model's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import save_model
from test_engines import HAS_DEEPSPEED, run_group, zero_config

import merge_lora
from model.builder import load_unigr
from train import build_model
from utils.data.collate import SampleCollator
from utils.data.mevis import MeViSDataset
from utils.training.config import load_config, save_config
from utils.training.distributed import DistEnv
from utils.training.engines import DeepSpeedEngine
from utils.training.trainable import configure_trainable

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
CHECKPOINT = "step_0000001"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_parts: dict[str, Path]) -> Path:
    """A run folder as train.py leaves it: the resolved config of a LoRA run on the tiny parts."""
    overrides = [
        "model.pretrained=null",
        f"model.backbone_path={tiny_parts['backbone']}",
        f"model.sam2_checkpoint={tiny_parts['sam2']}",
        "model.lora={r: 4, alpha: 8}",
    ]
    if OmegaConf.select(load_config(QUICKSTART), "model.groups.llm.mode") is not None:
        overrides.append("model.groups.llm.mode=lora")
    run = tmp_path_factory.mktemp("run")
    save_config(load_config(QUICKSTART, overrides), run / "config.yaml")
    return run


def _trained_model(run: Path):
    """The run's model, seeded, with non-zero LoRA B matrices (fresh ones would make the merge a no-op)."""
    torch.manual_seed(0)
    model, processor = build_model(load_config(run / "config.yaml"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    return model.eval(), processor


def _outputs(model, processor, samples) -> tuple[torch.Tensor, list[torch.Tensor]]:
    batch = SampleCollator(processor, model.seg_head.image_size)(samples)
    with torch.no_grad():
        out = model(**batch)
    return out.logits, out.pred_masks


def _check_merged(unmerged: tuple, run: Path, checkpoint: str, samples, out: Path) -> None:
    """Merge ``checkpoint`` of ``run`` and compare the merged folder with the ``(model, processor)`` it holds."""
    model, processor = unmerged
    merge_lora.main(["--run-dir", str(run), "--checkpoint", checkpoint, "--out", str(out)])
    merged, merged_processor = load_unigr(out)
    assert merged.config.lora is None
    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert not [k for k in keys if "lora_" in k] and any(k.startswith("seg_head.sam2.") for k in keys)
    q_proj = "backbone.model.language_model.layers.0.self_attn.q_proj"
    assert not torch.allclose(
        merged.state_dict()[f"{q_proj}.weight"], model.state_dict()[f"{q_proj}.base_layer.weight"]
    )
    expected_logits, expected_masks = _outputs(model, processor, samples)
    logits, masks = _outputs(merged.eval(), merged_processor, samples)
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(masks, expected_masks, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def samples(mevis_root: Path) -> list:
    dataset = MeViSDataset(mevis_root, "train", num_frames=4, train=True, expressions_per_sample=2)
    return [dataset[0], dataset[5]]


def test_merge_ddp_checkpoint(run_dir: Path, samples, tmp_path: Path) -> None:
    unmerged = _trained_model(run_dir)
    checkpoint = run_dir / "checkpoints" / CHECKPOINT
    checkpoint.mkdir(parents=True)
    save_model(unmerged[0], str(checkpoint / "model.safetensors"))  # what DDPEngine.save writes
    _check_merged(unmerged, run_dir, CHECKPOINT, samples, tmp_path / "merged")


def test_merge_final_folder(run_dir: Path, samples, tmp_path: Path) -> None:
    model, processor = _trained_model(run_dir)
    run = tmp_path / "run"
    model.save_pretrained(run / "final")  # what train.py writes at the end
    processor.save_pretrained(run / "final")
    _check_merged((model, processor), run, "final", samples, tmp_path / "merged")


def _save_with_deepspeed(env: DistEnv, run: Path) -> None:
    model, _ = _trained_model(run)
    cfg = load_config(run / "config.yaml")
    groups = configure_trainable(
        model, OmegaConf.to_container(cfg.model.groups), 1e-3, 0.0, new_token_ids=[model.config.seg_token_id]
    )
    engine = DeepSpeedEngine(
        model.train(), groups, lambda step: 1.0, 1.0, env, deepspeed_config=zero_config("zero3", run / str(env.rank))
    )
    engine.save(run / "checkpoints" / CHECKPOINT)


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (requirements.txt pins it)")
def test_merge_deepspeed_zero3_checkpoint(run_dir: Path, samples, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    run_group(_save_with_deepspeed, 2, run)
    assert len(list((run / "checkpoints" / CHECKPOINT / "deepspeed").glob("zero_pp_rank_*_model_states.pt"))) == 2
    _check_merged(_trained_model(run), run, CHECKPOINT, samples, tmp_path / "merged")

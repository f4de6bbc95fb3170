"""bf16 end to end on the CPU: a bf16 training step, its checkpoint merged, loaded in bf16 and evaluated.

The 7B recipes train in bf16 (DeepSpeed writes bf16 weights), so ``final/`` and merged folders hold
bf16 tensors; SAM2 must then take float32 frames, and inference must load the backbone in bf16.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import merge_lora
from evaluation.benchmarks import build_benchmark_dataset
from evaluation.video_seg_predictor import UniGRVideoSegPredictor
from tests.test_model import ForceAnswer
from tests.test_training import _train
from utils.data.prompts import SEG_TOKEN

LORA_RUN = (
    "train.dtype=bf16",
    "model.lora={r: 4, alpha: 8, dropout: 0.0}",
    "model.groups.llm.mode=lora",
    "model.groups.vision.mode=frozen",
    "model.groups.sam2_encoder.mode=frozen",
    "train.save_every=1",
)


def _dtypes(folder: Path) -> dict[str, torch.dtype]:
    with safe_open(folder / "model.safetensors", "pt") as f:
        return {key: f.get_slice(key).get_dtype() for key in f.keys()}


def test_a_bf16_run_trains_merges_loads_in_bf16_and_predicts(tmp_path: Path, mevis_root: Path, tiny_parts) -> None:
    result = _train(tmp_path, mevis_root, tiny_parts, 1, [sys.executable], LORA_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    dtypes = _dtypes(run / "final")
    # Frozen parts are held in bf16, what trains in float32 (master weights).
    assert dtypes["backbone.visual.blocks.0.attn.qkv.weight"] == "BF16"
    assert dtypes["seg_head.sam2.image_encoder.trunk.patch_embed.proj.weight"] == "BF16"
    assert dtypes["seg_head.text_hidden_proj.0.weight"] == "F32"

    merged = merge_lora.main(["--run-dir", str(run), "--out", str(tmp_path / "merged")])
    # What DeepSpeed's bf16 engine writes: every tensor bf16.
    all_bf16 = tmp_path / "all_bf16"
    all_bf16.mkdir()
    for item in merged.iterdir():
        if item.name != "model.safetensors":
            (all_bf16 / item.name).write_bytes(item.read_bytes())
    weights = {key: value.to(torch.bfloat16) for key, value in load_file(merged / "model.safetensors").items()}
    save_file(weights, all_bf16 / "model.safetensors", metadata={"format": "pt"})

    dataset, _ = build_benchmark_dataset("mevis", mevis_root)
    sample = dataset[0]
    for folder in (merged, all_bf16):
        predictor = UniGRVideoSegPredictor(folder, device="cpu", dtype="bf16", max_new_tokens=8)
        assert next(predictor.model.backbone.parameters()).dtype == torch.bfloat16
        assert next(predictor.model.seg_head.parameters()).dtype == torch.bfloat16
        answer = predictor.tokenizer.encode(f"Sure, {SEG_TOKEN}.<|im_end|>", add_special_tokens=False)
        generate = predictor.model.generate  # the random model is made to answer with a [SEG], so SAM2 runs
        predictor.model.generate = lambda inputs, _g=generate, _a=answer, **kw: _g(
            inputs, logits_processor=[ForceAnswer(_a, inputs["input_ids"].shape[1])], **kw
        )
        masks, text = predictor.predict(sample)
        assert text.startswith(f"Sure, {SEG_TOKEN}")
        assert masks.shape == sample.frames.shape[:3] and masks.dtype == bool

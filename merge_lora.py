"""Turn a training checkpoint into one Hugging Face UniGR folder with the LoRA adapters merged.

    python merge_lora.py --run-dir work_dirs/<run> [--checkpoint final | step_0001000] [--out DIR]

``final`` (the default) is the folder ``train.py`` writes at the end; ``step_N`` is a checkpoint
under ``<run-dir>/checkpoints/`` in any engine's layout: DDP (``model.safetensors``), FSDP
(``model_dcp/``, read without a process group) or DeepSpeed ZeRO-2/3 (``deepspeed/``, the fp32
master weights gathered from every rank's shards; needs ``deepspeed`` installed). For a
checkpoint the model is first rebuilt from the run's resolved ``config.yaml``, so the parts it
names (backbone folder, SAM2 checkpoint) must still be there.

The result (default ``<run-dir>/merged``) holds safetensors weights, the config with ``lora``
unset, and the processor; it contains SAM2 and every head, no ``lora_`` tensors, and loads with
``model.builder.load_unigr``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import ProcessorMixin

from model.builder import load_unigr
from model.modeling_unigr import UniGRForConditionalGeneration
from train import build_model
from utils.training.config import load_config
from utils.training.engines import DEEPSPEED_TAG, FSDP_MODEL_DIR


def load_checkpoint_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The full model state dict stored in a trainer checkpoint folder, whichever engine wrote it."""
    if (checkpoint / "model.safetensors").is_file():
        return load_file(checkpoint / "model.safetensors")
    if (checkpoint / FSDP_MODEL_DIR).is_dir():
        return _load_dcp(checkpoint / FSDP_MODEL_DIR)
    if (checkpoint / DEEPSPEED_TAG).is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return dict(get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG))
    raise FileNotFoundError(
        f"{checkpoint} holds no model.safetensors, {FSDP_MODEL_DIR}/ or {DEEPSPEED_TAG}/ (not a checkpoint?)"
    )


def _load_dcp(folder: Path) -> dict[str, torch.Tensor]:
    """A ``torch.distributed.checkpoint`` folder of tensors, read whole in this one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(folder)
    entries = reader.read_metadata().state_dict_metadata
    state = {
        name: torch.empty(entry.size, dtype=entry.properties.dtype)
        for name, entry in entries.items()
        if isinstance(entry, TensorStorageMetadata)
    }
    dcp.load(state, storage_reader=reader, no_dist=True)
    return state


def merge_lora(model: torch.nn.Module) -> int:
    """Fold every LoRA adapter into the weight it adapts and put the plain layer back; returns how many."""
    adapted = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in adapted:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, module.get_base_layer())
    if getattr(model.config, "lora", None) is not None:
        model.config.lora = None
    return len(adapted)


def load_run(run_dir: Path, checkpoint: str) -> tuple[UniGRForConditionalGeneration, ProcessorMixin]:
    """The model and processor of ``run_dir`` at ``checkpoint`` (``final`` or a ``step_N`` name), unmerged."""
    if checkpoint == "final":
        return load_unigr(run_dir / "final")
    path = run_dir / "checkpoints" / checkpoint
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint {path}")
    cfg = load_config(run_dir / "config.yaml")
    model, processor = build_model(cfg, dtype=torch.float32)  # the checkpoint's float32 master weights
    model.load_state_dict(load_checkpoint_weights(path), strict=True)
    return model, processor


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a train.py output_dir")
    parser.add_argument("--checkpoint", default="final", help="final, or a folder name under checkpoints/")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <run-dir>/merged)")
    args = parser.parse_args(argv)
    out = args.out or args.run_dir / "merged"

    model, processor = load_run(args.run_dir, args.checkpoint)
    merged = merge_lora(model)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    print(f"merged {merged} LoRA layers; saved {out}")
    return out


if __name__ == "__main__":
    main()

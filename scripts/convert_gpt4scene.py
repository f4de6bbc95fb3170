"""Write GPT4Scene's released Qwen2-VL-7B folder as a UniGR folder, the form the evaluation runner loads.

    python scripts/convert_gpt4scene.py --src ckpts/GPT4Scene-qwen2vl_full_sft_mark_32_3D_img512 \\
        --out work_dirs/gpt4scene_unigr

The released folder is a stock Qwen2-VL folder (LLaMA-Factory's full SFT, pre-4.52 keys, bf16). It becomes
UniGR's backbone unchanged (``build_unigr(src, seg=None)``: no SAM2 head; UniGR's special tokens join the
tokenizer, within the rows the 7B's padded embedding already has), and the folder records GPT4Scene's input
settings (32 frames, chosen uniformly) so that a scene benchmark's loader chooses GPT4Scene's frames
(``run_inference`` hands a ``frames_by_loader`` benchmark the model's saved settings). The weights are
written in ``--dtype`` (default bf16, as released; fp32 doubles the folder to about 33 GB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.builder import build_unigr  # noqa: E402
from utils.data.input_settings import InputSettings  # noqa: E402
from utils.scene3d.gpt4scene_view import NUM_FRAMES  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def convert_gpt4scene(
    src: str | Path, out: str | Path, num_frames: int = NUM_FRAMES, dtype: torch.dtype = torch.bfloat16
) -> Path:
    """Write the Qwen2-VL folder ``src`` as a UniGR folder ``out`` (model and processor) whose input settings
    are ``num_frames`` uniformly chosen frames; returns ``out``."""
    config_path = Path(src) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{src} is not a model folder (no config.json)")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type != "qwen2_vl":
        raise ValueError(
            f"{config_path}: expected GPT4Scene's Qwen2-VL folder (model_type 'qwen2_vl'), got {model_type!r}"
        )
    model, processor = build_unigr(src, seg=None, dtype=dtype)
    model.config.inputs = InputSettings(num_frames=num_frames, frame_sampling="uniform").to_dict()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return Path(out)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="GPT4Scene's released Qwen2-VL folder")
    parser.add_argument("--out", type=Path, required=True, help="where to write the UniGR folder")
    parser.add_argument("--num-frames", type=int, default=NUM_FRAMES, help="frames per question (GPT4Scene: 32)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    args = parser.parse_args(argv)
    if args.num_frames < 1:
        parser.error("--num-frames must be >= 1")
    out = convert_gpt4scene(args.src, args.out, args.num_frames, DTYPES[args.dtype])
    print(f"wrote {out}; evaluate it with --option view=gpt4scene")
    return out


if __name__ == "__main__":
    main()

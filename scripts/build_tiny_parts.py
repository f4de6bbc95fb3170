"""Write the quick start's random tiny parts in official formats (skips parts already there).

* ``<parts_dir>/qwen2_5_vl_tiny/``: a stock Qwen2.5-VL Hugging Face folder (config, safetensors,
  tokenizer with Qwen's special tokens and chat template, processor).
* ``<parts_dir>/sam2.1_hiera_tiny_random.pt``: an official-layout SAM2 checkpoint.

    python scripts/build_tiny_parts.py --config configs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.builder import save_tiny_backbone, save_tiny_sam2  # noqa: E402
from utils.training.config import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    parts = Path(cfg.parts_dir)
    backbone = Path(cfg.model.backbone_path)
    if not (backbone / "config.json").is_file():
        save_tiny_backbone(model_cfg, backbone, seed=cfg.seed)
        print(f"wrote {backbone}")
    sam2 = parts / "sam2.1_hiera_tiny_random.pt"
    if not sam2.is_file():
        save_tiny_sam2(model_cfg, sam2, seed=cfg.seed)
        print(f"wrote {sam2}")


if __name__ == "__main__":
    main()

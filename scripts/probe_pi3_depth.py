"""How much depth a trained Pi3's tokens carry: linear read-outs of each patch's log depth on held-out worlds.

For a folder written by :mod:`scripts.pretrain_pi3` (``model.safetensors``, ``pi3_config.json``, ``config.yaml``),
renders the clips its ``config.yaml`` names (the first :data:`~scripts.pretrain_pi3.PROBE_TRAIN_CLIPS` training
worlds to fit on, the held-out worlds to score on) and prints :func:`scripts.pretrain_pi3.depth_probes`: the R^2 of
a ridge read-out from the encoder's tokens (the GSM's ``pi3_features: encoder``), from the decoder's tokens
(``decoder``), and from a random encoder's.

    python scripts/probe_pi3_depth.py [--pi3 assets/pi3_tiny_dynamic]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.geometry.pi3 import Pi3Config, Pi3Model  # noqa: E402
from scripts.pretrain_pi3 import PROBE_TRAIN_CLIPS, depth_probes  # noqa: E402
from utils.synthetic.dynamic_geometry import render_geometry_clips  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pi3", type=Path, default=ROOT / "assets" / "pi3_tiny_dynamic", help="pretrain_pi3 output")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random encoder compared against")
    args = parser.parse_args(argv)
    config = Pi3Config(**json.loads((args.pi3 / "pi3_config.json").read_text())["pi3"])
    data = OmegaConf.load(args.pi3 / "config.yaml").data
    model = Pi3Model.from_pi3_checkpoint(args.pi3 / "model.safetensors", config)
    size = (int(data.height), int(data.width))
    train = render_geometry_clips(data.seed, "train", min(PROBE_TRAIN_CLIPS, data.train_worlds), size, progress=True)
    held_out = render_geometry_clips(data.seed, data.holdout_split, data.holdout_worlds, size, progress=True)
    torch.manual_seed(args.seed)
    probes = depth_probes(model, train, held_out)
    print(json.dumps(probes, indent=2))
    return probes


if __name__ == "__main__":
    main()

"""Does a (tiny) SAM2 checkpoint follow its prompts? One frame per video, each object prompted in turn.

For every object visible on a video's first frame, SAM2 is prompted with a click at a random pixel of
the object, its box, and its 4x4 token-grid location map (the form in which the segmentation head's
location map arrives, :mod:`model.heads.location_prompt`). It prints, per prompt kind, the mean IoU
of the mask with the prompted object and with the other objects, and the share of prompts whose mask
overlaps the prompted object most. A SAM2 that ignores its prompt ("segment every object") scores
about the same IoU with every object.

    python scripts/check_sam2_prompts.py --config configs/quickstart_sam2_prompts.yaml \\
        --checkpoint assets/sam2.1_hiera_tiny_prompted.pt --data-root data/synthetic_mevis --split valid_u
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.heads.location_prompt import location_targets  # noqa: E402
from model.heads.seg_sam2 import PromptableVideoSAM2, SegHeadConfig  # noqa: E402
from model.sam2_builder import load_sam2_checkpoint  # noqa: E402
from scripts.pretrain_sam2_prompts import PADDING_LABEL  # noqa: E402
from utils.data.collate import resize_masks  # noqa: E402
from utils.synthetic.moving_shapes import WorldConfig, make_video  # noqa: E402
from utils.training.config import load_config  # noqa: E402
from utils.video.model_inputs import sam2_frames  # noqa: E402

PROMPT_KINDS = ("click", "box", "map 4x4")
MAP_AMPLITUDE = 8.0


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def prompt(
    kind: str, mask: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(coords (1, 2, 2), labels (1, 2), location (1, 1, 4, 4) or None)`` prompting ``mask`` ``(S, S)``."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if kind == "box":
        box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        return box.view(1, 2, 2), torch.tensor([[2, 3]]), None
    if kind == "click":
        pick = int(rng.integers(len(xs)))
        point = torch.tensor([[float(xs[pick]) + 0.5, float(ys[pick]) + 0.5], [0.0, 0.0]])
        return point[None], torch.tensor([[1, PADDING_LABEL]]), None
    targets = location_targets(mask[None, None].float(), (1, 4, 4), 1)  # (1, 1, 4, 4)
    return torch.zeros(1, 2, 2), torch.full((1, 2), PADDING_LABEL), MAP_AMPLITUDE * (2 * targets - 1)


@torch.no_grad()
def check(model: PromptableVideoSAM2, world_seed: int, split: str, num_videos: int, seed: int = 0) -> dict[str, dict]:
    """Per prompt kind: mean IoU with the prompted object, with the others, and the share where the prompted wins."""
    rng = np.random.default_rng(seed)
    results = {kind: {"prompted": [], "others": [], "wins": []} for kind in PROMPT_KINDS}
    size = model.image_size
    for index in range(num_videos):
        video = make_video(world_seed, split, index, WorldConfig())
        frame = sam2_frames(video.frames[:1], size, normalize=False)  # (1, 3, S, S)
        masks = resize_masks(video.masks[:, :1], size)[:, 0].bool()  # (N, S, S)
        features = model.encode_frames(frame)
        for target, mask in enumerate(masks):
            if not mask.any():
                continue
            for kind in PROMPT_KINDS:
                coords, labels, location = prompt(kind, mask, rng)
                out = model.segment_videos(
                    features,
                    1,
                    model.click_prompts(coords, labels),
                    torch.zeros(1, dtype=torch.long),
                    location=location,
                )
                predicted = out["mask_logits"][0, 0] > 0
                ious = [_iou(predicted, other) for other in masks]
                others = [iou for i, iou in enumerate(ious) if i != target]
                results[kind]["prompted"].append(ious[target])
                results[kind]["others"].append(float(np.mean(others)))
                results[kind]["wins"].append(float(ious[target] > max(others)))
    return {kind: {name: float(np.mean(values)) for name, values in r.items()} for kind, r in results.items()}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart_sam2_prompts.yaml", help="gives the SAM2 size")
    parser.add_argument("--checkpoint", required=True, help="an official-layout SAM2 checkpoint")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--split", default="valid_u", help="which split of the synthetic world")
    parser.add_argument("--num-videos", type=int, default=20)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, ["parts_dir=unused"])
    seg = SegHeadConfig.from_dict({**OmegaConf.to_container(cfg.model.seg), "location_prompt": "mask"})
    model = PromptableVideoSAM2(seg)
    load_sam2_checkpoint(model.sam2, args.checkpoint)
    model.eval()
    results = check(model, args.world_seed, args.split, args.num_videos)
    print("| prompt | IoU with the prompted object | mean IoU with each other object | prompted object wins |")
    print("|---|---|---|---|")
    for kind, row in results.items():
        print(f"| {kind} | {row['prompted']:.3f} | {row['others']:.3f} | {row['wins']:.3f} |")
    return results


if __name__ == "__main__":
    main()

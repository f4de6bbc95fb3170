"""Stage 0: teach the (tiny) backbone to ground words in its own visual tokens, before SAM2 is attached.

A Qwen2.5-VL from scratch binds an expression to the video tokens that show its target only after
thousands of steps, and SAM2 makes each step about 5x dearer; a real UniGR starts from a Qwen2.5-VL
that already grounds. This recipe trains the backbone and the segmentation head's location map
(:mod:`model.heads.location_prompt`) alone: the batch carries no SAM2 frames, so the head scores the
``[SEG]`` state against the visual tokens and learns from the target's token occupancy (BCE, ``loc``)
plus the answer's language-modelling loss; SAM2 is neither run nor changed. The data is the
synthetic world drawn on the fly (loader ``moving_shapes``), every item a video never seen before,
so the logged top-token hit rate (per expression type) is a held-out measurement. Writes a UniGR
folder (``<output_dir>/final``) that stage 2 starts from (``model.pretrained``).

    python scripts/pretrain_grounding.py --config configs/quickstart_grounding.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.heads.location_prompt import location_targets, top_token_hits  # noqa: E402
from train import build_model, count_fn  # noqa: E402
from utils.data.collate import SampleCollator  # noqa: E402
from utils.data.mixture import build_training_mixture  # noqa: E402
from utils.data.schema import Sample  # noqa: E402
from utils.training.config import load_config, save_config  # noqa: E402
from utils.training.distributed import init_distributed  # noqa: E402
from utils.training.trainable import configure_trainable  # noqa: E402
from utils.training.trainer import TrainConfig, Trainer  # noqa: E402

EXPRESSION_TYPES = ("attribute", "motion")


class GroundingCollator:
    """The model's own collator, without SAM2 frames, plus each sample's expression type (for the hit rates)."""

    def __init__(self, collator: SampleCollator):
        self.collator = collator

    def __call__(self, samples: list[Sample]) -> dict:
        batch = self.collator(samples)
        batch.pop("sam_frames", None)
        batch["expression_types"] = [s.meta.get("type") for s in samples]
        return batch


def grounding_step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward without SAM2 (CE + ``loc``); logs the loss terms and, per expression type, top-token hits."""
    types = batch.pop("expression_types")
    out = model(**batch)
    metrics = {name: value.item() for name, value in (out.losses or {}).items() if name in ("ce", "loc")}
    for kind in EXPRESSION_TYPES:
        metrics[f"hits_{kind}"] = metrics[f"slots_{kind}"] = 0.0
    with torch.no_grad():
        for item, gt, kind in zip(out.location_maps, batch["gt_masks"], types):
            if item is None or kind not in EXPRESSION_TYPES:
                continue
            logits, frames_per_slot = item
            hits, scored = top_token_hits(logits, location_targets(gt, logits.shape[1:], frames_per_slot))
            metrics[f"hits_{kind}"] += hits
            metrics[f"slots_{kind}"] += scored
    return out.loss, metrics


def hit_rate_curve(losses_path: Path, window: int = 250) -> dict[str, list[tuple[int, float]]]:
    """Per expression type, ``(last step, top-token hit rate)`` over consecutive windows of ``losses.jsonl``."""
    rows = [json.loads(line) for line in losses_path.read_text().splitlines()]
    curves: dict[str, list[tuple[int, float]]] = {kind: [] for kind in EXPRESSION_TYPES}
    for start in range(0, len(rows) - window + 1, window):
        chunk = rows[start : start + window]
        for kind in EXPRESSION_TYPES:
            scored = sum(row.get(f"slots_{kind}", 0) for row in chunk)
            if scored:
                curves[kind].append((chunk[-1]["step"], sum(row[f"hits_{kind}"] for row in chunk) / scored))
    return curves


def plot_hit_rates(losses_path: Path, out: Path, window: int = 250) -> Path:
    """The top-token hit rate per expression type against step (each point: ``window`` steps of new videos)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for kind, points in hit_rate_curve(losses_path, window).items():
        axis.plot([step for step, _ in points], [rate for _, rate in points], label=kind)
    axis.set_xlabel("step (batch 8, every video new)")
    axis.set_ylabel("top token on the target")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(f"stage 0: where [SEG] points (means over {window} steps)")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if cfg.model.seg.location_prompt == "off":
        sys.exit("stage 0 trains the location map: set model.seg.location_prompt (e.g. mask)")
    env = init_distributed(cfg.device)
    output_dir = Path(cfg.output_dir)
    if env.is_main:
        save_config(cfg, output_dir / "config.yaml")
    dataset = build_training_mixture(cfg.data, cfg.seed)
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    torch.manual_seed(cfg.seed)
    model, processor = build_model(cfg)
    optimizer_groups = configure_trainable(
        model,
        OmegaConf.to_container(cfg.model.groups),
        train_cfg.lr,
        train_cfg.weight_decay,
        new_token_ids=[model.config.seg_token_id],
    )
    model.to(env.device)
    trainer = Trainer(
        model,
        grounding_step,
        dataset,
        GroundingCollator(SampleCollator.for_model(model, processor)),
        train_cfg,
        output_dir,
        env,
        optimizer_groups=optimizer_groups,
        count_fn=count_fn(model),
    )
    trainer.fit()
    final = output_dir / "final"
    weights = trainer.engine.full_state_dict()
    if env.is_main:
        model.save_pretrained(final, state_dict=weights)
        processor.save_pretrained(final)
        print(f"saved {final}")
        window = max(1, min(250, train_cfg.max_steps // 4))
        print(f"wrote {plot_hit_rates(trainer.loss_log, output_dir / 'hit_rates.png', window)}")
    return final


if __name__ == "__main__":
    main()

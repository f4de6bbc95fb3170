"""Stage 0: teach the (tiny) backbone to ground words in its own visual tokens, before SAM2 is attached.

A Qwen2.5-VL from scratch binds an expression to the video tokens that show its target only after
thousands of steps, and SAM2 makes each step about 5x dearer; a real UniGR starts from a Qwen2.5-VL
that already grounds. This recipe trains the backbone and the segmentation head's location map
(:mod:`model.heads.location_prompt`) alone: the batch carries no SAM2 frames, so the head scores the
``[SEG]`` state against the visual tokens and learns from the target's tokens (``loc``: BCE + ranking)
plus the answer's language-modelling loss; SAM2 is neither run nor changed. The data is the
synthetic world drawn on the fly (loader ``moving_shapes``), every item a video never seen before,
so the logged top-token hit rate (per expression type) is a held-out measurement. Writes a UniGR
folder (``<output_dir>/final``) that stage 2 starts from (``model.pretrained``).

A from-scratch backbone is slow to start: the location map's query (from the words) and keys (the
visual tokens) must both learn to carry colour, shape and motion before either helps the other. Two
dense signals break that: description items (the stream's ``describe_share``: every object named, as
text) and, with ``token_attribute_weight > 0``, a linear read-out of each visual token's last-layer
state that classifies the colour, shape and direction of the object covering the token (a pretraining
aid like a vision encoder's own pretraining; it is dropped from the saved model).

    python scripts/pretrain_grounding.py --config configs/quickstart_grounding.yaml [key=value ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.heads.location_prompt import location_targets, token_coverage, top_token_hits  # noqa: E402
from model.visual_tokens import VisualTokens, visual_layouts  # noqa: E402
from train import build_trainable_model, count_fn  # noqa: E402
from utils.data.collate import SampleCollator  # noqa: E402
from utils.data.mixture import build_training_mixture  # noqa: E402
from utils.data.schema import Sample  # noqa: E402
from utils.synthetic.moving_shapes import COLOURS, DIRECTIONS, SHAPES  # noqa: E402
from utils.training.config import config_from_command_line, save_config  # noqa: E402
from utils.training.distributed import init_distributed  # noqa: E402
from utils.training.trainer import TrainConfig, Trainer  # noqa: E402

EXPRESSION_TYPES = ("attribute", "motion")
ATTRIBUTES = {"colour": list(COLOURS), "shape": list(SHAPES), "direction": list(DIRECTIONS)}
"""The world's vocabularies; a token's label is 0 (no object) or 1 + the value's index."""
MIN_TOKEN_COVERAGE = 0.1
"""A token is labelled with the object covering the largest share of it, when that share is at least this."""


def token_attribute_labels(
    object_masks: np.ndarray, objects: list[tuple[str, str, str]], grid: tuple[int, int, int], frames_per_slot: int
) -> torch.Tensor:
    """``(slots * h * w, 3)`` labels (colour, shape, direction) of the visual tokens of one video, in Qwen's
    token order, from its objects' ``(N, T, H, W)`` visible masks."""
    coverage = token_coverage(torch.from_numpy(object_masks), grid, frames_per_slot)  # (N, slots, h, w)
    best_share, best = coverage.max(0)
    labels = []
    for position, vocabulary in enumerate(ATTRIBUTES.values()):
        table = torch.tensor([vocabulary.index(attributes[position]) + 1 for attributes in objects])
        labels.append(torch.where(best_share >= MIN_TOKEN_COVERAGE, table[best], 0))
    return torch.stack(labels, -1).flatten(0, 2)


class TokenAttributeHead(torch.nn.Module):
    """A linear read-out of a visual token's state: logits per attribute (``1 + len(vocabulary)`` classes)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.sizes = [1 + len(vocabulary) for vocabulary in ATTRIBUTES.values()]
        self.proj = torch.nn.Linear(hidden_size, sum(self.sizes))

    def loss(self, states: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over tokens and attributes, and the share of correctly read (token, attribute)."""
        logits = self.proj(states).split(self.sizes, dim=-1)
        losses = [torch.nn.functional.cross_entropy(x, labels[:, i]) for i, x in enumerate(logits)]
        correct = torch.stack([(x.argmax(-1) == labels[:, i]).float().mean() for i, x in enumerate(logits)])
        return torch.stack(losses).mean(), correct.mean()


class GroundingCollator:
    """The model's own collator, without SAM2 frames, plus each sample's expression type (for the hit rates)
    and, where the sample knows its objects (the ``moving_shapes`` stream), its visual tokens' attribute labels."""

    def __init__(self, collator: SampleCollator, tokens: VisualTokens):
        self.collator, self.tokens = collator, tokens

    def __call__(self, samples: list[Sample]) -> dict:
        batch = self.collator(samples)
        batch.pop("sam_frames", None)
        batch["expression_types"] = [s.meta.get("type") for s in samples]
        layouts = visual_layouts(batch["input_ids"], batch, self.tokens)
        batch["token_attribute_labels"] = [
            token_attribute_labels(s.meta["object_masks"], s.meta["objects"], layout.grid, layout.frames_per_slot)
            if layout is not None and "objects" in s.meta
            else None
            for s, layout in zip(samples, layouts)
        ]
        return batch


def grounding_step(
    model: torch.nn.Module, batch: dict, token_attribute_weight: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward without SAM2 (CE + ``loc``, plus the token-attribute read-out when weighted); logs the loss
    terms and, per expression type, top-token hits."""
    types = batch.pop("expression_types")
    attribute_labels = batch.pop("token_attribute_labels", None) or []
    out = model(**batch)
    loss = out.loss
    metrics = {name: value.item() for name, value in (out.losses or {}).items() if name in ("ce", "loc")}
    unwrapped = model.module if hasattr(model, "module") else model
    labelled = [(i, labels) for i, labels in enumerate(attribute_labels) if labels is not None]
    if token_attribute_weight > 0 and labelled:
        layouts = visual_layouts(batch["input_ids"], batch, unwrapped.seg_head.visual_tokens)
        states = torch.cat([out.last_hidden_state[i, layouts[i].positions] for i, _ in labelled])
        labels = torch.cat([labels for _, labels in labelled]).to(states.device)
        attribute_loss, accuracy = unwrapped.token_attributes.loss(states, labels)
        loss = loss + token_attribute_weight * attribute_loss
        metrics.update(token_attributes=attribute_loss.item(), token_attribute_accuracy=accuracy.item())
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
    return loss, metrics


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
    cfg = config_from_command_line(argv, __doc__)
    if cfg.model.seg.location_prompt == "off":
        sys.exit("stage 0 trains the location map: set model.seg.location_prompt (e.g. mask)")
    env = init_distributed(cfg.device)
    output_dir = Path(cfg.output_dir)
    if env.is_main:
        save_config(cfg, output_dir / "config.yaml")
    dataset = build_training_mixture(cfg.data, cfg.seed)
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    model, processor, optimizer_groups = build_trainable_model(cfg, train_cfg)
    weight = float(cfg.get("token_attribute_weight", 0.0))
    if weight > 0:  # a pretraining aid outside the model's groups; removed before saving
        model.token_attributes = TokenAttributeHead(model.config.backbone_config.get_text_config().hidden_size)
        optimizer_groups.append(
            {
                "name": "token_attributes",
                "params": list(model.token_attributes.parameters()),
                "lr": train_cfg.lr,
                "weight_decay": 0.0,
            }
        )
    model.to(env.device)
    trainer = Trainer(
        model,
        lambda m, b: grounding_step(m, b, weight),
        dataset,
        GroundingCollator(SampleCollator.for_model(model, processor), model.seg_head.visual_tokens),
        train_cfg,
        output_dir,
        env,
        optimizer_groups=optimizer_groups,
        count_fn=count_fn(model),
    )
    trainer.fit()
    final = output_dir / "final"
    weights = {k: v for k, v in trainer.engine.full_state_dict().items() if not k.startswith("token_attributes.")}
    if hasattr(model, "token_attributes"):
        del model.token_attributes
    if env.is_main:
        model.save_pretrained(final, state_dict=weights)
        processor.save_pretrained(final)
        print(f"saved {final}")
        window = max(1, min(250, train_cfg.max_steps // 4))
        print(f"wrote {plot_hit_rates(trainer.loss_log, output_dir / 'hit_rates.png', window)}")
    return final


if __name__ == "__main__":
    main()

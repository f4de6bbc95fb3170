"""A reusable training loop: resumable sampling, AdamW + warm-up/cosine, DDP, checkpoints, TensorBoard.

Recipes (``train.py``, ``scripts/pretrain_sam2_prompts.py``) build a model, a dataset and a
``step_fn(model, batch) -> (loss, {name: scalar})``; this module does everything else.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from utils.data.robust import SkipBadSamples, skipping_collate
from utils.training.distributed import DistEnv

MIN_SKIPS_BEFORE_ABORT = 10

StepFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class TrainConfig:
    """The ``train:`` section of a run config."""

    batch_size: int = 8  # per process
    max_steps: int = 1000
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    num_workers: int = 2
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 2
    seed: int = 0
    max_skipped_fraction: float = 0.01  # stop when more unreadable samples than this (and more than 10)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown train options {sorted(unknown)}")
        return cls(**values)


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless seeded shuffles cut into global batches; rank ``r`` takes its slice of each.

    The stream depends only on ``(seed, world_size, batch_size)``, so starting at ``start_step``
    reproduces exactly the batches an uninterrupted run would have seen from there.
    """

    def __init__(self, num_samples: int, batch_size: int, env: DistEnv, seed: int, start_step: int = 0):
        if num_samples == 0:
            raise ValueError("the training dataset is empty")
        self.num_samples, self.batch_size, self.env, self.seed = num_samples, batch_size, env, seed
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.env.world_size
        position = self.start_step * global_batch  # samples consumed so far, over all ranks
        epoch, offset = divmod(position, self.num_samples)
        buffer: list[int] = []
        while True:
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch))
            buffer += order[offset:].tolist()
            offset, epoch = 0, epoch + 1
            while len(buffer) >= global_batch:
                batch, buffer = buffer[:global_batch], buffer[global_batch:]
                start = self.env.rank * self.batch_size
                yield batch[start : start + self.batch_size]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Runs ``step_fn`` over ``dataset`` for ``cfg.max_steps`` steps, resuming from ``output_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        step_fn: StepFn,
        dataset: Dataset,
        collate_fn: Callable,
        cfg: TrainConfig,
        output_dir: str | Path,
        env: DistEnv,
        param_groups: list[dict] | None = None,
    ):
        self.model, self.step_fn, self.dataset, self.collate_fn = model, step_fn, dataset, collate_fn
        self.cfg, self.env = cfg, env
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        )
        self.step = 0
        self.samples_seen = 0
        self.num_skipped = 0
        self.wrapped = DistributedDataParallel(model, find_unused_parameters=True) if env.world_size > 1 else model

    def fit(self) -> list[float]:
        """Train to ``max_steps``; returns the per-step losses of this process (after resuming)."""
        self._resume()
        sampler = ResumableBatchSampler(
            len(self.dataset), self.cfg.batch_size, self.env, self.cfg.seed, start_step=self.step
        )
        loader = DataLoader(
            SkipBadSamples(self.dataset),
            batch_sampler=sampler,
            collate_fn=skipping_collate(self.collate_fn),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )
        writer = SummaryWriter(self.output_dir / "tb") if self.env.is_main else None
        progress = tqdm(
            total=self.cfg.max_steps, initial=self.step, desc="train", disable=not self.env.is_main, dynamic_ncols=True
        )
        losses = []
        self.model.train()
        batches = iter(loader)
        while self.step < self.cfg.max_steps:
            batch = _to_device(self._next_batch(batches, progress), self.env.device)
            loss, metrics = self.step_fn(self.wrapped, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            losses.append(loss.item())
            progress.update(1)
            if writer is not None and (self.step % self.cfg.log_every == 0 or self.step == self.cfg.max_steps):
                metrics = {"loss": loss.item(), "grad_norm": grad_norm.item(), **metrics}
                for name, value in metrics.items():
                    writer.add_scalar(f"train/{name}", value, self.step)
                writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                writer.add_scalar("train/skipped_samples", self.num_skipped, self.step)
                progress.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()})
            if self.step % self.cfg.save_every == 0 or self.step == self.cfg.max_steps:
                self.save_checkpoint()
        progress.close()
        if writer is not None:
            writer.close()
        return losses

    def _next_batch(self, batches: Iterator[dict], progress: tqdm) -> dict:
        """The next batch with a good sample; unreadable samples are counted and listed in ``skipped_samples.jsonl``."""
        while True:
            batch = next(batches)
            skipped = batch.pop("skipped")
            self.samples_seen += self.cfg.batch_size
            if skipped:
                self.num_skipped += len(skipped)
                with open(self.output_dir / "skipped_samples.jsonl", "a") as log:
                    for index, error in skipped:
                        log.write(
                            json.dumps({"rank": self.env.rank, "step": self.step, "index": index, "error": error})
                        )
                        log.write("\n")
                        progress.write(f"skipped sample {index}: {error}")
                if self.num_skipped > max(MIN_SKIPS_BEFORE_ABORT, self.cfg.max_skipped_fraction * self.samples_seen):
                    raise RuntimeError(
                        f"{self.num_skipped} of {self.samples_seen} samples could not be loaded; "
                        f"see {self.output_dir / 'skipped_samples.jsonl'}"
                    )
            if batch:
                return batch

    def save_checkpoint(self) -> None:
        """Model weights (safetensors) + optimizer, scheduler, step and RNG; written atomically."""
        if not self.env.is_main:
            return
        final = self.checkpoint_dir / f"step_{self.step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(self.model, str(tmp / "model.safetensors"))
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "samples_seen": self.samples_seen,
            "num_skipped": self.num_skipped,
        }
        torch.save(state, tmp / "trainer_state.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(self.checkpoint_dir.glob("step_???????"))[: -self.cfg.keep_last]:
            shutil.rmtree(old)

    def _resume(self) -> None:
        checkpoints = sorted(p for p in self.checkpoint_dir.glob("step_???????") if (p / "trainer_state.pt").is_file())
        if not checkpoints:
            return
        latest = checkpoints[-1]
        load_model(self.model, str(latest / "model.safetensors"), device=str(self.env.device))
        state = torch.load(latest / "trainer_state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.samples_seen, self.num_skipped = state["samples_seen"], state["num_skipped"]
        if self.env.is_main:
            print(f"resumed from {latest} at step {self.step}")


def _to_device(batch: dict, device: torch.device) -> dict:
    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    return {k: move(v) for k, v in batch.items()}

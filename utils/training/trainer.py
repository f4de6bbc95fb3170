"""A reusable training loop: resumable sampling, accumulation, engines, exact resume, TensorBoard.

Recipes (``train.py``, ``scripts/pretrain_sam2_prompts.py``) build a model, a dataset and a
``step_fn(model, batch) -> (loss, {name: scalar})``; this module does everything else. The
distribution strategy (DDP, FSDP, DeepSpeed) lives behind :mod:`utils.training.engines`.

Losses over a global batch: when the recipe gives a ``count_fn`` (what its losses are averages
over, e.g. label tokens and objects), those counts are summed over all ranks and accumulation
steps and handed to ``step_fn`` in the batch, so every loss is a sum divided by its *global*
count, and one process with batch ``B`` gives the same loss as ``N`` processes with ``B / N``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from utils.data.robust import SkipBadSamples, skipping_collate
from utils.training.distributed import DistEnv
from utils.training.engines import build_engine

MIN_SKIPS_BEFORE_ABORT = 10

StepFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]
CountFn = Callable[[dict], dict[str, int]]


@dataclass
class TrainConfig:
    """The ``train:`` section of a run config."""

    batch_size: int = 8  # per process and accumulation step
    grad_accum_steps: int = 1  # global batch = batch_size x processes x grad_accum_steps
    max_steps: int = 1000  # optimizer steps
    lr: float = 1e-4  # default for module groups that set none
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    dtype: str = "fp32"  # fp32 | bf16 (autocast, fp32 master weights)
    gradient_checkpointing: bool = False
    engine: str = "ddp"  # ddp | fsdp | deepspeed
    deepspeed_config: str | None = None  # JSON for engine=deepspeed (configs/deepspeed/zero2.json, zero3.json)
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
        config = cls(**values)
        if config.dtype not in ("fp32", "bf16"):
            raise ValueError(f"train.dtype must be fp32 or bf16, got {config.dtype!r}")
        if config.grad_accum_steps < 1:
            raise ValueError("train.grad_accum_steps must be >= 1")
        return config


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
    """Runs ``step_fn`` over ``dataset`` for ``cfg.max_steps`` optimizer steps, resuming from ``output_dir``.

    Args:
        optimizer_groups: AdamW groups (``utils.training.trainable.configure_trainable``); default:
            every parameter that requires grad, at ``cfg.lr``.
        count_fn: per micro-batch counts that ``step_fn``'s losses are averaged over; see the module
            docstring. Without it, losses are averaged over micro-batches and ranks instead.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        step_fn: StepFn,
        dataset: Dataset,
        collate_fn: Callable,
        cfg: TrainConfig,
        output_dir: str | Path,
        env: DistEnv,
        optimizer_groups: list[dict] | None = None,
        count_fn: CountFn | None = None,
    ):
        self.model, self.step_fn, self.dataset, self.collate_fn = model, step_fn, dataset, collate_fn
        self.cfg, self.env, self.count_fn = cfg, env, count_fn
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.loss_log = self.output_dir / "losses.jsonl"
        groups = optimizer_groups or [
            {"name": "all", "params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}
        ]
        for group in groups:
            group.setdefault("weight_decay", cfg.weight_decay)
        self.engine = build_engine(
            cfg.engine,
            model,
            groups,
            lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio),
            cfg.grad_clip,
            env,
            **_engine_options(cfg),
        )
        self.step = 0
        self.samples_seen = 0
        self.num_skipped = 0

    def fit(self) -> list[float]:
        """Train to ``max_steps``; returns the global loss of each step this call ran."""
        cfg = self.cfg
        checkpoint = self._latest_checkpoint()
        if checkpoint is not None:
            self._load(checkpoint)
        sampler = ResumableBatchSampler(
            len(self.dataset), cfg.batch_size, self.env, cfg.seed, start_step=self.step * cfg.grad_accum_steps
        )
        loader = DataLoader(
            SkipBadSamples(self.dataset),
            batch_sampler=sampler,
            collate_fn=skipping_collate(self.collate_fn),
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
        )
        batches = iter(loader)  # draws from the global RNG, so it comes before the RNG is restored
        if checkpoint is not None:
            _set_rng_state(torch.load(checkpoint / f"rng_rank{self.env.rank}.pt", weights_only=True))
        writer = SummaryWriter(self.output_dir / "tb") if self.env.is_main else None
        progress = tqdm(
            total=cfg.max_steps, initial=self.step, desc="train", disable=not self.env.is_main, dynamic_ncols=True
        )
        losses = []
        self.model.train()
        while self.step < cfg.max_steps:
            micro_batches = [
                _to_device(self._next_batch(batches, progress), self.env.device) for _ in range(cfg.grad_accum_steps)
            ]
            loss, metrics = self._accumulate(micro_batches)
            grad_norm = self.engine.step()
            self.step += 1
            losses.append(loss)
            progress.update(1)
            if self.env.is_main:
                self._log(writer, progress, {"loss": loss, "grad_norm": grad_norm, **metrics})
            if self.step % cfg.save_every == 0 or self.step == cfg.max_steps:
                self.save_checkpoint()
        progress.close()
        if writer is not None:
            writer.close()
        return losses

    def _accumulate(self, micro_batches: list[dict]) -> tuple[float, dict[str, float]]:
        """Forward and backward over one global batch; its loss and loss terms, reduced over ranks."""
        world, accum = self.env.world_size, len(micro_batches)
        if self.count_fn is not None:
            per_batch = [self.count_fn(batch) for batch in micro_batches]
            names = list(per_batch[0])
            local = torch.tensor([[c[name] for name in names] for c in per_batch]).sum(0)
            counts = dict(zip(names, _all_reduce_sum(local).tolist()))
            # Each rank's loss is its share of the global sum; engines average gradients over ranks.
            loss_scale, reduce_scale = float(world), 1.0
        else:
            counts, loss_scale, reduce_scale = {}, 1.0 / accum, 1.0 / (accum * world)
        autocast = torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=self.cfg.dtype == "bf16")
        totals: dict[str, float] = {}
        for i, batch in enumerate(micro_batches):
            with self.engine.no_sync() if i < accum - 1 else contextlib.nullcontext():
                with autocast:
                    loss, metrics = self.step_fn(self.engine.wrapped, {**batch, **counts})
                self.engine.backward(loss * loss_scale)
            for name, value in {"loss": loss.item(), **metrics}.items():
                totals[name] = totals.get(name, 0.0) + value
        names = sorted(totals)
        reduced = _all_reduce_sum(torch.tensor([totals[n] for n in names], dtype=torch.float64)) * reduce_scale
        result = dict(zip(names, reduced.tolist()))
        return result.pop("loss"), result

    def _log(self, writer: SummaryWriter, progress: tqdm, metrics: dict[str, float]) -> None:
        """Every step to ``losses.jsonl``; every ``log_every`` steps to TensorBoard and the progress bar."""
        rates = self.engine.learning_rates()
        with open(self.loss_log, "a") as log:
            log.write(json.dumps({"step": self.step, **metrics}) + "\n")
        if self.step % self.cfg.log_every and self.step != self.cfg.max_steps:
            return
        for name, value in metrics.items():
            writer.add_scalar(f"train/{name}", value, self.step)
        for name, value in rates.items():
            writer.add_scalar(f"lr/{name}", value, self.step)
        writer.add_scalar("train/skipped_samples", self.num_skipped, self.step)
        progress.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()})

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
        """Engine state (model, optimizer, scheduler), step, counters and every rank's RNG; written atomically.

        All ranks write into ``step_N.tmp``; rank 0 renames it to ``step_N`` once everyone is done,
        so a run killed at any moment leaves only complete checkpoints behind.
        """
        final = self.checkpoint_dir / f"step_{self.step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        if self.env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier(self.env)
        self.engine.save(tmp)
        torch.save(_rng_state(), tmp / f"rng_rank{self.env.rank}.pt")
        _barrier(self.env)
        if self.env.is_main:
            state = {"step": self.step, "samples_seen": self.samples_seen, "num_skipped": self.num_skipped}
            torch.save(state, tmp / "trainer_state.pt")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self._checkpoints()[: -self.cfg.keep_last]:
                shutil.rmtree(old)
        _barrier(self.env)

    def _checkpoints(self) -> list[Path]:
        return sorted(p for p in self.checkpoint_dir.glob("step_???????") if (p / "trainer_state.pt").is_file())

    def _latest_checkpoint(self) -> Path | None:
        checkpoints = self._checkpoints()
        return checkpoints[-1] if checkpoints else None

    def _load(self, checkpoint: Path) -> None:
        """Restore engine and counters; the loss log keeps only the steps the checkpoint contains."""
        self.engine.load(checkpoint)
        state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=True)
        self.step, self.samples_seen, self.num_skipped = state["step"], state["samples_seen"], state["num_skipped"]
        if self.env.is_main and self.loss_log.is_file():
            lines = self.loss_log.read_text().splitlines(keepends=True)
            kept = [line for line in lines if line.endswith("\n") and json.loads(line)["step"] <= self.step]
            self.loss_log.write_text("".join(kept))  # a line cut short by a kill is dropped too
        if self.env.is_main:
            print(f"resumed from {checkpoint} at step {self.step}")


def _engine_options(cfg: TrainConfig) -> dict:
    """The ``train`` settings each engine needs beyond the common ones."""
    if cfg.engine == "deepspeed":
        return {"deepspeed_config": cfg.deepspeed_config, "dtype": cfg.dtype, "batch_size": cfg.batch_size}
    if cfg.engine == "fsdp":
        return {"dtype": cfg.dtype}
    return {}


def _rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) generator states, in a ``weights_only``-loadable form."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos},
        "numpy_gauss": (has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], *state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity in one process); on the CPU, which gloo and NCCL-free runs use."""
    if dist.is_available() and dist.is_initialized():
        device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
        values = values.to(device)
        dist.all_reduce(values)
    return values.cpu()


def _barrier(env: DistEnv) -> None:
    if env.world_size > 1:
        dist.barrier()


def _to_device(batch: dict, device: torch.device) -> dict:
    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    return {k: move(v) for k, v in batch.items()}

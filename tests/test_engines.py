"""Engines: FSDP2 and DeepSpeed ZeRO-2/3 match DDP step for step in a 2-process gloo group on the CPU,
resume exactly from their own checkpoints, and gather the full weights onto rank 0.

A branch of the model runs only in some micro-steps (as SAM2 does only for batches with ``[SEG]``):
in the last one on every rank, and, in the ``-uneven`` runs, on different ranks in different
micro-steps (DDP and FSDP only: DeepSpeed cannot reduce gradients that only some ranks have)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from utils.training.distributed import DistEnv
from utils.training.engines import build_engine, resolve_deepspeed_config

ROOT = Path(__file__).resolve().parents[1]
WORLD, ACCUM, MICRO, STEPS = 2, 2, 2, 4  # steps 1-3 compared, checkpoint, step 4 compared after resuming
GRAD_CLIP = 0.05  # small enough that every step clips
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
RUNS = ["ddp", "fsdp", "ddp-uneven", "fsdp-uneven"] + (["zero2", "zero3"] if HAS_DEEPSPEED else [])


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear, self.norm = nn.Linear(8, 8), nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.linear(x)).relu()


class TinyNet(nn.Module):
    """Two shardable blocks (named as a Hugging Face model names them), a branch that not every
    forward pass uses, a frozen bias and a buffer."""

    _no_split_modules = ["Block"]

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.blocks, self.head = nn.Linear(4, 8), nn.ModuleList([Block(), Block()]), nn.Linear(8, 2)
        self.branch = nn.Linear(8, 8)
        self.inp.bias.requires_grad_(False)
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x: torch.Tensor, use_branch: bool) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        if use_branch:
            x = x + self.branch(x)
        return self.head(x) * self.scale


def run_group(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(env, *args)`` on ``world_size`` processes joined in a gloo group on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_join_and_run, args=(world_size, port, fn, args), nprocs=world_size)


def _join_and_run(rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        fn(DistEnv(rank, world_size, rank, torch.device("cpu")), *args)
    finally:
        dist.destroy_process_group()
    # Leave without C++ static destructors: one of the distributed libraries' threads sometimes aborts the
    # process there ("terminate called without an active exception", no Python frame left), after the work.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def zero_config(name: str, directory: Path) -> Path:
    """The shipped ``configs/deepspeed/<name>.json``, with ZeRO-3 partitioning even the tiny models' small tensors."""
    config = json.loads((ROOT / "configs" / "deepspeed" / f"{name}.json").read_text())
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def _engine(name: str, env: DistEnv, seed: int, tmp: Path):
    torch.manual_seed(seed)
    model = TinyNet()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() == 1]
    groups = [
        {"name": "decay", "params": decay, "lr": 1e-2, "weight_decay": 0.1},
        {"name": "no_decay", "params": no_decay, "lr": 3e-2, "weight_decay": 0.0},
    ]
    options = (
        {"deepspeed_config": zero_config(name, tmp / str(env.rank)), "batch_size": MICRO} if "zero" in name else {}
    )
    engine_name = "deepspeed" if name.startswith("zero") else name.removesuffix("-uneven")
    return build_engine(engine_name, model, groups, lambda step: 1.0 / (1 + step), GRAD_CLIP, env, **options)


def _step(engine, env: DistEnv, x: torch.Tensor, y: torch.Tensor, uneven: bool) -> tuple[float, float]:
    """One global batch as the trainer runs it: ``x``/``y`` are ``(ACCUM, WORLD, MICRO, ...)``."""
    total = torch.zeros(())
    for i in range(ACCUM):
        use_branch = (i + env.rank) % 2 == 1 if uneven else i == ACCUM - 1
        with engine.no_sync() if i < ACCUM - 1 else contextlib.nullcontext():
            loss = (engine.wrapped(x[i, env.rank], use_branch) - y[i, env.rank]).pow(2).sum() / y.numel()
            engine.backward(loss * env.world_size)
        total += loss.detach()
    dist.all_reduce(total)
    return total.item(), engine.step()


def _train_all(env: DistEnv, tmp: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS, ACCUM, WORLD, MICRO, 4, generator=generator)
    y = torch.randn(STEPS, ACCUM, WORLD, MICRO, 2, generator=generator)
    results = {}
    for name in RUNS:
        uneven = name.endswith("-uneven")
        engine = _engine(name, env, 0, tmp)
        run: dict = {"losses": [], "norms": [], "lrs": []}
        for step in range(STEPS - 1):
            loss, norm = _step(engine, env, x[step], y[step], uneven)
            run["losses"].append(loss)
            run["norms"].append(norm)
            run["lrs"].append(engine.learning_rates())
        checkpoint = tmp / name
        if env.is_main:
            checkpoint.mkdir()
        dist.barrier()
        engine.save(checkpoint)
        dist.barrier()
        saved = {key: value.clone() for key, value in engine.full_state_dict().items()}  # DDP's are live
        run["checkpoint"], run["saved"] = str(checkpoint), saved
        run["next_loss"] = _step(engine, env, x[-1], y[-1], uneven)[0]
        run["full"] = engine.full_state_dict()
        resumed = _engine(name, env, 1, tmp)  # different initial weights: everything must come from the checkpoint
        resumed.load(checkpoint)
        run["resumed_loss"] = _step(resumed, env, x[-1], y[-1], uneven)[0]
        run["resumed_full"] = resumed.full_state_dict()
        results[name] = run
    if env.is_main:
        torch.save(results, tmp / "results.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("engines")
    run_group(_train_all, WORLD, tmp)
    return torch.load(tmp / "results.pt", weights_only=True)


@pytest.mark.parametrize("name", ["fsdp", "fsdp-uneven", "zero2", "zero3"])
def test_engine_matches_ddp_resumes_and_gathers_full_weights(runs: dict, name: str) -> None:
    if name not in runs:
        pytest.skip("deepspeed is not installed (requirements.txt pins it)")
    ddp, run = runs["ddp-uneven" if name.endswith("-uneven") else "ddp"], runs[name]
    torch.testing.assert_close(run["losses"], ddp["losses"], rtol=0, atol=1e-5)
    torch.testing.assert_close(run["norms"], ddp["norms"], rtol=0, atol=1e-5)
    assert all(norm > GRAD_CLIP for norm in ddp["norms"])  # clipping was exercised
    torch.testing.assert_close(run["lrs"], ddp["lrs"])
    assert list(run["lrs"][0]) == ["decay", "no_decay"]
    torch.testing.assert_close(run["next_loss"], ddp["next_loss"], rtol=0, atol=1e-5)
    torch.testing.assert_close(run["resumed_loss"], run["next_loss"], rtol=0, atol=1e-6)
    assert sorted(run["full"]) == sorted(TinyNet().state_dict())
    torch.testing.assert_close(run["full"], ddp["full"], rtol=0, atol=1e-5)
    torch.testing.assert_close(run["resumed_full"], run["full"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["ddp", "fsdp", "zero2", "zero3"])
def test_merge_lora_reads_each_engines_checkpoint(runs: dict, name: str) -> None:
    if name not in runs:
        pytest.skip("deepspeed is not installed (requirements.txt pins it)")
    from merge_lora import load_checkpoint_weights

    weights = load_checkpoint_weights(Path(runs[name]["checkpoint"]))
    torch.testing.assert_close(weights, runs[name]["saved"], rtol=0, atol=0)


def test_ddp_resumes_exactly(runs: dict) -> None:
    ddp = runs["ddp"]
    assert ddp["resumed_loss"] == ddp["next_loss"]
    torch.testing.assert_close(ddp["resumed_full"], ddp["full"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_shipped_deepspeed_configs_take_their_auto_values_from_the_run(name: str) -> None:
    config = json.loads((ROOT / "configs" / "deepspeed" / f"{name}.json").read_text())
    resolved = resolve_deepspeed_config(config, grad_clip=0.5, dtype="bf16", batch_size=3, world_size=4)
    assert resolved["zero_optimization"]["stage"] == int(name[-1])
    assert resolved["gradient_clipping"] == 0.5 and resolved["bf16"] == {"enabled": True}
    assert resolved["train_micro_batch_size_per_gpu"] == 3 and resolved["train_batch_size"] == 12
    assert resolved["gradient_accumulation_steps"] == 1 and resolved["managed_gradient_accumulation"] is False
    assert resolve_deepspeed_config(config, 0.5, "fp32", 3, 4)["bf16"] == {"enabled": False}


def test_deepspeed_config_rejects_what_the_run_config_decides() -> None:
    config = json.loads((ROOT / "configs" / "deepspeed" / "zero2.json").read_text())
    with pytest.raises(ValueError, match="train.grad_accum_steps"):
        resolve_deepspeed_config({**config, "gradient_accumulation_steps": 4}, 0.5, "fp32", 3, 4)
    with pytest.raises(ValueError, match="optimizer"):
        resolve_deepspeed_config({**config, "optimizer": {"type": "Adam"}}, 0.5, "fp32", 3, 4)
    with pytest.raises(ValueError, match="offload_optimizer.device"):
        resolve_deepspeed_config({**config, "offload_optimizer": {"device": "auto"}}, 0.5, "fp32", 3, 4)


def test_fsdp_refuses_parameters_with_gradient_hooks() -> None:
    model = TinyNet()
    model.head.weight.register_hook(lambda grad: grad * 0)  # as embeddings mode new_tokens does
    groups = [{"name": "all", "params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-3}]
    with pytest.raises(ValueError, match="head.weight"):
        build_engine("fsdp", model, groups, lambda step: 1.0, 1.0, DistEnv(0, 1, 0, torch.device("cpu")))

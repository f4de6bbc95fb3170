"""Distributed engines: how gradients are synchronised, the optimizer steps and checkpoints are written.

The trainer talks to one interface, :class:`Engine`; ``train.engine`` in a run config picks the
implementation:

* ``ddp`` (also a single process) keeps a full copy of the model on each rank;
* ``fsdp`` shards parameters, gradients and optimizer state with PyTorch FSDP2 (``fully_shard``);
* ``deepspeed`` runs DeepSpeed ZeRO-2 or ZeRO-3 (``configs/deepspeed/zero2.json``, ``zero3.json``).

Every engine averages gradients over ranks; the trainer scales each rank's loss so that the sum
over ranks and accumulation steps is the loss of the whole global batch. All engines step the
same AdamW groups (names, LRs and weight decays kept) with the same LambdaLR schedule.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_model, save_model
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from utils.training.distributed import DistEnv

LrLambda = Callable[[int], float]
DEEPSPEED_TAG = "deepspeed"  # DeepSpeedEngine's checkpoint lives in <checkpoint>/deepspeed/
FSDP_MODEL_DIR, FSDP_OPTIMIZER_DIR = "model_dcp", "optimizer_dcp"  # FSDPEngine's torch.distributed.checkpoint folders


class Engine:
    """The parts of a training step that depend on how the model is distributed.

    Attributes:
        model: the unwrapped model (what ``save_pretrained`` is called on).
        wrapped: the module to call for the forward pass.
        optimizer: the optimizer whose ``param_groups`` carry each group's ``name`` and ``lr``.
    """

    model: nn.Module
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer

    def backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def no_sync(self) -> contextlib.AbstractContextManager:
        """Context for accumulation steps that should not synchronise gradients yet."""
        return contextlib.nullcontext()

    def step(self) -> float:
        """Clip, step optimizer and LR schedule, zero gradients; returns the gradient norm before clipping."""
        raise NotImplementedError

    def learning_rates(self) -> dict[str, float]:
        """Current LR of each optimizer group, by group name."""
        return {group.get("name", str(i)): group["lr"] for i, group in enumerate(self.optimizer.param_groups)}

    def save(self, directory: Path) -> None:
        """Write model, optimizer and scheduler state into ``directory`` (called on every rank)."""
        raise NotImplementedError

    def load(self, directory: Path) -> None:
        """Restore what :meth:`save` wrote."""
        raise NotImplementedError

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's weights on rank 0 (gathered from shards where sharded; empty elsewhere).

        Called on every rank.
        """
        raise NotImplementedError


class _TorchOptimizerEngine(Engine):
    """AdamW over ``optimizer_groups`` with a LambdaLR schedule, stepped by PyTorch (DDP and FSDP)."""

    def __init__(self, optimizer_groups: list[dict], lr_lambda: LrLambda, grad_clip: float):
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(optimizer_groups)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.item()


class DDPEngine(_TorchOptimizerEngine):
    """``DistributedDataParallel`` (or the bare model in one process) with AdamW and a LambdaLR schedule.

    Checkpoint: ``model.safetensors`` (the full model) and ``optimizer.pt`` (optimizer and
    scheduler), written by rank 0.
    """

    def __init__(
        self, model: nn.Module, optimizer_groups: list[dict], lr_lambda: LrLambda, grad_clip: float, env: DistEnv
    ):
        super().__init__(optimizer_groups, lr_lambda, grad_clip)
        self.model, self.env = model, env
        self.wrapped = DistributedDataParallel(model, find_unused_parameters=True) if env.world_size > 1 else model

    def no_sync(self) -> contextlib.AbstractContextManager:
        return self.wrapped.no_sync() if isinstance(self.wrapped, DistributedDataParallel) else super().no_sync()

    def save(self, directory: Path) -> None:
        if not self.env.is_main:
            return
        save_model(self.model, str(directory / "model.safetensors"))
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
            directory / "optimizer.pt",
        )

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict() if self.env.is_main else {}

    def load(self, directory: Path) -> None:
        load_model(self.model, str(directory / "model.safetensors"), device=str(self.env.device))
        state = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class FSDPEngine(_TorchOptimizerEngine):
    """PyTorch FSDP2: each layer named in the model's ``_no_split_modules`` (Qwen decoder layers and
    vision blocks), then the whole model, is ``fully_shard``-ed over all ranks.

    A parameter that some ranks did not use reduces zeros there, as under DDP; every rank must
    still run each sharded layer. Gradient hooks on parameters are refused: sharding drops them.

    Args:
        dtype: ``bf16`` computes in bfloat16 (gradients reduced in fp32) over fp32 sharded weights.

    Checkpoint: ``model_dcp/`` and ``optimizer_dcp/`` (``torch.distributed.checkpoint``, one shard
    file per rank; the model folder loads without a process group, see ``merge_lora.py``) and
    ``scheduler.pt``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer_groups: list[dict],
        lr_lambda: LrLambda,
        grad_clip: float,
        env: DistEnv,
        dtype: str = "fp32",
    ):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        hooked = [name for name, p in model.named_parameters() if p.requires_grad and p._backward_hooks]
        if hooked:  # fully_shard replaces the parameters, and their gradient hooks are not carried over
            raise ValueError(
                f"engine fsdp would drop the gradient hooks on {hooked} (model.groups.embeddings mode new_tokens); "
                "use train.engine=ddp or deepspeed"
            )
        _ensure_process_group(env)
        param_names = {id(p): name for name, p in model.named_parameters()}
        group_names = [[param_names[id(p)] for p in group["params"]] for group in optimizer_groups]
        mesh = init_device_mesh(env.device.type, (env.world_size,))
        compute = torch.bfloat16 if dtype == "bf16" else None
        policy = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32 if compute else None)
        layers = set(getattr(model, "_no_split_modules", None) or ())
        for module in reversed(list(model.modules())):  # inner layers before the modules containing them
            if type(module).__name__ in layers:
                fully_shard(module, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        model.set_reduce_scatter_unused_params(True)  # a parameter one rank did not use reduces zeros there
        params = dict(model.named_parameters())  # sharding replaced every parameter by a DTensor one
        groups = [
            {**group, "params": [params[n] for n in names]} for group, names in zip(optimizer_groups, group_names)
        ]
        super().__init__(groups, lr_lambda, grad_clip)
        self.model = self.wrapped = model
        self.env = env

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        self.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)

    def save(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        dcp.save(model_state, checkpoint_id=directory / FSDP_MODEL_DIR)
        dcp.save(optimizer_state, checkpoint_id=directory / FSDP_OPTIMIZER_DIR)
        if self.env.is_main:
            torch.save({"scheduler": self.scheduler.state_dict()}, directory / "scheduler.pt")

    def load(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)  # the sharded layout to fill
        dcp.load(model_state, checkpoint_id=directory / FSDP_MODEL_DIR)
        dcp.load(optimizer_state, checkpoint_id=directory / FSDP_OPTIMIZER_DIR)
        set_state_dict(self.model, self.optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)
        state = torch.load(directory / "scheduler.pt", map_location="cpu", weights_only=True)
        self.scheduler.load_state_dict(state["scheduler"])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)
        return state if self.env.is_main else {}


class DeepSpeedEngine(Engine):
    """DeepSpeed ZeRO (the stage and its settings come from the JSON ``deepspeed_config``).

    Our AdamW groups and LambdaLR schedule are handed to ``deepspeed.initialize``, so group names,
    per-group LRs and weight decays are the same as under DDP. Accumulation stays the trainer's:
    DeepSpeed runs with ``managed_gradient_accumulation: false``, so ``backward`` only accumulates
    (ZeRO-2/3 reduce-scatter each micro-step into their gradient partitions) and every ``step`` is
    an optimizer step; the loss is never divided by DeepSpeed's ``gradient_accumulation_steps``.
    Unlike DDP and FSDP, ZeRO needs every rank to give a gradient to the same parameters in each
    micro-step: UniGR's heads add an idle loss on a rank whose batch has nothing for them. ZeRO-3
    also gathers each submodule's parameters per call, so every rank must call SAM2's modules
    equally often (the same frame counts in each micro-step).

    Args:
        deepspeed_config: JSON path; see :func:`resolve_deepspeed_config` for its ``"auto"`` values.
        dtype: the run's ``train.dtype`` (``bf16.enabled: "auto"`` follows it).
        batch_size: per-process micro-batch (``train_micro_batch_size_per_gpu: "auto"``; DeepSpeed
            only reports throughput with it).

    Checkpoint: DeepSpeed's own layout under ``deepspeed/`` (ZeRO shards per rank, the LR schedule
    included); ``merge_lora.py`` turns it into full fp32 weights.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer_groups: list[dict],
        lr_lambda: LrLambda,
        grad_clip: float,
        env: DistEnv,
        deepspeed_config: str | Path | None,
        dtype: str = "fp32",
        batch_size: int = 1,
    ):
        import deepspeed

        if not deepspeed_config:
            raise ValueError(
                "train.engine=deepspeed needs train.deepspeed_config (configs/deepspeed/zero2.json, zero3.json)"
            )
        _ensure_process_group(env)
        config = resolve_deepspeed_config(
            json.loads(Path(deepspeed_config).read_text()), grad_clip, dtype, batch_size, env.world_size
        )
        self.model, self.env = model, env
        self.wrapped, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=torch.optim.AdamW(optimizer_groups),
            lr_scheduler=partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lr_lambda),
            config=config,
        )

    def backward(self, loss: torch.Tensor) -> None:
        self.wrapped.backward(loss, scale_wrt_gas=False)

    def step(self) -> float:
        self.wrapped.step()  # clips to gradient_clipping, steps optimizer and schedule, zeroes gradients
        if self.wrapped.zero_optimization_partition_weights():
            # ZeRO-3 overwrites a parameter's gradient partition only in the first micro-step and adds to
            # it after that, so a parameter first used in a later micro-step would get the last step's
            # gradient added (DeepSpeed 0.19.8); every step starts from zero instead.
            self.optimizer.grad_partitions_flat_buffer.zero_()
        return float(self.wrapped.get_global_grad_norm())

    def save(self, directory: Path) -> None:
        self.wrapped.save_checkpoint(str(directory), tag=DEEPSPEED_TAG, save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.wrapped.load_checkpoint(str(directory), tag=DEEPSPEED_TAG)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {directory / DEEPSPEED_TAG}")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in the training dtype (bf16 when ``bf16`` is enabled; the fp32 masters are in the checkpoint)."""
        if self.wrapped.zero_optimization_partition_weights():  # ZeRO-3: gathered layer by layer onto rank 0
            state = self.wrapped._zero3_consolidated_16bit_state_dict()
        else:
            state = self.model.state_dict()
        return dict(state) if self.env.is_main else {}


def resolve_deepspeed_config(config: dict, grad_clip: float, dtype: str, batch_size: int, world_size: int) -> dict:
    """A DeepSpeed config with its ``"auto"`` values filled from the run's ``train:`` settings.

    ``gradient_clipping`` <- ``grad_clip``; ``bf16.enabled`` <- ``dtype == "bf16"``;
    ``train_micro_batch_size_per_gpu`` <- ``batch_size``; ``gradient_accumulation_steps`` <- 1
    and ``train_batch_size`` <- ``batch_size x world_size``, because the trainer accumulates
    (``train.grad_accum_steps``). The optimizer and schedule are the run's, so the JSON must not
    name its own.
    """
    for key in ("optimizer", "scheduler"):
        if key in config:
            raise ValueError(f"the DeepSpeed config must not set {key!r}: the run config's train: section decides it")
    if config.get("gradient_accumulation_steps", "auto") not in ("auto", 1):
        raise ValueError("DeepSpeed gradient_accumulation_steps must be 1 or auto; set train.grad_accum_steps instead")
    filled = {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": batch_size * world_size,
        "gradient_clipping": grad_clip,
    }
    resolved = {**config, **{key: value for key, value in filled.items() if config.get(key, "auto") == "auto"}}
    if "bf16" in config:
        bf16 = dict(config["bf16"])
        if bf16.get("enabled") == "auto":
            bf16["enabled"] = dtype == "bf16"
        resolved["bf16"] = bf16
    left = [key for key, value in _flatten(resolved) if value == "auto"]
    if left:
        raise ValueError(f"DeepSpeed config values left at 'auto' that the run cannot decide: {left}")
    return {**resolved, "managed_gradient_accumulation": False, "zero_allow_untested_optimizer": True}


def _flatten(config: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _ensure_process_group(env: DistEnv) -> None:
    """FSDP and DeepSpeed need a process group even for one process (``torchrun --nproc_per_node=1``)."""
    if dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError("engines fsdp and deepspeed need a process group: launch train.py with torchrun")
    dist.init_process_group("nccl" if env.device.type == "cuda" else "gloo")


ENGINES: dict[str, type[Engine]] = {"ddp": DDPEngine, "fsdp": FSDPEngine, "deepspeed": DeepSpeedEngine}


def build_engine(
    name: str,
    model: nn.Module,
    optimizer_groups: list[dict],
    lr_lambda: LrLambda,
    grad_clip: float,
    env: DistEnv,
    **options,
) -> Engine:
    """The engine called ``name`` (``train.engine``); ``options`` are engine-specific settings.

    ``fsdp`` takes ``dtype``; ``deepspeed`` takes ``deepspeed_config`` (required), ``dtype`` and ``batch_size``.
    """
    if name not in ENGINES:
        raise ValueError(f"train.engine must be one of {sorted(ENGINES)}, got {name!r}")
    return ENGINES[name](model, optimizer_groups, lr_lambda, grad_clip, env, **options)

"""The one inference loop of every benchmark: sharded over ranks, resumable, never killed by one sample.

Rank ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...`` of the dataset (a fixed split of all
sample ids, so every rank agrees on it whenever it starts), skips the ids the store already has and
writes each finished sample at once. A sample that fails to load or predict is written down as an
error and counted; a re-run retries it. If the first samples a rank tries all fail, the run stops:
that is a broken setup, not a bad sample.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from evaluation.prediction_store import PredictionStore
from utils.data.schema import Sample

MAX_INITIAL_FAILURES = 5
"""A rank whose first this-many samples all fail stops with the last error."""


class Predictor(Protocol):
    """What the runner calls: masks ``(T, H, W)`` bool on the sample's frames (or ``None``) and the answer text."""

    def predict(self, sample: Sample) -> tuple[np.ndarray | None, str]: ...


@dataclass(frozen=True)
class DistributedEnv:
    """This process's place in a ``torchrun`` launch (single process when the variables are unset)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environ(cls) -> DistributedEnv:
        env = cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
        if not 0 <= env.rank < env.world_size:
            raise ValueError(f"RANK={env.rank} is outside WORLD_SIZE={env.world_size}")
        return env


@dataclass
class InferenceSummary:
    """What one rank did: samples in its shard, already done before, predicted now, failed now."""

    shard: int = 0
    already_done: int = 0
    predicted: int = 0
    failed: int = 0


def shard_indices(num_items: int, rank: int, world_size: int) -> list[int]:
    """Items ``rank, rank + world_size, ...`` of ``num_items``."""
    return list(range(rank, num_items, world_size))


def run_inference(
    dataset: Dataset,
    predictor: Predictor,
    store: PredictionStore,
    env: DistributedEnv = DistributedEnv(),
    desc: str = "",
) -> InferenceSummary:
    """Predict this rank's share of ``dataset`` into ``store``, skipping samples it already holds."""
    sample_ids = dataset.sample_ids()
    if len(set(sample_ids)) != len(sample_ids):
        raise ValueError(f"{desc or type(dataset).__name__}: sample ids are not unique")
    done = store.done_ids()
    mine = shard_indices(len(sample_ids), env.rank, env.world_size)
    todo = [i for i in mine if sample_ids[i] not in done]
    summary = InferenceSummary(shard=len(mine), already_done=len(mine) - len(todo))
    label = f"{desc} rank {env.rank}/{env.world_size}" if env.world_size > 1 else desc
    print(f"{label}: {summary.already_done} of {summary.shard} samples already predicted", flush=True)
    progress = tqdm(todo, desc=label, unit="sample", dynamic_ncols=True, position=env.local_rank)
    for index in progress:
        sample_id = sample_ids[index]
        try:
            sample = dataset[index]
            if sample.sample_id != sample_id:
                raise ValueError(f"item {index} is {sample.sample_id}, but sample_ids() says {sample_id}")
            masks, answer = predictor.predict(sample)
            store.write(sample_id, sample.frame_names, masks, {"answer": answer})
            summary.predicted += 1
        except Exception as error:  # noqa: BLE001 - one bad sample must not end a long run
            summary.failed += 1
            store.write_error(sample_id, f"{type(error).__name__}: {error}")
            progress.write(f"{sample_id} failed: {type(error).__name__}: {error}")
            if summary.predicted == 0 and summary.failed >= MAX_INITIAL_FAILURES:
                traceback.print_exc()
                raise RuntimeError(
                    f"{label}: the first {summary.failed} samples all failed; errors are in {store.errors_dir}"
                ) from error
        progress.set_postfix(failed=summary.failed)
    print(
        f"{label}: predicted {summary.predicted}, failed {summary.failed}"
        + (f" (listed in {store.errors_dir}; re-run to retry)" if summary.failed else ""),
        flush=True,
    )
    return summary

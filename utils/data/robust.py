"""Training never dies on one bad sample: unreadable samples become recorded skips, not crashes.

:class:`SkipBadSamples` wraps a dataset so that a sample whose files are missing or malformed
comes back as a :class:`BadSample` carrying the loader's error (which names the sample and file);
:func:`skipping_collate` batches the good ones and lists the bad ones under ``"skipped"``, for the
trainer to count, log and write down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset

LOAD_ERRORS = (OSError, ValueError, KeyError, IndexError)
"""What a loader raises for bad input (missing or corrupt files, malformed annotations)."""


@dataclass(frozen=True)
class BadSample:
    """Item ``index`` could not be loaded; ``error`` says why (sample and file)."""

    index: int
    error: str


class SkipBadSamples(Dataset):
    """``dataset`` with load errors turned into :class:`BadSample` items."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except LOAD_ERRORS as error:
            return BadSample(index, f"{type(error).__name__}: {error}")


def skipping_collate(collate_fn: Callable[[list], dict]) -> Callable[[list], dict]:
    """Wrap ``collate_fn``: bad items go to ``batch["skipped"]`` as ``[(index, error)]``; ``{}`` if none is good.

    A sample that loads but cannot be collated (``collate_fn`` raises a :data:`LOAD_ERRORS` error, e.g. a region
    prompt that covers no pixel) is found by collating the batch's samples one by one; it is skipped too, listed
    by its ``sample_id`` (the collators' errors name it) instead of its index, and the others are batched."""

    def collate(items: list) -> dict:
        good = [item for item in items if not isinstance(item, BadSample)]
        skipped = [(item.index, item.error) for item in items if isinstance(item, BadSample)]
        try:
            batch = collate_fn(good) if good else {}
        except LOAD_ERRORS:
            collatable = []
            for sample in good:
                try:
                    collate_fn([sample])
                    collatable.append(sample)
                except LOAD_ERRORS as error:
                    skipped.append((sample.sample_id, f"{type(error).__name__}: {error}"))
            batch = collate_fn(collatable) if collatable else {}
        batch["skipped"] = skipped
        return batch

    return collate

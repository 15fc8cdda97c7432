"""A training order and augmentation that depend only on ``(seed, epoch)``: exact resumes with any number of workers.

A plain shuffling ``DataLoader`` draws its order from the loader's generator, and its worker processes draw
their augmentation from seeds that depend on how many iterators the loader has made and, with persistent
workers, on everything they loaded before. A run resumed at epoch *k* builds a fresh loader, so it would see
another order and other flips than the uninterrupted run. Here nothing depends on that history:

* :class:`EpochSampler` yields, for each epoch, a permutation seeded by ``(seed, epoch)``, and pairs every
  dataset index with a seed of its own, derived from ``(seed, epoch, index)``;
* :class:`SeededDataset` loads item ``(index, seed)`` with python's, NumPy's and torch's generators seeded by
  that seed, and restores them afterwards (so loading in the main process, ``workers=0``, leaves the model's
  random stream alone).

The same run therefore sees the same batches, augmented the same way, with 0, 2 or 4 workers, persistent or
not, resumed or not.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_ORDER, _SAMPLE = 0, 1  # first word of the entropy, so that order and sample seeds never coincide


def derive_seed(*words: int) -> int:
    """A 63-bit seed mixed from non-negative integers with NumPy's ``SeedSequence`` (deterministic everywhere)."""
    low, high = np.random.SeedSequence([w & 0xFFFFFFFFFFFFFFFF for w in words]).generate_state(2, dtype=np.uint32)
    return (int(high) << 31 ^ int(low)) & 0x7FFFFFFFFFFFFFFF


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed that loads dataset item ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return derive_seed(_SAMPLE, seed, epoch, index)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` pairs: a permutation seeded by ``(seed, epoch)``; call ``set_epoch`` first.

    Args:
        size: number of items in the dataset.
        seed: the run's seed.
        shuffle: permute the indices (False: in order).
        order: an index sampler to take the indices from instead (e.g. a ``DistributedSampler``, whose own
            order depends only on its seed and epoch); its ``set_epoch`` is called too.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, order: Sampler[int] | None = None):
        self.size, self.seed, self.shuffle, self.order = size, seed, shuffle, order
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and seeds the next pass yields."""
        self.epoch = epoch
        if self.order is not None and hasattr(self.order, "set_epoch"):
            self.order.set_epoch(epoch)

    def indices(self) -> list[int]:
        """This epoch's dataset indices, in order."""
        if self.order is not None:
            return list(self.order)
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(derive_seed(_ORDER, self.seed, self.epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, indices = self.epoch, self.indices()  # fixed now; the seeds are made as the loader asks for them
        return ((i, sample_seed(self.seed, epoch, i)) for i in indices)

    def __len__(self) -> int:
        return len(self.order) if isinstance(self.order, Sized) else self.size


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python's, NumPy's and torch's (CPU) global generators inside the block; restore them after it."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class SeededDataset(Dataset):
    """Wraps a dataset for :class:`EpochSampler`: item ``(index, seed)`` is ``dataset[index]`` loaded with python's,
    NumPy's and torch's generators seeded by ``seed`` (``pedseg_lib.data.sampling.seeded``), so its random
    augmentation depends on that seed alone."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with seeded(seed):
            return self.dataset[index]


__all__ = ["EpochSampler", "SeededDataset", "derive_seed", "sample_seed", "seeded"]

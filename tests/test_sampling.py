"""The training order and augmentation depend only on (seed, epoch, image): not on workers or loader history."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from pedseg_lib.data import create_loader
from pedseg_lib.data.sampling import EpochSampler, SeededDataset, sample_seed


class RandomDraws(Dataset):
    """Item i: its index and one draw from each global generator, as a random augmentation would make."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[int, float, float, float]:
        return index, float(torch.rand(())), random.random(), float(np.random.rand())


def _epochs(workers: int, epochs: list[int], seed: int = 3) -> dict[int, list]:
    sampler = EpochSampler(6, seed)
    loader = create_loader(SeededDataset(RandomDraws()), 2, shuffle=False, workers=workers, seed=seed, sampler=sampler)
    seen = {}
    for epoch in epochs:
        sampler.set_epoch(epoch)
        seen[epoch] = [item for batch in loader for item in zip(*batch, strict=True)]
    return seen


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 4 workers on 2 cores
def test_order_and_draws_depend_only_on_seed_epoch_and_image():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    straight = _epochs(0, [1, 2])
    assert torch.equal(torch.get_rng_state(), before)  # loading in the main process leaves its generator alone
    assert sorted(i for i, *_ in straight[1]) == list(range(6))
    assert [i for i, *_ in straight[1]] != [i for i, *_ in straight[2]]  # a new order every epoch
    assert _epochs(0, [2]) == {2: straight[2]}  # epoch 2 alone (a resumed run) is epoch 2 after epoch 1
    # Two or four persistent workers, whose generators have loaded epoch 1 or not: the same items and draws.
    assert _epochs(2, [1, 2]) == straight and _epochs(2, [2]) == {2: straight[2]}
    assert _epochs(4, [1, 2]) == straight and _epochs(4, [2]) == {2: straight[2]}
    assert _epochs(0, [1], seed=4)[1] != straight[1]
    assert len({sample_seed(3, e, i) for e in (1, 2) for i in range(6)}) == 12

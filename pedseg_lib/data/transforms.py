"""Augmentation pipelines (torchvision v2) and reproducible detection DataLoaders."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


def build_transforms(train: bool, hflip: float = 0.5, photometric: bool = False) -> v2.Compose:
    """The v2 pipeline; image, boxes and masks stay aligned and stay tv_tensors.

    Resizing is not done here: the model's own transform resizes every image to ``min_size``, and
    multi-scale training (``TrainConfig.scale_jitter``) varies that size inside the model.

    Args:
        train: enable the random augmentations.
        hflip: horizontal flip probability (train only).
        photometric: add ``RandomPhotometricDistort`` (train only).

    Returns:
        A ``v2.Compose`` ending with float32 images in [0, 1].
    """
    steps: list[Any] = []
    if train:
        if photometric:
            steps.append(v2.RandomPhotometricDistort())
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def collate_fn(batch: list) -> tuple:
    """Keep variable-sized images and targets as tuples (what torchvision detection models expect)."""
    return tuple(zip(*batch, strict=True))


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def create_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, workers: int = 0, seed: int = 0, sampler=None, drop_last: bool = False
) -> DataLoader:
    """A reproducible DataLoader: seeded generator, seeded workers, detection collate."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_seed_worker,
        persistent_workers=workers > 0,
        drop_last=drop_last,
    )

"""Augmentation pipelines (torchvision v2) and reproducible detection DataLoaders."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2


def build_transforms(train: bool, hflip: float = 0.5, photometric: bool = False) -> v2.Compose:
    """The v2 pipeline; image, boxes and masks stay aligned and stay tv_tensors.

    Resizing is not done here: the model's own transform resizes every image to ``min_size``, and
    multi-scale training (``TrainConfig.scale_jitter``) varies that size inside the model.

    After the geometric steps (the flip), :class:`BoxesFromMasks` recomputes every box from its mask, so a
    target's boxes stay :func:`torchvision.ops.masks_to_boxes` of its masks, as the dataset made them.

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
            steps.append(BoxesFromMasks())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


class BoxesFromMasks(v2.Transform):
    """Sets each target's boxes to :func:`torchvision.ops.masks_to_boxes` of its masks, after geometric steps.

    The data sets' boxes are ``masks_to_boxes`` of the masks: pixel indices, x2/y2 inclusive. v2's geometric
    transforms move box coordinates as continuous positions instead: the horizontal flip maps x1 to W - x2,
    so a flipped inclusive box would sit one pixel right of its flipped mask ([1, 2, 3, 4] in an image 10
    pixels wide becomes [7, 2, 9, 4]; the flipped mask's box is [6, 2, 8, 4]). Recomputing the boxes from
    the moved masks keeps both in the dataset's convention. An empty mask keeps its box; a target without
    ``masks`` (or an input that is not an (image, target dict) pair) passes through unchanged.
    """

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        if not (isinstance(sample, tuple | list) and len(sample) == 2 and isinstance(sample[1], dict)):
            return sample
        image, target = sample
        if "masks" not in target or "boxes" not in target:
            return sample
        boxes, masks = target["boxes"], target["masks"].as_subclass(torch.Tensor)
        recomputed = boxes.as_subclass(torch.Tensor).clone()
        nonempty = (masks.flatten(1) != 0).any(1) if len(masks) else torch.zeros(0, dtype=torch.bool)
        if nonempty.any():
            recomputed[nonempty] = masks_to_boxes(masks[nonempty]).to(recomputed.dtype)
        boxes = tv_tensors.wrap(recomputed, like=boxes) if isinstance(boxes, tv_tensors.BoundingBoxes) else recomputed
        return image, {**target, "boxes": boxes}


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

"""The Penn-Fudan dataset: PNG files, instance masks to detection targets, statistics."""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from pedseg_lib.errors import DatasetError

_LAYOUT = "expected ROOT/PNGImages/*.png and ROOT/PedMasks/*_mask.png (get the data with `pedseg download`)"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BACKGROUND = "__background__"  # class_names[0] of every dataset (torchvision's name for label 0)


def _png_size(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG header, without decoding the pixels."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror}); check the file permissions") from None
    if len(head) < 24 or head[:8] != _PNG_MAGIC or head[12:16] != b"IHDR":
        raise DatasetError(f"{path}: not a PNG file; replace it with the original from the Penn-Fudan zip")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _read_png(path: Path, mode: str | None = None) -> np.ndarray:
    """Decode a PNG fully, turning any decoding problem into a one-line DatasetError."""
    _png_size(path)
    try:
        with Image.open(path) as im:
            im.load()
            if mode is not None:
                im = im.convert(mode)
            return np.asarray(im).copy()
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable or truncated PNG ({e}); re-download the dataset") from None


class PennFudanDataset(Dataset):
    """The Penn-Fudan pedestrian dataset (or any folder with the same layout).

    Args:
        root: folder holding ``PNGImages/`` and ``PedMasks/`` (or its parent holding ``PennFudanPed/``).
        transforms: optional v2 transform called as ``transforms(image, target)``.

    Each item is ``(image, target)``: ``image`` a uint8 ``tv_tensors.Image`` [3, H, W]; ``target`` holds
    ``boxes`` (BoundingBoxes XYXY float32, x2/y2 inclusive pixel indices as in ``masks_to_boxes``),
    ``masks`` (uint8 Mask [N, H, W]), ``labels`` (int64 ones), ``image_id`` (the index), ``area``
    (float32 mask pixel count) and ``iscrowd`` (int64 zeros). Instances are the distinct non-zero mask
    values in increasing order; an instance whose box would have zero width or height is dropped.
    A mask without pedestrians is a valid negative sample (``boxes`` [0, 4], ``masks`` [0, H, W]).
    """

    #: torchvision's convention: the index is the label, 0 is the background.
    class_names: list[str] = [BACKGROUND, "person"]
    #: the COCO category id of each label (Penn-Fudan's one class is COCO's "person", id 1).
    category_ids: list[int] = [0, 1]

    def __init__(self, root: str | Path, transforms: Callable | None = None, cache_targets: bool = True):
        root = Path(root)
        if not (root / "PNGImages").is_dir() and (root / "PennFudanPed" / "PNGImages").is_dir():
            root = root / "PennFudanPed"
        if not (root / "PNGImages").is_dir() or not (root / "PedMasks").is_dir():
            raise DatasetError(f"{root}: not a Penn-Fudan folder; {_LAYOUT}")
        self.root = root
        self.transforms = transforms
        self.images = sorted(p.name for p in (root / "PNGImages").glob("*.png"))
        if not self.images:
            raise DatasetError(f"{root / 'PNGImages'}: no .png images; {_LAYOUT}")
        for name in self.images:
            mask = self.mask_path_for(name)
            if not mask.is_file():
                raise DatasetError(f"{root / 'PNGImages' / name}: its mask {mask} is missing; restore it or remove the image")
        self._cache: dict[int, dict[str, Any]] | None = {} if cache_targets else None

    def mask_path_for(self, name: str) -> Path:
        return self.root / "PedMasks" / (Path(name).stem + "_mask.png")

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, idx: int) -> Path:
        return self.root / "PNGImages" / self.images[idx]

    def mask_path(self, idx: int) -> Path:
        return self.mask_path_for(self.images[idx])

    def target(self, idx: int) -> dict[str, Any]:
        """The target of item ``idx`` without decoding the RGB image (only its PNG header is read)."""
        if self._cache is not None and idx in self._cache:
            return _clone_target(self._cache[idx])
        image_path, mask_path = self.image_path(idx), self.mask_path(idx)
        size = _png_size(image_path)
        mask = _read_png(mask_path)
        if mask.ndim == 3:  # some tools save masks as RGB: keep the first channel
            mask = mask[..., 0]
        if tuple(mask.shape) != size:
            raise DatasetError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {image_path.name} is "
                f"{size[1]}x{size[0]}; the mask must match its image"
            )
        # 8-bit masks (Penn-Fudan's) stay uint8, where comparing every pixel with every instance id is far cheaper
        # than in int64; wider masks (16-bit PNGs) become int64.
        ids = torch.from_numpy(mask if mask.dtype == np.uint8 else mask.astype(np.int64))
        target = mask_to_target(ids, idx)
        if self._cache is not None:
            # Masks are stored packed-free but uint8: ~0.3 MB/instance for real data, fine for 170 images.
            self._cache[idx] = target
            return _clone_target(target)
        return target

    def __getitem__(self, idx: int):
        target = self.target(idx)
        array = _read_png(self.image_path(idx), "RGB")
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1).contiguous())
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def _clone_target(target: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in target.items()}


def mask_to_target(mask: torch.Tensor, image_id: int) -> dict[str, Any]:
    """Split an instance-id mask [H, W] into a detection target (see :class:`PennFudanDataset`).

    Args:
        mask: integer tensor [H, W]; 0 is background, every other value one instance.
        image_id: stored as ``target["image_id"]``.

    Returns:
        The target dict (every label 1); degenerate (zero width or height) instances are dropped.
    """
    # The instance ids present, in increasing order: a histogram is one pass over the pixels (torch.unique sorts them
    # all, about 50x slower on a Penn-Fudan mask with two threads).
    counts = torch.bincount(mask.flatten().to(torch.int64))
    ids = torch.nonzero(counts[1:]).flatten().add(1).to(mask.dtype)
    masks = (mask[None] == ids[:, None, None]).to(torch.uint8)
    return instances_to_target(masks, torch.ones(len(ids), dtype=torch.int64), image_id)


def instances_to_target(masks: torch.Tensor, labels: torch.Tensor, image_id: int) -> dict[str, Any]:
    """A detection target from binary instance masks [N, H, W] and their labels [N].

    Boxes are :func:`torchvision.ops.masks_to_boxes` of the masks; an instance whose box has zero width or
    height (or whose mask is empty) is dropped; ``area`` is the mask pixel count; ``iscrowd`` is 0.

    Args:
        masks: binary masks [N, H, W] (any dtype; non-zero is foreground).
        labels: int64 class labels [N] (1..K; 0 is the background).
        image_id: stored as ``target["image_id"]``.

    Returns:
        ``boxes`` (BoundingBoxes XYXY float32), ``masks`` (uint8 Mask), ``labels``, ``image_id``, ``area``
        (float32) and ``iscrowd`` (int64 zeros).
    """
    h, w = masks.shape[-2:]
    masks = masks.to(torch.uint8).reshape(-1, h, w)
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    nonempty = (masks.flatten(1) != 0).any(1)
    masks, labels = masks[nonempty], labels[nonempty]
    boxes = masks_to_boxes(masks) if len(masks) else torch.zeros((0, 4))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    masks, boxes, labels = masks[keep], boxes[keep].to(torch.float32), labels[keep]
    n = len(boxes)
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "masks": tv_tensors.Mask(masks),
        "labels": labels,
        "image_id": int(image_id),
        "area": masks.flatten(1).sum(1).to(torch.float32),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
    }


def dataset_statistics(dataset: PennFudanDataset) -> dict[str, Any]:
    """Counts and distributions computed from targets (no RGB decoding).

    Returns:
        dict with ``images``, ``instances``, ``negatives``, ``instances_per_image`` (list),
        ``box_heights``, ``box_widths``, ``aspect_ratios`` (w/h), ``areas`` (lists over instances),
        ``image_sizes`` (Counter of (width, height)).
    """
    per_image, heights, widths, areas, sizes = [], [], [], [], Counter()
    for i in range(len(dataset)):
        t = dataset.target(i)
        b = t["boxes"]
        per_image.append(len(b))
        heights += (b[:, 3] - b[:, 1] + 1).tolist()
        widths += (b[:, 2] - b[:, 0] + 1).tolist()
        areas += t["area"].tolist()
        h, w = b.canvas_size
        sizes[(w, h)] += 1
    return {
        "images": len(dataset),
        "instances": sum(per_image),
        "negatives": sum(1 for n in per_image if n == 0),
        "instances_per_image": per_image,
        "box_heights": heights,
        "box_widths": widths,
        "aspect_ratios": [w / h for w, h in zip(widths, heights, strict=True)],
        "areas": areas,
        "image_sizes": sizes,
    }


def find_dataset(path: str | os.PathLike) -> Path | None:
    """The Penn-Fudan folder at ``path``: ``path`` itself or ``path/PennFudanPed``, else None."""
    path = Path(path)
    for candidate in (path, path / "PennFudanPed"):
        if (candidate / "PNGImages").is_dir() and (candidate / "PedMasks").is_dir():
            return candidate
    return None

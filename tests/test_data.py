"""Dataset, annotations, split, synthetic data and transforms."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from pedseg_lib.data import (
    PennFudanDataset,
    build_transforms,
    create_loader,
    dataset_statistics,
    make_synthetic_pennfudan,
    mask_to_target,
    read_annotation,
    split_indices,
)
from pedseg_lib.errors import DatasetError


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_real_counts_match_annotations(real_root):
    ds = PennFudanDataset(real_root)
    assert len(ds) == 170
    n_masks = n_boxes = 0
    errors = []
    for i in range(len(ds)):
        t = ds.target(i)
        ann = read_annotation(real_root / "Annotation" / (ds.image_path(i).stem + ".txt"))
        assert (ann.height, ann.width) == t["boxes"].canvas_size
        n_masks += len(t["boxes"])
        n_boxes += len(ann.objects)
        got = t["boxes"].as_subclass(torch.Tensor)
        want = torch.tensor([o.box for o in ann.objects], dtype=torch.float32) - 1  # 1-based -> 0-based
        assert got.shape == want.shape
        errors += (got - want).abs().amax(1).tolist()
    assert n_masks == n_boxes
    # Annotators drew a few boxes by hand around occluded limbs: most agree exactly, none by more than 6 px.
    assert max(errors) <= 6
    assert sum(e == 0 for e in errors) >= 0.95 * len(errors)
    assert n_masks > 170


def test_item_types(synthetic_root):
    ds = PennFudanDataset(synthetic_root)
    image, t = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
    h, w = image.shape[1:]
    assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].canvas_size == (h, w)
    assert t["boxes"].dtype == torch.float32
    assert isinstance(t["masks"], tv_tensors.Mask) and t["masks"].dtype == torch.uint8
    assert t["masks"].shape[1:] == (h, w)
    assert t["labels"].dtype == torch.int64 and bool((t["labels"] == 1).all())
    assert t["image_id"] == 0
    assert torch.equal(t["area"], t["masks"].flatten(1).sum(1).float())
    assert t["iscrowd"].dtype == torch.int64 and not t["iscrowd"].any()
    t2 = ds.target(0)
    assert torch.equal(t2["masks"], t["masks"]) and torch.equal(t2["boxes"], t["boxes"])


def test_mask_to_target_ids_negative_and_sliver():
    mask = torch.zeros(10, 12, dtype=torch.int64)
    mask[2:5, 3:7] = 7  # ids need not be 1..N
    mask[6:9, 1:3] = 3
    mask[0:8, 11] = 9  # one pixel wide: dropped
    t = mask_to_target(mask, 5)
    assert len(t["boxes"]) == 2
    assert t["boxes"].tolist() == [[1.0, 6.0, 2.0, 8.0], [3.0, 2.0, 6.0, 4.0]]  # id 3 first, x2/y2 inclusive
    assert t["area"].tolist() == [6.0, 12.0]
    empty = mask_to_target(torch.zeros(4, 5, dtype=torch.int64), 0)
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 4, 5)


def _copy(root: Path, dst: Path, n: int = 2) -> Path:
    for sub in ("PNGImages", "PedMasks"):
        (dst / sub).mkdir(parents=True)
    for p in sorted((root / "PNGImages").glob("*.png"))[:n]:
        shutil.copy(p, dst / "PNGImages" / p.name)
        shutil.copy(root / "PedMasks" / (p.stem + "_mask.png"), dst / "PedMasks" / (p.stem + "_mask.png"))
    return dst


def test_bad_inputs(synthetic_root, tmp_path):
    with pytest.raises(DatasetError, match="pedseg download"):
        PennFudanDataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "PNGImages").mkdir(parents=True)
    (tmp_path / "empty" / "PedMasks").mkdir()
    with pytest.raises(DatasetError, match="no .png images"):
        PennFudanDataset(tmp_path / "empty")

    d = _copy(synthetic_root, tmp_path / "missing")
    next((d / "PedMasks").glob("*.png")).unlink()
    with pytest.raises(DatasetError, match="mask .* is missing"):
        PennFudanDataset(d)

    d = _copy(synthetic_root, tmp_path / "size")
    m = sorted((d / "PedMasks").glob("*.png"))[0]
    Image.open(m).resize((50, 40)).save(m)
    with pytest.raises(DatasetError, match="must match its image"):
        PennFudanDataset(d).target(0)

    d = _copy(synthetic_root, tmp_path / "trunc")
    m = sorted((d / "PedMasks").glob("*.png"))[0]
    m.write_bytes(m.read_bytes()[:200])
    with pytest.raises(DatasetError, match="truncated"):
        PennFudanDataset(d).target(0)

    d = _copy(synthetic_root, tmp_path / "notpng")
    p = sorted((d / "PNGImages").glob("*.png"))[0]
    p.write_bytes(b"this is not an image")
    with pytest.raises(DatasetError, match="not a PNG"):
        PennFudanDataset(d)[0]


def test_read_annotation_malformed(tmp_path, synthetic_root):
    ann = read_annotation(next((synthetic_root / "Annotation").glob("*.txt")))
    assert ann.objects and ann.objects[0].label == "PASpersonWalking"
    bad = tmp_path / "bad.txt"
    bad.write_text('Image filename : "x.png"\nImage size (X x Y x C) : 10 x 10 x 3\nBounding box for object 1 "P" : (1, 2)\n')
    with pytest.raises(DatasetError, match=r"bad.txt:3"):
        read_annotation(bad)


def test_split_indices():
    train, test = split_indices(170, 50, seed=0)
    assert len(test) == 50 and sorted(train + test) == list(range(170))
    assert (train, test) == split_indices(170, 50, seed=0)
    assert test != split_indices(170, 50, seed=1)[1]
    with pytest.raises(ValueError):
        split_indices(10, 10)


def test_synthetic_deterministic_and_stamped(tmp_path, synthetic_root):
    a = make_synthetic_pennfudan(tmp_path / "a", n_images=3, seed=4)
    b = make_synthetic_pennfudan(tmp_path / "b", n_images=3, seed=4)
    assert _tree_digest(a) == _tree_digest(b)
    mtime = (a / "PNGImages" / "FudanPed00001.png").stat().st_mtime_ns
    make_synthetic_pennfudan(a, n_images=3, seed=4)
    assert (a / "PNGImages" / "FudanPed00001.png").stat().st_mtime_ns == mtime
    assert "SYNTHETIC" in (a / "readme.txt").read_text()
    # Learnable: figures differ clearly from the background.
    ds = PennFudanDataset(synthetic_root)
    stats = dataset_statistics(ds)
    assert stats["instances"] >= len(ds)
    image, t = ds[1]
    fg = t["masks"].any(0).bool()
    diff = (image.float()[:, fg].mean(1) - image.float()[:, ~fg].mean(1)).abs().max()
    assert diff > 30
    for i in range(len(ds)):
        t = ds.target(i)
        ann = read_annotation(synthetic_root / "Annotation" / (ds.image_path(i).stem + ".txt"))
        assert t["boxes"].tolist() == (torch.tensor([o.box for o in ann.objects]).float() - 1).tolist()


def test_transforms_keep_alignment(synthetic_root):
    torch.manual_seed(0)
    plain = PennFudanDataset(synthetic_root, build_transforms(False))
    ds = PennFudanDataset(synthetic_root, build_transforms(True, hflip=1.0, photometric=True))
    image, t = ds[0]
    original, _ = plain[0]
    assert image.dtype == torch.float32 and float(image.max()) <= 1 and image.shape == original.shape
    assert isinstance(t["masks"], tv_tensors.Mask)
    recomputed = (t["masks"].long() * torch.arange(1, len(t["masks"]) + 1)[:, None, None]).sum(0)
    recomputed = mask_to_target(recomputed, 0)
    # Flipped masks and flipped boxes agree exactly: the pipeline recomputes the boxes from the flipped masks
    # (tests/test_transforms.py covers every geometric step).
    assert torch.equal(recomputed["boxes"].as_subclass(torch.Tensor), t["boxes"].as_subclass(torch.Tensor))
    assert torch.equal(t["masks"], plain[0][1]["masks"].flip(-1))


def test_training_transforms_do_not_resize(synthetic_root):
    """Resizing belongs to the model (min_size, and scale_jitter as factors of it), not to the pipeline."""
    import inspect

    assert "scale_jitter" not in inspect.signature(build_transforms).parameters
    ds = PennFudanDataset(synthetic_root, build_transforms(True, hflip=0.0, photometric=True))
    assert ds[0][0].shape == PennFudanDataset(synthetic_root)[0][0].shape


def test_loader_reproducible(synthetic_root):
    ds = PennFudanDataset(synthetic_root)
    order = lambda: [t["image_id"] for _, ts in create_loader(ds, 3, True, seed=3) for t in ts]  # noqa: E731
    assert order() == order() and sorted(order()) == list(range(len(ds)))
    images, targets = next(iter(create_loader(ds, 2, False)))
    assert len(images) == 2 and isinstance(targets, tuple)
    assert np.isclose(len(ds), 12)


def test_uint8_and_int64_masks_give_the_same_target(synthetic_root):
    """The dataset splits 8-bit masks in uint8; mask_to_target must not depend on the integer type."""
    ds = PennFudanDataset(synthetic_root)
    for i in range(3):
        target = ds.target(i)
        ids = (target["masks"].long() * torch.arange(1, len(target["masks"]) + 1)[:, None, None]).sum(0)
        for dtype in (torch.uint8, torch.int64):
            again = mask_to_target(ids.to(dtype), i)
            for key in ("boxes", "masks", "labels", "area", "iscrowd"):
                assert torch.equal(again[key], target[key]), (dtype, key)

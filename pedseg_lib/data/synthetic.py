"""Synthetic data for tests, benchmarks and offline smoke runs: a dataset in the exact Penn-Fudan layout, and
realistic detections made from a dataset's ground truth."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from pedseg_lib.data.pennfudan import PennFudanDataset

_SYNTH_VERSION = 1


def make_synthetic_pennfudan(root: str | Path, n_images: int = 24, seed: int = 0, min_side: int = 200, max_side: int = 360) -> Path:
    """Write a synthetic dataset in the exact Penn-Fudan layout directly into ``root``.

    Figures (head, torso, two legs, arms) of varied size, colour, pose and overlap stand on textured
    backgrounds; the same arguments always give the same bytes. Work is skipped when ``root`` already
    holds a complete copy made with the same arguments (``.pedseg-synthetic`` stamp file).

    Returns:
        ``root``.
    """
    root = Path(root)
    stamp_text = f"version={_SYNTH_VERSION} n_images={n_images} seed={seed} sides={min_side}-{max_side}\n"
    stamp = root / ".pedseg-synthetic"
    if stamp.is_file() and stamp.read_text() == stamp_text:
        return root
    for sub in ("PNGImages", "PedMasks", "Annotation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, n_images + 1):
        name = f"FudanPed{i:05d}"
        image, mask, boxes = _synthetic_sample(rng, min_side, max_side)
        image.save(root / "PNGImages" / f"{name}.png")
        mask.save(root / "PedMasks" / f"{name}_mask.png")
        (root / "Annotation" / f"{name}.txt").write_text(_annotation_text(name, image.size, boxes))
    (root / "readme.txt").write_text(
        "SYNTHETIC data made by pedseg_lib.data.make_synthetic_pennfudan; it is NOT the Penn-Fudan database.\n"
        f"{n_images} images, seed {seed}. Same layout as https://www.cis.upenn.edu/~jshi/ped_html/\n"
    )
    stamp.write_text(stamp_text)
    return root


def _synthetic_sample(rng: np.random.Generator, min_side: int, max_side: int):
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    # Textured background: low-contrast smooth noise plus a ground band, darker than the figures' clothes.
    base = rng.integers(60, 140, size=3)
    noise = rng.normal(0, 18, size=(h // 8 + 1, w // 8 + 1, 3))
    bg = np.clip(base + np.kron(noise, np.ones((8, 8, 1)))[:h, :w], 0, 255).astype(np.uint8)
    image = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    mask = Image.new("L", (w, h), 0)
    mdraw = ImageDraw.Draw(mask)
    n = int(rng.integers(1, 4))
    heights = sorted(int(rng.integers(h * 45 // 100, h * 90 // 100)) for _ in range(n))
    boxes = []
    # Drawn back to front: smaller (farther) figures first, so nearer ones occlude them.
    for k, ph in enumerate(heights, 1):
        pw = max(8, int(ph * rng.uniform(0.3, 0.45)))
        x0 = int(rng.integers(0, max(1, w - pw)))
        y0 = int(rng.integers(0, max(1, h - ph)))
        colour = tuple(int(c) for c in rng.integers(150, 256, size=3))
        skin = tuple(int(c) for c in rng.integers(170, 240, size=3))
        legs = tuple(int(c) for c in rng.integers(0, 80, size=3))
        stride = rng.uniform(-0.25, 0.25) * pw
        head_r = ph * 0.08
        cx = x0 + pw / 2
        parts = [
            ("ellipse", [cx - head_r, y0, cx + head_r, y0 + 2 * head_r], skin),
            ("rect", [x0 + pw * 0.2, y0 + 2 * head_r, x0 + pw * 0.8, y0 + ph * 0.55], colour),
            ("rect", [x0, y0 + 2.4 * head_r, x0 + pw * 0.2, y0 + ph * 0.5], colour),
            ("rect", [x0 + pw * 0.8, y0 + 2.4 * head_r, x0 + pw, y0 + ph * 0.5], colour),
            ("poly", [(x0 + pw * 0.22, y0 + ph * 0.55), (x0 + pw * 0.48, y0 + ph * 0.55),
                      (cx - pw * 0.05 - stride, y0 + ph), (x0 + pw * 0.15 - stride, y0 + ph)], legs),
            ("poly", [(x0 + pw * 0.52, y0 + ph * 0.55), (x0 + pw * 0.78, y0 + ph * 0.55),
                      (x0 + pw * 0.85 + stride, y0 + ph), (cx + pw * 0.05 + stride, y0 + ph)], legs),
        ]
        for kind, xy, fill in parts:
            for d, value in ((draw, fill), (mdraw, k)):
                if kind == "ellipse":
                    d.ellipse(xy, fill=value)
                elif kind == "rect":
                    d.rectangle(xy, fill=value)
                else:
                    d.polygon(xy, fill=value)
    m = np.asarray(mask)
    for k in range(1, n + 1):
        ys, xs = np.nonzero(m == k)
        if len(xs):
            boxes.append((int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1))
    return image, mask, boxes


def _annotation_text(name: str, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> str:
    labels = " ".join('"PASpersonWalking"' for _ in boxes)
    lines = [
        "# Compatible with PASCAL Annotation Version 1.00",
        f'Image filename : "PennFudanPed/PNGImages/{name}.png"',
        f"Image size (X x Y x C) : {size[0]} x {size[1]} x 3",
        'Database : "pedseg synthetic pedestrians"',
        f"Objects with ground truth : {len(boxes)} {{ {labels} }}",
        "# Top left pixel co-ordinates : (1, 1)",
    ]
    for i, (x0, y0, x1, y1) in enumerate(boxes, 1):
        lines += [
            f'# Details for pedestrian {i} ("PASpersonWalking")',
            f'Original label for object {i} "PASpersonWalking" : "PennFudanPed"',
            f'Bounding box for object {i} "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : ({x0}, {y0}) - ({x1}, {y1})',
            f'Pixel mask for object {i} "PASpersonWalking" : "PennFudanPed/PedMasks/{name}_mask.png"',
            "",
        ]
    return "\n".join(lines) + "\n"


def synthetic_detections(dataset: PennFudanDataset, indices: Iterable[int], seed: int = 0, false_positives: int = 2,
                         drop: float = 0.2) -> dict[int, dict[str, torch.Tensor]]:
    """Realistic model outputs made from the ground truth, for tests and benchmarks of the evaluation code.

    Each ground-truth instance is dropped with probability ``drop`` (a miss), else shifted by up to 6 pixels with
    noise (a detection of varying IoU and a soft mask); ``false_positives`` random boxes are added per image, and
    every detection gets a random score. The same arguments always give the same tensors.

    Args:
        dataset: a :class:`~pedseg_lib.data.PennFudanDataset` (its targets are read, not its images).
        indices: the dataset indices to make detections for.
        seed: seed of every random choice.
        false_positives: extra boxes per image that match nothing.
        drop: probability that a ground-truth instance gets no detection.

    Returns:
        ``{image_id: {"boxes", "scores", "labels", "masks"}}`` shaped like torchvision's Mask R-CNN outputs
        (soft masks [N,1,H,W]).
    """
    g = torch.Generator().manual_seed(seed)
    preds = {}
    for idx in indices:
        t = dataset.target(idx)
        H, W = t["masks"].shape[-2:]
        boxes, masks = [], []
        for box, mask in zip(t["boxes"].as_subclass(torch.Tensor), t["masks"].as_subclass(torch.Tensor), strict=True):
            if torch.rand(1, generator=g) < drop:
                continue
            dx, dy = (torch.randint(-6, 7, (2,), generator=g)).tolist()
            boxes.append(box + torch.tensor([dx, dy, dx, dy]) + torch.randn(4, generator=g) * 3)
            soft = torch.roll(mask.float(), shifts=(dy, dx), dims=(0, 1)) * 0.9 + 0.05 * torch.rand(H, W, generator=g)
            masks.append(soft)
        for _ in range(false_positives):
            x1, y1 = torch.randint(0, W // 2, (1,), generator=g).item(), torch.randint(0, H // 2, (1,), generator=g).item()
            x2, y2 = x1 + W // 4, y1 + H // 3
            boxes.append(torch.tensor([x1, y1, x2, y2], dtype=torch.float32))
            m = torch.zeros(H, W)
            m[y1:y2, x1:x2] = 0.8
            masks.append(m)
        n = len(boxes)
        preds[int(t["image_id"])] = {
            "boxes": torch.stack(boxes).float() if n else torch.zeros(0, 4),
            "scores": torch.rand(n, generator=g),
            "labels": torch.ones(n, dtype=torch.int64),
            "masks": torch.stack(masks)[:, None] if n else torch.zeros(0, 1, H, W),
        }
    return preds

"""Synthetic data for tests, benchmarks and offline smoke runs: a dataset in the exact Penn-Fudan layout, a
multi-class COCO dataset, and realistic detections made from a dataset's ground truth."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from pedseg_lib._io import atomic_write_json
from pedseg_lib.data.convert import _polygon_annotation
from pedseg_lib.data.pennfudan import PennFudanDataset

_SYNTH_VERSION = 1
_SYNTH_COCO_VERSION = 1
#: make_synthetic_coco's categories: COCO's own ids (sparse on purpose: labels 1..3 map to ids 1, 13, 37).
_COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 13, "name": "sign", "supercategory": "outdoor"},
    {"id": 37, "name": "ball", "supercategory": "sports"},
]


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
    image = _background(rng, w, h)
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


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Textured background: low-contrast smooth noise, darker than the figures' clothes."""
    base = rng.integers(60, 140, size=3)
    noise = rng.normal(0, 18, size=(h // 8 + 1, w // 8 + 1, 3))
    bg = np.clip(base + np.kron(noise, np.ones((8, 8, 1)))[:h, :w], 0, 255).astype(np.uint8)
    return Image.fromarray(bg).filter(ImageFilter.GaussianBlur(2))


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


def make_synthetic_coco(root: str | Path, n_images: int = 24, seed: int = 0, min_side: int = 200,
                        max_side: int = 360) -> Path:
    """Write a synthetic multi-class COCO dataset: ``root/images/*.jpg`` and ``root/annotations.json``.

    Three classes with COCO's ids: ``person`` (id 1: a figure whose head, torso, arms and legs are the separate
    polygon parts of one annotation), ``sign`` (id 13: a pole and an octagonal plate, two parts) and ``ball``
    (id 37: one polygon). Objects do not overlap, so each drawn object is exactly its polygons; every sixth
    image has no object (a negative). ``file_name`` is relative to ``root`` (``images/synth00001.jpg``), so
    ``CocoInstancesDataset(None, path)`` and ``CocoInstancesDataset(root, path)`` both read it. The same
    arguments always give the same bytes; work is skipped when ``root`` already holds a complete copy made with
    the same arguments (``.pedseg-synthetic-coco`` stamp file).

    Args:
        root: the output folder (created).
        n_images: number of images.
        seed: seed of every random choice (image i uses ``default_rng([seed, i])``).
        min_side, max_side: range of the image width and height in pixels.

    Returns:
        The annotation file ``root/annotations.json``.
    """
    root = Path(root)
    path = root / "annotations.json"
    stamp_text = f"version={_SYNTH_COCO_VERSION} n_images={n_images} seed={seed} sides={min_side}-{max_side}\n"
    stamp = root / ".pedseg-synthetic-coco"
    if stamp.is_file() and stamp.read_text() == stamp_text and path.is_file():
        return path
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(1, n_images + 1):
        image, objects = _coco_sample(np.random.default_rng([seed, i]), min_side, max_side, negative=i % 6 == 0)
        file_name = f"images/synth{i:05d}.jpg"
        image.save(root / file_name, quality=92)
        images.append({"id": i, "file_name": file_name, "width": image.width, "height": image.height})
        for category_id, parts, _ in objects:
            annotations.append(_polygon_annotation(parts, image.height, image.width, len(annotations) + 1, i,
                                                   category_id))
    atomic_write_json(path, {
        "info": {"description": f"SYNTHETIC data made by pedseg_lib.data.make_synthetic_coco (seed {seed})"},
        "licenses": [], "images": images, "annotations": annotations, "categories": _COCO_CATEGORIES,
    })
    stamp.write_text(stamp_text)
    return path


def _coco_sample(rng: np.random.Generator, min_side: int, max_side: int, negative: bool = False):
    """One image and its objects: ``[(category_id, polygon parts, drawn mask bool [H, W]), ...]``.

    Each part is drawn with Pillow from the very coordinates written to the JSON (rounded to 0.01 pixel).
    """
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    image = _background(rng, w, h)
    if negative:
        return image, []
    draw = ImageDraw.Draw(image)
    ids = Image.new("L", (w, h), 0)
    id_draw = ImageDraw.Draw(ids)
    wanted = [1] * int(rng.integers(1, 4)) + [13] * int(rng.integers(0, 2)) + [37] * int(rng.integers(0, 3))
    placed: list[tuple[float, float, float, float]] = []
    objects = []
    for category_id in wanted:
        for _ in range(20):  # a few tries for a free spot; an object that finds none is left out
            parts = _COCO_SHAPES[category_id](rng, w, h)
            box = _extent([xy for _, xy in parts])
            if all(box[2] + 3 < b[0] or b[2] + 3 < box[0] or box[3] + 3 < b[1] or b[3] + 3 < box[1] for b in placed):
                break
        else:
            continue
        placed.append(box)
        k = len(placed)
        for fill, xy in parts:
            draw.polygon(xy, fill=fill)
            id_draw.polygon(xy, fill=k)
        objects.append((category_id, [[v for point in xy for v in point] for _, xy in parts], None))
    masks = np.asarray(ids)
    return image, [(c, parts, masks == k) for k, (c, parts, _) in enumerate(objects, 1)]


def _extent(polygons: list[list[tuple[float, float]]]) -> tuple[float, float, float, float]:
    xs = [x for xy in polygons for x, _ in xy]
    ys = [y for xy in polygons for _, y in xy]
    return min(xs), min(ys), max(xs), max(ys)


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(2 * math.pi * t / n), cy + ry * math.sin(2 * math.pi * t / n)) for t in range(n)]


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _rounded(parts: list[tuple[tuple, list[tuple[float, float]]]]) -> list[tuple[tuple, list[tuple[float, float]]]]:
    return [(fill, [(round(x, 2), round(y, 2)) for x, y in xy]) for fill, xy in parts]


def _person(rng: np.random.Generator, w: int, h: int):
    """Head, torso, two arms, two legs (the Penn-Fudan figure, as polygons)."""
    ph = float(rng.integers(h * 45 // 100, h * 75 // 100))
    pw = max(16.0, ph * rng.uniform(0.3, 0.45))
    x0, y0 = rng.uniform(0, w - pw - 1), rng.uniform(0, h - ph - 1)
    colour, skin, legs = _colour(rng, 150, 256), _colour(rng, 170, 240), _colour(rng, 0, 80)
    stride = rng.uniform(-0.25, 0.25) * pw
    head_r, cx = ph * 0.08, x0 + pw / 2
    return _rounded([
        (skin, _ellipse(cx, y0 + head_r, head_r, head_r)),
        (colour, _rect(x0 + pw * 0.2, y0 + 2 * head_r, x0 + pw * 0.8, y0 + ph * 0.55)),
        (colour, _rect(x0, y0 + 2.4 * head_r, x0 + pw * 0.2, y0 + ph * 0.5)),
        (colour, _rect(x0 + pw * 0.8, y0 + 2.4 * head_r, x0 + pw, y0 + ph * 0.5)),
        (legs, [(x0 + pw * 0.22, y0 + ph * 0.55), (x0 + pw * 0.48, y0 + ph * 0.55),
                (cx - pw * 0.05 - stride, y0 + ph), (x0 + pw * 0.15 - stride, y0 + ph)]),
        (legs, [(x0 + pw * 0.52, y0 + ph * 0.55), (x0 + pw * 0.78, y0 + ph * 0.55),
                (x0 + pw * 0.85 + stride, y0 + ph), (cx + pw * 0.05 + stride, y0 + ph)]),
    ])


def _sign(rng: np.random.Generator, w: int, h: int):
    """An octagonal plate on a pole: two parts."""
    r = rng.uniform(0.07, 0.11) * min(w, h) + 5
    pole_w, pole_h = max(6.0, r * 0.35), r * rng.uniform(1.5, 2.5)
    cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, max(r + 2, h - r - pole_h - 1))
    plate = _ellipse(cx, cy, r, r, n=8)
    pole = _rect(cx - pole_w / 2, cy + r * 0.9, cx + pole_w / 2, min(h - 1.0, cy + r + pole_h))
    return _rounded([((140, 140, 150), pole), (_colour(rng, 190, 256)[:1] + (30, 30), plate)])


def _ball(rng: np.random.Generator, w: int, h: int):
    """A round ball: one polygon."""
    r = rng.uniform(0.04, 0.08) * min(w, h) + 5
    cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
    return _rounded([(_colour(rng, 200, 256)[:2] + (int(rng.integers(0, 120)),), _ellipse(cx, cy, r, r, n=24))])


_COCO_SHAPES = {1: _person, 13: _sign, 37: _ball}


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

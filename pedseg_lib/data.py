"""Penn-Fudan data: dataset, annotations, download, split, synthetic data, transforms, loaders.

Conventions:
    * Instances are the distinct non-zero values of a mask PNG, in increasing order.
    * Boxes follow :func:`torchvision.ops.masks_to_boxes`: XYXY in 0-based pixel indices, x2/y2 inclusive.
    * An instance whose box has zero width or height (a one-pixel-wide or one-pixel-tall sliver) is
      dropped: Mask R-CNN's box regression cannot learn a degenerate box.
    * ``area`` is the mask pixel count (COCO's small/medium/large buckets use ``area``).
"""

from __future__ import annotations

import hashlib
import http.client
import random
import re
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from pedseg_lib.errors import DatasetError, DownloadError

PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
MANIFEST_PATH = Path(__file__).with_name("pennfudan.sha256")
_LAYOUT = "expected ROOT/PNGImages/*.png and ROOT/PedMasks/*_mask.png (get the data with `pedseg download`)"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- files
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


# --------------------------------------------------------------------------- dataset
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
        target = mask_to_target(torch.from_numpy(mask.astype(np.int64)), idx)
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
        The target dict; degenerate (zero width or height) instances are dropped.
    """
    h, w = mask.shape
    ids = torch.unique(mask)
    ids = ids[ids != 0]
    masks = (mask[None] == ids[:, None, None]).to(torch.uint8)
    boxes = masks_to_boxes(masks) if len(ids) else torch.zeros((0, 4))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    masks, boxes = masks[keep], boxes[keep].to(torch.float32)
    n = len(boxes)
    return {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "masks": tv_tensors.Mask(masks),
        "labels": torch.ones(n, dtype=torch.int64),
        "image_id": int(image_id),
        "area": masks.flatten(1).sum(1).to(torch.float32),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
    }


# --------------------------------------------------------------------------- annotations
@dataclass
class AnnotatedObject:
    label: str
    box: tuple[int, int, int, int]  # 1-based (xmin, ymin, xmax, ymax), inclusive


@dataclass
class Annotation:
    filename: str
    width: int
    height: int
    channels: int
    objects: list[AnnotatedObject] = field(default_factory=list)


_RE_FILE = re.compile(r'^Image filename\s*:\s*"([^"]*)"')
_RE_SIZE = re.compile(r"^Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)")
_RE_BOX = re.compile(
    r'^Bounding box for object (\d+) "([^"]*)" \(Xmin, Ymin\) - \(Xmax, Ymax\)\s*:\s*'
    r"\((-?\d+),\s*(-?\d+)\)\s*-\s*\((-?\d+),\s*(-?\d+)\)"
)


def read_annotation(path: str | Path) -> Annotation:
    """Parse a Penn-Fudan PASCAL-format annotation ``.txt``.

    Args:
        path: the annotation file.

    Returns:
        An :class:`Annotation` with 1-based inclusive boxes.

    Raises:
        DatasetError: naming the file and line when a line is malformed or a required field is missing.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotation ({e.strerror})") from None
    filename, size, objects = None, None, []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("Image filename"):
            m = _RE_FILE.match(line)
            if not m:
                raise DatasetError(f"{path}:{number}: malformed image filename line: {line!r}")
            filename = m.group(1)
        elif line.startswith("Image size"):
            m = _RE_SIZE.match(line)
            if not m:
                raise DatasetError(f"{path}:{number}: malformed image size line: {line!r}")
            size = tuple(int(g) for g in m.groups())
        elif line.startswith("Bounding box"):
            m = _RE_BOX.match(line)
            if not m:
                raise DatasetError(f"{path}:{number}: malformed bounding box line: {line!r}")
            box = tuple(int(g) for g in m.groups()[2:])
            if box[2] < box[0] or box[3] < box[1]:
                raise DatasetError(f"{path}:{number}: box {box} has xmax < xmin or ymax < ymin")
            objects.append(AnnotatedObject(label=m.group(2), box=box))
    if filename is None or size is None:
        missing = "Image filename" if filename is None else "Image size"
        raise DatasetError(f"{path}: no '{missing}' line; not a Penn-Fudan annotation file")
    return Annotation(filename=filename, width=size[0], height=size[1], channels=size[2], objects=objects)


# --------------------------------------------------------------------------- statistics
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


# --------------------------------------------------------------------------- split
def split_indices(n: int, test_size: int = 50, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic seeded train/test split of ``range(n)``.

    Returns:
        (train, test): sorted index lists.

    Raises:
        ValueError: if ``test_size`` is not in [0, n).
    """
    if not 0 <= test_size < n:
        raise ValueError(f"test_size={test_size} must be >= 0 and smaller than the dataset size {n}")
    perm = _permutation(n, seed)
    return sorted(perm[test_size:]), sorted(perm[:test_size])


def _permutation(n: int, seed: int) -> list[int]:
    """The seeded permutation of ``range(n)`` that every split takes its sets from, in order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def split_train_val_test(n: int, test_size: int, val_size: int, seed: int = 0) -> dict[str, list[int]]:
    """Deterministic seeded train/validation/test split of ``range(n)``.

    The test set is exactly :func:`split_indices`' test set for the same ``n``, ``test_size`` and ``seed``;
    the validation set is the next ``val_size`` images of the same seeded permutation, so it is drawn from
    :func:`split_indices`' training images; the training set is the rest. With ``val_size=0`` the training
    set is :func:`split_indices`' training set.

    Args:
        n: number of images in the dataset.
        test_size: images held out as the test set (at least 1).
        val_size: images taken out of the non-test images for validation (0 = none).
        seed: seed of the permutation.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: sorted, disjoint index lists that cover ``range(n)``.

    Raises:
        ConfigError: ``test_size`` is not positive, ``val_size`` is negative, or together they leave no
            training image.
    """
    from pedseg_lib.errors import ConfigError

    if test_size < 1 or val_size < 0:
        raise ConfigError(f"test_size={test_size} and val_size={val_size}: test_size must be at least 1 and "
                          "val_size at least 0; fix them.")
    if test_size + val_size >= n:
        raise ConfigError(f"test_size={test_size} + val_size={val_size} leave no training image of the {n} in the "
                          "dataset: lower test_size or val_size.")
    perm = _permutation(n, seed)
    return {
        "train": sorted(perm[test_size + val_size:]),
        "val": sorted(perm[test_size:test_size + val_size]),
        "test": sorted(perm[:test_size]),
    }


# --------------------------------------------------------------------------- download
def _read_manifest(path: Path) -> dict[str, str]:
    entries = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{path}:{number}: expected '<sha256>  <path>', got {line!r}")
        entries[parts[1].strip().removeprefix("./")] = parts[0].lower()
    return entries


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_manifest(folder: Path, manifest: Path = MANIFEST_PATH) -> list[str]:
    """Relative paths listed in ``manifest`` that are missing from ``folder`` or have a wrong hash."""
    bad = []
    for rel, digest in _read_manifest(manifest).items():
        p = folder / rel
        if not p.is_file() or _sha256(p) != digest:
            bad.append(rel)
    return bad


def download_pennfudan(
    root: str | Path,
    url: str = PENNFUDAN_URL,
    sha256: str | None = None,
    manifest: str | Path | None = MANIFEST_PATH,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download and extract Penn-Fudan into ``root/PennFudanPed`` (nothing happens if it is complete).

    Args:
        root: parent folder; the dataset lands in ``root/PennFudanPed``.
        url: the zip's address.
        sha256: expected sha256 of the zip, when known.
        manifest: per-file checksum list the extracted files must match (None skips the check).
        timeout: socket timeout in seconds.
        progress: show a tqdm progress bar.

    Returns:
        ``root/PennFudanPed``.

    Raises:
        DownloadError: offline, truncated download, checksum mismatch or unsafe archive.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    target = root / "PennFudanPed"
    manifest = Path(manifest) if manifest is not None else None
    if target.is_dir() and (manifest is None or not verify_manifest(target, manifest)):
        if (target / "PNGImages").is_dir():
            return target
    root.mkdir(parents=True, exist_ok=True)
    hint = f"download {url} by hand and unzip it into {root}, or use PEDSEG_PROFILE=smoke for synthetic data"
    fd, tmp_name = tempfile.mkstemp(prefix=".PennFudanPed-", suffix=".zip.part", dir=root)
    tmp_zip = Path(tmp_name)
    try:
        with open(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                raise DownloadError(f"cannot reach {url} ({getattr(e, 'reason', e)}); {hint}") from None
            with response:
                expected = int(response.headers.get("Content-Length") or 0) or None
                received = 0
                with tqdm(total=expected, unit="B", unit_scale=True, desc="PennFudanPed.zip", disable=not progress) as bar:
                    while True:
                        try:
                            chunk = response.read(1 << 16)
                        except (OSError, ValueError, http.client.HTTPException) as e:
                            raise DownloadError(f"download of {url} interrupted after {received} bytes ({e}); {hint}") from None
                        if not chunk:
                            break
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} incomplete: {received} of {expected} bytes; retry, or {hint}")
        if sha256 is not None and _sha256(tmp_zip) != sha256.lower():
            raise DownloadError(f"{url}: sha256 of the zip does not match {sha256}; retry, or {hint}")
        _extract(tmp_zip, root, target, manifest, url)
    finally:
        tmp_zip.unlink(missing_ok=True)
    return target


def _extract(zip_path: Path, root: Path, target: Path, manifest: Path | None, url: str) -> None:
    """Extract into a temporary folder beside ``target``, verify, then rename into place."""
    staging = Path(tempfile.mkdtemp(prefix=".PennFudanPed-extract-", dir=root))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                base = staging.resolve()
                for member in zf.namelist():
                    dest = (staging / member).resolve()
                    if member.startswith(("/", "\\")) or ".." in Path(member).parts or not dest.is_relative_to(base):
                        raise DownloadError(f"{url}: archive member {member!r} would land outside {root}; refusing to extract")
                zf.extractall(staging)
        except zipfile.BadZipFile as e:
            raise DownloadError(f"{url}: not a valid zip ({e}); retry the download") from None
        extracted = staging / "PennFudanPed"
        if not (extracted / "PNGImages").is_dir():
            raise DownloadError(f"{url}: the zip has no PennFudanPed/PNGImages folder; is it the Penn-Fudan zip?")
        if manifest is not None:
            bad = verify_manifest(extracted, manifest)
            if bad:
                raise DownloadError(
                    f"{url}: {len(bad)} extracted files missing or with a wrong sha256 (first: {bad[0]}); retry the download"
                )
        if target.exists():
            shutil.rmtree(target)  # an incomplete earlier copy
        extracted.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- synthetic data
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


# --------------------------------------------------------------------------- transforms and loaders
def build_transforms(
    train: bool, hflip: float = 0.5, scale_jitter: Sequence[int] | None = None, photometric: bool = False
) -> v2.Compose:
    """The v2 pipeline; image, boxes and masks stay aligned and stay tv_tensors.

    Args:
        train: enable the random augmentations.
        hflip: horizontal flip probability (train only).
        scale_jitter: shortest-side sizes for ``RandomShortestSize`` (train only), or None.
        photometric: add ``RandomPhotometricDistort`` (train only).

    Returns:
        A ``v2.Compose`` ending with float32 images in [0, 1].
    """
    steps: list[Any] = []
    if train:
        if photometric:
            steps.append(v2.RandomPhotometricDistort())
        if scale_jitter:
            steps.append(v2.RandomShortestSize(min_size=list(scale_jitter), max_size=1333))
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
        if scale_jitter:
            # Resizing can shrink thin instances to nothing; drop those so the model never sees empty boxes.
            steps.append(v2.SanitizeBoundingBoxes(labels_getter=_labels_getter))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def _labels_getter(inputs: Any) -> tuple[torch.Tensor, ...]:
    target = inputs[1]
    return target["labels"], target["area"], target["iscrowd"]


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

"""Conversions to COCO instances JSON: Penn-Fudan folders, folders of instance-id masks, LabelMe files.

Every converter returns the COCO dict and writes nothing; :func:`write_coco` validates a dict and writes it
atomically. Mask-based converters store each instance as compressed RLE (``counts`` a str), LabelMe shapes
become polygons. Read the result back with :class:`~pedseg_lib.data.CocoInstancesDataset`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pedseg_lib._io import atomic_open, atomic_write_json
from pedseg_lib.data.coco import _decode, coco_findings
from pedseg_lib.data.pennfudan import PennFudanDataset, mask_to_target
from pedseg_lib.errors import DatasetError, OutputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112
_LABELME_TYPES = ("polygon", "rectangle", "circle", "mask")
_LABELME_SKIPPED = ("line", "linestrip", "point", "points")  # no area: cannot be an instance
_LABELME_IGNORE = "__ignore__"  # labelme's own labelme2coco leaves this label out of the categories and skips it
_LABELME_FIX = "convert it to a polygon in LabelMe (or delete it) and save the file again"


# --------------------------------------------------------------------------------------------- Penn-Fudan, masks
def pennfudan_to_coco(root: str | Path) -> dict[str, Any]:
    """A COCO instances dict of a Penn-Fudan folder, instance for instance what :class:`PennFudanDataset` reads.

    Args:
        root: the Penn-Fudan folder (``PNGImages/``, ``PedMasks/``) or its parent.

    Returns:
        The COCO dict: ``file_name`` relative to ``root/PNGImages``, image ids 1..N in the dataset's order, one
        category (``person``, id 1), compressed-RLE segmentations, ``bbox`` [x, y, w, h] in inclusive pixels.

    Raises:
        DatasetError: the folder is not a Penn-Fudan folder, or a file in it is missing or unreadable.
    """
    dataset = PennFudanDataset(root, cache_targets=False)
    images, annotations = [], []
    for idx, name in enumerate(dataset.images):
        target = dataset.target(idx)
        height, width = target["masks"].shape[-2:]
        images.append({"id": idx + 1, "file_name": name, "width": int(width), "height": int(height)})
        annotations += _target_annotations(target, idx + 1, 1, len(annotations) + 1)
    categories = [{"id": 1, "name": "person", "supercategory": "person"}]
    return _coco(images, annotations, categories, f"Penn-Fudan folder {dataset.root}")


def masks_to_coco(images_dir: str | Path, masks_dir: str | Path, class_name: str = "object",
                  mask_suffix: str = "_mask", semantic: bool = False,
                  class_names: dict[int, str] | None = None) -> dict[str, Any]:
    """A COCO instances dict from a folder of images and a folder of mask PNGs.

    The mask of ``images_dir/NAME.jpg`` is ``masks_dir/NAME{mask_suffix}.png``. By default a mask holds instance
    ids: its pixel value k > 0 is the k-th object, 0 the background (Penn-Fudan's convention); instances follow
    :func:`mask_to_target`: distinct values in increasing order, zero-width or zero-height slivers dropped.

    With ``semantic`` a mask holds class values (e.g. 127 fire, 254 smoke; or 255 for one class): every
    8-connected region of one value is an object of that value's class; categories are the values found, in
    increasing order, ids 1..K, named by ``class_names`` (default ``"value V"``; with a single value,
    ``class_name``).

    Without ``semantic``, masks that look class-valued are refused (:func:`class_valued_masks`), since reading
    them as instance ids would make one object of all the regions of a class.

    Args:
        images_dir: the images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``).
        masks_dir: the mask PNGs (may be ``images_dir`` itself).
        class_name: the one category's name (id 1) of instance masks, or of semantic masks with one value.
        mask_suffix: what follows the image's stem in its mask's name.
        semantic: the masks hold class values; connected regions are the objects.
        class_names: semantic: pixel value -> class name.

    Returns:
        The COCO dict (``file_name`` relative to ``images_dir``, compressed-RLE segmentations).

    Raises:
        DatasetError: a folder is missing or has no images, a mask is missing, unreadable or of another size, or
            the masks look class-valued and ``semantic`` is off (the line names the values and the command).
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: the {what} folder does not exist; pass the folder holding the {what}")
    if not isinstance(class_name, str) or not class_name.strip():
        raise DatasetError(f"class_name {class_name!r}: give the objects' class a non-empty name")
    same = images_dir.resolve() == masks_dir.resolve()
    paths = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not (same and p.stem.endswith(mask_suffix)))
    if not paths:
        raise DatasetError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}); pass the folder holding them")
    masks = []
    for path in paths:
        mask_path = masks_dir / f"{path.stem}{mask_suffix}.png"
        if not mask_path.is_file():
            raise DatasetError(f"{path}: its mask {mask_path} is missing; add it (0 = background, k = the k-th "
                               "object) or remove the image")
        height, width = _image_size(path)
        ids = _read_mask(mask_path)
        if ids.shape != (height, width):
            raise DatasetError(f"{mask_path}: mask is {ids.shape[1]}x{ids.shape[0]} but image {path.name} is "
                               f"{width}x{height}; the mask must match its image")
        masks.append(ids)
    if semantic:
        return _semantic_coco(paths, masks, class_name, class_names or {}, images_dir, masks_dir)
    why = class_valued_masks(masks)
    if why:
        raise DatasetError(f"{masks_dir}: the masks hold class values, not instance ids ({why}): read as ids, all "
                           f"regions of a value would be one object; run `pedseg convert masks {images_dir} --masks "
                           f"{masks_dir} --semantic --out FILE.json` (each connected region becomes an object)")
    images, annotations = [], []
    for idx, (path, ids) in enumerate(zip(paths, masks, strict=True)):
        target = mask_to_target(torch.from_numpy(ids), idx)
        images.append({"id": idx + 1, "file_name": path.name, "width": ids.shape[1], "height": ids.shape[0]})
        annotations += _target_annotations(target, idx + 1, 1, len(annotations) + 1)
    categories = [{"id": 1, "name": class_name, "supercategory": class_name}]
    return _coco(images, annotations, categories, f"images {images_dir} with instance masks {masks_dir}")


def class_valued_masks(masks: list[np.ndarray]) -> str | None:
    """Why a set of masks looks class-valued rather than instance-id valued, or None.

    Instance-id masks number an image's objects 1..N (a gap now and then is tolerated). Class-valued masks
    repeat the same class values in many images. Two signs, either is enough:

    * a value outside its image's 1..N (N = the number of values in that image) that occurs in at least two
      masks, or in the only mask (e.g. 127 and 254, or 255 of a 0/255 mask);
    * every mask holds only the value 1, and in more than half of the masks it forms several separate regions.

    Args:
        masks: the masks (integer arrays), one per image.

    Returns:
        A few words naming the values seen, or None for instance-id masks.
    """
    present = [np.flatnonzero(np.bincount(m.ravel().astype(np.int64)))[1:] if m.any() else np.zeros(0, np.int64)
               for m in masks]
    outside: dict[int, int] = {}
    for values in present:
        for v in values[values > len(values)]:
            outside[int(v)] = outside.get(int(v), 0) + 1
    recurring = {v: n for v, n in outside.items() if n >= 2 or len(masks) == 1}
    if recurring:
        shown = ", ".join(f"{v} in {n} mask{'s' * (n != 1)}" for v, n in sorted(recurring.items())[:4])
        return f"values {shown}"
    ones = [m for m, values in zip(masks, present, strict=True) if len(values)]
    if ones and all(list(values) in ([1], []) for values in present):
        split = sum(connected_components(m == 1)[1] > 1 for m in ones)
        if split * 2 > len(ones):
            return f"value 1 forms several separate regions in {split} of {len(ones)} masks"
    return None


def connected_components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected regions of a binary mask, labelled 1..K in order of their first pixel (row by row).

    Args:
        binary: a 2-D array; non-zero is foreground.

    Returns:
        ``(labels, K)``: an int32 array of the mask's shape (0 background) and the number of regions.
    """
    binary = np.asarray(binary).astype(bool)
    height, width = binary.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = binary
    steps = np.diff(padded, axis=1)
    runs: list[tuple[int, int, int]] = []  # (row, start, end exclusive)
    row_runs: list[range] = []
    for y in range(height):
        starts, ends = np.flatnonzero(steps[y] == 1), np.flatnonzero(steps[y] == -1)
        first = len(runs)
        runs += [(y, int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
        row_runs.append(range(first, len(runs)))
    parent = list(range(len(runs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for y in range(1, height):
        above = row_runs[y - 1]
        for i in row_runs[y]:
            _, a, b = runs[i]
            for j in above:
                _, c, d = runs[j]
                if c <= b and a <= d:  # overlapping or touching diagonally: 8-connected
                    ri, rj = root(i), root(j)
                    if ri != rj:
                        parent[max(ri, rj)] = min(ri, rj)
    labels = np.zeros((height, width), dtype=np.int32)
    numbers: dict[int, int] = {}
    for i, (y, a, b) in enumerate(runs):
        labels[y, a:b] = numbers.setdefault(root(i), len(numbers) + 1)
    return labels, len(numbers)


def _semantic_coco(paths: list[Path], masks: list[np.ndarray], class_name: str, class_names: dict[int, str],
                   images_dir: Path, masks_dir: Path) -> dict[str, Any]:
    """COCO dict of class-valued masks: every connected region of a value is an object of that value's class."""
    values = sorted({int(v) for m in masks for v in np.flatnonzero(np.bincount(m.ravel().astype(np.int64)))[1:]})
    unknown = sorted(set(class_names) - set(values))
    if unknown:
        raise DatasetError(f"{masks_dir}: class value(s) {unknown} named but in no mask (values found: {values}); "
                           "fix the VALUE=NAME list")
    category_ids = {v: k for k, v in enumerate(values, 1)}

    def name(v: int) -> str:
        return class_names.get(v) or (class_name if len(values) == 1 and class_name != "object" else f"value {v}")

    images, annotations = [], []
    for idx, (path, mask) in enumerate(zip(paths, masks, strict=True)):
        images.append({"id": idx + 1, "file_name": path.name, "width": mask.shape[1], "height": mask.shape[0]})
        for v in values:
            regions, count = connected_components(mask == v)
            if not count:
                continue
            target = mask_to_target(torch.from_numpy(regions), idx)
            annotations += _target_annotations(target, idx + 1, category_ids[v], len(annotations) + 1)
    categories = [{"id": k, "name": name(v), "supercategory": name(v)} for v, k in category_ids.items()]
    return _coco(images, annotations, categories, f"images {images_dir} with class-valued masks {masks_dir}")


def _read_mask(path: Path) -> np.ndarray:
    """An instance-id mask as uint8 (8-bit PNGs) or int64 (wider ones); RGB masks keep their first channel."""
    try:
        with Image.open(path) as im:
            im.load()
            mask = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable mask ({e}); replace it with a PNG of instance ids") from None
    if mask.ndim == 3:
        mask = mask[..., 0]
    return np.ascontiguousarray(mask if mask.dtype == np.uint8 else mask.astype(np.int64))


def _target_annotations(target: dict[str, Any], image_id: int, category_id: int, first_id: int) -> list[dict]:
    """COCO annotations (compressed RLE, inclusive-pixel bbox) of a target's instances."""
    masks = target["masks"].as_subclass(torch.Tensor).numpy()
    if not len(masks):
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    boxes = target["boxes"].as_subclass(torch.Tensor).tolist()
    annotations = []
    for k, (rle, (x1, y1, x2, y2), area) in enumerate(zip(rles, boxes, target["area"].tolist(), strict=True)):
        annotations.append({
            "id": first_id + k, "image_id": image_id, "category_id": category_id,
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(area), "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1], "iscrowd": 0,
        })
    return annotations


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image as shown, i.e. after its EXIF orientation, from the header only."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image not found; restore it or remove its entry") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable image ({e}); replace it or remove its entry") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _coco(images: list[dict], annotations: list[dict], categories: list[dict], source: str) -> dict[str, Any]:
    return {
        "info": {"description": f"converted from {source} by pedseg"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


# ------------------------------------------------------------------------------------------------------ LabelMe
def labelme_to_coco(folder: str | Path, images_dir: str | Path | None = None,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """A COCO instances dict from a folder of LabelMe JSON files (one per image), as labelme's own
    ``examples/instance_segmentation/labelme2coco.py`` reads them.

    ``polygon``, ``rectangle`` (two opposite corners, in any order) and ``circle`` (centre and a point on the
    circle; a polygon of ``max(int(pi / arccos(1 - 1/r)), 12)`` points, labelme2coco's rule) shapes become polygons;
    LabelMe 5's ``mask`` shape (a base64 PNG of the mask inside its box, corners inclusive) becomes an RLE mask.
    ``line``, ``linestrip`` and ``point`` shapes have no area and are skipped, as are shapes labelled
    ``__ignore__`` (labelme2coco leaves that label out of the categories); ``notes`` gets one line for each.
    Shapes with the same label and the same non-null ``group_id`` in one file are one object of several parts;
    a shape with a null ``group_id`` is an object of its own. Categories are the sorted labels, ids 1..K.

    When a file's image is missing but the JSON embeds it (``imageData``), the embedded image is written where
    ``file_name`` points (atomically), so that the COCO file finds it; ``notes`` says so.

    Args:
        folder: the folder of LabelMe ``.json`` files, or one LabelMe file.
        images_dir: where the images are when not where ``imagePath`` says: each file's image is then looked up
            there by its file name. Without it ``imagePath`` is taken relative to the JSON file's folder.
        notes: if given, one line per kind of thing skipped or written is appended to it.

    Returns:
        The COCO dict; ``file_name`` is relative to ``images_dir`` if given, else to ``folder`` (read it back with
        ``CocoInstancesDataset(images_dir or folder, file)``). Image ids 1..N in file-name order.

    Raises:
        DatasetError: a file is unreadable or malformed, its image is missing (and not embedded) or of another size
            than ``imageHeight`` x ``imageWidth``, or a shape is of an unknown type (the file, shape index and
            type are named).
    """
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".json":
        files, folder = [folder], folder.parent
    elif not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; pass the folder holding the LabelMe .json files")
    else:  # a COCO file written into the folder (e.g. by an earlier conversion) is not a LabelMe file
        files = [p for p in sorted(folder.glob("*.json")) if not _is_coco_file(p)]
    if not files:
        raise DatasetError(f"{folder}: no LabelMe .json files; pass the folder LabelMe saved them in")
    records = [(path, _read_labelme(path)) for path in files]
    skipped: dict[str, list[str]] = {}
    for path, data in records:
        for index, shape in enumerate(data["shapes"]):
            kind = shape.get("shape_type") or "polygon"
            why = kind if kind in _LABELME_SKIPPED else _LABELME_IGNORE if shape["label"] == _LABELME_IGNORE else None
            if why:
                skipped.setdefault(why, []).append(f"{path.name} shape {index}")
    labels = sorted({shape["label"] for _, data in records for shape in _labelme_kept(data)})
    category_ids = {label: k for k, label in enumerate(labels, 1)}
    images, annotations, seen, embedded = [], [], {}, []
    for image_id, (path, data) in enumerate(records, 1):
        file_name, height, width, written = _labelme_image(path, data, images_dir)
        if written:
            embedded.append(file_name)
        if file_name in seen:
            raise DatasetError(f"{path}: its image {file_name} is also the image of {seen[file_name]}; "
                               "keep one annotation file per image")
        seen[file_name] = path.name
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for label, parts, mask in _labelme_objects(path, data, height, width):
            ann_id, cat = len(annotations) + 1, category_ids[label]
            if mask is None:
                annotations.append(_polygon_annotation(parts, height, width, ann_id, image_id, cat))
            else:
                annotations.append(_mask_annotation(mask, parts, ann_id, image_id, cat))
    if notes is not None:
        flat = [w for why, where in skipped.items() if why != _LABELME_IGNORE for w in where]
        if flat:
            kinds = ", ".join(f"{len(where)} {why}" for why, where in skipped.items() if why != _LABELME_IGNORE)
            notes.append(f"skipped {len(flat)} shapes without area, which cannot be instances ({kinds}): "
                         f"{', '.join(flat[:3])}{' ...' if len(flat) > 3 else ''}")
        if _LABELME_IGNORE in skipped:
            where = skipped[_LABELME_IGNORE]
            notes.append(f"skipped {len(where)} regions labelled __ignore__ (labelme2coco skips them too): "
                         f"{', '.join(where[:3])}{' ...' if len(where) > 3 else ''}")
        if embedded:
            notes.append(f"wrote {len(embedded)} image(s) from their embedded imageData: "
                         f"{', '.join(embedded[:3])}{' ...' if len(embedded) > 3 else ''}")
    categories = [{"id": k, "name": label, "supercategory": label} for label, k in category_ids.items()]
    return _coco(images, annotations, categories, f"LabelMe files in {folder}")


def _is_coco_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and all(k in data for k in ("images", "annotations", "categories"))


def _labelme_kept(data: dict[str, Any]) -> list[dict]:
    """The shapes that become (parts of) instances: not skipped kinds, not ``__ignore__``."""
    return [shape for shape in data["shapes"] if (shape.get("shape_type") or "polygon") not in _LABELME_SKIPPED
            and shape["label"] != _LABELME_IGNORE]


def _read_labelme(path: Path) -> dict[str, Any]:
    """A LabelMe file's JSON, its structure checked (shape types, labels and points)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror}); check the file permissions") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text; save it again from LabelMe") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg}); "
                           "fix it or save it again from LabelMe") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f'{path}: not a LabelMe file (no "shapes" list); pass a folder of LabelMe .json files')
    for index, shape in enumerate(data["shapes"]):
        where = f"{path}: shape {index}"
        if not isinstance(shape, dict):
            raise DatasetError(f"{where}: not an object; delete it or save the file again from LabelMe")
        kind = shape.get("shape_type") or "polygon"  # LabelMe before 3.0 wrote no shape_type: polygons
        if kind not in _LABELME_TYPES + _LABELME_SKIPPED:
            raise DatasetError(f'{where}: shape type "{kind}" is not supported (polygon, rectangle, circle and mask '
                               f"are; line, linestrip and point are skipped); {_LABELME_FIX}")
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{where}: no label; give it a class name in LabelMe")
        if kind in _LABELME_SKIPPED or label == _LABELME_IGNORE:
            continue
        if kind == "mask" and not isinstance(shape.get("mask"), str):
            raise DatasetError(f'{where}: a mask shape without its "mask" (base64 PNG); redraw it in LabelMe')
        points = shape.get("points")
        if not isinstance(points, list) or not all(
                isinstance(p, list | tuple) and len(p) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p) for p in points):
            raise DatasetError(f"{where}: points must be a list of [x, y] numbers; redraw the shape in LabelMe")
        two = kind in ("rectangle", "circle", "mask")
        if (two and len(points) != 2) or len(points) < (2 if two else 3):
            what = {"rectangle": "exactly 2 corner points", "circle": "exactly 2 points (centre, a point on it)",
                    "mask": "exactly 2 corner points"}.get(kind, "at least 3 points")
            raise DatasetError(f"{where}: a {kind} needs {what}, this one has {len(points)}; redraw or delete it "
                               "in LabelMe")
    return data


def _labelme_image(path: Path, data: dict[str, Any], images_dir: str | Path | None) -> tuple[str, int, int, bool]:
    """(file_name, height, width, written) of a LabelMe file's image, its size checked against the image file;
    ``written`` when the image was missing and has just been written from the file's ``imageData``."""
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not image_path.strip():
        raise DatasetError(f'{path}: no "imagePath"; open the image in LabelMe and save the file again')
    relative = PurePosixPath(image_path.replace("\\", "/"))  # LabelMe on Windows writes backslashes
    if images_dir is None:
        file_name = os.path.normpath(str(relative)).replace(os.sep, "/")
        image = path.parent / file_name
    else:
        file_name = relative.name
        image = Path(images_dir) / file_name
    written = False
    if not image.is_file() and isinstance(data.get("imageData"), str) and data["imageData"]:
        _write_embedded(path, data["imageData"], image)
        written = True
    if not image.is_file():
        hint = "" if images_dir is not None else " or pass the images' folder with --images"
        raise DatasetError(f"{path}: its image {image} (imagePath {image_path!r}) not found and not embedded "
                           f"(imageData); put the image there{hint}")
    height, width = _image_size(image)
    declared = data.get("imageHeight"), data.get("imageWidth")
    if declared != (height, width):
        raise DatasetError(f"{path}: imageHeight x imageWidth is {declared[0]} x {declared[1]} but {image} is "
                           f"{height} x {width} (after its EXIF orientation); open it in LabelMe and save again")
    return file_name, height, width, written


def _write_embedded(path: Path, image_data: str, image: Path) -> None:
    """Write a LabelMe file's ``imageData`` (the image file's bytes, base64) to ``image``, atomically."""
    try:
        raw = base64.b64decode(image_data, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
    except (binascii.Error, ValueError, OSError, SyntaxError) as e:
        raise DatasetError(f"{path}: its image {image} is missing and its imageData is not an image ({e}); put the "
                           "image there") from None
    try:
        image.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(image, "wb") as f:
            f.write(raw)
    except OSError as e:
        raise OutputError(f"cannot write {image} from {path}'s imageData ({e.strerror or e}); make the folder "
                          "writable or put the image there") from None


def _circle_polygon(cx: float, cy: float, px: float, py: float) -> list[tuple[float, float]]:
    """labelme2coco's polygon of a circle: centre (cx, cy), a point (px, py) on it."""
    r = math.hypot(px - cx, py - cy)
    n = max(int(math.pi / math.acos(1 - 1 / r)), 12) if r > 1 else 12
    return [(cx + r * math.sin(2 * math.pi * i / n), cy + r * math.cos(2 * math.pi * i / n)) for i in range(n)]


def _labelme_mask(path: Path, index: int, shape: dict, height: int, width: int) -> np.ndarray:
    """The full-image mask of a LabelMe 5 ``mask`` shape: its PNG fills the box from corner to corner inclusive."""
    try:
        with Image.open(io.BytesIO(base64.b64decode(shape["mask"]))) as im:
            small = np.asarray(im.convert("L")) > 0
    except (binascii.Error, ValueError, OSError, SyntaxError) as e:
        raise DatasetError(f"{path}: shape {index}: its mask is not a base64 PNG ({e}); redraw it in LabelMe") from None
    (xa, ya), (xb, yb) = shape["points"]
    x1, y1 = int(min(xa, xb)), int(min(ya, yb))
    out = np.zeros((height, width), dtype=np.uint8)
    h, w = min(small.shape[0], height - y1), min(small.shape[1], width - x1)
    if x1 < 0 or y1 < 0 or h <= 0 or w <= 0:
        raise DatasetError(f"{path}: shape {index}: its mask box starts at ({x1}, {y1}), outside the "
                           f"{width}x{height} image; redraw it in LabelMe")
    out[y1:y1 + h, x1:x1 + w] = small[:h, :w]
    return out


def _labelme_objects(path: Path, data: dict[str, Any], height: int,
                     width: int) -> list[tuple[str, list[list[float]], np.ndarray | None]]:
    """(label, polygon parts, mask or None) of each object, in the order of each object's first shape; an object
    with a ``mask`` shape is one mask (its polygons painted into it)."""
    objects: dict[tuple, tuple[str, list[list[float]], list[np.ndarray]]] = {}
    kept = {id(shape) for shape in _labelme_kept(data)}
    for index, shape in enumerate(data["shapes"]):
        if id(shape) not in kept:
            continue
        group = shape.get("group_id")
        key = (shape["label"], "group", group) if group is not None else (shape["label"], "shape", index)
        entry = objects.setdefault(key, (shape["label"], [], []))
        kind = shape.get("shape_type") or "polygon"
        if kind == "mask":
            entry[2].append(_labelme_mask(path, index, shape, height, width))
            continue
        points = [(float(x), float(y)) for x, y in shape["points"]]
        if kind == "rectangle":
            (xa, ya), (xb, yb) = points
            x1, x2, y1, y2 = min(xa, xb), max(xa, xb), min(ya, yb), max(ya, yb)
            points = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        elif kind == "circle":
            points = _circle_polygon(*points[0], *points[1])
        entry[1].append([v for point in points for v in point])
    out = []
    for label, parts, masks in objects.values():
        if not masks:
            out.append((label, parts, None))
            continue
        mask = np.maximum.reduce(masks)
        if parts:
            mask = np.maximum(mask, _decode_polygons(parts, height, width))
        out.append((label, parts, mask))
    return out


def _decode_polygons(parts: list[list[float]], height: int, width: int) -> np.ndarray:
    return _decode(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))


def _mask_annotation(mask: np.ndarray, parts: list[list[float]], ann_id: int, image_id: int,
                     category_id: int) -> dict[str, Any]:
    """A COCO annotation with a compressed-RLE segmentation; ``bbox`` the mask's extent in pixels."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
    }


def _polygon_annotation(parts: list[list[float]], height: int, width: int, ann_id: int, image_id: int,
                        category_id: int) -> dict[str, Any]:
    """A COCO polygon annotation; ``area`` is the pixel count of the rasterised parts, ``bbox`` their extent."""
    rle = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    xs = [min(max(v, 0.0), width) for part in parts for v in part[0::2]]
    ys = [min(max(v, 0.0), height) for part in parts for v in part[1::2]]
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": parts,
        "area": float(mask_utils.area(rle)), "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
        "iscrowd": 0,
    }


# ---------------------------------------------------------------------------------------------------------- VIA
_VIA_SKIPPED = ("polyline", "point")  # no area: not an instance


def via_to_coco(annotation_file: str | Path, images_dir: str | Path | None = None, class_name: str = "object",
                attribute: str | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """A COCO instances dict from a VGG Image Annotator (VIA) JSON file, 1.x or 2.x.

    The file maps a key (file name + size) to ``{"filename", "size", "regions", "file_attributes"}``, as the
    balloon set's ``via_region_data.json`` of the Matterport and Detectron2 tutorials; ``regions`` is a list
    (VIA 2) or a dict keyed "0", "1", ... (VIA 1). A VIA 2 project file (``_via_img_metadata``) works too.
    ``polygon`` (``all_points_x``/``all_points_y``), ``rect`` (``x``, ``y``, ``width``, ``height``), ``circle``
    (``cx``, ``cy``, ``r``) and ``ellipse`` (``cx``, ``cy``, ``rx``, ``ry``, optional ``theta`` in radians) regions
    become polygons (circles and ellipses with 32 points); ``polyline`` and ``point`` regions are skipped.

    Args:
        annotation_file: the VIA JSON file.
        images_dir: the folder of the images (default: the JSON file's folder); VIA stores no image size, so each
            image's header is read.
        class_name: the class of every region when ``attribute`` is not given and the regions carry no single
            region attribute.
        attribute: the region attribute that names the class (a text value, or a checkbox/dropdown whose one
            true option is the class). Default: the only attribute when every region has exactly that one.
        notes: if given, one line per kind of thing skipped is appended to it.

    Returns:
        The COCO dict (``file_name`` relative to ``images_dir``); image ids 1..N in file order; categories the
        sorted class names, ids 1..K.

    Raises:
        DatasetError: the file is unreadable or not VIA, an image is missing, or a region is malformed (the file,
            image and region are named).
    """
    path = Path(annotation_file)
    root = Path(images_dir) if images_dir is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e}); check the file") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg}); export it again "
                           "from VIA") from None
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        data = data["_via_img_metadata"]
    entries = list(data.values()) if isinstance(data, dict) else []
    if not entries or not all(isinstance(e, dict) and "filename" in e and "regions" in e for e in entries):
        raise DatasetError(f"{path}: not a VIA annotation file (an object of {{filename, regions}} per image); "
                           "export it from VIA with Annotation > Export Annotations (as json)")
    regions_of = []
    for entry in entries:
        regions = entry["regions"]
        regions = list(regions.values()) if isinstance(regions, dict) else regions
        if not isinstance(regions, list):
            raise DatasetError(f"{path}: image {entry['filename']}: regions is not a list; export the file again")
        regions_of.append(regions)
    attribute = attribute or _via_attribute([r for regions in regions_of for r in regions])
    images, annotations, objects, skipped = [], [], [], {}
    for image_id, (entry, regions) in enumerate(zip(entries, regions_of, strict=True), 1):
        file_name = str(entry["filename"]).replace("\\", "/")
        if not (root / file_name).is_file():
            raise DatasetError(f"{path}: image {file_name} is not in {root}; pass the images' folder with --images "
                               "(images_dir), or remove the image from the VIA file")
        height, width = _image_size(root / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for index, region in enumerate(regions):
            where = f"{path}: image {file_name}: region {index}"
            shape = region.get("shape_attributes") if isinstance(region, dict) else None
            if not isinstance(shape, dict):
                raise DatasetError(f"{where}: no shape_attributes; draw it again in VIA")
            kind = shape.get("name")
            if kind in _VIA_SKIPPED:
                skipped.setdefault(kind, []).append(f"{file_name} region {index}")
                continue
            points = _via_points(where, kind, shape)
            label = _via_label(where, region.get("region_attributes"), attribute, class_name)
            objects.append((image_id, height, width, label, points))
    labels = sorted({label for *_, label, _ in objects})
    category_ids = {label: k for k, label in enumerate(labels, 1)}
    for image_id, height, width, label, points in objects:
        annotations.append(_polygon_annotation([points], height, width, len(annotations) + 1, image_id,
                                               category_ids[label]))
    if notes is not None:
        for kind, where in skipped.items():
            notes.append(f"skipped {len(where)} {kind} regions (no area: not an instance): {', '.join(where[:3])}"
                         f"{' ...' if len(where) > 3 else ''}")
    categories = [{"id": k, "name": label, "supercategory": label} for label, k in category_ids.items()]
    return _coco(images, annotations, categories, f"VIA file {path}")


def _via_attribute(regions: list) -> str | None:
    """The region attribute that names the class: the one key every region has, if there is exactly one."""
    keys = {tuple(sorted(r.get("region_attributes") or {})) for r in regions if isinstance(r, dict)}
    return keys.pop()[0] if len(keys) == 1 and len(next(iter(keys))) == 1 else None


def _via_label(where: str, attributes: Any, attribute: str | None, class_name: str) -> str:
    if attribute is None:
        return class_name
    value = (attributes or {}).get(attribute) if isinstance(attributes, dict) else None
    if isinstance(value, dict):  # checkbox: {"option": true, ...}
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise DatasetError(f"{where}: region attribute {attribute!r} does not name one class ({value!r}); set it in "
                           "VIA, or choose the attribute with --attribute")
    return str(value).strip()


def _via_points(where: str, kind: Any, shape: dict) -> list[float]:
    """The flat polygon [x1, y1, ...] of a VIA region."""
    def numbers(*keys: str) -> list[float]:
        values = [shape.get(k) for k in keys]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise DatasetError(f"{where}: a {kind} needs numbers {', '.join(keys)}; draw it again in VIA")
        return [float(v) for v in values]

    if kind == "polygon":
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if not (isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys) >= 3):
            raise DatasetError(f"{where}: a polygon needs all_points_x and all_points_y of equal length, at least 3 "
                               "points; draw it again in VIA")
        return [float(v) for point in zip(xs, ys, strict=True) for v in point]
    if kind == "rect":
        x, y, w, h = numbers("x", "y", "width", "height")
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    if kind in ("circle", "ellipse"):
        if kind == "circle":
            cx, cy, r = numbers("cx", "cy", "r")
            rx, ry, theta = r, r, 0.0
        else:
            cx, cy, rx, ry = numbers("cx", "cy", "rx", "ry")
            theta = float(shape.get("theta") or 0.0)
        out = []
        for i in range(32):
            a = 2 * math.pi * i / 32
            x, y = rx * math.cos(a), ry * math.sin(a)
            out += [cx + x * math.cos(theta) - y * math.sin(theta), cy + x * math.sin(theta) + y * math.cos(theta)]
        return out
    raise DatasetError(f"{where}: region shape {kind!r} is not supported (polygon, rect, circle and ellipse are; "
                       "polyline and point are skipped); redraw it in VIA")


# -------------------------------------------------------------------------------------------------------- write
def write_coco(coco: dict[str, Any], path: str | Path, images_dir: str | Path | None = None) -> Path:
    """Validate a COCO dict and write it to ``path`` atomically (nothing is written when it is invalid).

    Args:
        coco: a COCO instances dict (e.g. from :func:`pennfudan_to_coco`).
        path: the JSON file to write.
        images_dir: the folder its ``file_name`` entries are relative to, passed to
            :func:`~pedseg_lib.data.coco_findings` (None: the folder of ``path``).

    Returns:
        ``path``.

    Raises:
        DatasetError: the dict has an error-level finding (the first is named).
        OutputError: ``path`` cannot be written.
    """
    path = Path(path)
    if not isinstance(coco, dict):
        raise DatasetError(f"{path}: not written: a COCO dataset is a dict, got {type(coco).__name__}")
    errors = [f for f in coco_findings(coco, path, images_dir) if f.level == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more errors; `pedseg check-data` lists them)" if len(errors) > 1 else ""
        raise DatasetError(f"{path}: not written: {errors[0]}{more}")
    try:
        atomic_write_json(path, coco)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or type(e).__name__}); choose a writable path") from None
    return path

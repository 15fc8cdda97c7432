"""Conversions to COCO instances JSON: Penn-Fudan folders, folders of instance-id masks, LabelMe files.

Every converter returns the COCO dict and writes nothing; :func:`write_coco` validates a dict and writes it
atomically. Mask-based converters store each instance as compressed RLE (``counts`` a str), LabelMe shapes
become polygons. Read the result back with :class:`~pedseg_lib.data.CocoInstancesDataset`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pedseg_lib._io import atomic_write_json
from pedseg_lib.data.coco import coco_findings
from pedseg_lib.data.pennfudan import PennFudanDataset, mask_to_target
from pedseg_lib.errors import DatasetError, OutputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112
_LABELME_TYPES = ("polygon", "rectangle")
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
                  mask_suffix: str = "_mask") -> dict[str, Any]:
    """A COCO instances dict from a folder of images and a folder of instance-id mask PNGs.

    The mask of ``images_dir/NAME.jpg`` is ``masks_dir/NAME{mask_suffix}.png``; its pixel value k > 0 is the
    k-th object, 0 the background (Penn-Fudan's convention). Instances follow :func:`mask_to_target`: distinct
    values in increasing order, zero-width or zero-height slivers dropped.

    Args:
        images_dir: the images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``).
        masks_dir: the mask PNGs (may be ``images_dir`` itself).
        class_name: the one category's name (id 1).
        mask_suffix: what follows the image's stem in its mask's name.

    Returns:
        The COCO dict (``file_name`` relative to ``images_dir``, compressed-RLE segmentations).

    Raises:
        DatasetError: a folder is missing or has no images, a mask is missing, unreadable or of another size.
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
    images, annotations = [], []
    for idx, path in enumerate(paths):
        mask_path = masks_dir / f"{path.stem}{mask_suffix}.png"
        if not mask_path.is_file():
            raise DatasetError(f"{path}: its mask {mask_path} is missing; add it (0 = background, k = the k-th "
                               "object) or remove the image")
        height, width = _image_size(path)
        ids = _read_mask(mask_path)
        if ids.shape != (height, width):
            raise DatasetError(f"{mask_path}: mask is {ids.shape[1]}x{ids.shape[0]} but image {path.name} is "
                               f"{width}x{height}; the mask must match its image")
        target = mask_to_target(torch.from_numpy(ids), idx)
        images.append({"id": idx + 1, "file_name": path.name, "width": width, "height": height})
        annotations += _target_annotations(target, idx + 1, 1, len(annotations) + 1)
    categories = [{"id": 1, "name": class_name, "supercategory": class_name}]
    return _coco(images, annotations, categories, f"images {images_dir} with instance masks {masks_dir}")


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
def labelme_to_coco(folder: str | Path, images_dir: str | Path | None = None) -> dict[str, Any]:
    """A COCO instances dict from a folder of LabelMe JSON files (one per image).

    ``polygon`` and ``rectangle`` shapes (a rectangle is two opposite corners, in any order) become polygons.
    Shapes with the same label and the same non-null ``group_id`` in one file are one object of several parts;
    a shape with a null ``group_id`` is an object of its own. Categories are the sorted labels, ids 1..K.

    Args:
        folder: the folder of LabelMe ``.json`` files.
        images_dir: where the images are when not where ``imagePath`` says: each file's image is then looked up
            there by its file name. Without it ``imagePath`` is taken relative to the JSON file's folder.

    Returns:
        The COCO dict; ``file_name`` is relative to ``images_dir`` if given, else to ``folder`` (read it back with
        ``CocoInstancesDataset(images_dir or folder, file)``). Image ids 1..N in file-name order.

    Raises:
        DatasetError: a file is unreadable or malformed, its image is missing or of another size than
            ``imageHeight`` x ``imageWidth``, or a shape is not a polygon or rectangle (the file, shape index and
            type are named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; pass the folder holding the LabelMe .json files")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DatasetError(f"{folder}: no LabelMe .json files; pass the folder LabelMe saved them in")
    records = [(path, _read_labelme(path)) for path in files]
    labels = sorted({shape["label"] for _, data in records for shape in data["shapes"]})
    category_ids = {label: k for k, label in enumerate(labels, 1)}
    images, annotations, seen = [], [], {}
    for image_id, (path, data) in enumerate(records, 1):
        file_name, height, width = _labelme_image(path, data, images_dir)
        if file_name in seen:
            raise DatasetError(f"{path}: its image {file_name} is also the image of {seen[file_name]}; "
                               "keep one annotation file per image")
        seen[file_name] = path.name
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for label, parts in _labelme_objects(path, data):
            annotations.append(_polygon_annotation(parts, height, width, len(annotations) + 1, image_id,
                                                   category_ids[label]))
    categories = [{"id": k, "name": label, "supercategory": label} for label, k in category_ids.items()]
    return _coco(images, annotations, categories, f"LabelMe files in {folder}")


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
        if kind not in _LABELME_TYPES:
            raise DatasetError(f'{where}: shape type "{kind}" is not supported (only polygon and rectangle); '
                               f"{_LABELME_FIX}")
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{where}: no label; give it a class name in LabelMe")
        points = shape.get("points")
        if not isinstance(points, list) or not all(
                isinstance(p, list | tuple) and len(p) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p) for p in points):
            raise DatasetError(f"{where}: points must be a list of [x, y] numbers; redraw the shape in LabelMe")
        needed = 2 if kind == "rectangle" else 3
        if (kind == "rectangle" and len(points) != 2) or len(points) < needed:
            what = "exactly 2 corner points" if kind == "rectangle" else "at least 3 points"
            raise DatasetError(f"{where}: a {kind} needs {what}, this one has {len(points)}; redraw or delete it "
                               "in LabelMe")
    return data


def _labelme_image(path: Path, data: dict[str, Any], images_dir: str | Path | None) -> tuple[str, int, int]:
    """(file_name, height, width) of a LabelMe file's image, its size checked against the image file."""
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
    if not image.is_file():
        hint = "" if images_dir is not None else " or pass images_dir"
        raise DatasetError(f"{path}: its image {image} (imagePath {image_path!r}) not found; put the image "
                           f"there{hint}")
    height, width = _image_size(image)
    declared = data.get("imageHeight"), data.get("imageWidth")
    if declared != (height, width):
        raise DatasetError(f"{path}: imageHeight x imageWidth is {declared[0]} x {declared[1]} but {image} is "
                           f"{height} x {width} (after its EXIF orientation); open it in LabelMe and save again")
    return file_name, height, width


def _labelme_objects(path: Path, data: dict[str, Any]) -> list[tuple[str, list[list[float]]]]:
    """(label, polygon parts) of each object, in the order of each object's first shape."""
    objects: dict[tuple, tuple[str, list[list[float]]]] = {}
    for index, shape in enumerate(data["shapes"]):
        group = shape.get("group_id")
        key = (shape["label"], "group", group) if group is not None else (shape["label"], "shape", index)
        points = [(float(x), float(y)) for x, y in shape["points"]]
        if (shape.get("shape_type") or "polygon") == "rectangle":
            (xa, ya), (xb, yb) = points
            x1, x2, y1, y2 = min(xa, xb), max(xa, xb), min(ya, yb), max(ya, yb)
            points = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        objects.setdefault(key, (shape["label"], []))[1].append([v for point in points for v in point])
    return list(objects.values())


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

"""COCO instance-segmentation files: reading, validation (shared with the doctor) and the dataset.

A COCO file holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories`` (``id``, ``name``)
and ``annotations`` (``id``, ``image_id``, ``category_id``, ``segmentation``, ``bbox`` [x, y, w, h], ``iscrowd``).
A segmentation is a polygon list (several parts make one object), an uncompressed RLE (``counts`` a list of
ints, column-major) or a compressed RLE (``counts`` a string); pycocotools turns each into a binary mask.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset
from torchvision import tv_tensors

from pedseg_lib.data.pennfudan import BACKGROUND, _clone_target, instances_to_target
from pedseg_lib.errors import DatasetError

_KEYS = ("images", "annotations", "categories")
_ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about a data set.

    Attributes:
        level: ``"error"`` (the data cannot be used as is) or ``"warning"`` (usable; worth a look).
        file: the annotation file or image file it concerns.
        entry: the entry at fault, e.g. ``"annotation 17"``, ``"image 3 (a.jpg)"``, ``"category 0"``.
        message: what is wrong and what to do, one line.
    """

    level: str
    file: str
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.message}"


def _json_finding(path: Path) -> tuple[dict | None, Finding | None]:
    """The parsed COCO dict, or the one error finding that keeps the file from being read."""
    def fail(entry: str, message: str) -> tuple[None, Finding]:
        return None, Finding("error", str(path), entry, message)

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return fail("file", "does not exist; check the path of the annotation file")
    except (OSError, UnicodeDecodeError) as e:
        return fail("file", f"cannot be read ({getattr(e, 'strerror', None) or e}); check the file and its permissions")
    try:
        coco = json.loads(text)
    except json.JSONDecodeError as e:
        return fail(f"line {e.lineno} column {e.colno}", f"malformed JSON ({e.msg}); fix the file or export it again")
    if not isinstance(coco, dict):
        return fail("file", f"is a JSON {type(coco).__name__}, not a COCO object with images/annotations/categories")
    for key in _KEYS:
        if key not in coco:
            return fail(f'key "{key}"', f'missing; a COCO instances file needs "images", "annotations" and '
                        f'"categories" (add "{key}": [] if there are none)')
        if not isinstance(coco[key], list):
            return fail(f'key "{key}"', f"is a {type(coco[key]).__name__}, not a list; fix the file")
    if not coco["categories"]:
        return fail('key "categories"', 'is empty; list every class as {"id": 1, "name": "..."} (ids from 1)')
    return coco, None


def read_coco_json(path: str | Path) -> dict:
    """Read a COCO instances file and check its top level.

    Args:
        path: the annotation JSON file.

    Returns:
        The parsed dict (``images``, ``annotations`` and ``categories`` are lists; categories not empty).

    Raises:
        DatasetError: unreadable file, malformed JSON (with line and column), not an object, a missing
            ``images``/``annotations``/``categories`` key, or an empty category list.
    """
    coco, finding = _json_finding(Path(path))
    if finding is not None:
        raise DatasetError(str(finding))
    return coco


CROWD_RULES = ("auto", "coco", "instances")


@dataclass(frozen=True)
class CrowdRule:
    """How a file's ``iscrowd`` 1 annotations are read.

    Attributes:
        name: ``"coco"`` (every ``iscrowd`` 1 annotation is a crowd region: not trained on, ignored by evaluation),
            ``"cvat"`` (a CVAT export: ``iscrowd`` 1 marks an RLE mask, which is an instance, unless the annotation's
            CVAT attribute ``is_crowd`` is true) or ``"instances"`` (every annotation is an instance).
        reason: one sentence saying why this rule applies.
    """

    name: str
    reason: str

    def is_crowd(self, ann: dict) -> bool:
        """Whether annotation ``ann`` is a crowd region under this rule."""
        if ann.get("iscrowd", 0) != 1 or self.name == "instances":
            return False
        if self.name == "cvat":
            attributes = ann.get("attributes")
            return bool(isinstance(attributes, dict) and attributes.get("is_crowd"))
        return True

    def __str__(self) -> str:
        return f"crowd rule {self.name}: {self.reason}"


def _is_cvat(coco: dict) -> bool:
    """CVAT (Datumaro's COCO exporter) writes an ``attributes`` object with ``occluded`` on every annotation."""
    return any(isinstance(a, dict) and isinstance(a.get("attributes"), dict) and "occluded" in a["attributes"]
               for a in coco.get("annotations", []))


def crowd_rule(coco: dict, rule: str = "auto") -> CrowdRule:
    """The rule that decides which ``iscrowd`` 1 annotations of a COCO dict are crowd regions.

    COCO's meaning is that ``iscrowd`` 1 marks a crowd region (an RLE over a group of objects). CVAT's COCO 1.0
    export (Datumaro's exporter) writes ``iscrowd`` 1 on *every* RLE segmentation, i.e. on every brush or mask
    annotation, and 0 on every polygon; Label Studio and Roboflow write 0 everywhere.

    Args:
        coco: the COCO dict.
        rule: ``"auto"`` (``"cvat"`` for a file with CVAT's ``attributes``/``occluded`` on its annotations, else
            ``"coco"``), ``"coco"`` or ``"instances"`` (``pedseg ... --crowd-as-instances``).

    Returns:
        The :class:`CrowdRule` applied.

    Raises:
        DatasetError: ``rule`` is not "auto", "coco" or "instances".
    """
    if rule not in CROWD_RULES:
        raise DatasetError(f"crowd rule {rule!r}: use one of {', '.join(CROWD_RULES)}")
    crowd = sum(1 for a in coco.get("annotations", []) if isinstance(a, dict) and a.get("iscrowd", 0) == 1)
    if rule == "instances":
        return CrowdRule("instances", f"--crowd-as-instances: all {crowd} iscrowd-1 annotations are trained as "
                         "instances")
    if rule == "auto" and _is_cvat(coco):
        return CrowdRule("cvat", f"a CVAT export (its annotations carry CVAT's attributes): CVAT writes iscrowd 1 on "
                         f"every mask/brush annotation, so its {crowd} iscrowd-1 annotations are instances unless "
                         "their is_crowd attribute is true")
    if not crowd:
        return CrowdRule("coco", "no annotation has iscrowd 1")
    return CrowdRule("coco", f"COCO's meaning: the {crowd} iscrowd-1 annotations are crowd regions (not trained on, "
                     "ignored by evaluation); if they are your objects (masks from a tool that marks every mask "
                     "iscrowd 1), pass --crowd-as-instances")


def unique_class_names(categories: Sequence[tuple[int, str]]) -> list[str]:
    """The class name of each ``(id, name)`` category; a name that several ids share gets `` (id N)``.

    Roboflow exports e.g. category 0 "car" and category 1 "car"; tables keyed by class name would merge them.

    Args:
        categories: ``(category id, name)`` pairs in label order.

    Returns:
        One name per category, in the same order, all different when the ids are.
    """
    counts: dict[str, int] = {}
    for _, name in categories:
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} (id {cid})" if counts[name] > 1 else name for cid, name in categories]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def image_file(root: str | Path, file_name: str) -> Path:
    """The image file of a COCO ``file_name`` under ``root``, on every OS.

    Label Studio on Windows writes ``"images\\\\abc.jpg"``; a backslash is never part of a file name that an
    annotation tool exports, so it is read as a folder separator.

    Args:
        root: the folder ``file_name`` is relative to.
        file_name: the ``file_name`` of an image entry.

    Returns:
        ``root / file_name`` with backslashes read as ``/``.
    """
    return Path(root) / file_name.replace("\\", "/")


def _image_entry(image: dict) -> str:
    return f"image {image.get('id')} ({image.get('file_name')})"


def _rle_total(counts: str) -> int | None:
    """The pixel count a compressed RLE string covers (pycocotools' rleFrString), None when it is corrupt."""
    data, p, cnts = counts.encode("ascii", "replace"), 0, []
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                return None
            c = data[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(cnts) > 2:
            x += cnts[-2]
        if x < 0:
            return None
        cnts.append(x)
    return sum(cnts)


def _polygon_area(coords: list[float]) -> float:
    xs, ys = coords[0::2], coords[1::2]
    return 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))


def _segmentation_problems(segm: Any, height: int, width: int) -> tuple[list[str], list[str]]:
    """(errors, warnings) of one segmentation, each a message that says what to do."""
    if isinstance(segm, list):
        errors, warnings = [], []
        for k, part in enumerate(segm):
            if not isinstance(part, list) or not all(_is_number(v) for v in part):
                errors.append(f"polygon part {k} is not a list of numbers; fix or delete the annotation")
            elif len(part) % 2:
                errors.append(f"polygon part {k} has an odd number of coordinates ({len(part)}); a polygon is "
                              f"[x1, y1, x2, y2, ...]: fix the export or delete the annotation")
            elif len(part) < 6:
                warnings.append(f"polygon part {k} has fewer than 3 points; it is dropped (draw it again or delete it)")
            elif _polygon_area(part) == 0:
                warnings.append(f"polygon part {k} has zero area; it is dropped (draw it again or delete it)")
        return errors, warnings
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            return ["RLE without a valid \"size\": [height, width]; export the annotation again"], []
        if list(size) != [height, width]:
            return [f"RLE size is {size[1]}x{size[0]} (width x height) but the image is {width}x{height}; the RLE "
                    f"must cover its image: export it again at the image's size"], []
        if isinstance(counts, list):
            ok = all(_is_int(v) and v >= 0 for v in counts) and sum(counts) == height * width
        elif isinstance(counts, str):
            ok = _rle_total(counts) == height * width
        else:
            ok = False
        if not ok:
            return [f"RLE counts are corrupt (they must cover {height}x{width} pixels); export the annotation "
                    f"again"], []
        return [], []
    return [f"segmentation is a {type(segm).__name__}; expected polygons (list of lists) or an RLE dict"], []


def _bbox_problems(bbox: Any, height: int, width: int) -> tuple[list[str], list[str]]:
    if bbox is None:
        return [], []
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)) or min(bbox[2:]) < 0:
        return [f"bbox {bbox!r} is not [x, y, width, height] with width, height >= 0; fix or delete it"], []
    x, y, w, h = bbox
    eps = 1e-3
    if x < -eps or y < -eps or x + w > width + eps or y + h > height + eps:
        return [], [f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] reaches outside the {width}x{height} image; check the "
                    f"annotation (the mask, clipped to the image, is what is trained on)"]
    return [], []


def _header_size(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """((width, height) after EXIF orientation, None) from the file's header, or (None, what is wrong)."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        return None, (f"file {path} is missing; pass the folder that holds the images with --images (e.g. a CVAT "
                      "export's images/ folder), restore the file, or remove the image and its annotations")
    except (OSError, SyntaxError, ValueError) as e:
        return None, f"file {path} is not a readable image ({e}); replace it or remove the image from the JSON"
    if orientation in _ROTATING_ORIENTATIONS:
        width, height = height, width
    return (width, height), None


def coco_findings(coco: dict, path: str | Path, images_dir: str | Path | None, crowd: str = "auto") -> list[Finding]:
    """Every structural problem of a COCO instances dict, in file order (images, categories, annotations).

    Image files are opened only to check that they exist and have the JSON's size (a header read).

    Args:
        coco: the dict from :func:`read_coco_json`.
        path: the annotation file (named in the findings; its folder holds the images when ``images_dir`` is None).
        images_dir: the folder ``file_name`` is relative to, or None for the annotation file's folder.
        crowd: the crowd rule (:func:`crowd_rule`): which ``iscrowd`` 1 annotations are noted as crowd regions.

    Returns:
        The findings, errors and warnings mixed, in the order met.
    """
    path = Path(path)
    root = Path(images_dir) if images_dir is not None else path.parent
    out: list[Finding] = []

    def add(level: str, entry: str, message: str) -> None:
        out.append(Finding(level, str(path), entry, message))

    used = {ann.get("category_id") for ann in coco["annotations"] if isinstance(ann, dict)}
    images = _check_images(coco["images"], add)
    categories = _check_categories(coco["categories"], add, used)
    annotated = _check_annotations(coco["annotations"], images, categories, add, crowd_rule(coco, crowd))
    for cat_id, name in categories.items():
        if cat_id not in used and cat_id != 0:  # an unused category 0 has its own (one) warning
            add("warning", f"category {cat_id} ({name})", "has no annotations: the model would get a class it never "
                "sees (label and per-class AP n/a); remove the category unless the file is one split of several")
    for image_id, image in images.items():
        size, problem = _header_size(image_file(root, image["file_name"]))
        if problem is not None:
            add("error", _image_entry(image), problem)
        elif size != (image["width"], image["height"]):
            add("error", _image_entry(image), f"file is {size[0]}x{size[1]} (after its EXIF orientation) but the JSON "
                f"says {image['width']}x{image['height']}; fix width/height in the JSON or replace the file")
        if image_id not in annotated:
            add("warning", _image_entry(image), "has no annotations; it is used as a negative (background-only) image")
    return out


def _check_images(entries: list, add: Callable) -> dict[int, dict]:
    """The valid image entries by id; problems go to ``add``."""
    images: dict[int, dict] = {}
    names: dict[str, int] = {}
    for k, image in enumerate(entries):
        if not isinstance(image, dict) or not _is_int(image.get("id")):
            add("error", f"images[{k}]", 'has no integer "id"; give every image a unique integer id')
            continue
        entry = _image_entry(image)
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            add("error", entry, 'has no "file_name"; give the image file\'s path relative to the images folder')
            continue
        if not all(_is_int(image.get(key)) and image[key] > 0 for key in ("width", "height")):
            add("error", entry, 'needs positive integer "width" and "height"; add the image size to the JSON')
            continue
        if image["id"] in images:
            add("error", entry, f"duplicate image id (also {_image_entry(images[image['id']])}); make image ids unique")
            continue
        if image["file_name"] in names:
            add("error", entry, f"duplicate file name (also image {names[image['file_name']]}); list each file once")
            continue
        images[image["id"]] = image
        names[image["file_name"]] = image["id"]
    return images


def _check_categories(entries: list, add: Callable, used: set) -> dict[int, str]:
    """The valid categories (id -> name); problems go to ``add``."""
    categories: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for k, cat in enumerate(entries):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            add("error", f"categories[{k}]", 'needs an integer "id" and a string "name"; fix the category list')
            continue
        entry = f"category {cat['id']} ({cat['name']})"
        if cat["id"] in categories:
            add("error", entry, f"duplicate category id (also {categories[cat['id']]}); make category ids unique")
            continue
        if cat["id"] == 0 and cat["id"] not in used:  # Roboflow's category 0: its project name, never used
            add("warning", entry, "category id 0 has no annotations (Roboflow writes its project name as category 0): "
                "it would be a class the model never sees; delete it from the file")
        elif cat["id"] == 0:  # Label Studio numbers from 0
            add("warning", entry, "category id 0: pedseg maps category ids to labels 1..K, so it is trained as a "
                "class, but torchvision's label 0 is the background: renumber from 1 before using the file with "
                "code that takes category ids as labels")
        elif cat["id"] < 0:
            add("error", entry, "negative category id; renumber the categories from 1")
        if cat["name"] in by_name:
            add("warning", entry, f"same name as category {by_name[cat['name']]}: two classes of one name (Roboflow "
                "repeats its project name); tables show both by id; merge them or rename one in the tool")
        by_name.setdefault(cat["name"], cat["id"])
        categories[cat["id"]] = cat["name"]  # known (even when invalid), so its annotations are not "unknown"
    return categories


def _check_annotations(entries: list, images: dict[int, dict], categories: dict[int, str], add: Callable,
                       rule: CrowdRule) -> set[int]:
    """The ids of images with at least one annotation; problems go to ``add``."""
    seen: set[int] = set()
    annotated: set[int] = set()
    for k, ann in enumerate(entries):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            add("error", f"annotations[{k}]", 'has no integer "id"; give every annotation a unique integer id')
            continue
        entry = f"annotation {ann['id']}"
        if ann["id"] in seen:
            add("error", entry, "duplicate annotation id; make annotation ids unique")
            continue
        seen.add(ann["id"])
        image = images.get(ann["image_id"]) if _is_int(ann.get("image_id")) else None
        if image is None:
            add("error", entry, f"image_id {ann.get('image_id')!r} is not in \"images\"; add the image or delete "
                "the annotation")
            continue
        annotated.add(image["id"])
        entry = f"annotation {ann['id']} of {_image_entry(image)}"
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in categories:
            add("error", entry, f"category_id {ann.get('category_id')!r} is not in \"categories\"; add the category "
                "or fix the annotation")
        if ann.get("iscrowd", 0) not in (0, 1):
            add("error", entry, f"iscrowd is {ann.get('iscrowd')!r}; it must be 0 or 1")
        errors, warnings = _bbox_problems(ann.get("bbox"), image["height"], image["width"])
        segm = ann.get("segmentation")
        if segm is None or segm == [] or segm == {}:
            if ann.get("bbox") is None:
                warnings.append("has neither a segmentation nor a bbox; it is dropped (draw it again or delete it)")
            else:
                warnings.append("has no segmentation; its bbox is used as a rectangle mask")
        else:
            e, w = _segmentation_problems(segm, image["height"], image["width"])
            errors, warnings = errors + e, warnings + w
        if rule.is_crowd(ann):
            warnings.append("is a crowd region (iscrowd 1): not trained on, ignored by evaluation; pass "
                            "--crowd-as-instances if it is an object")
        for message in errors:
            add("error", entry, message)
        for message in warnings:
            add("warning", entry, message)
    return annotated


def _decode(rle: dict) -> np.ndarray:
    """pycocotools' decode without its NumPy 2 ``__array__`` deprecation warning (its own code, not ours)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(rle)


def _annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """The binary mask [H, W] (uint8) of one validated annotation.

    Polygons (parts with fewer than 3 points or zero area skipped) are merged into one mask; an empty segmentation with a
    bbox becomes the box rounded outward to whole pixels; nothing at all gives an empty mask.
    """
    segm = ann.get("segmentation")
    if isinstance(segm, dict) and segm:
        rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else segm
        return _decode(rle)
    parts = [p for p in (segm or []) if len(p) >= 6 and _polygon_area(p) > 0]
    if parts:
        return _decode(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))
    out = np.zeros((height, width), dtype=np.uint8)
    if not segm and ann.get("bbox") is not None:
        x, y, w, h = ann["bbox"]
        x1, y1 = max(math.floor(x), 0), max(math.floor(y), 0)
        out[y1:max(math.ceil(y + h), 0), x1:max(math.ceil(x + w), 0)] = 1
    return out


class CocoInstancesDataset(Dataset):
    """A COCO instances data set (one or several annotation files) with PennFudanDataset's item contract.

    Args:
        images_dir: the folder ``file_name`` is relative to; None: each annotation file's own folder
            (Roboflow's layout: ``train/_annotations.coco.json`` beside its images).
        annotation_file: one COCO JSON file or several (e.g. train, val and test), which then make one data
            set, their images in file order; their categories must be identical.
        transforms: optional v2 transform called as ``transforms(image, target)``.
        cache_targets: keep each target in memory after its first decoding (returned as clones).
        crowd: which ``iscrowd`` 1 annotations are crowd regions (:func:`crowd_rule`: ``"auto"``, ``"coco"`` or
            ``"instances"``), decided per file; ``crowd_rules`` lists the rule each file got.

    Category ids, however sparse, become labels 1..K in id order (``category_ids[label]`` is the COCO id;
    ``class_names[label]`` its name). Crowd regions (``iscrowd`` 1) are kept out of ``target`` and returned by
    :meth:`crowd_target`. Images without annotations are negatives (``boxes`` [0, 4], ``masks`` [0, H, W]).

    Raises:
        DatasetError: the first error of :func:`coco_findings` (one line naming the file and the entry), or
            annotation files whose categories differ.
    """

    def __init__(self, images_dir: str | Path | None, annotation_file: str | Path | Sequence[str | Path],
                 transforms: Callable | None = None, cache_targets: bool = True, crowd: str = "auto"):
        paths = [Path(annotation_file)] if isinstance(annotation_file, str | Path) else [Path(p) for p in annotation_file]
        if not paths:
            raise DatasetError("CocoInstancesDataset: no annotation file given; pass at least one COCO JSON file")
        self.transforms = transforms
        self.files: list[tuple[Path, range]] = []
        self.images: list[dict] = []
        self._anns: list[list[dict]] = []
        self._dirs: list[Path] = []
        self._crowd: list[CrowdRule] = []
        self.crowd_rules: list[CrowdRule] = []
        categories: list[tuple[int, str]] | None = None
        for path in paths:
            coco = read_coco_json(path)
            errors = [f for f in coco_findings(coco, path, images_dir, crowd) if f.level == "error"]
            if errors:
                raise DatasetError(str(errors[0]))
            cats = sorted((c["id"], c["name"]) for c in coco["categories"])
            if categories is None:
                categories = cats
            elif cats != categories:
                raise DatasetError(f"{path}: categories {cats} differ from {paths[0]}'s {categories}; files of one "
                                   f"data set must share the same category ids and names")
            self.crowd_rules.append(crowd_rule(coco, crowd))
            self._add_file(path, coco, Path(images_dir) if images_dir is not None else path.parent)
        self.category_ids: list[int] = [0] + [c for c, _ in categories]
        self.class_names: list[str] = [BACKGROUND] + unique_class_names(categories)
        self._label_of = {c: label for label, c in enumerate(self.category_ids) if label}
        self._cache: dict[tuple[int, bool], dict[str, Any]] | None = {} if cache_targets else None

    def _add_file(self, path: Path, coco: dict, root: Path) -> None:
        start = len(self.images)
        by_image: dict[int, list[dict]] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for image in sorted(coco["images"], key=lambda im: im["id"]):
            self.images.append(image)
            self._anns.append(by_image.get(image["id"], []))
            self._dirs.append(root)
            self._crowd.append(self.crowd_rules[-1])
        self.files.append((path, range(start, len(self.images))))

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, idx: int) -> Path:
        return image_file(self._dirs[idx], self.images[idx]["file_name"])

    def coco_image_id(self, idx: int) -> int:
        """The ``id`` of image ``idx`` in its own JSON file."""
        return self.images[idx]["id"]

    def target(self, idx: int) -> dict[str, Any]:
        """The target of item ``idx`` (crowd regions left out), sizes from the JSON: no RGB decoding."""
        return self._target(idx, crowd=False)

    def crowd_target(self, idx: int) -> dict[str, Any]:
        """The crowd regions (``iscrowd`` 1) of image ``idx``: the keys of :meth:`target`, ``iscrowd`` ones."""
        return self._target(idx, crowd=True)

    def _target(self, idx: int, crowd: bool) -> dict[str, Any]:
        if self._cache is not None and (idx, crowd) in self._cache:
            return _clone_target(self._cache[(idx, crowd)])
        image = self.images[idx]
        h, w = image["height"], image["width"]
        anns = [a for a in self._anns[idx] if self._crowd[idx].is_crowd(a) == crowd]
        masks = torch.from_numpy(np.stack([_annotation_mask(a, h, w) for a in anns])) if anns else \
            torch.zeros((0, h, w), dtype=torch.uint8)
        labels = torch.tensor([self._label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        target = instances_to_target(masks, labels, idx)
        if crowd:
            target["iscrowd"] = torch.ones_like(target["iscrowd"])
        if self._cache is not None:
            self._cache[(idx, crowd)] = target
            return _clone_target(target)
        return target

    def __getitem__(self, idx: int):
        target = self.target(idx)
        path, image = self.image_path(idx), self.images[idx]
        try:
            with Image.open(path) as im:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise DatasetError(f"{path}: {_image_entry(image)}: unreadable image ({e}); replace it or remove it from "
                               "the JSON") from None
        if rgb.size != (image["width"], image["height"]):
            raise DatasetError(f"{path}: {_image_entry(image)}: is {rgb.size[0]}x{rgb.size[1]} after its EXIF orientation "
                               f"but the JSON says {image['width']}x{image['height']}; fix width/height in the JSON")
        tensor = tv_tensors.Image(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous())
        if self.transforms is not None:
            tensor, target = self.transforms(tensor, target)
        return tensor, target


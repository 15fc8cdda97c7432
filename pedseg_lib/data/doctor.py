"""The data doctor: every problem of a COCO file or a Penn-Fudan folder at once, and a per-class count table.

:func:`check_data` is what ``pedseg check-data`` runs. Error findings mean the data cannot be used as is
(the datasets refuse it); warnings mean it is usable but worth a look.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pedseg_lib.data.coco import (
    Finding,
    _is_int,
    _json_finding,
    coco_findings,
    crowd_rule,
    unique_class_names,
)
from pedseg_lib.data.formats import detect_input
from pedseg_lib.data.pennfudan import find_dataset
from pedseg_lib.errors import DatasetError


@dataclass
class DataReport:
    """What the doctor found in one data set.

    Attributes:
        source: the annotation file or the data folder checked.
        images: number of images listed (COCO) or found (Penn-Fudan).
        annotations: number of annotations (COCO entries, crowd included) or instances (Penn-Fudan masks).
        findings: every problem, in the order met.
        class_counts: class name -> ``{"instances": n, "images": m, "crowd": c}`` (non-crowd instances,
            images holding at least one, crowd regions); a name several category ids share is written
            ``"name (id N)"`` for each.
        class_ids: class name (a key of ``class_counts``) -> category id; the table then shows an id column.
        notes: lines printed under the summary: the crowd rule applied, the split a Roboflow export brings.
    """

    source: str
    images: int
    annotations: int
    findings: list[Finding] = field(default_factory=list)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    class_ids: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def table(self) -> str:
        """The per-class count table, plain text, one row per class and a header (with an id column, rows in id
        order, when ``class_ids`` is known)."""
        rows = [("class", "instances", "images", "crowd")]
        rows += [(name, str(c["instances"]), str(c["images"]), str(c["crowd"])) for name, c in self.class_counts.items()]
        width = max(len(r[0]) for r in rows)
        lines = [f"{r[0]:<{width}}  {r[1]:>9}  {r[2]:>6}  {r[3]:>5}" for r in rows]
        if not self.class_ids:
            return "\n".join(lines)
        ids = ["id"] + [str(self.class_ids.get(name, "")) for name in self.class_counts]
        id_width = max(len(i) for i in ids)
        return "\n".join(f"{i:>{id_width}}  {line}" for i, line in zip(ids, lines, strict=True))

    def format(self, all_findings: bool = False) -> str:
        """The report as text: a summary line, the findings, a blank line, the table and the notes.

        Args:
            all_findings: one line per finding (``pedseg check-data --all``). Otherwise findings of one kind
                (same level, file and message once numbers, paths and quoted values are set aside) make one line:
                their count, the first three entries, and the first one's message.

        Returns:
            The text, lines joined with newlines.
        """
        errors, warnings = self.errors, self.warnings
        lines = [f"{self.source}: {self.images} images, {self.annotations} annotations, "
                 f"{len(errors)} error{'s' * (len(errors) != 1)}, {len(warnings)} warning{'s' * (len(warnings) != 1)}"]
        for level, found in (("error", errors), ("warning", warnings)):
            if all_findings:
                lines += [f"{level}: {f}" for f in found]
                continue
            for group in _group(found):
                first = group[0]
                if len(group) == 1:
                    lines.append(f"{level}: {first}")
                    continue
                entries = "; ".join(f.entry for f in group[:3])
                more = f" and {len(group) - 3} more (--all lists every one)" if len(group) > 3 else ""
                lines.append(f"{level}: {first.file}: {len(group)} x [{entries}{more}]: {first.message}")
        return "\n".join([*lines, "", self.table(), *(f"note: {note}" for note in self.notes)])

    def __str__(self) -> str:
        return self.format()


_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\S*[/\\]\S*|\[[^\]]*\]|-?\d+(?:\.\d+)?(?:x\d+)?")


def _group(findings: list[Finding]) -> list[list[Finding]]:
    """Findings of one kind together (same file and message with numbers, paths and quoted values set aside), the
    groups in the order of their first finding."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.file, _VARYING.sub("#", f.message)), []).append(f)
    return list(groups.values())


def _coco_class_counts(coco: dict, crowd: str = "auto") -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per category (in id order), counted from the JSON, and each row's category id; entries with invalid or
    unknown ids are skipped."""
    cats = sorted({c["id"]: c["name"] for c in coco["categories"]
                   if isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str)}.items())
    names = dict(zip((c for c, _ in cats), unique_class_names(cats), strict=True))
    rule = crowd_rule(coco, crowd)
    image_ids = {im["id"] for im in coco["images"] if isinstance(im, dict) and _is_int(im.get("id"))}
    instances, crowd, per_image = Counter(), Counter(), {c: set() for c in names}
    for ann in coco["annotations"]:
        if not (isinstance(ann, dict) and _is_int(ann.get("category_id")) and _is_int(ann.get("image_id"))):
            continue
        cat = ann["category_id"]
        if cat not in names or ann["image_id"] not in image_ids:
            continue
        if rule.is_crowd(ann):
            crowd[cat] += 1
        else:
            instances[cat] += 1
            per_image[cat].add(ann["image_id"])
    counts = {names[c]: {"instances": instances[c], "images": len(per_image[c]), "crowd": crowd[c]} for c in names}
    return counts, {name: c for c, name in names.items()}


def check_coco(annotation_file: str | Path, images_dir: str | Path | None = None, crowd: str = "auto") -> DataReport:
    """Check a COCO instances file and its images (headers only).

    Args:
        annotation_file: the COCO JSON file.
        images_dir: the folder ``file_name`` is relative to; None: the annotation file's folder.
        crowd: the crowd rule (:func:`~pedseg_lib.data.crowd_rule`), named in the report's notes.

    Returns:
        The report; a file that cannot be read as COCO gives one error finding and nothing else.
    """
    path = Path(annotation_file)
    coco, problem = _json_finding(path)
    if problem is not None:
        return DataReport(str(path), 0, 0, [problem], {})
    counts, ids = _coco_class_counts(coco, crowd)
    rule = crowd_rule(coco, crowd)
    notes = [str(rule)] if rule.name != "coco" or any(
        isinstance(a, dict) and a.get("iscrowd", 0) == 1 for a in coco["annotations"]) else []
    return DataReport(str(path), len(coco["images"]), len(coco["annotations"]),
                      coco_findings(coco, path, images_dir, crowd), counts, ids, notes)


def check_roboflow(folder: str | Path, files: dict[str, Path], crowd: str = "auto") -> DataReport:
    """Check every split file of a Roboflow COCO export; one report, counts summed.

    Args:
        folder: the export folder.
        files: split name (``train``, ``valid``, ``test``) -> its ``_annotations.coco.json``.
        crowd: the crowd rule of :func:`check_coco`.

    Returns:
        The report; its notes say the splits are taken as the run's split.
    """
    reports = {name: check_coco(path, None, crowd) for name, path in files.items()}
    split = ", ".join(f"{name} {r.images} images" for name, r in reports.items())
    notes = [f"Roboflow export: its splits are the run's split ({split}); `pedseg train --coco {folder}` uses them"]
    notes += sorted({note for r in reports.values() for note in r.notes})
    counts: dict[str, dict[str, int]] = {}
    ids: dict[str, int] = {}
    for r in reports.values():
        for name, c in r.class_counts.items():
            row = counts.setdefault(name, {"instances": 0, "images": 0, "crowd": 0})
            for key in row:
                row[key] += c[key]
        ids.update(r.class_ids)
    return DataReport(str(folder), sum(r.images for r in reports.values()),
                      sum(r.annotations for r in reports.values()),
                      [f for r in reports.values() for f in r.findings], counts, ids, notes)


def _read(path: Path, verify: bool) -> tuple[np.ndarray | tuple[int, int] | None, str | None]:
    """A PNG's size (``verify``: header and checksums only) or its decoded pixels, or what is wrong."""
    try:
        with Image.open(path) as im:
            if verify:
                size = (im.height, im.width)
                im.verify()
                return size, None
            return np.asarray(im).copy(), None
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, SyntaxError, ValueError) as e:
        return None, f"is unreadable ({e})"


def check_pennfudan(root: str | Path) -> DataReport:
    """Check a Penn-Fudan folder: every image and mask readable, of the same size; images without pedestrians.

    Args:
        root: the folder holding ``PNGImages/`` and ``PedMasks/`` (or its parent).

    Returns:
        The report (class ``person``; ``annotations`` counts the mask instances kept as targets).

    Raises:
        DatasetError: ``root`` is not a Penn-Fudan folder.
    """
    found = find_dataset(root)
    if found is None:
        raise DatasetError(f"{root}: not a Penn-Fudan folder; expected ROOT/PNGImages/*.png and ROOT/PedMasks/"
                           f"*_mask.png, or give a COCO .json file")
    names = sorted(p.name for p in (found / "PNGImages").glob("*.png"))
    findings: list[Finding] = []
    if not names:
        findings.append(Finding("error", str(found / "PNGImages"), "folder", "has no .png images; restore the data "
                                "(`pedseg download`)"))
    instances = with_people = 0
    for name in names:
        image_path, mask_path = found / "PNGImages" / name, found / "PedMasks" / (Path(name).stem + "_mask.png")
        n = _check_pair(image_path, mask_path, findings)
        instances += n or 0
        with_people += bool(n)
    masks = {p.name for p in (found / "PedMasks").glob("*_mask.png")}
    for orphan in sorted(masks - {Path(n).stem + "_mask.png" for n in names}):
        findings.append(Finding("warning", str(found / "PedMasks" / orphan), f"mask {orphan}",
                                "has no image in PNGImages; it is ignored (restore the image or delete the mask)"))
    counts = {"person": {"instances": instances, "images": with_people, "crowd": 0}}
    return DataReport(str(found), len(names), instances, findings, counts)


def _check_pair(image_path: Path, mask_path: Path, findings: list[Finding]) -> int | None:
    """The number of pedestrians of one image and mask (None when they cannot be used); problems to ``findings``."""
    entry = f"image {image_path.name}"
    size, problem = _read(image_path, verify=True)
    if problem is not None:
        findings.append(Finding("error", str(image_path), entry, f"{problem}; replace it with the original from the "
                                "Penn-Fudan zip or delete it and its mask"))
        return None
    mask, problem = _read(mask_path, verify=False)
    if problem is not None:
        findings.append(Finding("error", str(mask_path), entry, f"its mask {problem}; restore the mask or delete the "
                                "image"))
        return None
    if mask.ndim == 3:
        mask = mask[..., 0]
    if tuple(mask.shape) != size:
        findings.append(Finding("error", str(mask_path), entry, f"mask is {mask.shape[1]}x{mask.shape[0]} but the "
                                f"image is {size[1]}x{size[0]}; the mask must match its image"))
        return None
    n = _instance_count(mask)
    if n == 0:
        findings.append(Finding("warning", str(mask_path), entry, "has no pedestrians; it is used as a negative "
                                "(background-only) image"))
    return n


def _instance_count(mask: np.ndarray) -> int:
    """The number of instances :func:`mask_to_target` keeps (distinct non-zero values whose box has non-zero width
    and height), counted with a bincount: several times faster than building the targets (tested equal)."""
    ids = np.flatnonzero(np.bincount(mask.ravel().astype(np.int64)))
    n = 0
    for value in ids[ids != 0]:
        pixels = mask == value
        rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
        n += bool(rows[-1] > rows[0] and cols[-1] > cols[0])
    return n


def check_data(path: str | Path, images_dir: str | Path | None = None, crowd: str = "auto") -> DataReport:
    """Check a data set, whatever :func:`~pedseg_lib.data.detect_input` finds it to be: a COCO file (or a
    folder with one) with :func:`check_coco`, a Roboflow export folder with :func:`check_roboflow`, a Penn-Fudan
    folder with :func:`check_pennfudan`.

    Args:
        path: the file or folder.
        images_dir: the folder COCO file names are relative to (None: the annotation file's folder).
        crowd: the crowd rule of :func:`check_coco`.

    Returns:
        The report.

    Raises:
        DatasetError: ``path`` is none of these (a LabelMe or VIA file, say): one line naming what it is and the
            command that converts it.
    """
    detected = detect_input(path)
    if detected.kind == "coco" and "train" in detected.files:
        return check_coco(detected.files["train"], images_dir, crowd)
    if detected.kind == "coco" or (detected.kind == "missing" and Path(path).suffix.lower() == ".json"):
        # a .json that is missing or not COCO enough: the reader names what is wrong, as one finding
        return check_coco(path, images_dir, crowd)
    if detected.kind == "roboflow":
        return check_roboflow(detected.path, detected.files, crowd)
    if detected.kind == "pennfudan":
        return check_pennfudan(detected.path)
    raise DatasetError(detected.advice("a COCO file, a Roboflow export or a Penn-Fudan folder"))

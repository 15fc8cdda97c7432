"""Penn-Fudan's PASCAL-style annotation files (``Annotation/*.txt``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pedseg_lib.errors import DatasetError


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

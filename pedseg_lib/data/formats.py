"""What an input path holds: one detector for ``pedseg check-data``, ``pedseg train --coco`` and ``pedseg convert``.

:func:`detect_input` recognises a COCO instances file, a Roboflow COCO export folder (``train/``, ``valid/``,
``test/``, each with ``_annotations.coco.json`` beside its images), a LabelMe file or folder, a VIA file, a
Penn-Fudan folder and a folder with one COCO file. Given the wrong one, each command says what it saw and the
exact command to run (:meth:`DetectedInput.advice`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pedseg_lib.data.pennfudan import find_dataset

ROBOFLOW_FILE = "_annotations.coco.json"
ROBOFLOW_SPLITS = ("train", "valid", "test")  # Roboflow's folder names, in that order
KINDS = ("coco", "roboflow", "labelme", "via", "pennfudan", "unknown", "missing")


@dataclass(frozen=True)
class DetectedInput:
    """What :func:`detect_input` found.

    Attributes:
        kind: ``"coco"``, ``"roboflow"``, ``"labelme"``, ``"via"``, ``"pennfudan"``, ``"unknown"`` or ``"missing"``.
        path: the path given.
        description: a few words naming what was seen, e.g. ``"a LabelMe file (shapes, imagePath)"``.
        files: the COCO files to read: ``{"train": file}`` for a COCO file; Roboflow's splits present
            (``train``, ``valid``, ``test``) for a Roboflow export.
    """

    kind: str
    path: Path
    description: str
    files: dict[str, Path] = field(default_factory=dict)

    def convert_command(self) -> str | None:
        """The ``pedseg convert`` command that makes a COCO file of this input, None when none is needed or known."""
        q = shlex.quote
        if self.kind == "labelme":
            folder = self.path if self.path.is_dir() else self.path.parent
            return f"pedseg convert labelme {q(str(folder))} --out {q(str(folder / 'coco.json'))}"
        if self.kind == "via":
            return f"pedseg convert via {q(str(self.path))} --out {q(str(self.path.parent / 'coco.json'))}"
        if self.kind == "pennfudan":
            return f"pedseg convert pennfudan {q(str(self.path))} --out {q(str(self.path / 'coco.json'))}"
        return None

    def advice(self, wanted: str) -> str:
        """One line: what this input is, and the command that does what was wanted with it.

        Args:
            wanted: what the command needed, e.g. ``"a COCO instances file"``.

        Returns:
            ``"PATH is X, not W: run `...`"`` (or what to check when there is no command).
        """
        q = shlex.quote
        if self.kind == "missing":
            return f"{self.path} does not exist; check the path"
        command = self.convert_command()
        if self.kind in ("coco", "roboflow"):
            file = self.files.get("train")
            train = f"pedseg train --coco {q(str(self.path))}"
            if self.kind == "coco" and self.path.is_dir() and file is not None:
                train = f"pedseg train --coco {q(str(file))}"
            return f"{self.path} is {self.description}, not {wanted}: run `{train}` or `pedseg check-data " \
                   f"{q(str(self.path))}`"
        if self.kind == "pennfudan":
            return (f"{self.path} is {self.description}, not {wanted}: train on it with `pedseg train --set "
                    f"data_root={q(str(self.path))}`, or make a COCO file with `{command}`")
        if command:
            return f"{self.path} is {self.description}, not {wanted}: convert it first with `{command}`"
        return (f"{self.path} is {self.description}, not {wanted}; pedseg reads COCO instances files, Roboflow COCO "
                "folders and Penn-Fudan folders, and converts LabelMe, VIA and mask folders (`pedseg convert -h`)")


def _json_kind(data: Any) -> tuple[str, str]:
    """(kind, description) of parsed JSON."""
    if isinstance(data, dict):
        if all(k in data for k in ("images", "annotations", "categories")):
            return "coco", "a COCO instances file"
        if isinstance(data.get("shapes"), list) and ("imagePath" in data or "version" in data):
            return "labelme", "a LabelMe file (shapes, imagePath)"
        if isinstance(data.get("_via_img_metadata"), dict):
            return "via", "a VIA project file (_via_img_metadata)"
        values = list(data.values())
        if values and all(isinstance(v, dict) and "filename" in v and "regions" in v for v in values):
            return "via", "a VIA annotation file (filename, regions per image)"
        if "images" in data or "annotations" in data:
            missing = [k for k in ("images", "annotations", "categories") if k not in data]
            return "coco", f"a COCO file without {', '.join(missing)}"
        keys = ", ".join(list(data)[:5])
        return "unknown", f"a JSON object with keys {keys or 'none'} (not COCO, LabelMe or VIA)"
    return "unknown", f"a JSON {type(data).__name__} (not COCO, LabelMe or VIA)"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def detect_input(path: str | Path) -> DetectedInput:
    """What ``path`` holds (reads at most a few JSON files; never opens images).

    Args:
        path: a file or folder given to a command.

    Returns:
        The :class:`DetectedInput`. A ``.json`` file that cannot be parsed is ``"coco"`` (the COCO reader then
        names the line and column); a folder of Roboflow splits is ``"roboflow"`` with the split files present.
    """
    path = Path(path)
    if not path.exists():
        return DetectedInput("missing", path, "missing")
    if path.is_file():
        if path.suffix.lower() != ".json":
            return DetectedInput("unknown", path, f"a {path.suffix or 'suffix-less'} file, not a JSON annotation file")
        data = _read_json(path)
        if data is None:
            return DetectedInput("coco", path, "a JSON file", {"train": path})
        kind, description = _json_kind(data)
        return DetectedInput(kind, path, description, {"train": path} if kind == "coco" else {})
    splits = {name: path / name / ROBOFLOW_FILE for name in ROBOFLOW_SPLITS if (path / name / ROBOFLOW_FILE).is_file()}
    if splits:
        names = ", ".join(f"{name}/" for name in splits)
        return DetectedInput("roboflow", path, f"a Roboflow COCO export ({names} with {ROBOFLOW_FILE})", splits)
    if (path / ROBOFLOW_FILE).is_file():
        return DetectedInput("coco", path, f"a folder with the COCO file {ROBOFLOW_FILE}",
                             {"train": path / ROBOFLOW_FILE})
    found = find_dataset(path)
    if found is not None:
        return DetectedInput("pennfudan", found, "a Penn-Fudan folder (PNGImages/, PedMasks/)")
    jsons = sorted(path.glob("*.json"))
    kinds = [(p, *_json_kind(_read_json(p))) for p in jsons[:20]]
    if any(k == "labelme" for _, k, _ in kinds):
        return DetectedInput("labelme", path, f"a folder of LabelMe files ({len(jsons)} .json)")
    vias = [p for p, k, _ in kinds if k == "via"]
    if vias:
        return DetectedInput("via", vias[0], f"a VIA annotation file ({vias[0].name} in {path})")
    cocos = [p for p, k, _ in kinds if k == "coco"]
    if len(cocos) == 1:
        return DetectedInput("coco", path, f"a folder with the COCO file {cocos[0].name}", {"train": cocos[0]})
    if cocos:
        return DetectedInput("unknown", path, f"a folder with {len(cocos)} COCO files ({', '.join(p.name for p in cocos)}); "
                             "give one of them")
    return DetectedInput("unknown", path, "a folder without annotation files")

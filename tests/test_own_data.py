"""Annotation files as the tools really export them (issue 22), each fixture shaped like the tool's own output:
Label Studio on Windows, CVAT brush masks, LabelMe's every shape, VIA (the balloon tutorials' format), Roboflow
export folders, duplicate category names, a 3-image set, class-valued masks, and the doctor's grouped output."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pedseg_lib import cli, engine
from pedseg_lib.config import apply_overrides, load_preset
from pedseg_lib.data import (
    CocoInstancesDataset,
    check_data,
    class_valued_masks,
    connected_components,
    crowd_rule,
    detect_input,
    labelme_to_coco,
    masks_to_coco,
    via_to_coco,
    write_coco,
)
from pedseg_lib.errors import ConfigError, DatasetError

W, H = 48, 32
ROBOFLOW = "_annotations.coco.json"


def _image(path: Path, size=(W, H), value=120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _write(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


# ------------------------------------------------------------------------------------- 1. Label Studio (Windows)
def label_studio_windows(folder: Path) -> Path:
    """Label Studio's COCO export (label_studio_converter/converter.py convert_to_coco) written on Windows:
    ``file_name`` joined with backslashes, categories from 0, ``ignore``, boxes with ``segmentation: []``."""
    for name in ("abc.jpg", "def.jpg"):
        _image(folder / "images" / name)
    return _write(folder / "result.json", {
        "images": [{"width": W, "height": H, "id": 0, "file_name": "images\\abc.jpg"},
                   {"width": W, "height": H, "id": 1, "file_name": "images\\def.jpg"}],
        "categories": [{"id": 0, "name": "Car"}, {"id": 1, "name": "Person"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 0, "segmentation": [], "bbox": [2.0, 3.0, 10.0, 8.0],
             "ignore": 0, "iscrowd": 0, "area": 80.0},
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[20.0, 5.0, 40.0, 5.0, 40.0, 25.0, 20.0, 25.0]],
             "bbox": [20.0, 5.0, 20.0, 20.0], "ignore": 0, "iscrowd": 0, "area": 400.0}],
        "info": {"year": 2024, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "",
                 "date_created": "2024-05-01 10:00:00.000000"},
    })


def test_windows_file_names_resolve(tmp_path, capsys):
    path = label_studio_windows(tmp_path / "export")
    report = check_data(path)
    assert report.errors == [], [str(f) for f in report.errors]
    ds = CocoInstancesDataset(None, path)
    assert ds.image_path(0) == tmp_path / "export" / "images" / "abc.jpg"
    image, target = ds[1]
    assert image.shape == (3, H, W) and target["labels"].tolist() == [2]
    assert cli.main(["check-data", str(path)]) == 0
    print("\n== check-data on the Windows Label Studio export ==\n" + capsys.readouterr().out, file=sys.stderr)


# ----------------------------------------------------------------------------------------- 2. CVAT brush masks
def _rle_list(mask: np.ndarray) -> dict:
    """Uncompressed RLE (counts a list, column-major), as Datumaro's COCO exporter writes CVAT's masks."""
    flat = mask.T.ravel()
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def cvat_brush(folder: Path, attributes: bool = True) -> Path:
    """CVAT's COCO 1.0 export (datumaro/plugins/coco_format/exporter.py): every mask is an uncompressed RLE with
    ``iscrowd: 1``, every polygon ``iscrowd: 0``, ``attributes`` with ``occluded`` on every annotation, and the
    images in ``images/`` beside ``annotations/instances_default.json``."""
    _image(folder / "images" / "frame_000000.png")
    a, b = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    a[4:14, 4:20], b[18:30, 26:44] = 1, 1
    attrs = {"attributes": {"occluded": False}} if attributes else {}
    return _write(folder / "annotations" / "instances_default.json", {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [{"id": 1, "name": "tree", "supercategory": ""}],
        "images": [{"id": 1, "width": W, "height": H, "file_name": "frame_000000.png", "license": 0,
                    "flickr_url": "", "coco_url": "", "date_captured": 0}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": _rle_list(a), "area": 160.0,
             "bbox": [4.0, 4.0, 16.0, 10.0], "iscrowd": 1, **attrs},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": _rle_list(b), "area": 216.0,
             "bbox": [26.0, 18.0, 18.0, 12.0], "iscrowd": 1, **attrs},
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[2.0, 20.0, 12.0, 20.0, 12.0, 30.0]],
             "area": 50.0, "bbox": [2.0, 20.0, 10.0, 10.0], "iscrowd": 0, **attrs}],
    })


def test_cvat_masks_are_instances(tmp_path, capsys):
    path = cvat_brush(tmp_path / "cvat")
    images = tmp_path / "cvat" / "images"
    assert crowd_rule(json.loads(path.read_text())).name == "cvat"
    ds = CocoInstancesDataset(images, path)
    assert len(ds.target(0)["labels"]) == 3 and len(ds.crowd_target(0)["labels"]) == 0
    assert ds.target(0)["masks"][0].sum() == 160
    assert len(CocoInstancesDataset(images, path, crowd="coco").target(0)["labels"]) == 1  # COCO's meaning
    report = check_data(path, images)
    assert report.errors == [] and report.class_counts["tree"] == {"instances": 3, "images": 1, "crowd": 0}
    assert any(note.startswith("crowd rule cvat: a CVAT export") for note in report.notes)
    missing = check_data(path)  # the images are never in annotations/: the message names --images
    assert missing.errors and "--images" in missing.errors[0].message
    assert cli.main(["check-data", str(path), "--images", str(images)]) == 0
    print("\n== check-data on the CVAT brush export ==\n" + capsys.readouterr().out, file=sys.stderr)


def test_crowd_rule_without_cvat_attributes_and_the_option(tmp_path, capsys):
    path = cvat_brush(tmp_path / "plain", attributes=False)  # iscrowd 1 RLE, nothing says CVAT: COCO's meaning
    images = tmp_path / "plain" / "images"
    ds = CocoInstancesDataset(images, path)
    assert len(ds.target(0)["labels"]) == 1 and len(ds.crowd_target(0)["labels"]) == 2
    report = check_data(path, images)
    assert report.class_counts["tree"]["crowd"] == 2 and "--crowd-as-instances" in report.notes[0]
    assert len(CocoInstancesDataset(images, path, crowd="instances").target(0)["labels"]) == 3
    assert cli.main(["check-data", str(path), "--images", str(images), "--crowd-as-instances"]) == 0
    out = capsys.readouterr().out
    assert "note: crowd rule instances" in out and "crowd region" not in out
    args = cli.build_parser().parse_args(["train", "--preset", "smoke", "--coco", str(path), "--crowd-as-instances"])
    assert cli._train_config(args).crowd == "instances"


# ------------------------------------------------------------------------------------------------- 3. LabelMe
def _png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _shape(label, points, kind, group=None, **extra):
    return {"label": label, "points": points, "group_id": group, "description": "", "shape_type": kind,
            "flags": {}, "mask": None, **extra}


def labelme_folder(folder: Path) -> Path:
    """LabelMe 5.5 files: polygon, circle, __ignore__, line, linestrip, point, an AI ``mask`` shape (a base64 PNG
    of its box, corners inclusive), and a file whose image exists only as ``imageData``."""
    _image(folder / "a.png")
    small = np.zeros((8, 10), np.uint8)
    small[1:7, 2:9] = 255  # the PNG of the box from (30, 20) to (39, 27)
    shapes = [
        _shape("dog", [[2, 2], [14, 2], [14, 12], [2, 12]], "polygon"),
        _shape("ball", [[20, 10], [26, 10]], "circle"),  # centre, a point on the circle: r = 6
        _shape("__ignore__", [[0, 20], [10, 20], [10, 30]], "polygon"),
        _shape("dog", [[1, 1], [5, 5]], "line"),
        _shape("dog", [[1, 1], [5, 5], [9, 1]], "linestrip"),
        _shape("dog", [[3, 3]], "point"),
        _shape("dog", [[30, 20], [39, 27]], "mask", mask=_png_b64(small)),
    ]
    common = {"version": "5.5.0", "flags": {}, "imageHeight": H, "imageWidth": W}
    _write(folder / "a.json", {**common, "shapes": shapes, "imagePath": "a.png", "imageData": None})
    embedded = io.BytesIO()
    Image.fromarray(np.full((H, W, 3), 7, np.uint8)).save(embedded, format="PNG")
    _write(folder / "b.json", {**common, "shapes": [_shape("ball", [[5, 5], [15, 5], [10, 15]], "polygon")],
                               "imagePath": "b.png", "imageData": base64.b64encode(embedded.getvalue()).decode()})
    return folder


def test_labelme_every_shape(tmp_path):
    folder = labelme_folder(tmp_path / "lm")
    notes: list[str] = []
    coco = labelme_to_coco(folder, notes=notes)
    assert [c["name"] for c in coco["categories"]] == ["ball", "dog"]  # __ignore__ is no class
    anns = coco["annotations"]
    assert [(a["image_id"], a["category_id"]) for a in anns] == [(1, 2), (1, 1), (1, 2), (2, 1)]
    circle = anns[1]["segmentation"][0]
    n = max(int(math.pi / math.acos(1 - 1 / 6)), 12)  # labelme2coco's number of points
    assert len(circle) == 2 * n and circle[:2] == [20.0, 16.0]  # x = cx + r sin 0, y = cy + r cos 0
    assert anns[2]["bbox"] == [32.0, 21.0, 7.0, 6.0] and anns[2]["area"] == 42.0  # the mask shape, in place
    assert len(notes) == 3 and notes[0].startswith("skipped 3 shapes without area, which cannot be instances "
                                                   "(1 line, 1 linestrip, 1 point)")
    assert notes[1].startswith("skipped 1 regions labelled __ignore__") and "wrote 1 image(s)" in notes[2]
    assert (folder / "b.png").is_file()  # written from imageData
    ds = CocoInstancesDataset(None, write_coco(coco, folder / "coco.json"))
    assert len(labelme_to_coco(folder)["images"]) == 2  # the COCO file written into the folder is passed over
    image, target = ds[1]
    assert int(image[0, 0, 0]) == 7 and target["labels"].tolist() == [1]
    mask = ds.target(0)["masks"][2].numpy()
    assert mask[21:27, 32:39].all() and mask.sum() == 42


def test_labelme_without_image_or_imagedata(tmp_path):
    folder = labelme_folder(tmp_path / "lm")
    (folder / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"a\.json: its image .*a\.png .* not found and not embedded"):
        labelme_to_coco(folder)


# ----------------------------------------------------------------------------------------------------- 4. VIA
def via_balloon(folder: Path) -> Path:
    """A file shaped like the balloon set's via_region_data.json (VIA 1: regions keyed "0", "1", ...; empty
    region_attributes), plus a VIA 2 entry (regions a list) with rect, circle, ellipse and a polyline."""
    for name in ("b1.jpg", "b2.jpg"):
        _image(folder / name)
    return _write(folder / "via_region_data.json", {
        "b1.jpg1234": {"fileref": "", "size": 1234, "filename": "b1.jpg", "base64_img_data": "", "file_attributes": {},
                       "regions": {"0": {"shape_attributes": {"name": "polygon", "all_points_x": [5, 20, 12],
                                                              "all_points_y": [5, 5, 20]},
                                         "region_attributes": {}}}},
        "b2.jpg5678": {"filename": "b2.jpg", "size": 5678, "file_attributes": {}, "regions": [
            {"shape_attributes": {"name": "rect", "x": 2, "y": 3, "width": 10, "height": 6}, "region_attributes": {}},
            {"shape_attributes": {"name": "circle", "cx": 30, "cy": 15, "r": 5}, "region_attributes": {}},
            {"shape_attributes": {"name": "ellipse", "cx": 15, "cy": 22, "rx": 6, "ry": 3, "theta": 0},
             "region_attributes": {}},
            {"shape_attributes": {"name": "polyline", "all_points_x": [1, 9], "all_points_y": [1, 9]},
             "region_attributes": {}}]},
    })


def test_via_balloon(tmp_path, capsys):
    path = via_balloon(tmp_path / "balloon")
    notes: list[str] = []
    coco = via_to_coco(path, class_name="balloon", notes=notes)
    assert coco["categories"] == [{"id": 1, "name": "balloon", "supercategory": "balloon"}]
    assert [a["image_id"] for a in coco["annotations"]] == [1, 2, 2, 2]
    assert coco["annotations"][0]["segmentation"] == [[5.0, 5.0, 20.0, 5.0, 12.0, 20.0]]
    assert coco["annotations"][1]["bbox"] == [2.0, 3.0, 10.0, 6.0]
    assert coco["annotations"][2]["bbox"] == pytest.approx([25.0, 10.0, 10.0, 10.0])
    assert coco["annotations"][3]["bbox"] == pytest.approx([9.0, 19.0, 12.0, 6.0])
    assert notes == ["skipped 1 polyline regions (no area: not an instance): b2.jpg region 3"]
    out = tmp_path / "balloon.json"
    assert cli.main(["convert", "via", str(path), "--class-name", "balloon", "--out", str(out)]) == 0
    assert len(CocoInstancesDataset(path.parent, out)) == 2
    assert cli.main(["convert", "labelme", str(path), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "is a VIA annotation file" in err and f"`pedseg convert via {path} --out" in err
    with pytest.raises(DatasetError, match=r"image b1\.jpg is not in .*; pass the images' folder with --images"):
        via_to_coco(path, images_dir=tmp_path)


# ----------------------------------------------------------------------------------- 5. one detector, Roboflow
def roboflow_export(folder: Path) -> Path:
    """Roboflow's "COCO JSON" export: train/, valid/, test/, each with _annotations.coco.json beside its images;
    category 0 is the project name (supercategory "none"), never used."""
    for k, split in enumerate(("train", "valid", "test")):
        names = [f"img{k}{i}_jpg.rf.{k}{i}abc.jpg" for i in range(3 if split == "train" else 1)]
        for name in names:
            _image(folder / split / name)
        _write(folder / split / "_annotations.coco.json", {
            "info": {"year": "2024", "version": "1", "description": "Exported from roboflow.com"},
            "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
            "categories": [{"id": 0, "name": "cells", "supercategory": "none"},
                           {"id": 1, "name": "cell", "supercategory": "cells"}],
            "images": [{"id": i, "license": 1, "file_name": n, "height": H, "width": W,
                        "date_captured": "2024-01-01T00:00:00+00:00"} for i, n in enumerate(names)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100,
                             "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]], "iscrowd": 0}
                            for i in range(len(names))],
        })
    return folder


def test_roboflow_folder_everywhere(tmp_path, capsys):
    folder = roboflow_export(tmp_path / "rf")
    detected = detect_input(folder)
    assert detected.kind == "roboflow" and list(detected.files) == ["train", "valid", "test"]
    report = check_data(folder)
    assert report.errors == [] and report.images == 5
    assert "Roboflow export: its splits are the run's split (train 3 images, valid 1 images, test 1 images)" \
        in report.notes[0]
    assert [f.entry for f in report.warnings] == ["category 0 (cells)"] * 3  # one per file, not two
    assert cli.main(["check-data", str(folder)]) == 0
    print("\n== check-data on the Roboflow export folder ==\n" + capsys.readouterr().out, file=sys.stderr)
    args = cli.build_parser().parse_args(["train", "--preset", "smoke", "--coco", str(folder)])
    cfg = cli._train_config(args)
    assert (cfg.annotation_file, cfg.val_annotation_file, cfg.test_annotation_file) == tuple(
        str(folder / s / "_annotations.coco.json") for s in ("train", "valid", "test"))
    split = engine.run_split(cfg)
    assert {k: len(v) for k, v in split.items()} == {"train": 3, "val": 1, "test": 1}
    assert engine.split_summary(cfg) == "split of 5 images (from the files): 3 train, 1 validation, 1 test"
    (folder / "test" / "_annotations.coco.json").unlink()  # train/ and valid/ only: valid/ is the test set
    cfg = cli._train_config(cli.build_parser().parse_args(["train", "--preset", "smoke", "--coco", str(folder)]))
    assert (cfg.val_annotation_file, cfg.test_annotation_file) == (None, str(folder / "valid" / ROBOFLOW))


def test_wrong_input_names_what_it_saw_and_the_command(tmp_path, capsys):
    lm = labelme_folder(tmp_path / "lm")
    pf = tmp_path / "pf"
    (pf / "PNGImages").mkdir(parents=True)
    (pf / "PedMasks").mkdir()
    _image(pf / "PNGImages" / "x.png")
    assert [detect_input(p).kind for p in (lm, lm / "a.json", pf, label_studio_windows(tmp_path / "ls"))] == [
        "labelme", "labelme", "pennfudan", "coco"]
    cases = [
        (["check-data", str(lm / "a.json")], "is a LabelMe file (shapes, imagePath), not a COCO file",
         f"`pedseg convert labelme {lm} --out {lm / 'coco.json'}`"),
        (["train", "--preset", "smoke", "--coco", str(lm)], "is a folder of LabelMe files (2 .json)",
         f"`pedseg convert labelme {lm} --out"),
        (["train", "--preset", "smoke", "--coco", str(pf)], "is a Penn-Fudan folder",
         f"`pedseg train --set data_root={pf}`"),
        (["convert", "pennfudan", str(lm), "--out", str(tmp_path / "o.json")], "is a folder of LabelMe files",
         "`pedseg convert labelme"),
    ]
    for argv, saw, command in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert saw in err and command in err and err.count("\n") == 1, (argv, err)


# ----------------------------------------------------------------------------------- 6. duplicate category names
def test_duplicate_category_names(tmp_path):
    folder = tmp_path / "dup"
    _image(folder / "a.jpg")
    path = _write(folder / "_annotations.coco.json", {
        "categories": [{"id": 0, "name": "car", "supercategory": "none"},
                       {"id": 1, "name": "car", "supercategory": "car"}],
        "images": [{"id": 0, "file_name": "a.jpg", "height": H, "width": W}],
        "annotations": [{"id": k, "image_id": 0, "category_id": k, "bbox": [2, 2, 8, 8], "area": 64,
                         "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]], "iscrowd": 0} for k in (0, 1)]})
    report = check_data(path)
    dup = [f for f in report.warnings if "same name as category 0" in f.message]
    assert [f.entry for f in dup] == ["category 1 (car)"]
    assert report.table().splitlines() == ["id  class       instances  images  crowd",
                                           " 0  car (id 0)          1       1      0",
                                           " 1  car (id 1)          1       1      0"]
    assert CocoInstancesDataset(None, path).class_names == ["__background__", "car (id 0)", "car (id 1)"]


# --------------------------------------------------------------------------------------------- 7. small data sets
def three_images(folder: Path) -> Path:
    names = [f"p{i}.jpg" for i in range(3)]
    for i, name in enumerate(names):
        _image(folder / name, value=60 + 40 * i)
    return _write(folder / "conv.json", {
        "categories": [{"id": 1, "name": "thing"}],
        "images": [{"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(names)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [8, 6, 20, 14], "iscrowd": 0,
                         "area": 280, "segmentation": [[8, 6, 28, 6, 28, 20, 8, 20]]} for i in range(3)]})


@pytest.mark.parametrize("preset", ["smoke", "cpu", "tutorial"])
def test_three_images_split_with_every_preset(tmp_path, preset):
    path = three_images(tmp_path / "three")
    cfg = apply_overrides(load_preset(preset), ["data_format=coco", f"annotation_file={path}"])
    split = engine.run_split(cfg)
    want_val = 0 if preset == "tutorial" else 1
    assert {k: len(v) for k, v in split.items()} == {"train": 2 - want_val, "val": want_val, "test": 1}
    summary = engine.split_summary(cfg)
    assert summary.startswith(f"split of 3 images: {2 - want_val} train, {want_val} validation, 1 test; the "
                              f"preset's test_size={cfg.test_size} and val_size={cfg.val_size} leave too few")
    hand = dataclasses.replace(cfg, test_size=3)  # a size set by hand is kept, and named with the file
    with pytest.raises(ConfigError, match=rf"test_size=3 must be between 1 and 2: {path} has 3 images"):
        engine.run_split(hand)


def test_penn_fudan_sized_data_keeps_the_preset_split():
    from pedseg_lib.data.splits import fit_split_sizes

    assert fit_split_sizes(170, 50, 20, True) == (50, 20, None)
    assert fit_split_sizes(12, 4, 4, True) == (4, 4, None)  # smoke on the synthetic set: unchanged
    assert fit_split_sizes(10, 50, 20, True)[:2] == (2, 2)
    assert fit_split_sizes(2, 4, 4, True)[:2] == (1, 0)
    with pytest.raises(ConfigError, match="at least 2"):
        fit_split_sizes(1, 4, 4, True)


@pytest.mark.slow
def test_three_images_train_smoke(tmp_path, capsys):
    path = three_images(tmp_path / "three")
    run = tmp_path / "run"
    assert cli.main(["train", "--preset", "smoke", "--coco", str(path), "--out", str(run), "--quiet",
                     "--set", "epochs=1", "--set", "min_size=64", "--set", "max_size=96"]) == 0
    out = capsys.readouterr().out
    assert "split of 3 images: 1 train, 1 validation, 1 test" in out and (run / "best.pt").is_file()


# ------------------------------------------------------------------------------------- 8. class-valued masks
def fire_smoke(folder: Path) -> tuple[Path, Path]:
    """Class-valued masks as fire/smoke sets ship them: 127 = fire, 254 = smoke, several fires per image."""
    images, masks = folder / "images", folder / "masks"
    for k in range(2):
        _image(images / f"f{k}.jpg")
        m = np.zeros((H, W), np.uint8)
        m[2:6, 2:6] = m[2:6, 10:14] = m[20:26, 2:8] = 127  # three fires
        m[10:30, 30:46] = 254  # one smoke plume
        masks.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(masks / f"f{k}_mask.png")
    return images, masks


def test_class_valued_masks_refused_then_split(tmp_path, capsys):
    images, masks = fire_smoke(tmp_path)
    with pytest.raises(DatasetError, match=r"hold class values, not instance ids \(values 127 in 2 masks, 254 in "
                                           r"2 masks\).*--semantic"):
        masks_to_coco(images, masks)
    coco = masks_to_coco(images, masks, semantic=True, class_names={127: "fire", 254: "smoke"})
    assert coco["categories"] == [{"id": 1, "name": "fire", "supercategory": "fire"},
                                  {"id": 2, "name": "smoke", "supercategory": "smoke"}]
    assert [a["category_id"] for a in coco["annotations"] if a["image_id"] == 1] == [1, 1, 1, 2]
    out = tmp_path / "fire.json"
    assert cli.main(["convert", "masks", str(images), "--masks", str(masks), "--out", str(out)]) == 2
    assert "--semantic" in capsys.readouterr().err
    assert cli.main(["convert", "masks", str(images), "--masks", str(masks), "--semantic", "--classes",
                     "127=fire,254=smoke", "--out", str(out)]) == 0
    assert CocoInstancesDataset(images, out).target(0)["labels"].tolist() == [1, 1, 1, 2]


def test_instance_masks_are_not_class_valued():
    ids = np.zeros((H, W), np.uint8)
    ids[2:8, 2:8], ids[10:20, 10:20] = 1, 2
    gap = np.zeros((H, W), np.uint8)
    gap[2:8, 2:8], gap[10:20, 10:20] = 1, 4  # a gap in one image's ids is tolerated
    assert class_valued_masks([ids, ids.copy(), gap]) is None
    binary = np.zeros((H, W), np.uint8)
    binary[1:4, 1:4] = binary[10:14, 10:14] = 255
    assert class_valued_masks([binary]) == "values 255 in 1 mask"
    labels, count = connected_components(binary == 255)
    assert count == 2 and set(np.unique(labels)) == {0, 1, 2}


# ------------------------------------------------------------------------------------------ 9. grouped doctor
def test_doctor_groups_findings_and_all_lists_them(tmp_path, capsys):
    folder = tmp_path / "boxes"
    _image(folder / "a.jpg")
    path = _write(folder / "boxes.json", {
        "categories": [{"id": 1, "name": "box"}], "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "annotations": [{"id": k, "image_id": 1, "category_id": 1, "bbox": [k, 2, 5, 5], "segmentation": [],
                         "iscrowd": 0, "area": 25} for k in range(1, 6)]})
    report = check_data(path)
    lines = str(report).splitlines()
    assert lines[1] == (f"warning: {path}: 5 x [annotation 1 of image 1 (a.jpg); annotation 2 of image 1 (a.jpg); "
                        "annotation 3 of image 1 (a.jpg) and 2 more (--all lists every one)]: has no segmentation; "
                        "its bbox is used as a rectangle mask")
    assert lines[2] == ""
    assert cli.main(["check-data", str(path), "--all"]) == 0
    assert capsys.readouterr().out.count("warning: ") == 5


def test_closed_pipe_ends_quietly(tmp_path, monkeypatch):
    path = label_studio_windows(tmp_path / "ls")
    read, write = os.pipe()
    os.close(read)  # the reader (`head`) is gone before pedseg writes
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert cli.main(["check-data", str(path)]) == 141  # no BrokenPipeError escapes
        print("more")  # stdout now goes to /dev/null: the interpreter's last flush cannot fail either
        stdout.flush()
    finally:
        monkeypatch.undo()
        stdout.close()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_rle_helper_matches_pycocotools():
    m = np.zeros((5, 7), np.uint8)
    m[1:3, 2:6] = 1
    rle = mask_utils.frPyObjects(_rle_list(m), 5, 7)
    assert np.array_equal(mask_utils.decode(rle), m) and torch.is_tensor(torch.from_numpy(m))

"""The data doctor: each COCO finding on its own, Penn-Fudan folders (synthetic and real), the count table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pedseg_lib.data import (
    DataReport,
    Finding,
    PennFudanDataset,
    check_coco,
    check_data,
    check_pennfudan,
    make_synthetic_pennfudan,
)
from pedseg_lib.errors import DatasetError

W, H = 40, 30
SQUARE = [2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]


def _base(folder: Path) -> dict:
    """Two images, two categories, four clean annotations (each category on both images); the images are written
    into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (W, H), (10, 20, 30)).save(folder / name)
    ann = {"iscrowd": 0, "bbox": [2, 2, 10, 10], "area": 100, "segmentation": [SQUARE]}
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "person"}, {"id": 5, "name": "ball"}],
        "annotations": [{**ann, "id": 11, "image_id": 1, "category_id": 1},
                        {**ann, "id": 12, "image_id": 2, "category_id": 1},
                        {**ann, "id": 13, "image_id": 2, "category_id": 5},
                        {**ann, "id": 14, "image_id": 1, "category_id": 5}],
    }


def _check(tmp_path: Path, coco: dict) -> tuple[Path, DataReport]:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return path, check_coco(path)


def test_clean_file_has_no_findings_and_counts_classes(tmp_path):
    path, report = _check(tmp_path, _base(tmp_path))
    assert report.findings == [] and report.errors == [] and report.warnings == []
    assert (report.source, report.images, report.annotations) == (str(path), 2, 4)
    assert report.class_counts == {"person": {"instances": 2, "images": 2, "crowd": 0},
                                   "ball": {"instances": 2, "images": 2, "crowd": 0}}


def _ann(coco, ann_id):
    return next(a for a in coco["annotations"] if a["id"] == ann_id)


def f_missing_image(coco, folder):
    (folder / "b.png").unlink()


def f_unreadable_image(coco, folder):
    (folder / "b.png").write_bytes(b"\x89PNG garbage")


def f_size_mismatch(coco, folder):
    Image.new("RGB", (W + 3, H), 0).save(folder / "b.png")


def f_duplicate_image_id(coco, folder):
    Image.new("RGB", (W, H), 0).save(folder / "c.png")
    coco["images"].append({"id": 2, "file_name": "c.png", "width": W, "height": H})


def f_duplicate_file_name(coco, folder):
    coco["images"].append({"id": 3, "file_name": "b.png", "width": W, "height": H})


def f_duplicate_annotation_id(coco, folder):
    _ann(coco, 13)["id"] = 12


def f_unknown_image(coco, folder):
    _ann(coco, 13)["image_id"] = 99


def f_unknown_category(coco, folder):
    _ann(coco, 13)["category_id"] = 4


def f_category_zero(coco, folder):
    coco["categories"][1]["id"] = 0
    _ann(coco, 13)["category_id"] = _ann(coco, 14)["category_id"] = 0


def f_unused_category(coco, folder):
    coco["categories"].append({"id": 9, "name": "dog"})


def f_few_points(coco, folder):
    _ann(coco, 13)["segmentation"] = [SQUARE, [1.0, 1.0, 5.0, 5.0]]


def f_zero_area(coco, folder):
    _ann(coco, 13)["segmentation"] = [[1.0, 1.0, 5.0, 5.0, 9.0, 9.0]]


def f_odd_coordinates(coco, folder):
    _ann(coco, 13)["segmentation"] = [SQUARE + [3.0]]


def f_rle_size(coco, folder):
    rle = mask_utils.encode(np.asfortranarray(np.ones((W, H), np.uint8)))  # transposed size
    _ann(coco, 13)["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}


def f_box_outside(coco, folder):
    _ann(coco, 13)["bbox"] = [30, 2, 15, 10]


def f_crowd(coco, folder):
    _ann(coco, 13)["iscrowd"] = 1


def f_no_annotations(coco, folder):
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]


ENTRY_B = "image 2 (b.png)"
ANN_13 = "annotation 13 of image 2 (b.png)"


@pytest.mark.parametrize("break_it, level, entry, words", [
    (f_missing_image, "error", ENTRY_B, "is missing"),
    (f_unreadable_image, "error", ENTRY_B, "not a readable image"),
    (f_size_mismatch, "error", ENTRY_B, "file is 43x30"),
    (f_duplicate_image_id, "error", "image 2 (c.png)", "duplicate image id"),
    (f_duplicate_file_name, "error", "image 3 (b.png)", "duplicate file name"),
    (f_duplicate_annotation_id, "error", "annotation 12", "duplicate annotation id"),
    (f_unknown_image, "error", "annotation 13", "image_id 99"),
    (f_unknown_category, "error", ANN_13, "category_id 4"),
    (f_category_zero, "warning", "category 0 (ball)", "torchvision's label 0 is the background"),
    (f_unused_category, "warning", "category 9 (dog)", "has no annotations"),
    (f_few_points, "warning", ANN_13, "fewer than 3 points"),
    (f_zero_area, "warning", ANN_13, "zero area"),
    (f_odd_coordinates, "error", ANN_13, "odd number of coordinates (9)"),
    (f_rle_size, "error", ANN_13, "RLE size is 30x40"),
    (f_box_outside, "warning", ANN_13, "reaches outside"),
    (f_crowd, "warning", ANN_13, "crowd region"),
    (f_no_annotations, "warning", ENTRY_B, "used as a negative"),
], ids=lambda v: getattr(v, "__name__", None))
def test_each_coco_finding(tmp_path, break_it, level, entry, words):
    coco = _base(tmp_path)
    break_it(coco, tmp_path)
    path, report = _check(tmp_path, coco)
    assert len(report.findings) == 1, [str(f) for f in report.findings]
    (f,) = report.findings
    assert (f.level, f.file, f.entry) == (level, str(path), entry)
    assert words in f.message and "\n" not in str(f)
    assert str(f) == f"{path}: {entry}: {f.message}"
    assert report.errors == ([f] if level == "error" else []) and report.warnings == ([f] if level == "warning" else [])


def test_unreadable_json_is_one_error_finding(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [1,\n]')
    report = check_coco(path)
    assert [(f.level, f.file, f.entry) for f in report.findings] == [("error", str(path), "line 2 column 1")]
    assert (report.images, report.annotations, report.class_counts) == (0, 0, {})
    assert "malformed JSON" in str(report)


def test_several_findings_are_all_listed_errors_first(tmp_path):
    coco = _base(tmp_path)
    f_crowd(coco, tmp_path)
    f_missing_image(coco, tmp_path)
    coco["annotations"][0]["segmentation"] = [[1.0, 2.0, 3.0]]
    path, report = _check(tmp_path, coco)
    assert [f.level for f in report.findings] == ["error", "warning", "error"]
    text = str(report).splitlines()
    assert text[0] == f"{path}: 2 images, 4 annotations, 2 errors, 1 warning"
    assert [line.split(":")[0] for line in text[1:4]] == ["error", "error", "warning"]
    assert "annotation 11 of image 1 (a.png)" in text[1] and "image 2 (b.png)" in text[2] and "crowd" in text[3]
    table = report.table().splitlines()
    assert text[4] == "" and text[5:5 + len(table)] == table
    assert text[5 + len(table):] == ["note: " + report.notes[0]] and "crowd rule coco" in text[-1]
    assert report.class_counts["ball"] == {"instances": 1, "images": 1, "crowd": 1}


def test_table_text(tmp_path):
    report = DataReport("x", 3, 4, [], {"person": {"instances": 423, "images": 170, "crowd": 0},
                                       "traffic light": {"instances": 7, "images": 2, "crowd": 1}})
    assert report.table() == (
        "class          instances  images  crowd\n"
        "person               423     170      0\n"
        "traffic light          7       2      1"
    )
    assert str(report).splitlines()[0] == "x: 3 images, 4 annotations, 0 errors, 0 warnings"


@pytest.fixture
def pennfudan_copy(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "PennFudanPed"
    shutil.copytree(synthetic_root, root)
    return root


def test_check_pennfudan_synthetic(pennfudan_copy):
    first_mask = sorted((pennfudan_copy / "PedMasks").glob("*.png"))[0]
    mask = np.asarray(Image.open(first_mask)).copy()
    mask[:10, 0] = 200  # a one-pixel-wide sliver: PennFudanDataset drops it, the doctor must not count it
    mask[0, 5:15] = 201  # a one-pixel-tall one
    Image.fromarray(mask).save(first_mask)
    report = check_pennfudan(pennfudan_copy)
    n = len(list((pennfudan_copy / "PNGImages").glob("*.png")))
    assert report.errors == [] and report.images == n
    ds = PennFudanDataset(pennfudan_copy)
    instances = [len(ds.target(i)["boxes"]) for i in range(len(ds))]
    assert report.annotations == sum(instances)
    assert report.class_counts == {"person": {"instances": sum(instances), "images": sum(map(bool, instances)),
                                              "crowd": 0}}
    assert len(report.warnings) == instances.count(0)  # negatives only
    assert check_data(pennfudan_copy.parent).class_counts == report.class_counts  # the parent folder works too


def test_check_pennfudan_findings(pennfudan_copy):
    names = sorted(p.name for p in (pennfudan_copy / "PNGImages").glob("*.png"))
    masks = pennfudan_copy / "PedMasks"
    (masks / (Path(names[0]).stem + "_mask.png")).unlink()
    Image.new("L", (7, 5), 0).save(masks / (Path(names[1]).stem + "_mask.png"))
    with Image.open(pennfudan_copy / "PNGImages" / names[2]) as im:
        Image.new("L", im.size, 0).save(masks / (Path(names[2]).stem + "_mask.png"))
    (pennfudan_copy / "PNGImages" / names[3]).write_bytes(b"truncated")
    shutil.copy(masks / (Path(names[4]).stem + "_mask.png"), masks / "orphan_mask.png")
    report = check_pennfudan(pennfudan_copy)
    got = {(f.level, Path(f.file).name, f.entry) for f in report.findings}
    stem = [Path(n).stem for n in names]
    want = {("error", f"{stem[0]}_mask.png", f"image {names[0]}"),
            ("error", f"{stem[1]}_mask.png", f"image {names[1]}"),
            ("warning", f"{stem[2]}_mask.png", f"image {names[2]}"),
            ("error", names[3], f"image {names[3]}"),
            ("warning", "orphan_mask.png", "mask orphan_mask.png")}
    assert want <= got
    assert got - want <= {("warning", f"{s}_mask.png", f"image {n}") for s, n in zip(stem, names, strict=True)}
    messages = {f.entry: f.message for f in report.findings}
    assert "is missing" in messages[f"image {names[0]}"] and "mask is 7x5" in messages[f"image {names[1]}"]
    assert "no pedestrians" in messages[f"image {names[2]}"] and "unreadable" in messages[f"image {names[3]}"]


def test_check_pennfudan_real_data(real_root):
    report = check_pennfudan(real_root)
    assert report.errors == [] and report.warnings == []
    assert (report.images, report.annotations) == (170, 423)
    assert report.class_counts == {"person": {"instances": 423, "images": 170, "crowd": 0}}
    assert "person" in report.table() and "423" in report.table()


def test_check_data_dispatches(tmp_path):
    path, _ = _check(tmp_path, _base(tmp_path))
    assert check_data(path).class_counts["person"]["instances"] == 2
    assert check_data(tmp_path).source == str(path)  # a folder with one COCO file: that file
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is a folder without annotation files, not a COCO file"):
        check_data(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        check_data(tmp_path / "nothing.txt")
    assert check_data(tmp_path / "nothing.json").errors[0].entry == "file"


def test_make_synthetic_pennfudan_is_what_the_fixture_uses(synthetic_root, tmp_path):
    """A fresh synthetic folder (another seed) is clean too: only negatives are reported."""
    root = make_synthetic_pennfudan(tmp_path / "s", n_images=4, seed=3)
    report = check_data(root)
    assert report.errors == [] and all("negative" in f.message for f in report.warnings)
    assert isinstance(report.findings, list) and all(isinstance(f, Finding) for f in report.findings)

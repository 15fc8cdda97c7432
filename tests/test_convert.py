"""Converters to COCO (Penn-Fudan, instance-mask folders, LabelMe) and write_coco, read back with the COCO dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pedseg_lib.data import (
    CocoInstancesDataset,
    PennFudanDataset,
    labelme_to_coco,
    mask_to_target,
    masks_to_coco,
    pennfudan_to_coco,
    write_coco,
)
from pedseg_lib.errors import DatasetError


def _plain(t: dict) -> dict:
    return {k: (v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


def _assert_same_target(got: dict, want: dict, where: str) -> None:
    got, want = _plain(got), _plain(want)
    assert got["image_id"] == want["image_id"], where
    for key in ("masks", "boxes", "labels", "area", "iscrowd"):
        assert got[key].dtype == want[key].dtype, (where, key)
        assert torch.equal(got[key], want[key]), (where, key)


def _round_trip(root: Path, tmp_path: Path) -> int:
    """Penn-Fudan -> COCO file -> CocoInstancesDataset: every item (image tensor and target) as PennFudanDataset's."""
    coco = pennfudan_to_coco(root)
    path = write_coco(coco, tmp_path / "pennfudan.json", images_dir=root / "PNGImages")
    coco_ds, pf = CocoInstancesDataset(root / "PNGImages", path), PennFudanDataset(root)
    assert len(coco_ds) == len(pf)
    assert coco_ds.class_names == pf.class_names and coco_ds.category_ids == pf.category_ids
    instances = 0
    for i in range(len(pf)):
        assert coco_ds.image_path(i) == pf.image_path(i)
        assert coco_ds.coco_image_id(i) == i + 1
        (a, ta), (b, tb) = coco_ds[i], pf[i]
        assert torch.equal(a.as_subclass(torch.Tensor), b.as_subclass(torch.Tensor)), f"image {i}"
        _assert_same_target(ta, tb, f"image {i}")
        instances += len(tb["labels"])
    return instances


def test_pennfudan_to_coco_layout(synthetic_root):
    coco = pennfudan_to_coco(synthetic_root)
    pf = PennFudanDataset(synthetic_root)
    assert [im["id"] for im in coco["images"]] == list(range(1, len(pf) + 1))
    assert [im["file_name"] for im in coco["images"]] == pf.images
    assert coco["categories"] == [{"id": 1, "name": "person", "supercategory": "person"}]
    t = pf.target(0)
    anns = [a for a in coco["annotations"] if a["image_id"] == 1]
    assert len(anns) == len(t["labels"]) > 0
    for ann, box, area, mask in zip(anns, t["boxes"].tolist(), t["area"].tolist(), t["masks"], strict=True):
        assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0 and ann["category_id"] == 1
        x1, y1, x2, y2 = box
        assert ann["bbox"] == [x1, y1, x2 - x1 + 1, y2 - y1 + 1]  # inclusive pixels
        assert ann["area"] == area
        assert np.array_equal(mask_utils.decode(ann["segmentation"]), mask.numpy())
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


def test_pennfudan_round_trip_synthetic(synthetic_root, tmp_path):
    assert _round_trip(synthetic_root, tmp_path) > 12


def test_pennfudan_round_trip_real(real_root, tmp_path):
    assert _round_trip(real_root, tmp_path) == 423  # Penn-Fudan's 423 pedestrians


# ---------------------------------------------------------------------------------------------------- masks
def _mask_folder(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray]]:
    images, masks = tmp_path / "img", tmp_path / "ann"
    images.mkdir()
    masks.mkdir()
    ids = []
    for k, (h, w) in enumerate([(40, 60), (50, 30), (20, 20)]):
        Image.fromarray(np.full((h, w, 3), 90 + k, np.uint8)).save(images / f"im{k}.jpg")
        m = np.zeros((h, w), np.uint8)
        if k == 0:
            m[2:10, 3:20], m[20:35, 30:55], m[12:13, 0:10] = 1, 4, 7  # ids 1 and 4 (a gap); 7 a 1-px-tall sliver
        elif k == 1:
            m[5:45, 5:25] = 2
        Image.fromarray(m).save(masks / f"im{k}_mask.png")
        ids.append(m)
    return images, masks, ids


def test_masks_to_coco(tmp_path):
    images, masks, ids = _mask_folder(tmp_path)
    coco = masks_to_coco(images, masks, class_name="widget")
    assert coco["categories"] == [{"id": 1, "name": "widget", "supercategory": "widget"}]
    assert [(im["file_name"], im["height"], im["width"]) for im in coco["images"]] == [
        ("im0.jpg", 40, 60), ("im1.jpg", 50, 30), ("im2.jpg", 20, 20)]
    assert [a["image_id"] for a in coco["annotations"]] == [1, 1, 2]  # the sliver is dropped, im2 is a negative
    assert coco["annotations"][0]["bbox"] == [3.0, 2.0, 17.0, 8.0] and coco["annotations"][0]["area"] == 8 * 17
    path = write_coco(coco, tmp_path / "out" / "masks.json", images_dir=images)
    ds = CocoInstancesDataset(images, path)
    assert ds.class_names == ["__background__", "widget"]
    for i, m in enumerate(ids):
        _assert_same_target(ds.target(i), mask_to_target(torch.from_numpy(m), i), f"image {i}")


def test_masks_to_coco_errors(tmp_path):
    images, masks, _ = _mask_folder(tmp_path)
    Image.fromarray(np.zeros((41, 60), np.uint8)).save(masks / "im0_mask.png")
    with pytest.raises(DatasetError, match=r"im0_mask\.png: mask is 60x41 but image im0\.jpg is 60x40"):
        masks_to_coco(images, masks)
    (masks / "im0_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"im0\.jpg: its mask .*im0_mask\.png is missing"):
        masks_to_coco(images, masks)
    with pytest.raises(DatasetError, match="no images"):
        masks_to_coco(masks, masks)


# -------------------------------------------------------------------------------------------------- LabelMe
def _labelme(folder: Path, name: str, shapes: list[dict], size=(80, 100), image_path: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    if image_path is None:
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(folder / f"{name}.png")
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path or f"{name}.png",
           "imageData": None, "imageHeight": h, "imageWidth": w}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def _shape(label, points, kind="polygon", group=None):
    return {"label": label, "points": points, "group_id": group, "shape_type": kind, "flags": {}}


def test_labelme_to_coco(tmp_path):
    folder = tmp_path / "lm"
    _labelme(folder, "a", [
        _shape("person", [[10, 10], [30, 10], [30, 20], [10, 20]], group=1),  # head
        _shape("cat", [[50, 60], [40, 45]], kind="rectangle"),  # corners in reverse order
        _shape("person", [[12, 20], [28, 20], [28, 60], [12, 60]], group=1),  # body: same object as the head
        _shape("person", [[60, 10], [90, 10], [75, 40]]),  # no group: an object of its own
        _shape("person", [[60, 50], [90, 50], [75, 70]], group=2),
    ])
    _labelme(folder, "b", [])  # a negative
    coco = labelme_to_coco(folder)
    assert coco["categories"] == [{"id": 1, "name": "cat", "supercategory": "cat"},
                                  {"id": 2, "name": "person", "supercategory": "person"}]
    assert [(im["id"], im["file_name"], im["height"], im["width"]) for im in coco["images"]] == [
        (1, "a.png", 80, 100), (2, "b.png", 80, 100)]
    anns = coco["annotations"]
    assert [(a["category_id"], len(a["segmentation"])) for a in anns] == [(2, 2), (1, 1), (2, 1), (2, 1)]
    assert anns[0]["segmentation"] == [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0],
                                       [12.0, 20.0, 28.0, 20.0, 28.0, 60.0, 12.0, 60.0]]
    assert anns[0]["bbox"] == [10.0, 10.0, 20.0, 50.0]
    assert anns[1]["segmentation"] == [[40.0, 45.0, 50.0, 45.0, 50.0, 60.0, 40.0, 60.0]]
    assert anns[1]["bbox"] == [40.0, 45.0, 10.0, 15.0] and anns[1]["area"] == 150.0

    path = write_coco(coco, folder / "coco.json")  # file_name is relative to the LabelMe folder
    ds = CocoInstancesDataset(None, path)
    assert ds.class_names == ["__background__", "cat", "person"]
    t = ds.target(0)
    assert t["labels"].tolist() == [2, 1, 2, 2]
    merged = t["masks"][0].numpy().astype(bool)  # head and body are one mask
    assert merged[15, 20] and merged[40, 20] and not merged[15, 60]
    assert t["boxes"].as_subclass(torch.Tensor)[1].tolist() == [40.0, 45.0, 49.0, 59.0]
    assert len(ds.target(1)["labels"]) == 0


def test_labelme_images_dir_and_windows_paths(tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.fromarray(np.zeros((80, 100, 3), np.uint8)).save(pictures / "a.png")
    _labelme(tmp_path / "lm", "a", [_shape("x", [[1, 1], [20, 1], [20, 20]])], image_path="..\\pictures\\a.png")
    assert labelme_to_coco(tmp_path / "lm")["images"][0]["file_name"] == "../pictures/a.png"
    coco = labelme_to_coco(tmp_path / "lm", images_dir=pictures)
    assert coco["images"][0]["file_name"] == "a.png"
    ds = CocoInstancesDataset(pictures, write_coco(coco, tmp_path / "out.json", images_dir=pictures))
    assert ds[0][0].shape == (3, 80, 100)


@pytest.mark.parametrize("kind", ["cuboid", "ellipse"])
def test_labelme_unsupported_shape(tmp_path, kind):
    folder = tmp_path / "lm"
    _labelme(folder, "a", [_shape("x", [[1, 1], [20, 1], [20, 20]]), _shape("y", [[5, 5], [9, 9]], kind=kind)])
    out = tmp_path / "coco.json"
    with pytest.raises(DatasetError) as err:
        write_coco(labelme_to_coco(folder), out)
    message = str(err.value)
    assert "\n" not in message
    assert f'a.json: shape 1: shape type "{kind}" is not supported' in message
    assert "convert it to a polygon in LabelMe (or delete it)" in message
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]


def test_labelme_bad_input(tmp_path):
    folder = tmp_path / "lm"
    path = _labelme(folder, "a", [_shape("x", [[1, 1], [20, 1]])])
    with pytest.raises(DatasetError, match=r"a\.json: shape 0: a polygon needs at least 3 points, this one has 2"):
        labelme_to_coco(folder)
    _labelme(folder, "a", [_shape("x", [[1, 1], [20, 1], [5, 5]], kind="rectangle")])
    with pytest.raises(DatasetError, match="shape 0: a rectangle needs exactly 2 corner points"):
        labelme_to_coco(folder)
    _labelme(folder, "a", [_shape("x", [[1, 1], [20, 1], [5, 5]])], size=(80, 100))
    doc = json.loads(path.read_text())
    doc["imageHeight"] = 81
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"imageHeight x imageWidth is 81 x 100 but .*a\.png is 80 x 100"):
        labelme_to_coco(folder)
    (folder / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"a\.json: its image .*a\.png .* not found and not embedded \(imageData\); "
                       r"put the image there or pass the images' folder with --images"):
        labelme_to_coco(folder)
    path.write_text('{"shapes": [,]}')
    with pytest.raises(DatasetError, match=r"a\.json: malformed JSON at line 1 column 13"):
        labelme_to_coco(folder)
    path.unlink()
    with pytest.raises(DatasetError, match="no LabelMe .json files"):
        labelme_to_coco(folder)


# ---------------------------------------------------------------------------------------------------- write
def test_write_coco_validates_and_is_atomic(tmp_path, synthetic_root):
    coco = pennfudan_to_coco(synthetic_root)
    images_dir = synthetic_root / "PNGImages"
    out = tmp_path / "c.json"
    assert write_coco(coco, out, images_dir=images_dir) == out
    assert json.loads(out.read_text()) == coco
    before = out.read_bytes()
    coco["annotations"][0]["image_id"] = 999
    with pytest.raises(DatasetError, match=r"c\.json: not written: .*annotation 1"):
        write_coco(coco, out, images_dir=images_dir)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]
    with pytest.raises(DatasetError, match="not written"):
        write_coco(pennfudan_to_coco(synthetic_root), tmp_path / "d.json")  # images not beside the file
    with pytest.raises(DatasetError, match="not written: a COCO dataset is a dict"):
        write_coco([], tmp_path / "e.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]

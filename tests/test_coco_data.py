"""CocoInstancesDataset: segmentation kinds, EXIF orientation, crowd regions, sparse ids, several files, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from pedseg_lib.data import CocoInstancesDataset, PennFudanDataset, read_coco_json
from pedseg_lib.errors import DatasetError

W, H = 40, 30
SQUARE = [2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]


def _image(path: Path, size: tuple[int, int] = (W, H), color=(90, 120, 150)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _ann(ann_id: int, image_id: int, segmentation, category_id: int = 1, iscrowd: int = 0, bbox=None) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation,
            "iscrowd": iscrowd, "bbox": bbox if bbox is not None else [2, 2, 10, 10], "area": 100}


def _coco(images: list[tuple[int, str]], annotations: list[dict], categories=((1, "person"),)) -> dict:
    return {"images": [{"id": i, "file_name": n, "width": W, "height": H} for i, n in images],
            "annotations": annotations, "categories": [{"id": c, "name": n} for c, n in categories]}


def _write(folder: Path, coco: dict, name: str = "annotations.json", make_images: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if make_images:
        for image in coco["images"]:
            if not (folder / image["file_name"]).exists():
                _image(folder / image["file_name"], (image["width"], image["height"]))
    path = folder / name
    path.write_text(json.dumps(coco))
    return path


def _mask(t: dict) -> np.ndarray:
    return t["masks"].numpy()


def test_item_contract_and_targets_equal_pennfudan(synthetic_root, tmp_path):
    """A COCO file holding Penn-Fudan's masks as compressed RLE gives PennFudanDataset's items exactly."""
    pf = PennFudanDataset(synthetic_root)
    images, annotations = [], []
    for i in range(4):
        t = pf.target(i)
        h, w = t["boxes"].canvas_size
        images.append({"id": i + 1, "file_name": pf.images[i], "width": w, "height": h})
        for m in t["masks"].numpy():
            rle = mask_utils.encode(np.asfortranarray(m))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                                "bbox": [0, 0, 1, 1]})
    path = tmp_path / "pf.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}]}))
    ds = CocoInstancesDataset(synthetic_root / "PNGImages", path)
    assert len(ds) == 4 and ds.class_names == pf.class_names and ds.category_ids == pf.category_ids
    for i in range(4):
        image, t = ds[i]
        ref_image, ref = pf[i]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == ref_image.shape
        assert torch.equal(image, ref_image)
        assert set(t) == set(ref)
        assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].canvas_size == ref["boxes"].canvas_size
        assert t["boxes"].format == ref["boxes"].format and t["boxes"].dtype == torch.float32
        assert isinstance(t["masks"], tv_tensors.Mask) and t["masks"].dtype == torch.uint8
        assert t["image_id"] == ref["image_id"] == i
        for key in ("boxes", "masks", "labels", "area", "iscrowd"):
            assert t[key].dtype == ref[key].dtype and torch.equal(t[key], ref[key]), key
        assert ds.coco_image_id(i) == i + 1 and ds.image_path(i) == pf.image_path(i)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools' own decode
def test_polygon_with_two_parts_is_one_mask(tmp_path):
    parts = [SQUARE, [20.0, 5.0, 35.0, 5.0, 35.0, 25.0]]
    path = _write(tmp_path, _coco([(1, "a.png")], [_ann(1, 1, parts)]))
    t = CocoInstancesDataset(None, path).target(0)
    want = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, H, W)))
    assert len(t["masks"]) == 1 and np.array_equal(_mask(t)[0], want)
    assert t["area"].tolist() == [float(want.sum())]
    ys, xs = np.nonzero(want)
    assert t["boxes"].tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]]  # inclusive, like masks_to_boxes
    assert t["labels"].tolist() == [1] and t["iscrowd"].tolist() == [0]


def test_compressed_and_uncompressed_rle(tmp_path):
    m1 = np.zeros((H, W), dtype=np.uint8)
    m1[3:9, 4:20] = 1
    m2 = np.zeros((H, W), dtype=np.uint8)
    m2[10:25, 25:38] = 1
    compressed = mask_utils.encode(np.asfortranarray(m1))
    flat = m2.flatten(order="F")  # COCO's uncompressed counts run down the columns
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    assert flat[0] == 0
    anns = [_ann(1, 1, {"size": [H, W], "counts": compressed["counts"].decode()}),
            _ann(2, 1, {"size": [H, W], "counts": counts})]
    t = CocoInstancesDataset(None, _write(tmp_path, _coco([(1, "a.png")], anns))).target(0)
    assert np.array_equal(_mask(t), np.stack([m1, m2]))
    assert t["boxes"].tolist() == [[4, 3, 19, 8], [25, 10, 37, 24]]


def test_bbox_only_annotation_is_a_rectangle_rounded_outward(tmp_path):
    path = _write(tmp_path, _coco([(1, "a.png")], [_ann(1, 1, [], bbox=[2.5, 3.2, 5.0, 4.1])]))
    t = CocoInstancesDataset(None, path).target(0)
    assert t["boxes"].tolist() == [[2, 3, 7, 7]] and t["area"].tolist() == [6 * 5]


def test_exif_rotated_jpeg_is_upright(tmp_path):
    upright = Image.new("RGB", (30, 40), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 30, 10))  # red band on top of the upright picture
    raw = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, 40x30
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    raw.save(tmp_path / "r.jpg", exif=exif, quality=95)
    coco = {"images": [{"id": 5, "file_name": "r.jpg", "width": 30, "height": 40}], "annotations": [],
            "categories": [{"id": 1, "name": "person"}]}
    path = _write(tmp_path, coco, make_images=False)
    image, t = CocoInstancesDataset(None, path)[0]
    assert image.shape == (3, 40, 30) and t["boxes"].canvas_size == (40, 30)
    top, bottom = image[:, :8].float().mean((1, 2)), image[:, 12:].float().mean((1, 2))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    coco["images"][0].update(width=40, height=30)  # the raw (unoriented) size is wrong
    with pytest.raises(DatasetError) as e:
        CocoInstancesDataset(None, _write(tmp_path, coco, "raw.json", make_images=False))
    assert _one_line(e) and "raw.json" in str(e.value) and "image 5 (r.jpg)" in str(e.value)


def test_crowd_regions_only_in_crowd_target(tmp_path):
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((15, 5), (25, 5)))))
    anns = [_ann(1, 1, [SQUARE]), _ann(2, 1, {"size": [H, W], "counts": crowd["counts"].decode()}, iscrowd=1)]
    ds = CocoInstancesDataset(None, _write(tmp_path, _coco([(1, "a.png")], anns)))
    t, c = ds.target(0), ds.crowd_target(0)
    assert len(t["boxes"]) == 1 and t["iscrowd"].tolist() == [0] and t["boxes"].tolist() == [[2, 2, 11, 11]]
    assert set(c) == set(t) and c["image_id"] == 0 and c["iscrowd"].tolist() == [1] and c["labels"].tolist() == [1]
    assert c["boxes"].tolist() == [[25, 15, 34, 24]] and c["area"].tolist() == [100.0]
    assert c["iscrowd"].dtype == torch.int64 and isinstance(c["masks"], tv_tensors.Mask)
    assert len(ds[0][1]["boxes"]) == 1


def test_sparse_category_ids_become_labels_in_id_order(tmp_path):
    cats = [(90, "sign"), (3, "person"), (7, "ball")]
    anns = [_ann(1, 1, [SQUARE], category_id=90), _ann(2, 1, [[20, 2, 30, 2, 30, 12]], category_id=3),
            _ann(3, 1, [[2, 15, 12, 15, 12, 25]], category_id=7)]
    ds = CocoInstancesDataset(None, _write(tmp_path, _coco([(1, "a.png")], anns, cats)))
    assert ds.class_names == ["__background__", "person", "ball", "sign"]
    assert ds.category_ids == [0, 3, 7, 90]
    assert ds.target(0)["labels"].tolist() == [3, 1, 2]


def test_negative_image_and_target_needs_no_pixels(tmp_path):
    path = _write(tmp_path, _coco([(1, "a.png"), (2, "b.png")], [_ann(1, 1, [SQUARE])]))
    ds = CocoInstancesDataset(None, path)
    (tmp_path / "b.png").write_bytes(b"not an image any more")  # target() must not decode it
    t = ds.target(1)
    assert t["boxes"].shape == (0, 4) and t["masks"].shape == (0, H, W) and t["boxes"].canvas_size == (H, W)
    assert t["labels"].shape == (0,) and t["area"].shape == (0,) and t["iscrowd"].shape == (0,)
    with pytest.raises(DatasetError, match="b.png"):
        ds[1]


def test_targets_are_cached_and_cloned(tmp_path):
    ds = CocoInstancesDataset(None, _write(tmp_path, _coco([(1, "a.png")], [_ann(1, 1, [SQUARE])])))
    t = ds.target(0)
    t["masks"].zero_()
    t["boxes"][:] = 0
    again = ds.target(0)
    assert again["masks"].sum() == 100 and again["boxes"].tolist() == [[2, 2, 11, 11]]
    uncached = CocoInstancesDataset(None, ds.files[0][0], cache_targets=False)
    assert torch.equal(uncached.target(0)["masks"], again["masks"])


def test_several_files_make_one_dataset(tmp_path):
    train = _write(tmp_path / "train", _coco([(9, "t9.png"), (4, "t4.png")], [_ann(1, 4, [SQUARE])]))
    val = _write(tmp_path / "valid", _coco([(1, "v1.png")], [_ann(1, 1, [SQUARE]), _ann(2, 1, [SQUARE])]))
    ds = CocoInstancesDataset(None, [train, val])
    assert len(ds) == 3
    assert ds.files == [(train, range(0, 2)), (val, range(2, 3))]
    assert [ds.coco_image_id(i) for i in range(3)] == [4, 9, 1]  # each file's images sorted by id
    assert [im["file_name"] for im in ds.images] == ["t4.png", "t9.png", "v1.png"]
    assert ds.image_path(2) == tmp_path / "valid" / "v1.png"
    assert [len(ds.target(i)["boxes"]) for i in range(3)] == [1, 0, 2]
    assert [ds.target(i)["image_id"] for i in range(3)] == [0, 1, 2]
    other = _write(tmp_path / "test", _coco([(1, "x.png")], [], categories=((1, "person"), (2, "ball"))))
    with pytest.raises(DatasetError) as e:
        CocoInstancesDataset(None, [train, other])
    assert _one_line(e) and str(other) in str(e.value) and "categories" in str(e.value)
    renamed = _write(tmp_path / "test2", _coco([(1, "x.png")], [], categories=((1, "pedestrian"),)))
    with pytest.raises(DatasetError):
        CocoInstancesDataset(None, [train, renamed])


def test_images_dir_given_or_beside_the_json(tmp_path):
    coco = _coco([(1, "sub/a.png")], [_ann(1, 1, [SQUARE])])
    _image(tmp_path / "imgs" / "sub" / "a.png")
    path = _write(tmp_path / "ann", coco, make_images=False)
    ds = CocoInstancesDataset(tmp_path / "imgs", path)
    assert ds.image_path(0) == tmp_path / "imgs" / "sub" / "a.png" and ds[0][0].shape == (3, H, W)
    with pytest.raises(DatasetError) as e:  # None: the images would be beside the JSON, where they are not
        CocoInstancesDataset(None, path)
    assert _one_line(e) and "image 1 (sub/a.png)" in str(e.value) and "missing" in str(e.value)


def test_transforms_are_applied(tmp_path):
    seen = []

    def transform(image, target):
        seen.append(target["image_id"])
        return image.flip(-1), target

    ds = CocoInstancesDataset(None, _write(tmp_path, _coco([(1, "a.png")], [])), transforms=transform)
    assert ds[0][0].shape == (3, H, W) and seen == [0]


def _one_line(excinfo) -> bool:
    return "\n" not in str(excinfo.value) and str(excinfo.value).strip() == str(excinfo.value)


def _base(tmp_path: Path) -> dict:
    coco = _coco([(1, "a.png"), (2, "b.png")], [_ann(11, 1, [SQUARE]), _ann(12, 2, [SQUARE])])
    for image in coco["images"]:
        _image(tmp_path / image["file_name"])
    return coco


def _bad_malformed(coco, path):
    path.write_text('{"images": [],\n "annotations": [}')


def _bad_unknown_image(coco, path):
    coco["annotations"][1]["image_id"] = 77


def _bad_odd_polygon(coco, path):
    coco["annotations"][1]["segmentation"] = [SQUARE[:7]]


def _bad_rle_size(coco, path):
    rle = mask_utils.encode(np.asfortranarray(np.ones((H + 1, W), np.uint8)))
    coco["annotations"][1]["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}


def _bad_missing_file(coco, path):
    (path.parent / "b.png").unlink()


def _bad_empty_categories(coco, path):
    coco["categories"] = []


def _missing_key(key):
    def bad(coco, path):
        del coco[key]
    bad.__name__ = f"_bad_missing_{key}"
    return bad


@pytest.mark.parametrize("break_it, entry, words", [
    (_bad_malformed, "line 2 column 18", "malformed JSON"),
    (_missing_key("images"), 'key "images"', "missing"),
    (_missing_key("annotations"), 'key "annotations"', "missing"),
    (_missing_key("categories"), 'key "categories"', "missing"),
    (_bad_empty_categories, 'key "categories"', "is empty"),
    (_bad_unknown_image, "annotation 12", "image_id 77"),
    (_bad_odd_polygon, "annotation 12 of image 2 (b.png)", "odd number of coordinates"),
    (_bad_rle_size, "annotation 12 of image 2 (b.png)", "RLE size is 40x31"),
    (_bad_missing_file, "image 2 (b.png)", "missing"),
], ids=lambda v: getattr(v, "__name__", None))
def test_bad_input_is_one_line_naming_file_and_entry(tmp_path, break_it, entry, words):
    coco = _base(tmp_path)
    path = tmp_path / "bad.json"
    break_it(coco, path)
    if break_it is not _bad_malformed:
        path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError) as e:
        CocoInstancesDataset(None, path)
    message = str(e.value)
    assert _one_line(e), message
    assert message.startswith(f"{path}: {entry}: "), message
    assert words in message, message
    assert any(w in message for w in ("fix", "add", "delete", "restore", "renumber", "list", "export")), message


def test_read_coco_json_returns_the_dict(tmp_path):
    coco = _base(tmp_path)
    path = _write(tmp_path, copy.deepcopy(coco))
    assert read_coco_json(path) == coco
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a COCO object"):
        read_coco_json(path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_coco_json(tmp_path / "nope.json")


def test_category_id_0_is_a_class_like_the_others(tmp_path):
    """Label Studio numbers categories from 0: pedseg maps ids to labels 1..K, so id 0 trains as a class."""
    coco = _base(tmp_path)
    coco["categories"][0]["id"] = 0
    for a in coco["annotations"]:
        if a["category_id"] == 1:
            a["category_id"] = 0
    path = tmp_path / "zero.json"
    path.write_text(json.dumps(coco))
    dataset = CocoInstancesDataset(None, path)
    assert dataset.category_ids[:2] == [0, 0] and dataset.class_names[1] == coco["categories"][0]["name"]
    assert 0 not in dataset.target(0)["labels"].tolist()

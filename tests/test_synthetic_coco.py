"""make_synthetic_coco: deterministic multi-class COCO data whose polygons are what was drawn."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from pedseg_lib.data import CocoInstancesDataset, make_synthetic_coco
from pedseg_lib.data.synthetic import _coco_sample


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_coco")
    start = time.perf_counter()
    make_synthetic_coco(root)
    assert time.perf_counter() - start < 5  # ~0.3 s on one core: cheap enough for any test
    return root


def test_deterministic_and_stamped(coco_root, tmp_path):
    path = make_synthetic_coco(tmp_path / "again")
    assert path == tmp_path / "again" / "annotations.json"
    assert _files(tmp_path / "again") == _files(coco_root)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*")}
    assert make_synthetic_coco(tmp_path / "again") == path  # the stamp says it is complete: nothing redone
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*")} == mtimes
    other = make_synthetic_coco(tmp_path / "again", n_images=5, seed=1)  # other arguments: made again
    assert len(json.loads(other.read_text())["images"]) == 5
    assert _files(tmp_path / "again")["images/synth00001.jpg"] != _files(coco_root)["images/synth00001.jpg"]


def test_classes_parts_and_negatives(coco_root):
    coco = json.loads((coco_root / "annotations.json").read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "person"), (13, "sign"), (37, "ball")]
    assert len(coco["images"]) == 24
    for image in coco["images"]:
        path = coco_root / image["file_name"]
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
        assert 200 <= image["width"] <= 360 and 200 <= image["height"] <= 360
    counts = Counter(a["category_id"] for a in coco["annotations"])
    assert set(counts) == {1, 13, 37} and min(counts.values()) >= 5
    parts = {c: {len(a["segmentation"]) for a in coco["annotations"] if a["category_id"] == c} for c in counts}
    assert parts == {1: {6}, 13: {2}, 37: {1}}  # person: head, torso, two arms, two legs; sign: pole and plate
    annotated = {a["image_id"] for a in coco["annotations"]}
    assert sorted(im["id"] for im in coco["images"] if im["id"] not in annotated) == [6, 12, 18, 24]
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


def test_polygons_match_the_drawn_objects(coco_root):
    coco = json.loads((coco_root / "annotations.json").read_text())
    checked = 0
    for image in coco["images"]:
        i = image["id"]
        _, objects = _coco_sample(np.random.default_rng([0, i]), 200, 360, negative=i % 6 == 0)
        anns = [a for a in coco["annotations"] if a["image_id"] == i]
        assert [a["category_id"] for a in anns] == [c for c, _, _ in objects]
        for ann, (_, _, drawn) in zip(anns, objects, strict=True):
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"]))
            decoded = mask_utils.decode(rle).astype(bool)
            iou = (decoded & drawn).sum() / (decoded | drawn).sum()
            assert iou >= 0.9, (i, ann["id"], iou)
            checked += 1
    assert checked == len(coco["annotations"])
    # Objects do not overlap: no drawn pixel belongs to two objects.
    for i in (1, 2, 3):
        _, objects = _coco_sample(np.random.default_rng([0, i]), 200, 360)
        assert np.stack([m for _, _, m in objects]).sum(0).max() == 1


def test_reads_as_coco_dataset(coco_root):
    for images_dir in (None, coco_root):
        ds = CocoInstancesDataset(images_dir, coco_root / "annotations.json")
        assert len(ds) == 24
        assert ds.class_names == ["__background__", "person", "sign", "ball"]
        assert ds.category_ids == [0, 1, 13, 37]
    image, target = ds[0]
    assert image.shape == (3, ds.images[0]["height"], ds.images[0]["width"]) and image.dtype == torch.uint8
    labels = torch.cat([ds.target(i)["labels"] for i in range(len(ds))])
    assert set(labels.tolist()) == {1, 2, 3}
    assert len(ds.target(5)["labels"]) == 0  # image 6, a negative

"""Several classes end to end: per-class AP against pycocotools, crowd regions, class names in checkpoints,
COCO results with the original category ids, and class names on the overlays."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision import tv_tensors

from pedseg_lib.data import BACKGROUND, instances_to_target
from pedseg_lib.errors import ConfigError
from pedseg_lib.evaluation import build_coco_gt, coco_evaluate, predictions_to_coco

CLASSES = [BACKGROUND, "person", "sign", "ball"]
CATEGORY_IDS = [0, 1, 13, 37]


class FakeDataset:
    """Targets of random rectangles of three classes, and one crowd region per image."""

    class_names = CLASSES
    category_ids = CATEGORY_IDS

    def __init__(self, n: int = 6, seed: int = 0, size: int = 64):
        rng = np.random.default_rng(seed)
        self.targets, self.crowds = [], []
        for i in range(n):
            masks, labels = [], []
            for _ in range(int(rng.integers(1, 5))):
                x0, y0 = rng.integers(0, size - 20, 2)
                w, h = rng.integers(6, 20, 2)
                m = torch.zeros(size, size, dtype=torch.uint8)
                m[y0:y0 + h, x0:x0 + w] = 1
                masks.append(m)
                labels.append(int(rng.integers(1, len(CLASSES))))
            self.targets.append(instances_to_target(torch.stack(masks), torch.tensor(labels), i))
            crowd = torch.zeros(1, size, size, dtype=torch.uint8)
            crowd[0, size - 12:, size - 12:] = 1  # bottom-right corner: no instance reaches it
            target = instances_to_target(crowd, torch.tensor([1]), i)
            target["iscrowd"] = torch.ones(1, dtype=torch.int64)
            self.crowds.append(target)

    def __len__(self) -> int:
        return len(self.targets)

    def target(self, idx: int) -> dict:
        return self.targets[idx]

    def crowd_target(self, idx: int) -> dict:
        return self.crowds[idx]


def _predictions(dataset: FakeDataset, seed: int = 1) -> dict[int, dict]:
    """Ground truth shifted by a few pixels, some with the wrong class, plus one detection on each crowd region."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for i in range(len(dataset)):
        t, c = dataset.target(i), dataset.crowd_target(i)
        masks = torch.cat([torch.roll(t["masks"], int(rng.integers(-2, 3)), dims=2), c["masks"]]).float()
        labels = torch.cat([t["labels"], c["labels"]]).clone()
        flip = torch.from_numpy(rng.random(len(labels)) < 0.2)
        labels[flip] = labels[flip] % (len(CLASSES) - 1) + 1
        boxes = torch.cat([t["boxes"].as_subclass(torch.Tensor), c["boxes"].as_subclass(torch.Tensor)])
        boxes = boxes + torch.from_numpy(rng.normal(0, 1.5, boxes.shape)).float()
        predictions[i] = {"boxes": boxes, "labels": labels, "scores": torch.from_numpy(rng.random(len(labels))).float(),
                          "masks": masks[:, None]}
    return predictions


def _rle(mask) -> dict:
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _reference_gt(dataset: FakeDataset) -> dict:
    """The ground truth written independently of the library, categories under their original ids."""
    images, annotations = [], []
    for i in range(len(dataset)):
        images.append({"id": i, "height": 64, "width": 64})
        for target, crowd in ((dataset.target(i), 0), (dataset.crowd_target(i), 1)):
            for mask, label, (x1, y1, x2, y2) in zip(target["masks"], target["labels"].tolist(),
                                                      target["boxes"].tolist(), strict=True):
                # boxes as the library documents them: w = x2 - x1 (torchvision's convert_to_coco_api)
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": CATEGORY_IDS[label],
                                    "segmentation": _rle(mask), "area": float(mask.sum()),
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": crowd})
    categories = [{"id": cid, "name": name} for cid, name in zip(CATEGORY_IDS[1:], CLASSES[1:], strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _reference_class_ap(gt: dict, results: list[dict], iou_type: str, category_id: int) -> float:
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iouType=iou_type)  # loadRes edits rows
        evaluator.params.catIds = [category_id]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_per_class_ap_is_pycocotools_one_category_evaluation(iou_type):
    dataset = FakeDataset()
    predictions = _predictions(dataset)
    result = coco_evaluate(dataset, predictions)
    gt = _reference_gt(dataset)
    results = predictions_to_coco(predictions, iou_type)
    for row in results:  # the reference file uses the original category ids
        row["category_id"] = CATEGORY_IDS[row["category_id"]]
        if "bbox" in row:
            row["bbox"] = [float(v) for v in row["bbox"]]
    for label, name in enumerate(CLASSES[1:], 1):
        reference = _reference_class_ap(gt, results, iou_type, CATEGORY_IDS[label])
        assert result.per_class[iou_type][name]["AP"] == pytest.approx(reference, abs=1e-9), name
    # COCO's AP is the mean over the classes that have ground truth
    values = [v["AP"] for v in result.per_class[iou_type].values() if v["AP"] >= 0]
    assert result.stats[iou_type][0] == pytest.approx(float(np.mean(values)), abs=1e-9)
    table = result.class_table().splitlines()
    assert [line.split()[0] for line in table[:4]] == ["class", "person", "sign", "ball"]
    assert table[-1].startswith("mean of classes")


def test_crowd_regions_are_ignored_not_counted_as_misses_or_false_positives():
    dataset = FakeDataset()
    gt = build_coco_gt(dataset)
    crowd = [a for a in gt.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == len(dataset) and {a["category_id"] for a in crowd} == {1}
    exact = {}
    for i in range(len(dataset)):
        t = dataset.target(i)
        exact[i] = {"boxes": t["boxes"].as_subclass(torch.Tensor), "labels": t["labels"],
                    "scores": torch.linspace(0.9, 0.5, len(t["labels"])), "masks": t["masks"][:, None].float()}
    perfect = coco_evaluate(dataset, exact).stats["segm"][0]
    assert perfect == pytest.approx(1.0)
    # a confident detection on each crowd region changes nothing: COCOeval ignores detections matching crowds
    with_crowd = {}
    for i, p in exact.items():
        c = dataset.crowd_target(i)
        with_crowd[i] = {"boxes": torch.cat([c["boxes"].as_subclass(torch.Tensor), p["boxes"]]),
                         "labels": torch.cat([c["labels"], p["labels"]]),
                         "scores": torch.cat([torch.ones(1), p["scores"]]),
                         "masks": torch.cat([c["masks"][:, None].float(), p["masks"]])}
    assert coco_evaluate(dataset, with_crowd).stats["segm"][0] == pytest.approx(1.0)


def test_class_names_travel_in_the_checkpoint(tmp_path):
    from pedseg_lib.model import build_untrained, load_model, model_classes, save_checkpoint, set_classes

    model = build_untrained(num_classes=4, weights=None, min_size=64, max_size=96)
    assert model_classes(model) == ([BACKGROUND, "class 1", "class 2", "class 3"], [0, 1, 2, 3])
    set_classes(model, CLASSES, CATEGORY_IDS)
    save_checkpoint(tmp_path / "m.pt", model)
    assert model_classes(load_model(tmp_path / "m.pt")) == (CLASSES, CATEGORY_IDS)
    # a two-class model without names is Penn-Fudan's (older checkpoints)
    assert model_classes(build_untrained(weights=None))[0] == [BACKGROUND, "person"]
    with pytest.raises(ConfigError, match="one per class"):
        set_classes(model, CLASSES[:3])
    with pytest.raises(ConfigError, match="background"):
        set_classes(model, ["person", "sign", "ball", "dog"])


def test_coco_results_carry_the_original_category_ids():
    from pedseg_lib.inference import prediction_to_coco_results

    masks = torch.zeros(2, 1, 8, 8)
    masks[0, 0, :4, :4] = masks[1, 0, 4:, 4:] = 1
    prediction = {"boxes": torch.tensor([[0.0, 0, 3, 3], [4, 4, 7, 7]]), "scores": torch.tensor([0.9, 0.8]),
                  "labels": torch.tensor([3, 2]), "masks": masks}
    rows = prediction_to_coco_results(prediction, 5, "a.jpg", CATEGORY_IDS)
    assert [r["category_id"] for r in rows] == [37, 13]
    assert [r["category_id"] for r in prediction_to_coco_results(prediction, 5, "a.jpg")] == [3, 2]


def test_overlays_name_the_classes():
    from pedseg_lib.visualize import draw_instances

    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    prediction = {"boxes": torch.tensor([[2.0, 2, 20, 20]]), "scores": torch.tensor([0.9]),
                  "labels": torch.tensor([2])}
    named = draw_instances(image, prediction, class_names=CLASSES)
    plain = draw_instances(image, prediction)
    assert named.shape == plain.shape and not torch.equal(named, plain)  # "sign 0.90" is longer than "0.90"


def test_coco_config_keys_are_checked():
    from pedseg_lib.config import apply_overrides, load_preset

    cfg = load_preset("smoke")
    with pytest.raises(ConfigError, match="annotation_file"):
        apply_overrides(cfg, ["data_format=coco"])
    with pytest.raises(ConfigError, match="data_format=coco"):
        apply_overrides(cfg, ["annotation_file=a.json"])
    with pytest.raises(ConfigError, match="test_annotation_file"):
        apply_overrides(cfg, ["data_format=coco", "annotation_file=a.json", "val_annotation_file=v.json"])
    with pytest.raises(ConfigError, match="data_format"):
        apply_overrides(cfg, ["data_format=voc"])
    ok = apply_overrides(cfg, ["data_format=coco", "annotation_file=a.json"])
    assert ok.annotation_file == "a.json" and ok.data_root is None


def test_target_masks_and_labels_stay_together():
    masks = torch.zeros(3, 10, 10, dtype=torch.uint8)
    masks[0, 1:4, 1:4] = 1
    masks[2, 5:9, 2:7] = 1  # mask 1 is empty: dropped with its label
    target = instances_to_target(masks, torch.tensor([2, 3, 1]), 7)
    assert target["labels"].tolist() == [2, 1]
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["area"].tolist() == [9.0, 20.0]


def test_a_target_without_labels_is_one_class():
    """Chapter 5's toy dataset gives boxes, masks and areas only: every instance is then label 1."""

    class Unlabelled:
        def __init__(self):
            self.source = FakeDataset(n=2)

        def __len__(self):
            return len(self.source)

        def target(self, idx):
            return {k: v for k, v in self.source.target(idx).items() if k != "labels"}

    gt = build_coco_gt(Unlabelled())
    assert gt.dataset["annotations"] and {a["category_id"] for a in gt.dataset["annotations"]} == {1}
    assert gt.dataset["categories"] == [{"id": 1, "name": "person"}]

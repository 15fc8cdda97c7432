"""Time COCO evaluation of a test split: pedseg's coco_evaluate vs the official tutorial's procedure.

The tutorial (torchvision references/detection) rebuilds the ground truth every evaluation by iterating
the dataset -- decoding every image and running the transform -- in ``convert_to_coco_api``, then runs
``CocoEvaluator``. pedseg builds it from mask files only, once per dataset (cached). Both score the same
realistic detections (jittered ground truth, dropped instances, false positives, random scores); the
script checks that the 12 numbers agree and prints both timings and their ratio.

    python benchmarks/evaluate_speed.py --data /path/to/PennFudanPed --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

import numpy as np
import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import Subset

from pedseg_lib.data import (
    PennFudanDataset,
    build_transforms,
    find_dataset,
    make_synthetic_pennfudan,
    split_indices,
    synthetic_detections,  # the same realistic detections the tests use
)
from pedseg_lib.evaluation import coco_evaluate


def convert_to_coco_api(ds) -> COCO:
    """torchvision references/detection/coco_utils.convert_to_coco_api, reproduced step by step."""
    coco_ds = COCO()
    ann_id = 1
    dataset = {"images": [], "categories": [], "annotations": []}
    categories = set()
    for img_idx in range(len(ds)):
        img, targets = ds[img_idx]  # decodes the image and runs the transform
        image_id = targets["image_id"]
        img_dict = {"id": image_id, "height": img.shape[-2], "width": img.shape[-1]}
        dataset["images"].append(img_dict)
        bboxes = targets["boxes"].clone()
        bboxes[:, 2:] -= bboxes[:, :2]
        bboxes = bboxes.tolist()
        labels = targets["labels"].tolist()
        areas = targets["area"].tolist()
        iscrowd = targets["iscrowd"].tolist()
        masks = targets["masks"].permute(0, 2, 1).contiguous().permute(0, 2, 1)
        for i in range(len(bboxes)):
            ann = {"image_id": image_id, "bbox": bboxes[i], "category_id": labels[i], "area": areas[i],
                   "iscrowd": iscrowd[i], "id": ann_id}
            categories.add(labels[i])
            ann["segmentation"] = coco_mask.encode(masks[i].numpy())
            dataset["annotations"].append(ann)
            ann_id += 1
    dataset["categories"] = [{"id": i} for i in sorted(categories)]
    coco_ds.dataset = dataset
    coco_ds.createIndex()
    return coco_ds


def tutorial_evaluate(subset, predictions) -> dict[str, list[float]]:
    """Tutorial procedure: ground truth from the dataset, then CocoEvaluator's conversions and COCOeval."""
    stats = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = convert_to_coco_api(subset)
        for iou_type in ("bbox", "segm"):
            results = []
            for image_id, p in predictions.items():
                scores, labels = p["scores"].tolist(), p["labels"].tolist()
                if iou_type == "bbox":
                    boxes = p["boxes"].clone()
                    boxes[:, 2:] -= boxes[:, :2]
                    results += [{"image_id": image_id, "category_id": labels[k], "bbox": b, "score": scores[k]}
                                for k, b in enumerate(boxes.tolist())]
                else:
                    masks = p["masks"] > 0.5
                    rles = [coco_mask.encode(np.array(m[0, :, :, np.newaxis], dtype=np.uint8, order="F"))[0]
                            for m in masks]
                    results += [{"image_id": image_id, "category_id": labels[k], "segmentation": r, "score": scores[k]}
                                for k, r in enumerate(rles)]
            ev = COCOeval(gt, gt.loadRes(results), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats[iou_type] = list(ev.stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("PEDSEG_DATA"),
                        help="Penn-Fudan folder (default: $PEDSEG_DATA, else a synthetic 170-image dataset)")
    parser.add_argument("--test-size", type=int, default=50, help="test split size (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each method (default 3)")
    args = parser.parse_args(argv)

    root = find_dataset(args.data) if args.data else None
    if root is None:
        # Synthetic images are smaller than Penn-Fudan's, so decoding costs less and the ratio understates
        # the gain on the real data.
        print(f"no Penn-Fudan at {args.data!r}: timing a synthetic stand-in (smaller images than the real data)")
        root = make_synthetic_pennfudan(tempfile.mkdtemp(), n_images=170, seed=0)
    base = PennFudanDataset(root, cache_targets=False)
    _, test = split_indices(len(base), test_size=args.test_size, seed=0)
    predictions = synthetic_detections(base, test, seed=0)

    tutorial_ds = Subset(PennFudanDataset(root, transforms=build_transforms(train=False), cache_targets=False), test)
    times_tutorial = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference = tutorial_evaluate(tutorial_ds, predictions)
        times_tutorial.append(time.perf_counter() - start)

    times_cold, times_warm = [], []
    for _ in range(args.repeats):
        subset = Subset(PennFudanDataset(root), test)  # a new dataset object: ground truth built from scratch
        start = time.perf_counter()
        coco_evaluate(subset, predictions)
        times_cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = coco_evaluate(subset, predictions)  # every later epoch: cached ground truth
        times_warm.append(time.perf_counter() - start)

    diff = max(abs(a - b) for t in ("bbox", "segm") for a, b in zip(result.stats[t], reference[t], strict=True))
    tut, cold, warm = min(times_tutorial), min(times_cold), min(times_warm)
    print(f"data: {root} ({len(test)} test images), torch threads: {torch.get_num_threads()}, best of {args.repeats}")
    print(f"tutorial procedure (GT from decoded+transformed images): {tut:.3f} s")
    print(f"pedseg coco_evaluate, first call (GT from masks):         {cold:.3f} s  ratio {tut / cold:.2f}x")
    print(f"pedseg coco_evaluate, later calls (cached GT):            {warm:.3f} s  ratio {tut / warm:.2f}x")
    print(f"max |difference| of the 24 COCO numbers: {diff:.2e}")
    return 0 if diff < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())

"""COCO evaluation of instance predictions on a Penn-Fudan dataset, with per-image AP and error finding.

Ground truth is built from ``dataset.target(idx)`` (masks only; RGB images are never decoded) once per
dataset and set of indices, then cached. Numbers are pycocotools' own: this module only converts
targets and predictions to COCO dictionaries and runs ``COCOeval``.

Conventions:
    * Predicted masks (float [N,1,H,W]) are foreground where ``mask > mask_threshold`` (0.5 by default,
      as torchvision's reference ``CocoEvaluator`` does).
    * Boxes go from XYXY to COCO ``[x, y, w, h]`` with ``w = x2 - x1``, ``h = y2 - y1`` (as the reference
      ``convert_to_coco_api`` does).
    * No detection at all: pycocotools' ``loadRes`` fails on an empty list, so the detections become an
      empty COCO set instead; ``COCOeval`` then defines every AP/AR with ground truth as 0 (no true
      positives) and every size bucket without ground truth as -1, exactly as it does for a model that
      detects nothing on some images.
    * Per-image AP (``per_image[image_id][iou_type]``): the AP (IoU 0.50:0.95, area all, maxDets 100)
      that ``COCOeval`` would report with ``params.imgIds = [image_id]``. It is computed by
      re-accumulating the already evaluated per-image matches (``evalImgs``) for that one image, so IoUs
      are not recomputed. Images without ground truth have no defined AP: their value is NaN (not -1,
      so that sorting by AP does not rank them as the worst images).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import Subset

from pedseg_lib.config import load_preset
from pedseg_lib.errors import ConfigError, InputError

CATEGORIES = [{"id": 1, "name": "person"}]
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# base dataset -> {indices: COCO}; weak keys so a discarded dataset frees its ground truth.
_GT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _base_and_indices(dataset) -> tuple[Any, list[int]]:
    """Unwrap (possibly nested) ``Subset`` objects to the base dataset and the indices into it."""
    indices = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        indices = [int(dataset.indices[i]) for i in indices]
        dataset = dataset.dataset
    if not hasattr(dataset, "target"):
        raise InputError(
            f"{type(dataset).__name__}: evaluation needs a dataset with .target(idx) (PennFudanDataset, "
            "CocoInstancesDataset) or a Subset of one"
        )
    return dataset, indices


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """RLE-encode binary masks [N,H,W] (any dtype; non-zero is foreground) with pycocotools."""
    masks = torch.as_tensor(masks).detach().cpu()
    if len(masks) == 0:
        return []
    array = np.asfortranarray(masks.to(torch.uint8).permute(1, 2, 0).numpy())
    return mask_utils.encode(array)


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    boxes = torch.as_tensor(boxes).detach().cpu().double().reshape(-1, 4)
    boxes[:, 2:] -= boxes[:, :2]
    return boxes.tolist()


def _quiet_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _categories(base) -> list[dict]:
    """COCO categories of a dataset: id = label (1..K), name from ``class_names`` (Penn-Fudan: person)."""
    names = list(getattr(base, "class_names", None) or [None, *(c["name"] for c in CATEGORIES)])
    return [{"id": label, "name": name} for label, name in enumerate(names) if label > 0]


def _gt_annotations(target: Mapping, image_id: int, first_id: int, crowd: bool) -> list[dict]:
    rles = encode_masks(torch.as_tensor(target["masks"]))
    boxes, areas = _xywh(target["boxes"]), torch.as_tensor(target["area"]).tolist()
    # a target without labels has one class (label 1), as Penn-Fudan's targets and chapter 5's toy target
    labels = torch.as_tensor(target["labels"]).tolist() if "labels" in target else [1] * len(rles)
    return [{"id": first_id + k, "image_id": image_id, "category_id": int(label), "segmentation": rle,
             "area": float(area), "bbox": box, "iscrowd": int(crowd)}
            for k, (rle, box, area, label) in enumerate(zip(rles, boxes, areas, labels, strict=True))]


def build_coco_gt(dataset) -> COCO:
    """The COCO ground truth of a dataset (or a Subset of one), built once and cached.

    Args:
        dataset: a PennFudanDataset or CocoInstancesDataset, or a ``torch.utils.data.Subset`` of one
            (nesting allowed).

    Returns:
        A pycocotools ``COCO`` whose image ids are the targets' ``image_id``, annotation ids start at 1,
        category ids are the labels (names from the dataset's ``class_names``; Penn-Fudan: 1 "person"),
        masks are RLE, ``area`` is the mask area and boxes are xywh. A dataset with ``crowd_target(idx)``
        (COCO files) adds its crowd regions with ``iscrowd`` 1: COCOeval ignores detections that match them.
    """
    base, indices = _base_and_indices(dataset)
    per_base = _GT_CACHE.setdefault(base, {})
    key = tuple(indices)
    if key in per_base:
        return per_base[key]
    images, annotations = [], []
    crowd_of = getattr(base, "crowd_target", None)
    for idx in indices:
        target = base.target(idx)
        image_id = int(target["image_id"])
        masks = torch.as_tensor(target["masks"])
        images.append({"id": image_id, "height": int(masks.shape[-2]), "width": int(masks.shape[-1])})
        annotations += _gt_annotations(target, image_id, len(annotations) + 1, crowd=False)
        if crowd_of is not None:
            annotations += _gt_annotations(crowd_of(idx), image_id, len(annotations) + 1, crowd=True)
    coco = _quiet_coco({"images": images, "annotations": annotations, "categories": _categories(base)})
    per_base[key] = coco
    return coco


def predictions_to_coco(
    predictions: Mapping[int, Mapping[str, torch.Tensor]],
    iou_type: str,
    mask_threshold: float = 0.5,
) -> list[dict]:
    """COCO result dictionaries (``image_id``, ``category_id``, ``score`` and ``bbox`` or ``segmentation``).

    Args:
        predictions: image_id -> torchvision prediction (``boxes`` XYXY, ``scores``, ``labels``,
            ``masks`` float [N,1,H,W]).
        iou_type: ``"bbox"`` or ``"segm"``.
        mask_threshold: a mask pixel is foreground where its probability is above this.
    """
    results = []
    for image_id, pred in predictions.items():
        scores = torch.as_tensor(pred["scores"]).detach().cpu().tolist()
        if not scores:
            continue
        labels = torch.as_tensor(pred["labels"]).detach().cpu().tolist()
        if iou_type == "bbox":
            shapes = [{"bbox": box} for box in _xywh(pred["boxes"])]
        elif iou_type == "segm":
            masks = torch.as_tensor(pred["masks"]).detach().cpu()
            if masks.ndim == 4:
                masks = masks[:, 0]
            shapes = [{"segmentation": rle} for rle in encode_masks(masks > mask_threshold)]
        else:
            raise ConfigError(f"iou_type={iou_type!r}: use 'bbox' or 'segm'")
        for shape, score, label in zip(shapes, scores, labels, strict=True):
            results.append({"image_id": int(image_id), "category_id": int(label), "score": float(score), **shape})
    return results


def _load_results(gt: COCO, results: list[dict]) -> COCO:
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(results)
    # loadRes cannot take an empty list: an empty detection set over the same images instead.
    return _quiet_coco({"images": copy.deepcopy(gt.dataset["images"]), "annotations": [],
                        "categories": copy.deepcopy(gt.dataset["categories"])})


def _check_predictions(gt: COCO, predictions: Mapping[int, Mapping[str, torch.Tensor]]) -> None:
    for image_id, pred in predictions.items():
        if int(image_id) not in gt.imgs:
            raise InputError(f"prediction for image_id {image_id}: no such image in the evaluated dataset; "
                              "predict on the same dataset (or Subset) you evaluate")
        masks = pred.get("masks")
        if masks is not None and len(masks):
            info = gt.imgs[int(image_id)]
            size = tuple(torch.as_tensor(masks).shape[-2:])
            if size != (info["height"], info["width"]):
                raise InputError(f"prediction for image_id {image_id}: masks are {size[1]}x{size[0]} but the image "
                                  f"is {info['width']}x{info['height']}; predict at the image's original size")


def _image_ap(evaluator: COCOeval, image_id: int) -> float:
    """AP@[.5:.95] (area all, maxDets 100) of one image, from the already evaluated ``evalImgs``.

    ``COCOeval.accumulate(p)`` locates images by their position in ``p.imgIds``, not by id, so the
    image's own ``evalImgs`` entries are sliced out and accumulated as a one-image evaluation. Only the
    area range "all" and the largest ``maxDets`` are accumulated: the other ranges would be discarded
    (and took most of the time).
    """
    evaluated = evaluator._paramsEval
    num_cats = len(evaluated.catIds) if evaluated.useCats else 1
    num_areas, num_images = len(evaluated.areaRng), len(evaluated.imgIds)
    pos = list(evaluated.imgIds).index(image_id)
    area_all = 0  # COCO's first area range is "all"
    one = copy.copy(evaluator)
    one.evalImgs = [evaluator.evalImgs[k * num_areas * num_images + area_all * num_images + pos]
                    for k in range(num_cats)]
    params = copy.copy(evaluated)
    params.imgIds = [image_id]
    params.areaRng, params.areaRngLbl = [evaluated.areaRng[area_all]], [evaluated.areaRngLbl[area_all]]
    params.maxDets = [max(evaluated.maxDets)]
    one.params = one._paramsEval = params
    with contextlib.redirect_stdout(io.StringIO()):
        one.accumulate()
    precision = one.eval["precision"][:, :, :, 0, 0]
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else math.nan


@dataclass
class CocoEvaluation:
    """Result of :func:`coco_evaluate`.

    Attributes:
        stats: iou_type -> the 12 COCO summary numbers (see ``STAT_NAMES``).
        per_image: image_id -> {iou_type: AP of that image}; NaN for images without ground truth.
        evaluators: iou_type -> the accumulated ``COCOeval`` (``.eval['precision']`` etc.).
        tables: iou_type -> pycocotools' 12-line summary text.
    """

    stats: dict[str, list[float]]
    per_image: dict[int, dict[str, float]]
    evaluators: dict[str, COCOeval] = field(repr=False)
    tables: dict[str, str] = field(repr=False)
    per_class: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def table(self, iou_type: str) -> str:
        """pycocotools' standard 12-line summary for ``iou_type``."""
        return self.tables[iou_type]

    def class_table(self) -> str:
        """AP and AP50 of every class for each IoU type, and their mean (COCO's AP is that mean)."""
        types = list(self.per_class)
        names = list(next(iter(self.per_class.values()))) if types else []
        width = max([len(n) for n in names] + [len("mean of classes")]) + 2
        head = f"{'class':<{width}}" + "".join(f"{t + ' AP':>10}{t + ' AP50':>12}" for t in types)

        def cell(value: float, size: int) -> str:
            return f"{value:>{size}.3f}" if value >= 0 else f"{'n/a':>{size}}"

        lines = [head]
        for name in names:
            lines.append(f"{name:<{width}}" + "".join(
                cell(self.per_class[t][name]["AP"], 10) + cell(self.per_class[t][name]["AP50"], 12) for t in types))
        lines.append(f"{'mean of classes':<{width}}" + "".join(
            cell(self.stats[t][0], 10) + cell(self.stats[t][1], 12) for t in types))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: named stats per IoU type and per-image AP (NaN becomes None)."""
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "stats": {t: dict(zip(STAT_NAMES, map(float, s), strict=True)) for t, s in self.stats.items()},
            "per_class": self.per_class,
            "per_image": {str(i): {t: clean(v) for t, v in aps.items()} for i, aps in self.per_image.items()},
        }


def coco_evaluate(
    dataset,
    predictions: Mapping[int, Mapping[str, torch.Tensor]],
    iou_types: Sequence[str] = ("bbox", "segm"),
    mask_threshold: float = 0.5,
) -> CocoEvaluation:
    """COCO box and mask metrics of ``predictions`` against ``dataset``.

    Args:
        dataset: a PennFudanDataset or CocoInstancesDataset, or a Subset of one; its ``image_id`` values key
            ``predictions``, and prediction labels are its labels (1..K, names in its ``class_names``).
        predictions: image_id -> torchvision prediction dict; a missing image has no detections.
        iou_types: any of ``"bbox"``, ``"segm"``.
        mask_threshold: predicted mask probability above which a pixel is foreground.

    Returns:
        A :class:`CocoEvaluation` with pycocotools' 12 numbers per IoU type, per-image AP and per-class AP
        (``per_class[iou_type][class name]["AP" | "AP50"]``; the first of pycocotools' numbers is their mean).
    """
    gt = build_coco_gt(dataset)
    _check_predictions(gt, predictions)
    stats, evaluators, tables, per_class = {}, {}, {}, {}
    per_image: dict[int, dict[str, float]] = {i: {} for i in gt.getImgIds()}
    for iou_type in iou_types:
        detections = _load_results(gt, predictions_to_coco(predictions, iou_type, mask_threshold))
        evaluator = COCOeval(gt, detections, iouType=iou_type)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            evaluator.evaluate()
            evaluator.accumulate()
        for image_id in per_image:
            per_image[image_id][iou_type] = _image_ap(evaluator, image_id)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            evaluator.summarize()
        stats[iou_type] = [float(x) for x in evaluator.stats]
        tables[iou_type] = text.getvalue().rstrip("\n")
        evaluators[iou_type] = evaluator
        per_class[iou_type] = _class_ap(evaluator, gt)
    return CocoEvaluation(stats=stats, per_image=per_image, evaluators=evaluators, tables=tables, per_class=per_class)


def _class_ap(evaluator: COCOeval, gt: COCO) -> dict[str, dict[str, float]]:
    """AP@[.5:.95] and AP50 (area all, maxDets 100) of each category, as ``COCOeval.summarize`` averages them.

    ``summarize`` takes the mean of ``eval["precision"]`` over IoUs, recall points and categories, skipping -1
    (a category without ground truth); here the mean is over one category's slice. -1 means no ground truth.
    """
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    iou50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    result = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = {}
        for key, block in (("AP", precision[:, :, k, 0, -1]), ("AP50", precision[iou50, :, k, 0, -1])):
            valid = block[block > -1]
            values[key] = float(valid.mean()) if valid.size else -1.0
        result[gt.cats[cat_id]["name"]] = values
    return result


# --------------------------------------------------------------------------- error analysis
def _targets_of(dataset_or_targets) -> dict[int, Mapping[str, torch.Tensor]]:
    if isinstance(dataset_or_targets, Mapping):
        return dict(dataset_or_targets)
    base, indices = _base_and_indices(dataset_or_targets)
    targets = (base.target(i) for i in indices)
    return {int(t["image_id"]): t for t in targets}


def _ious(target: Mapping, pred: Mapping, iou_type: str, mask_threshold: float) -> np.ndarray:
    """IoU matrix [num_predictions, num_targets]."""
    if iou_type == "bbox":
        from torchvision.ops import box_iou

        return box_iou(torch.as_tensor(pred["boxes"]).float().reshape(-1, 4),
                       torch.as_tensor(target["boxes"]).float().reshape(-1, 4)).numpy()
    masks = torch.as_tensor(pred["masks"])
    masks = masks[:, 0] if masks.ndim == 4 else masks
    dt = encode_masks(masks > mask_threshold)
    gt = encode_masks(torch.as_tensor(target["masks"]))
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    return np.asarray(mask_utils.iou(dt, gt, [0] * len(gt)))


def find_errors(
    dataset_or_targets,
    predictions: Mapping[int, Mapping[str, torch.Tensor]],
    iou: float = 0.5,
    score_threshold: float = 0.5,
    iou_type: str = "segm",
    mask_threshold: float = 0.5,
) -> dict[int, dict[str, list]]:
    """False positives and missed pedestrians per image, by greedy matching in score order.

    A prediction scoring at least ``score_threshold`` is a true positive if its IoU with a not yet
    matched ground-truth instance is at least ``iou`` (highest-IoU match, as COCO matching does),
    else a false positive; an unmatched ground-truth instance is a false negative.

    Args:
        dataset_or_targets: a PennFudanDataset/Subset, or image_id -> target.
        predictions: image_id -> prediction dict.
        iou: IoU needed for a match.
        score_threshold: predictions below it are ignored (the operating point being inspected).
        iou_type: ``"segm"`` (mask IoU) or ``"bbox"``.
        mask_threshold: mask probability threshold.

    Returns:
        image_id -> {"tp": [(pred_idx, gt_idx, iou)], "fp": [(pred_idx, best_iou)], "fn": [gt_idx]},
        indices into the prediction's and target's instance lists.
    """
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 1, 1)}
    errors = {}
    for image_id, target in _targets_of(dataset_or_targets).items():
        pred = predictions.get(image_id, empty)
        scores = torch.as_tensor(pred["scores"]).float()
        keep = torch.nonzero(scores >= score_threshold).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)].tolist()
        kept = {"boxes": torch.as_tensor(pred["boxes"])[keep]}
        if iou_type == "segm":
            kept["masks"] = torch.as_tensor(pred["masks"])[keep]
        num_gt = len(torch.as_tensor(target["boxes"]))
        ious = _ious(target, kept, iou_type, mask_threshold) if keep and num_gt else np.zeros((len(keep), num_gt))
        matched: set[int] = set()
        tp, fp = [], []
        for row, pred_idx in enumerate(keep):
            candidates = [(ious[row, g], g) for g in range(num_gt) if g not in matched and ious[row, g] >= iou]
            if candidates:
                best_iou, g = max(candidates)
                matched.add(g)
                tp.append((pred_idx, g, float(best_iou)))
            else:
                fp.append((pred_idx, float(ious[row].max()) if num_gt else 0.0))
        fn = [g for g in range(num_gt) if g not in matched]
        errors[image_id] = {"tp": tp, "fp": fp, "fn": fn}
    return errors


def score_threshold_sweep(
    dataset_or_targets,
    predictions: Mapping[int, Mapping[str, torch.Tensor]],
    thresholds: Sequence[float] | None = None,
    iou: float = 0.5,
    iou_type: str = "segm",
) -> dict[str, list[float]]:
    """Precision, recall and F1 of the detections kept at each score threshold.

    Matching is :func:`find_errors`' greedy matching in score order, done once at the lowest threshold:
    a higher threshold keeps a prefix of the same ordered list, so its matches are the same.

    Args:
        dataset_or_targets: a PennFudanDataset/Subset, or image_id -> target.
        predictions: image_id -> prediction dict.
        thresholds: score thresholds to report (default 0.05, 0.10, ..., 0.95).
        iou: IoU needed for a match.
        iou_type: ``"segm"`` or ``"bbox"``.

    Returns:
        Lists ``threshold``, ``precision`` (NaN where nothing is kept), ``recall``, ``f1`` (0 without a
        true positive), ``kept``,
        and ``best``: the threshold with the highest F1 (the lowest such threshold on ties).
    """
    thresholds = sorted(thresholds if thresholds is not None else [round(0.05 * k, 2) for k in range(1, 20)])
    errors = find_errors(dataset_or_targets, predictions, iou=iou, score_threshold=thresholds[0], iou_type=iou_type)
    matched, unmatched, num_gt = [], [], 0
    for image_id, found in errors.items():
        scores = torch.as_tensor(predictions[image_id]["scores"]).float() if image_id in predictions else None
        matched += [float(scores[p]) for p, _, _ in found["tp"]]
        unmatched += [float(scores[p]) for p, _ in found["fp"]]
        num_gt += len(found["tp"]) + len(found["fn"])
    tp_scores, fp_scores = np.asarray(matched), np.asarray(unmatched)
    sweep: dict[str, Any] = {"threshold": [], "precision": [], "recall": [], "f1": [], "kept": []}
    for t in thresholds:
        tp, fp = int((tp_scores >= t).sum()), int((fp_scores >= t).sum())
        precision = tp / (tp + fp) if tp + fp else math.nan
        recall = tp / num_gt if num_gt else math.nan
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        for key, value in zip(("threshold", "precision", "recall", "f1", "kept"), (t, precision, recall, f1, tp + fp),
                              strict=True):
            sweep[key].append(value)
    sweep["best"] = sweep["threshold"][int(np.nanargmax(sweep["f1"]))] if num_gt else math.nan
    return sweep


@dataclass(frozen=True)
class PublishedAP:
    """A test-split AP that PyTorch's "TorchVision Object Detection Finetuning" tutorial published.

    Attributes:
        version: which version of the tutorial published it, and how many epochs that version trains.
        source: the file in the pytorch/tutorials repository, and the commit it was read at.
        after_epochs: epochs trained when the numbers were measured.
        box_ap: box AP @ IoU 0.50:0.95; a lower bound when ``box_lower_bound`` is True.
        mask_ap: mask AP @ IoU 0.50:0.95.
        box_lower_bound: True where the tutorial only states "mAP > 50" for the boxes.
    """

    version: str
    source: str
    after_epochs: int
    box_ap: float
    mask_ap: float
    box_lower_bound: bool = False

    def box_text(self) -> str:
        """The box AP as published: ``> 0.50`` for a bound, else three decimals."""
        return f"> {self.box_ap:.2f}" if self.box_lower_bound else f"{self.box_ap:.3f}"


#: Both versions train maskrcnn_resnet50_fpn from COCO weights at 800 px with SGD (lr 0.005, momentum 0.9,
#: weight decay 5e-4, batch 2, StepLR step 3 gamma 0.1, horizontal flips) and test on 50 images drawn by an
#: unseeded torch.randperm. The current version trains 2 epochs (the ``tutorial`` preset); its prose states
#: only "after one epoch of training, we obtain a COCO-style mAP > 50, and a mask mAP of 65". The older
#: .rst version trains 10 epochs and printed the full tables after epochs 1 and 10. Up to epoch 3 the two
#: schedules are the same, so the epoch-1 rows measure the same training; no version published epoch 2.
OFFICIAL_TUTORIAL_AP: tuple[PublishedAP, ...] = (
    PublishedAP("current version, 2 epochs",
                "pytorch/tutorials intermediate_source/torchvision_tutorial.py @ 069e5071",
                after_epochs=1, box_ap=0.50, mask_ap=0.65, box_lower_bound=True),
    PublishedAP("older version, 10 epochs",
                "pytorch/tutorials intermediate_source/torchvision_tutorial.rst @ 064d0b9b",
                after_epochs=1, box_ap=0.606, mask_ap=0.704),
    PublishedAP("older version, 10 epochs",
                "pytorch/tutorials intermediate_source/torchvision_tutorial.rst @ 064d0b9b",
                after_epochs=10, box_ap=0.799, mask_ap=0.761),
)
# The current official recipe is the ``tutorial`` preset (config.py owns its values).
_OFFICIAL_RECIPE = load_preset("tutorial")
OFFICIAL_TUTORIAL_EPOCHS = _OFFICIAL_RECIPE.epochs  # what the current version trains


def official_comparison(evaluation: CocoEvaluation, config: Any, synthetic: bool) -> str:
    """This run's test AP beside the official tutorial's published AP, or why the two cannot be compared.

    The comparison holds only for a model fine-tuned from COCO weights on the real Penn-Fudan images;
    other differences from the current official recipe (epochs, input size, variant) are named under
    the table, which says which version of the tutorial published each row (:data:`OFFICIAL_TUTORIAL_AP`).

    Args:
        evaluation: :func:`coco_evaluate` of the run's test split.
        config: the run's :class:`~pedseg_lib.config.TrainConfig`.
        synthetic: True when the run trained on synthetic images instead of Penn-Fudan.

    Returns:
        A small text table, or one line starting with ``NOT COMPARABLE``.
    """
    box_ap, mask_ap = evaluation.stats["bbox"][0], evaluation.stats["segm"][0]
    if config.weights != "coco" or synthetic:
        why = "synthetic images" if synthetic else f"weights={config.weights!r} instead of COCO weights"
        official = "; ".join(f"{p.box_text()} / {p.mask_ap:.3f} after {p.after_epochs} epoch(s), {p.version}"
                             for p in OFFICIAL_TUTORIAL_AP)
        return (f"NOT COMPARABLE: this run ({config.preset}) used {why}, so its box AP {box_ap:.3f} and mask AP "
                f"{mask_ap:.3f} say nothing about the official tutorial's box / mask AP ({official}).")
    rows = [(f"official tutorial, {p.version}, after epoch {p.after_epochs}", p.box_text(), f"{p.mask_ap:.3f}")
            for p in OFFICIAL_TUTORIAL_AP]
    rows.append((f"this run ({config.preset}, {config.epochs} epoch(s))", f"{box_ap:.3f}", f"{mask_ap:.3f}"))
    width = max(len(label) for label, _, _ in rows) + 2
    lines = [f"{'test AP @ IoU 0.50:0.95':<{width}}{'box AP':>8}{'mask AP':>9}"]
    lines += [f"{label:<{width}}{box:>8}{mask:>9}" for label, box, mask in rows]
    lines += [f"source of the official rows: {source}" for source in dict.fromkeys(p.source for p in OFFICIAL_TUTORIAL_AP)]
    if config.epochs != OFFICIAL_TUTORIAL_EPOCHS:
        lines.append(f"note: this run trained {config.epochs} epoch(s); the current official recipe trains "
                     f"{OFFICIAL_TUTORIAL_EPOCHS}")
    if config.min_size != _OFFICIAL_RECIPE.min_size:
        lines.append(f"note: this run used {config.min_size} px inputs; the official recipe uses "
                     f"{_OFFICIAL_RECIPE.min_size} px")
    if config.variant != _OFFICIAL_RECIPE.variant:
        lines.append(f"note: this run used Mask R-CNN {config.variant}; the official recipe uses "
                     f"{_OFFICIAL_RECIPE.variant}")
    return "\n".join(lines)


def error_summary(
    dataset_or_targets,
    errors: Mapping[int, Mapping[str, list]],
) -> dict[str, int]:
    """Counts of the kinds of mistakes in :func:`find_errors` output.

    False positives are split by their best IoU with any ground-truth instance: ``duplicate`` (>= 0.5:
    the pedestrian was already matched by a higher-scoring prediction), ``poorly_localised`` (0.1-0.5)
    and ``background`` (< 0.1). Missed pedestrians are
    ``missed_occluded`` when their box overlaps another ground-truth box (IoU > 0.1), else ``missed_other``.

    Args:
        dataset_or_targets: the ground truth given to :func:`find_errors` (a PennFudanDataset/Subset, or
            image_id -> target); only the boxes are read, to tell occluded pedestrians from the others.
        errors: :func:`find_errors` output (it holds the best IoU of every false positive already).

    Returns:
        A dict of counts: ``true_positives``, ``false_positives``, ``duplicate``, ``poorly_localised``,
        ``background``, ``missed``, ``missed_occluded``, ``missed_other``.
    """
    from torchvision.ops import box_iou

    targets = _targets_of(dataset_or_targets)
    counts = dict.fromkeys(("true_positives", "false_positives", "duplicate", "poorly_localised", "background",
                            "missed", "missed_occluded", "missed_other"), 0)
    for image_id, found in errors.items():
        counts["true_positives"] += len(found["tp"])
        counts["false_positives"] += len(found["fp"])
        for _, best_iou in found["fp"]:
            kind = "duplicate" if best_iou >= 0.5 else "poorly_localised" if best_iou >= 0.1 else "background"
            counts[kind] += 1
        gt_boxes = torch.as_tensor(targets[image_id]["boxes"]).float().reshape(-1, 4)
        overlaps = box_iou(gt_boxes, gt_boxes).fill_diagonal_(0) if len(gt_boxes) else None
        for gt_idx in found["fn"]:
            counts["missed"] += 1
            occluded = bool((overlaps[gt_idx] > 0.1).any())
            counts["missed_occluded" if occluded else "missed_other"] += 1
    return counts

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5: Results
#
# [![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/pedseg/pedseg/blob/main/book/05_results.ipynb)
#
# **Learning objectives**
#
# - Compute an {term}`IoU` and COCO's average precision ({term}`AP`) by hand on a toy example, and check both
#   against pycocotools.
# - Evaluate the trained model on images it never saw, and read every line of the {term}`COCO` box and mask
#   tables and the curves of {term}`precision` against {term}`recall` behind them.
# - Find the images where the model does best and worst, sort its mistakes into kinds you can act on, and
#   choose a {term}`score threshold` without looking at the test images.
# - Use the model on any image, from Python and with the `pedseg predict` command, and compare a run with the
#   official PyTorch tutorial's published numbers only where the comparison holds.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 2 minutes on 2 CPU cores with chapter 4's smoke run; without it, the chapter trains that run first (add chapter 4's time) |
# | cpu | about 3-4 minutes with chapter 4's run (measured by `bash .ci/rehearse` on 2 CPU cores); add chapter 4's time without it |
# | tutorial | under a minute on a Colab T4 GPU with chapter 4's run (estimate) |

# %% tags=["colab"]
# Runs only in Google Colab: installs the companion library at the release
# this book pins, pedseg 0.1.0.
import os
import sys

if "google.colab" in sys.modules:
    from IPython import get_ipython

    pip_log = get_ipython().getoutput(
        f"{sys.executable} -m pip install -q pedseg==0.1.0"
        " 2>&1 && echo pedseg-installed"
    )
    if pip_log[-1:] != ["pedseg-installed"]:
        reason = pip_log[-1] if pip_log else "no output"
        print(
            f"pip could not install pedseg==0.1.0 ({reason}): run "
            "%pip install 'pedseg @ git+https://github.com/pedseg/pedseg@main'"
            " in a new cell, then the cells below."
        )
    import torch

    if torch.cuda.is_available():
        os.environ.setdefault("PEDSEG_PROFILE", "tutorial")

# %%
from pedseg_lib.profiles import get_profile

profile = get_profile()
print(profile.banner())

# %% [markdown]
# ## The model under test
#
# Chapter 4 kept its model in `runs/<preset>/best.pt`: the {term}`epoch` with the best validation mask AP, or the
# last epoch for a preset without validation images (`tutorial`, like the official recipe). Neither choice read
# a test image. {py:func}`pedseg_lib.engine.load_or_train` loads it when it was trained with this profile's
# exact config, and otherwise trains the preset first (so this chapter also runs on its own, in Colab for
# instance). The chapter imports four modules of the library and calls their functions by their full names.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from pedseg_lib import engine, evaluation, inference, visualize
from pedseg_lib.config import config_for_profile

cfg = config_for_profile(profile)
trained = engine.load_or_train(cfg)
# checkpoints load on the CPU; evaluate on the GPU when there is one
model = trained.model.to(profile.device)
print(trained.reason)
print(f"checkpoint: {trained.checkpoint}")
print(f"epoch {trained.epoch} of {cfg.epochs}, preset {cfg.preset!r}")

# %% [markdown]
# ## IoU: how well two shapes overlap
#
# Every detection metric starts by asking whether a detection found a pedestrian, and the answer is the
# **intersection over union** (IoU): the area the two shapes share divided by the area they cover
# together. It is 1 for a perfect fit and 0 for no overlap. For two {term}`bounding boxes <bounding box>` (`x1, y1, x2, y2`) the
# intersection is again a rectangle; for two binary masks it is the pixels that are set in both. Below, one
# made-up image of 240 x 200 pixels with three annotated pedestrians and five scored detections; the masks are
# ellipses inside the boxes, a stand-in for a pedestrian's outline.

# %%
def box_iou(a, b):
    """IoU of two boxes (x1, y1, x2, y2): intersection area / union area."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    union = area_a + area_b - intersection
    return intersection / union


def mask_iou(a, b):
    """IoU of two binary masks [H, W]: pixels in both / pixels in either."""
    return (a & b).sum().item() / (a | b).sum().item()


def ellipse(box, height=200, width=240):
    """Binary mask [H, W] of the ellipse inscribed in ``box``.

    A toy pedestrian's outline.
    """
    x1, y1, x2, y2 = box
    y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5,
                          indexing="ij")
    u = (2 * x - x1 - x2) / (x2 - x1)  # -1 to 1 across the box
    v = (2 * y - y1 - y2) / (y2 - y1)
    return u ** 2 + v ** 2 <= 1


# three annotated pedestrians
gt_boxes = [(20, 20, 60, 140), (80, 30, 120, 150), (150, 40, 180, 120)]
detections = [  # (box, score), in the order a model might return them
    ((84, 40, 124, 160), 0.80),
    ((22, 24, 62, 140), 0.95),
    ((160, 60, 200, 140), 0.60),
    ((18, 18, 56, 136), 0.70),
    ((100, 150, 140, 190), 0.90),
]
ious = torch.tensor(
    [[box_iou(box, gt) for gt in gt_boxes] for box, _ in detections],
    dtype=torch.float64,
)
print("box IoU of each detection (rows) with each pedestrian (columns):")
print(ious.numpy().round(3))

pair_box = box_iou(detections[1][0], gt_boxes[0])
pair_mask = mask_iou(ellipse(detections[1][0]), ellipse(gt_boxes[0]))
print(f"detection 1 and pedestrian 0: box IoU {pair_box:.3f},",
      f"mask IoU {pair_mask:.3f}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
from pedseg_lib.notebook import glue

glue("toy_box_iou", float(pair_box), display=False)
glue("toy_mask_iou", float(pair_mask), display=False)

# %% [markdown]
# The detection with score 0.95 and the first pedestrian share a box IoU of {glue:text}`toy_box_iou:.3f` but a
# mask IoU of only {glue:text}`toy_mask_iou:.3f`: the same shift costs more when the outline, not only the
# extent, has to fit. That is why the mask table further down asks for more than the box table.
#
# The same numbers from the libraries that the evaluation really uses: `torchvision.ops.box_iou` for boxes, and
# pycocotools' `mask.iou` on run-length-encoded ({term}`RLE`) masks, the format COCO stores masks in:

# %%
import torchvision.ops
from pycocotools import mask as mask_utils

det_boxes = torch.tensor([box for box, _ in detections], dtype=torch.float64)
gt_tensor = torch.tensor(gt_boxes, dtype=torch.float64)
torch.testing.assert_close(ious, torchvision.ops.box_iou(det_boxes, gt_tensor))
pair = torch.stack([ellipse(detections[1][0]), ellipse(gt_boxes[0])], -1)
rles = mask_utils.encode(np.asfortranarray(pair.numpy().astype(np.uint8)))
coco_iou = float(mask_utils.iou(rles[:1], rles[1:], [0])[0, 0])
torch.testing.assert_close(pair_mask, coco_iou)
print("box IoU = torchvision.ops.box_iou, mask IoU = pycocotools.mask.iou")

# %% [markdown]
# ## AP by hand
#
# A detection is a *true positive* when it matches a pedestrian that no better detection has matched yet, with
# an IoU of at least a threshold (0.5 below); otherwise it is a *false positive*. COCO matches greedily: it walks
# the detections from the highest score down, and gives each the best-fitting pedestrian that is still free.
# Walking down the same list, after each detection:
#
# - **precision** = true positives so far / detections so far (how many of the kept detections are right);
# - **recall** = true positives so far / annotated pedestrians (how many pedestrians were found).
#
# Average precision (AP) summarises that precision-recall curve in one number, the way pycocotools'
# `COCOeval.accumulate` does: first the precision is made monotone (each point takes the best precision
# reached at that recall or any higher recall, so the curve never goes up again), then it is read at the 101
# recall levels 0, 0.01, ..., 1 (the precision of the first point whose recall reaches the level, 0 where the
# curve never gets there) and the 101 values are averaged.

# %%
def match(gt_boxes, detections, iou_threshold):
    """True/false positive of each detection, in descending score order.

    COCO's greedy matching.
    """
    free, hits = set(range(len(gt_boxes))), []
    for box, _ in sorted(detections, key=lambda d: -d[1]):
        best, best_iou = None, iou_threshold
        for g in sorted(free):
            if box_iou(box, gt_boxes[g]) >= best_iou:
                best, best_iou = g, box_iou(box, gt_boxes[g])
        free.discard(best)
        hits.append(best is not None)
    return hits


def average_precision(hits, num_gt):
    """COCO's 101-point interpolated AP of detections sorted by score.

    ``hits``: whether each detection is a true positive.
    """
    tp, fp = np.cumsum(hits), np.cumsum(np.logical_not(hits))
    recall, precision = tp / num_gt, tp / (tp + fp)
    # the best precision at this recall or beyond
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    levels = np.linspace(0, 1, 101)  # recall 0, 0.01, ..., 1
    # the first point reaching each level
    first = np.searchsorted(recall, levels, side="left")
    sampled = np.array([envelope[i] if i < len(envelope) else 0.0
                        for i in first])
    return sampled.mean(), recall, precision, envelope


hits = match(gt_boxes, detections, iou_threshold=0.5)
toy_ap50, recall, precision, envelope = average_precision(hits, len(gt_boxes))
print(" score  match   precision  monotone  recall")
by_score = sorted(detections, key=lambda d: -d[1])
rows = zip(by_score, hits, precision, envelope, recall, strict=True)
for (_, score), hit, p, e, r in rows:
    kind = "TP" if hit else "FP"
    print(f"  {score:.2f}  {kind}      {p:.3f}      {e:.3f}     {r:.3f}")
print(f"AP at IoU 0.5: {toy_ap50:.4f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(recall, precision, "o", label="precision after each detection")
ax.step(np.r_[0, recall], np.r_[envelope[0], envelope], where="pre",
        label="monotone envelope")
ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
       title="toy example, IoU 0.5")
ax.legend(loc="lower left")
plt.show()

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("toy_ap50", float(toy_ap50), display=False)

# %% [markdown]
# The toy AP at IoU 0.5 is {glue:text}`toy_ap50:.4f`. The duplicate (a second box on the first pedestrian) and
# the box that only half covers the third pedestrian both count as false positives, and the third pedestrian
# is never found, so the curve stops short of recall 1 and the levels beyond it add zeros. COCO's headline AP
# repeats this at ten IoU thresholds, 0.50, 0.55, ..., 0.95, and averages the ten results.
#
# pycocotools computes the same. Its `stats` are the twelve numbers of the table further down: `stats[0]` is
# the AP averaged over the ten thresholds, `stats[1]` the AP at IoU 0.5 ({term}`AP50`). Its settings matter even
# on this toy: at most 100 detections per image count (`maxDets`), a pedestrian is put into a size range by its
# annotation's `area`, annotations marked `iscrowd` are ignored rather than missed, and an AP without any
# annotated pedestrian is -1.

# %%
import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def xywh(box):
    # COCO stores boxes as x, y, width, height
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


coco_gt = COCO()
coco_gt.dataset = {
    "images": [{"id": 1, "width": 240, "height": 200}],
    "categories": [{"id": 1, "name": "person"}],
    "annotations": [
        {"id": k + 1, "image_id": 1, "category_id": 1, "bbox": xywh(box),
         "iscrowd": 0, "area": float(ellipse(box).sum())}
        for k, box in enumerate(gt_boxes)
    ],
}
# pycocotools prints its progress
with contextlib.redirect_stdout(io.StringIO()):
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes([
        {"image_id": 1, "category_id": 1, "bbox": xywh(box), "score": score}
        for box, score in detections
    ])
    coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()

by_hand = [average_precision(match(gt_boxes, detections, t), len(gt_boxes))[0]
           for t in coco_eval.params.iouThrs]
torch.testing.assert_close(toy_ap50, coco_eval.stats[1])  # AP at IoU 0.5
# AP averaged over IoU 0.50:0.95
torch.testing.assert_close(float(np.mean(by_hand)), coco_eval.stats[0])
print(f"by hand: AP50 {toy_ap50:.4f}, AP {np.mean(by_hand):.4f};",
      f"pycocotools: AP50 {coco_eval.stats[1]:.4f},",
      f"AP {coco_eval.stats[0]:.4f}")
print("AP at each IoU threshold:")
print("  IoU", " ".join(f"{t:5.2f}" for t in coco_eval.params.iouThrs))
print("  AP ", " ".join(f"{ap:5.3f}" for ap in by_hand))

# %% [markdown]
# {py:func}`pedseg_lib.evaluation.coco_evaluate` runs the same pycocotools evaluation, for boxes and masks at
# once, on a dataset and the model's predictions. It needs only a dataset that can give each image's target,
# so the toy fits into three lines. What it adds to the few lines above: it builds the COCO ground truth from
# the masks once per dataset and caches it (`area` is the mask's pixel count, so that a pedestrian falls into
# the same size range for boxes and masks); it turns torchvision's predictions (XYXY boxes, mask
# probabilities) into COCO results; it evaluates a model that detected nothing (pycocotools' `loadRes` fails on
# an empty list); and it keeps every image's own AP and the printed tables.

# %%
class ToyPedestrians:
    """The smallest dataset coco_evaluate accepts.

    A length and each image's target.
    """

    def __len__(self):
        return 1

    def target(self, idx):
        masks = torch.stack([ellipse(box) for box in gt_boxes]).to(torch.uint8)
        return {"image_id": 1,
                "boxes": torch.tensor(gt_boxes, dtype=torch.float32),
                "masks": masks, "area": masks.flatten(1).sum(1).float()}


toy_masks = torch.stack([ellipse(box) for box, _ in detections])
toy_predictions = {1: {
    "boxes": torch.tensor([box for box, _ in detections], dtype=torch.float32),
    "scores": torch.tensor([score for _, score in detections]),
    "labels": torch.ones(len(detections), dtype=torch.int64),
    "masks": toy_masks[:, None].float(),
}}
toy_metrics = evaluation.coco_evaluate(ToyPedestrians(), toy_predictions)
torch.testing.assert_close(toy_metrics.stats["bbox"],
                           [float(x) for x in coco_eval.stats])
print(f"coco_evaluate: box AP50 {toy_metrics.stats['bbox'][1]:.4f}",
      "(the same 12 numbers as pycocotools above)")
print(f"mask AP50 {toy_metrics.stats['segm'][1]:.4f}")
print(f"AP of image 1: {toy_metrics.per_image[1]}")

# %% [markdown]
# ## Predictions on the test split
#
# Now the real model. The {term}`test split` is the part of the seeded split that nothing has read so far: not
# training, not the choice of the checkpoint ({py:func}`pedseg_lib.engine.test_split`; the run folder's
# `split.json` lists its images). This chapter reads it to report the model, and decides nothing on it.
# {py:func}`pedseg_lib.inference.predict_dataset` runs the model on it in batches under
# `torch.inference_mode()`. The score threshold is deliberately low ({glue:text}`low_threshold:.2f`): AP sweeps
# over *all* confidence levels, so dropping low-scoring detections early would only cut off part of the curve.

# %%
LOW_THRESHOLD = 0.05  # keep nearly everything: AP sweeps over all scores
# `pedseg predict`'s default: what an application keeps
OPERATING_THRESHOLD = 0.5

test_set = engine.test_split(cfg)
predictions = inference.predict_dataset(
    model, test_set, score_threshold=LOW_THRESHOLD, progress=True
)
detections_kept = sum(len(p["scores"]) for p in predictions.values())
confident = sum(int((p["scores"] >= OPERATING_THRESHOLD).sum())
                for p in predictions.values())
pedestrians = sum(len(test_set.dataset.target(i)["boxes"])
                  for i in test_set.indices)
print(f"{len(test_set)} test images with {pedestrians} annotated pedestrians")
print(f"{detections_kept} detections with score >= {LOW_THRESHOLD}",
      f"({confident} with score >= {OPERATING_THRESHOLD})")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("low_threshold", LOW_THRESHOLD, display=False)
glue("operating_threshold", OPERATING_THRESHOLD, display=False)

# %% [markdown]
# ## The COCO tables
#
# `coco_evaluate` on the test split: pycocotools' own twelve-line tables, for boxes (`bbox`) and for masks
# (`segm`), from the ground truth built once from the masks.

# %%
test_metrics = evaluation.coco_evaluate(test_set, predictions)
for iou_type, name in (("bbox", "boxes"), ("segm", "masks")):
    print(f"== {name} ({iou_type}) ==")
    print(test_metrics.table(iou_type))

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("test_box_ap", float(test_metrics.stats["bbox"][0]), display=False)
glue("test_mask_ap", float(test_metrics.stats["segm"][0]), display=False)

# %% [markdown]
# This run's box AP is {glue:text}`test_box_ap:.3f` and its mask AP {glue:text}`test_mask_ap:.3f` (in the
# smoke profile, a model trained for seconds from random weights: these numbers prove that the code runs, not
# that the model works). What each line means:
#
# | Name | Line in the table | Meaning |
# |---|---|---|
# | AP | AP @ IoU 0.50:0.95 | the headline number: AP averaged over IoU thresholds 0.50, 0.55, ..., 0.95 |
# | AP50 | AP @ IoU 0.50 | a loose match: the overlap is at least half of the union of detection and pedestrian (PASCAL VOC's threshold) |
# | {term}`AP75` | AP @ IoU 0.75 | a tight match: the overlap is at least three quarters of the union; rewards precise outlines |
# | {term}`APs`, {term}`APm`, {term}`APl` | AP small / medium / large | AP over pedestrians of area < 32², 32² to 96², > 96² pixels |
# | {term}`AR` (AR1, AR10, AR100) | AR maxDets 1 / 10 / 100 | recall (averaged over the IoU thresholds) when keeping the 1, 10 or 100 best detections per image, whatever their precision |
# | ARs, ARm, ARl | AR small / medium / large | AR100 per size range |
#
# A value of **-1** is not a score: it means *there is nothing to measure*, no annotated pedestrian in that size
# range. Penn-Fudan's pedestrians are large (chapter 1), so the small range holds few pedestrians or none. This is
# the answer to a question asked again and again on detection forums: "why is my AP -1?". pycocotools puts a pedestrian
# into a size range by the annotation's `area` field, for boxes and masks alike, which is why this library
# stores the mask's pixel count there (the official tutorial stores the box area). The test split's
# pedestrians per range, read from the ground truth that `coco_evaluate` built and cached (asking
# {py:func}`pedseg_lib.evaluation.build_coco_gt` again returns the very same object):

# %%
coco_test_gt = evaluation.build_coco_gt(test_set)
# built once, cached
assert coco_test_gt is test_metrics.evaluators["segm"].cocoGt
areas = [ann["area"] for ann in coco_test_gt.dataset["annotations"]]
per_range = {}
ranges = (("small", 0, 32**2), ("medium", 32**2, 96**2),
          ("large", 96**2, float("inf")))
for label, low, high in ranges:
    per_range[label] = sum(low <= a < high for a in areas)
    print(f"{label:<7} ({low:>5.0f} <= area < {high:>6.0f} px):",
          f"{per_range[label]} pedestrians")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("test_small", per_range["small"], display=False)
glue("test_pedestrians", len(areas), display=False)

# %% [markdown]
# ## Precision-recall curves
#
# The curves behind the tables ({py:func}`pedseg_lib.visualize.plot_pr_curves`), the monotone envelopes that
# pycocotools samples at the 101 recall levels, as in the toy example. At IoU 0.50 a good model's curve stays
# high until it runs out of pedestrians it can find; at IoU 0.75 it drops earlier, because some detections are
# in the right place but not tight enough. The gap between the two curves is the localisation error; where a
# curve ends on the right is the recall ceiling.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
visualize.plot_pr_curves(test_metrics, "bbox", ax=axes[0])
visualize.plot_pr_curves(test_metrics, "segm", ax=axes[1])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Best and worst test images
#
# `coco_evaluate` also keeps each image's own mask AP (`per_image`). Ranking by it points straight at the
# images worth looking at. Left: the annotation; right: detections scoring at least
# {glue:text}`operating_threshold:.1f` ({py:func}`pedseg_lib.visualize.show_prediction`).

# %%
ranked = sorted((aps["segm"], image_id)
                for image_id, aps in test_metrics.per_image.items()
                if not math.isnan(aps["segm"]))
shown = min(2, len(ranked) // 2)
for label, picks in (("best", ranked[::-1][:shown]), ("worst", ranked[:shown])):
    for ap, image_id in picks:
        # image_id is the index into the full dataset
        image, target = test_set.dataset[image_id]
        name = test_set.dataset.image_path(image_id).name
        visualize.show_prediction(
            image, target, predictions[image_id],
            score_threshold=OPERATING_THRESHOLD, size=3.5,
            title=f"{label}: {name}, mask AP {ap:.3f}",
        )
        plt.show()

# %% [markdown]
# ## Mistakes: false positives and missed pedestrians
#
# AP mixes everything into one number. To act, count the mistakes at one operating point: keep detections
# scoring at least {glue:text}`operating_threshold:.1f` and match them to pedestrians at mask IoU 0.5 with the
# greedy matching of the toy example ({py:func}`pedseg_lib.evaluation.find_errors`). A detection without a match
# is a **false positive** (red below); a pedestrian without one is **missed** (blue).

# %%
errors = evaluation.find_errors(test_set, predictions, iou=0.5,
                                score_threshold=OPERATING_THRESHOLD)
with_errors = [i for i, e in errors.items() if e["fp"] or e["fn"]]
images = {i: test_set.dataset[i][0] for i in with_errors}
targets = {i: test_set.dataset.target(i) for i in with_errors}
visualize.plot_errors(images, targets, predictions, errors, max_images=6,
                      ncols=3)
plt.show()

# %% [markdown]
# Which kind of mistake dominates decides what to do next. {py:func}`pedseg_lib.evaluation.error_summary`
# sorts them, from the best IoU that `find_errors` recorded for each false positive and the overlaps between
# the annotated boxes:
#
# - a **duplicate** overlaps a pedestrian already matched by a better detection: non-maximum suppression
#   ({term}`NMS`) let two boxes through (a lower `box_nms_thresh` suppresses them sooner, at the price of merging
#   people who stand close together);
# - a **poorly localised** detection overlaps a pedestrian (IoU 0.1 to 0.5) without fitting it: often a person
#   partly hidden by another, or two people merged into one detection;
# - a **background** detection overlaps no annotated pedestrian at all. Before calling it a mistake, look at
#   it in the gallery: Penn-Fudan's readme warns that "there may be some objects not included in the ground
#   truth list for they are severe-occluded or have very small size". A person far away or behind a car may
#   simply be unlabelled: then the model is right and the metric punishes it;
# - a **missed** pedestrian overlapping another annotated pedestrian is occluded; the others are usually at the
#   image border, in shadow, or in an unusual pose.

# %%
kinds = evaluation.error_summary(test_set, errors)
print(f"at score >= {OPERATING_THRESHOLD} and mask IoU >= 0.5:")
print(f"true positives {kinds['true_positives']},",
      f"false positives {kinds['false_positives']}, missed {kinds['missed']}")
print(f"  false positives: {kinds['duplicate']} duplicates,",
      f"{kinds['poorly_localised']} poorly localised,",
      f"{kinds['background']} on background")
print(f"  missed: {kinds['missed_occluded']} overlapping another pedestrian,",
      f"{kinds['missed_other']} other")

# %% [markdown]
# ## Choosing a score threshold
#
# AP needs no threshold, but an application does: `pedseg predict` keeps detections scoring at least
# {glue:text}`operating_threshold:.1f` by default. A higher threshold drops false positives and misses more
# pedestrians. Counting both at every threshold ({py:func}`pedseg_lib.evaluation.score_threshold_sweep`) shows
# the trade-off; the F1 score (the harmonic mean of precision and recall) picks a balanced point.
#
# The threshold is a decision, so it is chosen on the run's {term}`validation split`
# ({py:func}`pedseg_lib.engine.decision_split` says which images a run may decide on: the validation images, or
# the {term}`training split` for a run without them), and only then applied, once, to the test images.
# Choosing it on the test images would tune it to exactly the images that report it, and the reported
# precision and recall would be optimistic. In practice, move the threshold towards precision or recall as the
# application needs (counting people wants both; an alarm wants recall).

# %%
decision_set, why = engine.decision_split(cfg)
print(why)
decision_predictions = inference.predict_dataset(
    model, decision_set, score_threshold=LOW_THRESHOLD, progress=True
)
sweep = evaluation.score_threshold_sweep(decision_set, decision_predictions)
visualize.plot_threshold_sweep(sweep)
plt.show()
chosen = sweep["best"]
at = {t: k for k, t in enumerate(sweep["threshold"])}
print(f"on {len(decision_set)} decision images:")
# the default and the best-F1 threshold
for t in sorted({OPERATING_THRESHOLD, chosen} & set(at)):
    k = at[t]
    print(f"  threshold {t:.2f}: precision {sweep['precision'][k]:.3f},",
          f"recall {sweep['recall'][k]:.3f}, F1 {sweep['f1'][k]:.3f},",
          f"{sweep['kept'][k]} kept")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("chosen_threshold", float(chosen), display=False)

# %% [markdown]
# The threshold with the best F1 on the decision images is {glue:text}`chosen_threshold:.2f`. Applied once to
# the test images (the same matching as in the mistakes section above):

# %%
test_errors = evaluation.find_errors(test_set, predictions, iou=0.5,
                                     score_threshold=chosen)
tp, fp, fn = (sum(len(e[kind]) for e in test_errors.values())
              for kind in ("tp", "fp", "fn"))
test_precision = tp / (tp + fp) if tp + fp else float("nan")
test_recall = tp / (tp + fn) if tp + fn else float("nan")
print(f"{len(test_set)} test images at threshold {chosen:.2f}",
      "(chosen on the decision images):")
print(f"  {tp} true positives, {fp} false positives, {fn} missed")
print(f"  precision {test_precision:.3f}, recall {test_recall:.3f}")

# %% [markdown]
# ## An image from outside the dataset
#
# {py:func}`pedseg_lib.inference.predict` takes tensors, PIL images or file paths. Here is a photograph that is
# not in Penn-Fudan at all: the portrait of Grace Hopper that ships with matplotlib. It is a person, but not a
# pedestrian in a street: seated, cropped at the chest, seen from close. How well the model transfers to such
# an image tells you how far beyond its training images it generalises.

# %%
import matplotlib.cbook

portrait = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
(prediction,) = inference.predict(model, [portrait],
                                  score_threshold=LOW_THRESHOLD)
image = inference.load_image(portrait)
top = prediction["scores"][:5].tolist()
scores = ", ".join(f"{s:.2f}" for s in top) or "none"
print(f"{len(prediction['scores'])} detections, top scores: {scores}")
overlay = visualize.draw_instances(image, prediction,
                                   score_threshold=OPERATING_THRESHOLD)
visualize.show_grid([image, overlay],
                    ["input", f"prediction, score >= {OPERATING_THRESHOLD}"],
                    ncols=2, size=4)
plt.show()

# %% [markdown]
# ## The same from the command line
#
# `pedseg predict CHECKPOINT IMAGE_OR_FOLDER --out DIR` does the same for a file or a whole folder: it writes
# one overlay PNG per image and `predictions.json`, a COCO *results* list (one entry per detection, masks
# run-length encoded) that pycocotools' `loadRes` reads. Annotation tools such as CVAT import a full COCO
# instances file instead (`images`, `annotations` and `categories`), so the results need wrapping into one
# before they can be corrected there. The next cell gathers the portrait and one test image into a folder:

# %%
import json
import shutil
from pathlib import Path

checkpoint = Path(trained.checkpoint)
inputs = checkpoint.parent / "predict_inputs"
out = checkpoint.parent / "predictions"
# no stale predictions.json from an earlier run
shutil.rmtree(out, ignore_errors=True)
inputs.mkdir(exist_ok=True)
shutil.copy(portrait, inputs / "grace_hopper.jpg")
shutil.copy(test_set.dataset.image_path(test_set.indices[0]), inputs)
print("inputs:", sorted(p.name for p in inputs.iterdir()))

# %% [markdown]
# and runs the command on it. `pedseg` is the command that installing the library puts on the `PATH`;
# `python -m pedseg_lib` is the same program, and `sys.executable` makes sure it is the notebook's own Python.
# A `!` line is a shell command in Jupyter, and `{name}` puts a Python variable into it:

# %%
# !{sys.executable} -m pedseg_lib predict "{checkpoint}" "{inputs}" --out "{out}"

# %% [markdown]
# The overlays it wrote, and the first result in `predictions.json` (one entry per detection: image, box as
# `[x, y, width, height]`, score, and the mask as run-length encoding):

# %%
overlays = sorted(out.glob("*.png"))
visualize.show_grid([inference.load_image(p) for p in overlays],
                    [p.name for p in overlays], ncols=2, size=4)
plt.show()
results = json.loads((out / "predictions.json").read_text())
if results:
    rle = results[0]["segmentation"]
    short_rle = {**rle, "counts": rle["counts"][:24] + "..."}
    first = dict(results[0], segmentation=short_rle)
    for key, value in first.items():
        if key == "bbox":  # rounded here; the file keeps every digit
            value = [round(v, 2) for v in value]
        print(f"{key:<13} {value}")
print(f"{len(results)} detections in predictions.json")

# %% [markdown]
# To score a run folder or checkpoint on its test split without a notebook, `pedseg evaluate` prints the two
# tables above and writes them, with the per-image AP, as JSON:
#
# ```bash
# pedseg evaluate runs/tutorial --out runs/tutorial/test_metrics.json
# ```

# %% [markdown]
# ## Against the official tutorial
#
# PyTorch's "TorchVision Object Detection Finetuning" tutorial has published test AP in two versions, and the
# two are easy to mix up. {py:func}`pedseg_lib.evaluation.official_comparison` puts this run beside both, says
# which version published each row, and refuses the comparison unless this run {term}`fine-tuned <fine-tuning>` COCO weights on the
# real Penn-Fudan images:

# %%
print(evaluation.official_comparison(test_metrics, cfg,
                                     synthetic=profile.synthetic))

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
current, older_first, older_last = evaluation.OFFICIAL_TUTORIAL_AP
glue("official_epochs", evaluation.OFFICIAL_TUTORIAL_EPOCHS, display=False)
glue("current_box_bound", current.box_ap, display=False)
glue("current_mask", current.mask_ap, display=False)
glue("older_epochs", older_last.after_epochs, display=False)
glue("older_first_box", older_first.box_ap, display=False)
glue("older_first_mask", older_first.mask_ap, display=False)
glue("older_last_box", older_last.box_ap, display=False)
glue("older_last_mask", older_last.mask_ap, display=False)

# %% [markdown]
# - The **current version** (`intermediate_source/torchvision_tutorial.py` in pytorch/tutorials) trains
#   {glue}`official_epochs` epochs, the recipe that the `tutorial` preset follows. It prints no table in its text;
#   its prose says only that "after one epoch of training" the box AP is above {glue:text}`current_box_bound:.2f`
#   ("mAP > 50") and the mask AP {glue:text}`current_mask:.2f` ("a mask mAP of 65").
# - An **older version** (`torchvision_tutorial.rst`) trained the same model with the same optimiser, {term}`warm-up`
#   and {term}`step schedule <learning-rate schedule>` for {glue}`older_epochs` epochs, and printed the full tables: box AP
#   {glue:text}`older_first_box:.3f` and mask AP {glue:text}`older_first_mask:.3f` after the first epoch,
#   {glue:text}`older_last_box:.3f` and {glue:text}`older_last_mask:.3f` after the last. Its schedule first
#   lowers the {term}`learning rate` after the third epoch, so its first epoch trains exactly as the current
#   version's does; its last row trains five times longer than the `tutorial` preset, and is not the preset's
#   target.
#
# Even for the `tutorial` preset on real data, expect agreement to a few points, not to the third decimal: both
# official versions draw their 50 test images with an unseeded `torch.randperm` (different test images every
# run, from the 170), and their evaluation stores box areas in the ground truth, which moves the size-range
# numbers (not the headline AP).

# %% [markdown]
# ## Check yourself
#
# :::{dropdown} A detection has an IoU of 0.5 with a pedestrian. Does it cover half of the pedestrian?
# Not necessarily. IoU 0.5 means that the shared area is half of the area that the two cover *together*. A box
# lying inside the pedestrian's box covers half of it; a box twice the pedestrian's size that contains it
# completely covers all of it, and also has IoU 0.5. AP50 asks for this much overlap, no more.
# :::
#
# :::{dropdown} Why are the test predictions made with a score threshold of 0.05, when an application keeps 0.5?
# AP reads the whole precision-recall curve, from the most to the least confident detection. Detections below
# the threshold never enter the curve, so a high threshold cuts the curve off at the recall they would have
# added and can only lower the AP. The threshold of an application is a separate decision, made later.
# :::
#
# :::{dropdown} The line "AP small" says -1. Is the model bad at small pedestrians?
# Not necessarily: -1 means there is nothing to measure. Where no annotated pedestrian of the test split has an
# `area` below 32² pixels, pycocotools cannot compute a precision there and writes -1 instead of a number. In this
# profile's test split {glue}`test_small` of the {glue}`test_pedestrians` pedestrians are that small (the table of
# size ranges above); when there are only a few, AP small is measured on those few alone and swings widely with
# each of them, so it says little about small pedestrians in general.
# :::
#
# :::{dropdown} Why is the precision made monotone before it is read at the 101 recall levels?
# The raw precision zigzags: every false positive lowers it, the next true positive raises it again. The
# monotone envelope takes, at each recall, the best precision reached at that recall or a higher one: the
# precision you would get by stopping at the best point that still reaches the recall. It makes AP depend on
# how the detections are ranked, not on where exactly the zigzags fall.
# :::
#
# :::{dropdown} Why is the score threshold chosen on the decision images, and not on the test images?
# A threshold chosen on the test images is tuned to exactly the images that then report it, so the precision
# and recall reported at it would be optimistic, the same way a model selected on its test images looks better
# than it is. The test images must not influence any choice; they only measure it.
# :::
#
# ## Summary
#
# - IoU is shared area over combined area, for boxes and for masks; a detection matches a pedestrian at an IoU
#   threshold, greedily in score order.
# - AP is the mean of the monotone precision envelope read at 101 recall levels; COCO's headline AP averages it
#   over IoU 0.50-0.95. Both fit in a few lines and equal pycocotools; mask AP asks for the outline, box AP only
#   for the extent, and a -1 means an empty size range, not a failure.
# - {py:func}`~pedseg_lib.evaluation.coco_evaluate` runs pycocotools on a dataset and a model's predictions,
#   with ground truth built once and cached, per-image AP and the printed tables; evaluate on the held-out
#   split ({py:func}`~pedseg_lib.engine.test_split`) with a low score threshold.
# - Per-image AP finds the best and worst images; {py:func}`~pedseg_lib.evaluation.find_errors` and
#   {py:func}`~pedseg_lib.evaluation.error_summary` sort mistakes into duplicates, poor localisation,
#   background and missed pedestrians. Some "background" detections are unlabelled people.
# - {py:func}`~pedseg_lib.evaluation.score_threshold_sweep` shows what each score threshold trades between
#   precision and recall; choose it on the decision images, report it on the test images.
# - {py:func}`~pedseg_lib.inference.predict` and `pedseg predict` work on any image; the latter writes overlays
#   and a COCO results list. Compare with published numbers only when the recipe, the weights and the data
#   match, and know which version of the tutorial published them.
#
# ## Exercises
#
# 1. **AP at IoU 0.75 by hand.** *Needs: CPU, about 5 minutes.* With the toy example's `match` and
#    `average_precision`, compute the AP at IoU 0.75 and check it against pycocotools. Which of the earlier
#    true positives is lost, and why?
#
#    :::{dropdown} Hint
#    Look at the IoU matrix printed at the start of the chapter: which true positive has an IoU between 0.5
#    and 0.75? `coco_eval.stats[2]` is pycocotools' AP at IoU 0.75.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    hits75 = match(gt_boxes, detections, iou_threshold=0.75)
#    ap75 = average_precision(hits75, len(gt_boxes))[0]
#    print(hits75, ap75, coco_eval.stats[2])
#    torch.testing.assert_close(ap75, coco_eval.stats[2])
#    ```
#    The detection scoring 0.80 overlaps the second pedestrian with an IoU of about 0.7: enough at 0.5, too
#    little at 0.75. Only the best detection is left as a true positive, so the recall stops at one third: the
#    recall levels 0 to 0.33 read a precision of 1 and all higher levels read 0.
#    :::
#
# 2. **Mistakes at other thresholds.** *Needs: CPU, about 5 minutes.* Count the kinds of mistakes at the
#    best-F1 threshold of the sweep and at 0.8. Which kinds disappear, which remain, and which threshold would
#    you ship for counting pedestrians?
#
#    :::{dropdown} Hint
#    `evaluation.find_errors` takes a `score_threshold`, and `evaluation.error_summary` counts its output.
#    Make the decision on `decision_set` and `decision_predictions`, not on the test images.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    for threshold in (chosen, 0.8):
#        found = evaluation.find_errors(decision_set, decision_predictions, iou=0.5, score_threshold=threshold)
#        print(threshold, evaluation.error_summary(decision_set, found))
#    ```
#    What to expect, and why (your counts are the measurement; this text measured nothing): a higher threshold
#    should remove the low-scoring duplicates and background detections first, because they tend to score below
#    the detections of whole, visible pedestrians; the missed pedestrians should grow, mostly occluded ones,
#    whose detections are the low-scoring true positives. If your counts say otherwise, believe the counts.
#    Counting pedestrians needs few misses and few false positives alike, so the best-F1 threshold is the natural
#    choice; it was chosen on the decision images, and the test images only report how it does.
#    :::
#
# 3. **`best.pt` or `last.pt`?** *Needs: a GPU, about 30 minutes.* Train the `best` preset, which has
#    validation images and several epochs, then evaluate both `runs/best/best.pt` and `runs/best/last.pt` with
#    `pedseg evaluate`. If `last.pt` scores higher on the test images, why would shipping it instead make the
#    reported test AP optimistic? How would you choose between them honestly?
#
#    :::{dropdown} Hint
#    Which images decided that `best.pt` is the best epoch? Which images would decide it if you switched after
#    reading the test AP?
#    :::
#
#    :::{dropdown} Solution
#    ```bash
#    pedseg train --preset best
#    pedseg evaluate runs/best/best.pt
#    pedseg evaluate runs/best/last.pt
#    ```
#    Picking whichever scores higher on the test images makes the test images part of the choice, so the
#    winner's test AP is the maximum of two noisy numbers and overstates what a new image will see. The honest
#    comparison uses the validation images, which is exactly how `best.pt` was chosen:
#    ```python
#    from pedseg_lib import engine, evaluation, inference
#    from pedseg_lib.config import load_config
#    from pedseg_lib.model import load_model
#
#    cfg = load_config("runs/best/config.yaml")
#    val_set = engine.val_split(cfg)
#    for name in ("best.pt", "last.pt"):
#        predictions = inference.predict_dataset(load_model(f"runs/best/{name}"), val_set)
#        print(name, evaluation.coco_evaluate(val_set, predictions).stats["segm"][0])
#    ```
#    :::
#
# 4. **Your own street photos.** *Needs: CPU, about 10 minutes.* Run `pedseg predict` on a folder of your own
#    photos with the model of this chapter. Where does the model fail, and would more training data or a
#    longer schedule help (chapter 4, the `best` preset)?
#
#    :::{dropdown} Hint
#    `predictions.json` has one entry per detection with its `file_name` and `score`; count them per photo and
#    look at the overlays of the photos with the fewest.
#    :::
#
#    :::{dropdown} Solution
#    ```bash
#    pedseg predict runs/cpu/best.pt my_photos --out my_predictions --score-threshold 0.5
#    ```
#    ```python
#    import collections
#    import json
#
#    results = json.load(open("my_predictions/predictions.json"))
#    print(collections.Counter(r["file_name"] for r in results))
#    ```
#    Your overlays are the answer; what follows is an expectation, argued from the training data, not measured
#    here. Expect failures where your photos differ most from Penn-Fudan: pedestrians much smaller than its
#    (far away), people seen from above or behind other objects, and crowds. Small and crowded people are rare
#    in Penn-Fudan's 170 images, so more varied training data should help them more than a longer schedule on
#    the same images, which can only fit those images better and risks {term}`overfitting`.
#    :::

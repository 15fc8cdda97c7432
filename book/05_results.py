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
# - Evaluate the trained model on images it never saw, and read every line of the COCO box and mask tables.
# - Read precision-recall curves and know what average precision (AP) summarises.
# - Find the images where the model does best and worst, sort its mistakes into kinds you can act on, and
#   choose a score threshold.
# - Use the model on any image, from Python and with the `pedseg predict` command.
# - Compare a run with the official PyTorch tutorial's published numbers, and know when such a comparison holds.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 2 minutes on 2 CPU cores |
# | cpu | about 3-4 minutes with chapter 4's run (measured by `bash .ci/rehearse` on 2 CPU cores); add chapter 4's time without it |
# | tutorial | under a minute on a Colab T4 GPU with chapter 4's run (estimate) |

# %% tags=["colab"]
# Runs only in Google Colab: installs the companion library at the book's pinned release.
import os
import sys

if "google.colab" in sys.modules:
    from IPython import get_ipython

    get_ipython().run_line_magic("pip", "install -q 'pedseg @ git+https://github.com/pedseg/pedseg@v0.1.0'")
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
# Chapter 4 kept its model in `runs/<preset>/best.pt`: the epoch with the best validation mask AP, or the last
# epoch for a preset without validation images (`tutorial`, like the official recipe). Neither choice read a
# test image. {py:func}`pedseg_lib.engine.load_or_train` loads it when it was trained with this profile's exact
# config, and otherwise trains the preset first (so this chapter also runs on its own, in Colab for instance).

# %%
import matplotlib.pyplot as plt
import torch

from pedseg_lib import engine
from pedseg_lib.config import config_for_profile

cfg = config_for_profile(profile)
trained = engine.load_or_train(cfg)
model = trained.model.to(profile.device)  # checkpoints load on the CPU; evaluate on the GPU when there is one
print(trained.reason)
print(f"checkpoint: {trained.checkpoint} (epoch {trained.epoch} of {cfg.epochs}, preset {cfg.preset!r})")

# %% [markdown]
# ## Predictions on the test split
#
# The test split is the part of the seeded split that nothing has read so far: not training, not the choice of
# the checkpoint ({py:func}`pedseg_lib.engine.test_split`; the run folder's `split.json` lists its images).
# This chapter reads it to report the model, and decides nothing on it.
# {py:func}`pedseg_lib.inference.predict_dataset` runs the model on
# it in batches under `torch.inference_mode()`. The score threshold is deliberately low (0.05): average
# precision sweeps over *all* confidence levels, so dropping low-scoring detections early would only hide
# part of the curve.

# %%
from pedseg_lib.inference import predict_dataset

test_set = engine.test_split(cfg)
predictions = predict_dataset(model, test_set, score_threshold=0.05, progress=True)
detections = [len(p["scores"]) for p in predictions.values()]
confident = [int((p["scores"] >= 0.5).sum()) for p in predictions.values()]
pedestrians = sum(len(test_set.dataset.target(i)["boxes"]) for i in test_set.indices)
print(f"{len(test_set)} test images with {pedestrians} annotated pedestrians")
print(f"{sum(detections)} detections with score >= 0.05 ({sum(confident)} with score >= 0.5)")

# %% [markdown]
# ## The COCO tables
#
# A detection *matches* a pedestrian when their **intersection over union** (IoU: overlap area divided by the
# area of the union) reaches a threshold. For boxes the IoU is computed on rectangles, for masks on pixels, so
# the mask table asks for more: the outline must fit, not only the extent.
#
# Sort all detections by score and walk down the list: precision is the share of detections so far that
# match, recall the share of pedestrians found so far. **AP** is the area under that precision-recall curve
# (sampled at 101 recall levels), and COCO's headline AP averages it over ten IoU thresholds, 0.50 to 0.95.
# {py:func}`pedseg_lib.evaluation.coco_evaluate` computes it with pycocotools itself (the test suite checks
# the numbers against pycocotools to 1e-9), from ground truth built once from the masks, with `area` = mask
# pixels (chapter 1 explains why).

# %%
from pedseg_lib.evaluation import coco_evaluate

evaluation = coco_evaluate(test_set, predictions)
for iou_type, name in (("bbox", "boxes"), ("segm", "masks")):
    print(f"== {name} ({iou_type}) ==")
    print(evaluation.table(iou_type))
if profile.is_smoke:
    print("SMOKE PROFILE: a model trained for seconds from random weights - these numbers are meaningless.")

# %% [markdown]
# What each line means:
#
# | Line | Name | Meaning |
# |---|---|---|
# | AP @ IoU 0.50:0.95 | AP | the headline number: AP averaged over IoU thresholds 0.50, 0.55, ..., 0.95 |
# | AP @ IoU 0.50 | AP50 | a loose match: half the detection overlaps the pedestrian (PASCAL VOC's metric) |
# | AP @ IoU 0.75 | AP75 | a tight match: rewards precise outlines |
# | AP small / medium / large | APs, APm, APl | AP over pedestrians of area < 32², 32²-96², > 96² pixels |
# | AR maxDets 1 / 10 / 100 | AR1, AR10, AR100 | recall (averaged over the IoU thresholds) when keeping the 1, 10 or 100 best detections per image |
# | AR small / medium / large | ARs, ARm, ARl | AR100 per size range |
#
# A value of **-1** is not a score: it means *there is nothing to measure*, no annotated pedestrian in that size
# range. Penn-Fudan's pedestrians are large (chapter 1), so the small range is often empty. This is the answer
# to a question asked again and again on detection forums: "why is my AP -1?". pycocotools puts a pedestrian
# into a size range by the annotation's `area` field, for boxes and masks alike, which is why this library
# stores the mask's pixel count there (the official tutorial stores the box area). The test split's
# pedestrians per range:

# %%
from pedseg_lib.evaluation import build_coco_gt

areas = [ann["area"] for ann in build_coco_gt(test_set).dataset["annotations"]]
for label, low, high in (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, float("inf"))):
    print(f"{label:<7} ({low:>5.0f} <= area < {high:>6.0f} px): {sum(low <= a < high for a in areas)} pedestrians")

# %% [markdown]
# ## Precision-recall curves
#
# The curves behind the tables ({py:func}`pedseg_lib.visualize.plot_pr_curves`). At IoU 0.50 the curve stays
# high until the model runs out of pedestrians it can find; at IoU 0.75 it drops earlier, because some
# detections are in the right place but not tight enough. The gap between the two curves is the localisation
# error; where a curve ends on the right is the recall ceiling.

# %%
from pedseg_lib.visualize import plot_pr_curves

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
plot_pr_curves(evaluation, "bbox", ax=axes[0])
plot_pr_curves(evaluation, "segm", ax=axes[1])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Best and worst test images
#
# `coco_evaluate` also keeps each image's own mask AP (`evaluation.per_image`). Ranking by it points straight at
# the images worth looking at. Left: the annotation; right: detections scoring at least 0.5
# ({py:func}`pedseg_lib.visualize.show_prediction`).

# %%
import math

from pedseg_lib.visualize import show_prediction

ranked = sorted((aps["segm"], image_id) for image_id, aps in evaluation.per_image.items() if not math.isnan(aps["segm"]))
shown = min(2, len(ranked) // 2)
for label, picks in (("best", ranked[::-1][:shown]), ("worst", ranked[:shown])):
    for ap, image_id in picks:
        image, target = test_set.dataset[image_id]  # image_id is the index into the full dataset
        show_prediction(image, target, predictions[image_id], score_threshold=0.5, size=3.5,
                        title=f"{label}: {test_set.dataset.image_path(image_id).name}, mask AP {ap:.3f}")
        plt.show()

# %% [markdown]
# ## Mistakes: false positives and missed pedestrians
#
# AP mixes everything into one number. To act, count the mistakes at one operating point: keep detections
# scoring at least 0.5 and match them to pedestrians at mask IoU 0.5
# ({py:func}`pedseg_lib.evaluation.find_errors`). A detection without a match is a **false positive** (red
# below); a pedestrian without one is **missed** (blue).

# %%
from pedseg_lib.evaluation import find_errors
from pedseg_lib.visualize import plot_errors

errors = find_errors(test_set, predictions, iou=0.5, score_threshold=0.5)
with_errors = [i for i, e in errors.items() if e["fp"] or e["fn"]]
images = {i: test_set.dataset[i][0] for i in with_errors}
targets = {i: test_set.dataset.target(i) for i in with_errors}
plot_errors(images, targets, predictions, errors, max_images=6, ncols=3)
plt.show()

# %% [markdown]
# Which kind of mistake dominates decides what to do next. {py:func}`pedseg_lib.evaluation.error_summary`
# sorts them:
#
# - a **duplicate** overlaps a pedestrian already matched by a better detection: non-maximum suppression let
#   two boxes through (a lower `box_nms_thresh` suppresses them sooner, at the price of merging people who
#   stand close together);
# - a **poorly localised** detection overlaps a pedestrian (IoU 0.1-0.5) without fitting it: often a person
#   partly hidden by another, or two people merged into one detection;
# - a **background** detection overlaps no annotated pedestrian at all. Before calling it a mistake, look at
#   it in the gallery: Penn-Fudan's readme warns that "there may be some objects not included in the ground
#   truth list for they are severe-occluded or have very small size". A person far away or behind a car may
#   simply be unlabelled: then the model is right and the metric punishes it;
# - a **missed** pedestrian overlapping another annotated pedestrian is occluded; the others are usually at the
#   image border, in shadow, or in an unusual pose.

# %%
from pedseg_lib.evaluation import error_summary

kinds = error_summary(test_set, predictions, errors)
print(f"true positives {kinds['true_positives']}, false positives {kinds['false_positives']}, "
      f"missed {kinds['missed']} (score >= 0.5, mask IoU >= 0.5)")
print(f"  false positives: {kinds['duplicate']} duplicates, {kinds['poorly_localised']} poorly localised, "
      f"{kinds['background']} on background")
print(f"  missed: {kinds['missed_occluded']} overlapping another pedestrian, {kinds['missed_other']} other")
if profile.is_smoke:
    print("SMOKE PROFILE: an untrained model's mistakes - these counts are meaningless.")

# %% [markdown]
# ## Choosing a score threshold
#
# AP needs no threshold, but an application does: `pedseg predict` keeps detections scoring at least 0.5 by
# default. A higher threshold drops false positives and misses more pedestrians. Counting both at every
# threshold ({py:func}`pedseg_lib.evaluation.score_threshold_sweep`) shows the trade-off; the F1 score (the
# harmonic mean of precision and recall) picks a balanced point.
#
# The threshold is a decision, so it is chosen on the run's validation images
# ({py:func}`pedseg_lib.engine.decision_split` says which images a run may decide on), and only then applied,
# once, to the test images. Choosing it on the test images would tune it to exactly the images that report
# it, and the reported precision and recall would be optimistic. In practice, move the threshold towards
# precision or recall as the application needs (counting people wants both; an alarm wants recall).

# %%
from pedseg_lib.evaluation import score_threshold_sweep
from pedseg_lib.visualize import plot_threshold_sweep

decision_set, why = engine.decision_split(cfg)
print(why)
decision_predictions = predict_dataset(model, decision_set, score_threshold=0.05, progress=True)
sweep = score_threshold_sweep(decision_set, decision_predictions)
plot_threshold_sweep(sweep)
plt.show()
chosen = sweep["best"]
at = {t: k for k, t in enumerate(sweep["threshold"])}
for t in sorted({0.5, chosen} & set(at)):  # the default and the best-F1 threshold
    k = at[t]
    print(f"{len(decision_set)} decision images, threshold {t:.2f}: precision {sweep['precision'][k]:.3f}, "
          f"recall {sweep['recall'][k]:.3f}, F1 {sweep['f1'][k]:.3f}, {sweep['kept'][k]} detections kept")
if profile.is_smoke:
    print("SMOKE PROFILE: an untrained model - this trade-off is meaningless.")

# %% [markdown]
# The chosen threshold, applied once to the test images (the same matching as in the mistakes section above):

# %%
test_errors = find_errors(test_set, predictions, iou=0.5, score_threshold=chosen)
tp, fp, fn = (sum(len(e[kind]) for e in test_errors.values()) for kind in ("tp", "fp", "fn"))
print(f"{len(test_set)} test images at threshold {chosen:.2f} (chosen on the decision images): {tp} true "
      f"positives, {fp} false positives, {fn} missed; precision {tp / (tp + fp) if tp + fp else float('nan'):.3f}, "
      f"recall {tp / (tp + fn) if tp + fn else float('nan'):.3f}")

# %% [markdown]
# ## An image from outside the dataset
#
# {py:func}`pedseg_lib.inference.predict` takes tensors, PIL images or file paths. Here is a photograph that is
# not in Penn-Fudan at all: the portrait of Grace Hopper that ships with matplotlib. It is a person, but not a
# pedestrian in a street: seated, cropped at the chest, seen from close. How well the model transfers to such
# an image tells you how far beyond its training images it generalises.

# %%
import matplotlib.cbook

from pedseg_lib.inference import load_image, predict
from pedseg_lib.visualize import draw_instances, show_grid

portrait = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
(prediction,) = predict(model, [portrait], score_threshold=0.05)
image = load_image(portrait)
scores = ", ".join(f"{s:.2f}" for s in prediction["scores"][:5].tolist()) or "none"
print(f"{len(prediction['scores'])} detections, top scores: {scores}")
show_grid([image, draw_instances(image, prediction, score_threshold=0.5)],
          ["input", "prediction, score >= 0.5"], ncols=2, size=4)
plt.show()

# %% [markdown]
# ## The same from the command line
#
# `pedseg predict CHECKPOINT IMAGE_OR_FOLDER --out DIR` does the same for a file or a whole folder: it writes
# one overlay PNG per image and `predictions.json`, COCO-style results with run-length-encoded masks that
# other tools (pycocotools, FiftyOne, CVAT) read. Here it runs on the portrait and on one test image:

# %%
import json
import shutil
from pathlib import Path

inputs = Path(trained.checkpoint).parent / "predict_inputs"
inputs.mkdir(exist_ok=True)
shutil.copy(portrait, inputs / "grace_hopper.jpg")
shutil.copy(test_set.dataset.image_path(test_set.indices[0]), inputs)
out_dir = Path(trained.checkpoint).parent / "predictions"
command = [sys.executable, "-m", "pedseg_lib", "predict", str(trained.checkpoint), str(inputs), "--out", str(out_dir)]
print("$ pedseg predict", *command[4:])
done = subprocess.run(command, capture_output=True, text=True)
print(done.stdout or done.stderr)

# %% [markdown]
# The overlays it wrote, and the first result in `predictions.json` (one line per detection: image, box as
# `[x, y, width, height]`, score, and the mask as run-length encoding):

# %%
overlays = sorted(out_dir.glob("*.png"))
show_grid([load_image(p) for p in overlays], [p.name for p in overlays], ncols=2, size=4)
plt.show()
results = json.loads((out_dir / "predictions.json").read_text())
if results:
    first = dict(results[0], segmentation={**results[0]["segmentation"],
                                           "counts": results[0]["segmentation"]["counts"][:40] + "..."})
    for key, value in first.items():
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
# PyTorch's "TorchVision Object Detection Finetuning" tutorial published its test AP after one and after ten
# epochs of the recipe that the `tutorial` preset follows. The comparison only holds when this run also
# fine-tuned COCO weights on the real Penn-Fudan images ({py:func}`pedseg_lib.evaluation.official_comparison`
# checks that and names any other difference); even then, the official test split is drawn without a seed (different test images every run), and
# its evaluation stores box areas in the mask ground truth, which moves the size-range numbers (not the
# headline AP). Expect agreement to a few points, not to the third decimal.

# %%
from pedseg_lib.evaluation import official_comparison

print(official_comparison(evaluation, cfg, synthetic=profile.synthetic))

# %% [markdown]
# ## Summary
#
# - Evaluate on the held-out split ({py:func}`~pedseg_lib.engine.test_split`) with a low score threshold;
#   {py:func}`~pedseg_lib.evaluation.coco_evaluate` gives pycocotools' exact numbers, ground truth built once.
# - AP is the area under the precision-recall curve, averaged over IoU 0.50-0.95; mask AP asks for the outline,
#   box AP only for the extent. A -1 means an empty size range, not a failure.
# - Per-image AP finds the best and worst images; {py:func}`~pedseg_lib.evaluation.find_errors` and
#   {py:func}`~pedseg_lib.evaluation.error_summary` sort mistakes into duplicates, poor localisation,
#   background and missed pedestrians. Some "background" detections are unlabelled people.
# - {py:func}`~pedseg_lib.evaluation.score_threshold_sweep` shows what each score threshold trades between
#   precision and recall; F1 picks a balanced one.
# - {py:func}`~pedseg_lib.inference.predict` and `pedseg predict` work on any image; the latter writes overlays
#   and COCO results.
# - Compare with published numbers only when the recipe, the weights and the data really match.
#
# ## Exercises
#
# 1. Rerun `find_errors` with the best-F1 threshold of the sweep and with `0.8`. Which kinds of mistakes
#    disappear, which remain, and which threshold would you ship for counting pedestrians?
# 2. Open the shortest "background" false positives in the gallery. How many are people the annotators left
#    out? Recompute the mask AP with those images removed from `test_set`.
# 3. Evaluate `runs/<preset>/last.pt` as well as `best.pt` with `pedseg evaluate` (for a multi-epoch run such as
#    `best`). If `last.pt` scores higher on the test images, why would shipping it instead make the reported
#    test AP optimistic? What would you have to do to choose between them honestly?
# 4. Run `pedseg predict` on a folder of your own street photos. Where does the model fail, and would more
#    training data or a longer schedule help (chapter 4, the `best` preset)?

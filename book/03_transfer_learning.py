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
# # Chapter 3: Transfer learning
#
# [![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/pedseg/pedseg/blob/main/book/03_transfer_learning.ipynb)
#
# **Learning objectives**
#
# - Do {term}`transfer learning` the official way: replace the two class-sized predictors of torchvision's
#   {term}`COCO` {term}`Mask R-CNN` in a few lines, and check that the library builds the same model.
# - Read a parameter table: what is pretrained, what is new, what is trainable, and where the new parameters sit.
# - Understand what `trainable_backbone_layers` freezes, and when torchvision freezes batch norm (v1) or not (v2).
# - Measure what pretraining buys: the same short budget from COCO weights, ImageNet-only weights and scratch.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 1 minute (three tiny random-weight runs) |
# | cpu | about 3 minutes: three runs of 16 images, 1 {term}`epoch`, 320 px (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | about 10 minutes on a GPU: three runs of 2 epochs (estimate) |

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
# ## Two modules change, everything else is reused
#
# torchvision's {term}`COCO` Mask R-CNN ends in two small **predictors**: the box predictor (two linear layers side
# by side: `cls_score` gives a score per class, `bbox_pred` a box correction per class) and the mask predictor (a transposed convolution, then a 1x1 convolution
# giving one 28x28 mask of {term}`logits <logit>` per class). Their output size is the number of classes, 91 for
# COCO. Pedestrians need 2 (background and person), so exactly these two are replaced with freshly initialised
# ones; the {term}`backbone`, the {term}`FPN`, the {term}`RPN`, the {term}`box head` and the {term}`mask head`
# keep what they learnt on COCO. This is the official tutorial's recipe ({ref}`concordance` maps it to this
# book), and it fits in a few lines: load torchvision's COCO detector, read the input sizes of its two
# predictors, and put new ones in their place.

# %%
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

from pedseg_lib.config import config_for_profile

# the profile's recipe: its weights and input size
preset = config_for_profile(profile)
# "coco", or None (random) in smoke, which downloads nothing
weights = profile.weights("coco")
# background + pedestrian; the tutorial's hidden mask channels
num_classes, mask_hidden = 2, 256

torch.manual_seed(0)
# weights_backbone=None: without COCO weights, torchvision would otherwise
# fetch an ImageNet backbone.
model = maskrcnn_resnet50_fpn(
    weights={"coco": "COCO_V1", None: None}[weights],
    weights_backbone=None,
    min_size=preset.min_size,
    max_size=preset.max_size,
)
coco_box = model.roi_heads.box_predictor
coco_mask = model.roi_heads.mask_predictor

# 1024: the box head's output
in_features = model.roi_heads.box_predictor.cls_score.in_features
model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
# 256: the mask head's output
in_channels = model.roi_heads.mask_predictor.conv5_mask.in_channels
model.roi_heads.mask_predictor = MaskRCNNPredictor(
    in_channels, mask_hidden, num_classes
)

print("COCO box predictor:", coco_box)
print("ours:              ", model.roi_heads.box_predictor)
print("COCO mask predictor:", coco_mask)
print("ours:               ", model.roi_heads.mask_predictor)

# %% [markdown]
# {py:func}`pedseg_lib.model.build_model` does exactly this. With the same arguments and the same random seed
# before the build, it must give the same model: the same parameter names, shapes and `requires_grad` flags,
# and the very same values, the freshly initialised predictors included (the assert compares every tensor of the
# two state dicts with `torch.equal`). The two builds differ in steps, not in results: the library builds
# torchvision's model without weights, swaps in `FrozenBatchNorm2d` and then loads the COCO state dict, while the
# page asks torchvision for the COCO weights directly. Both create the same layers in the same order, and neither
# the swap nor the loading draws random numbers, so the random initialisations draw the same numbers.

# %%
from pedseg_lib import model as M

torch.manual_seed(0)
ours = M.build_model(
    num_classes=num_classes, variant="v1", weights=weights,
    min_size=preset.min_size, max_size=preset.max_size, mask_hidden=mask_hidden,
)

params, ours_params = model.named_parameters(), ours.named_parameters()
layout = [(name, p.shape, p.requires_grad) for name, p in params]
assert layout == [(name, p.shape, p.requires_grad) for name, p in ours_params]
page_state, library_state = model.state_dict(), ours.state_dict()
assert list(page_state) == list(library_state)
assert all(torch.equal(page_state[k], library_state[k]) for k in page_state)
n_trainable = sum(trainable for _, _, trainable in layout)
print("same architecture and values:")
print(f"  {len(layout)} parameter tensors ({n_trainable} trainable)")
print(f"  {len(page_state)} state-dict entries")

# %% [markdown]
# What the library adds to those lines:
#
# - **Checked arguments.** An unknown variant or weights name, or `num_classes < 2`, is a
#   {py:class}`pedseg_lib.errors.ConfigError` that says what to write instead.
# - **Weights it can vouch for.** Before loading a cached file it checks the SHA-256 prefix in the file name
#   (torchvision checks it only while downloading), and a download that fails within its timeout becomes a
#   {py:class}`pedseg_lib.errors.WeightsUnavailableError` naming the file and the way to run without it.
# - **Three starting points and two variants.** `weights="coco"`, `"imagenet"` (only the {term}`ResNet-50` backbone is
#   pretrained) or `None`, for `variant="v1"` (the tutorial's `maskrcnn_resnet50_fpn`) or `"v2"`
#   (`maskrcnn_resnet50_fpn_v2`), with `trainable_backbone_layers`, `min_size`, `max_size` and `mask_hidden`.
# - **The same architecture offline.** {py:func}`pedseg_lib.model.build_untrained` builds exactly what
#   `build_model` would, frozen layers included, without downloading anything.
# - **A model that knows how it was built.** Its arguments are kept in `model.pedseg_args`, so a checkpoint
#   ({py:func}`pedseg_lib.model.save_checkpoint`) can rebuild it, and
#   {py:func}`pedseg_lib.model.describe_model` knows which parts are new.

# %% [markdown]
# ## The parameter table
#
# {py:func}`pedseg_lib.model.describe_model` counts the parameters of each part, how many are trainable and
# where their values come from. The table is that of the recipe, `build_model(weights="coco")`, in whatever
# profile this page runs: {py:func}`pedseg_lib.model.build_untrained` gives its architecture without a download.

# %%
recipe = M.build_untrained(num_classes=num_classes, weights="coco",
                           min_size=preset.min_size, max_size=preset.max_size)
desc = M.describe_model(recipe)
heads = ("box predictor", "mask predictor")
new = sum(r.parameters for r in desc.rows if r.part in heads)
share = 100 * new / desc.total
print(f"new parameters: {new:,} of {desc.total:,} ({share:.2f}%)")
desc

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
from pedseg_lib.notebook import glue

glue("new_params", f"{new:,}", display=False)
glue("total_params", f"{desc.total / 1e6:.1f}", display=False)
glue("new_percent", 100 * new / desc.total, display=False)

# %% [markdown]
# Only {glue:text}`new_percent:.2f` % of the model's {glue}`total_params` million parameters are new
# ({glue}`new_params` of them). Where are they? Each layer of the two new predictors, with the size its
# COCO counterpart had:

# %%
rows = []
predictors = [("box predictor", coco_box, recipe.roi_heads.box_predictor),
              ("mask predictor", coco_mask, recipe.roi_heads.mask_predictor)]
for part, coco_part, new_part in predictors:
    coco_layers = dict(coco_part.named_children())
    for layer, module in new_part.named_children():
        count = sum(p.numel() for p in module.parameters())
        if not count:
            continue  # the ReLU between the mask predictor's two layers
        coco_count = sum(p.numel() for p in coco_layers[layer].parameters())
        rows.append((part, layer, module, count, coco_count))
print(f"{'predictor':<14} {'layer':<15} {'weight shape':<16} "
      f"{'ours':>9} {'COCO (91)':>9}")
for part, layer, module, count, coco_count in rows:
    shape = str(tuple(module.weight.shape))
    print(f"{part:<14} {layer:<15} {shape:<16} {count:>9,} {coco_count:>9,}")
per_class, fixed = {}, {}
for _, layer, _, count, coco_count in rows:
    (fixed if count == coco_count else per_class)[layer] = count
print("depends on the number of classes:", ", ".join(per_class))
print("does not:", ", ".join(fixed))

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("conv5_params", f"{fixed['conv5_mask']:,}", display=False)
glue("conv5_share", 100 * fixed["conv5_mask"] / new, display=False)
glue("class_params", f"{sum(per_class.values()):,}", display=False)

# %% [markdown]
# Most of the new parameters, {glue:text}`conv5_share:.0f` % of them ({glue}`conv5_params`), sit in the mask
# predictor's `conv5_mask`, the 2x2 transposed convolution that doubles the mask head's 14x14 features to 28x28.
# Its size does not depend on the number of classes at all: it is replaced only because the recipe replaces
# the whole `MaskRCNNPredictor`, and COCO's trained `conv5_mask` would fit as it is. The layers whose size
# really follows the classes (`cls_score`, `bbox_pred`, `mask_fcn_logits`) hold just {glue}`class_params`
# parameters. Exercise 2 keeps COCO's `conv5_mask`.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(9, 3.2))
names = [r.part for r in desc.rows]
ax.barh(names, [r.parameters for r in desc.rows], color="#999999",
        label="frozen")
ax.barh(names, [r.trainable for r in desc.rows], color="#0072B2",
        label="trainable")
for i, r in enumerate(desc.rows):
    ax.text(r.parameters, i, f" {r.source}", va="center", fontsize=8)
ax.set(xscale="symlog", xlabel="parameters (log scale)",
       title="build_model(weights='coco'): parameters per part")
ax.invert_yaxis()
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What `trainable_backbone_layers` freezes
#
# ResNet-50 has five stages: the stem (`conv1`), then `layer1` to `layer4`. With pretrained weights,
# torchvision trains only the last `trainable_backbone_layers` of them (default 3) and freezes the rest: the
# early stages detect edges and textures that COCO already taught well, and freezing them saves memory and time.
# In v1 with pretrained weights, {term}`BatchNorm` is frozen everywhere in the backbone: torchvision builds
# the ResNet with {term}`FrozenBatchNorm` (`FrozenBatchNorm2d`: fixed statistics and scale), because the small
# batches of detection training (two images in the tutorial) give poor batch statistics.
# Without any pretrained weights (`weights=None` and `weights_backbone=None`) torchvision ignores
# `trainable_backbone_layers` (with a warning): all five stages train and batch norm is ordinary `BatchNorm2d`.
# `weights=None` alone is not enough: torchvision then still loads its default ImageNet backbone, and freezes
# stages and uses `FrozenBatchNorm2d` as with COCO weights. The v2 model (`maskrcnn_resnet50_fpn_v2`, the `best`
# preset's) is different: torchvision builds it with ordinary `BatchNorm2d` even with pretrained weights, in
# the backbone and also in the FPN and the heads. The table counts them; the last column counts the
# batch-norm layers of the whole model.

# %%
from collections import Counter

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


def norm_kinds(module):
    norms = (nn.BatchNorm2d, FrozenBatchNorm2d)
    return Counter(
        type(m).__name__ for m in module.modules() if isinstance(m, norms)
    )


print(f"{'':22s} {'backbone: trainable params, norm layers':^42s}",
      f"  {'whole model':>11s}")
print(f"{'variant':7s} {'weights':7s} {'layers':>6s} {'trainable':>10s}  "
      f"{'FrozenBatchNorm2d':>17s}  {'BatchNorm2d':>11s}",
      f"  {'BatchNorm2d':>11s}")
trainable_by_layers = {}
cases = [("v1", "coco", n) for n in range(6)]
cases += [("v1", None, 3), ("v2", "coco", 3)]
for variant, start, layers in cases:
    built = M.build_untrained(variant=variant, weights=start,
                              trainable_backbone_layers=layers, min_size=320)
    body = built.backbone.body
    kinds = norm_kinds(body)
    trainable = sum(p.numel() for p in body.parameters() if p.requires_grad)
    if (variant, start) == ("v1", "coco"):
        trainable_by_layers[layers] = trainable
    frozen_bn, bn = kinds["FrozenBatchNorm2d"], kinds["BatchNorm2d"]
    model_bn = norm_kinds(built)["BatchNorm2d"]
    print(f"{variant:7s} {str(start):7s} {layers:6d} {trainable:10,d}  "
          f"{frozen_bn:17d}  {bn:11d}   {model_bn:11d}")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
millions = [v / 1e6 for v in trainable_by_layers.values()]
ax.bar([str(k) for k in trainable_by_layers], millions, color="#0072B2")
ax.set(xlabel="trainable_backbone_layers",
       ylabel="trainable backbone parameters (M)",
       title="Unfreezing ResNet-50 stages from the last one")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The experiment: what does pretraining buy?
#
# Three runs with the same data, the same budget and the same recipe, differing in where the weights come
# from: COCO (the whole detector), ImageNet (the ResNet-50 backbone only; FPN, RPN and heads start random) and
# scratch (everything random). The scratch arm differs in two more ways, torchvision's rule for a model without
# pretrained weights: all five ResNet stages train, and batch norm is ordinary `BatchNorm2d`, normalising with the
# statistics of each small batch (two images in the tutorial's recipe) where the v1 pretrained arms use
# `FrozenBatchNorm2d`. This is {term}`fine-tuning` against training from less. Each is an ordinary
# {py:func}`pedseg_lib.engine.fit` run of the profile's preset ({py:func}`pedseg_lib.config.config_for_profile`)
# with the profile's budget for the arms: a few epochs on part of the {term}`training split`, each arm scored on the
# same images of the {term}`validation split`.
#
# The arms take validation images in every profile, also where the preset keeps none: `tutorial`, like the
# official recipe, trains on every non-test image and makes no selection, but a comparison of three models needs
# images that none of them trained on, and the test images stay untouched until chapter 5. So each budget names
# `val_size`: the arms hold {glue}`arm_val_size` of the non-test images out of training and are scored on
# {glue}`arm_val_images` of them; the test split stays the profile's.

# %%
import dataclasses
from pathlib import Path

from pedseg_lib import engine
from pedseg_lib.config import apply_overrides

# The profile's budget for the three runs. On a CPU each arm sees 16 training
# images at 320 px, so that the three runs together take a few minutes on 2
# cores (the scratch arm trains every layer and is the slowest). Every budget
# names val_size, so the arms are scored on validation images even where the
# preset keeps none (tutorial); they come out of the non-test images, and the
# test split is the profile's.
budgets = {
    "smoke": ["epochs=1", "max_train_images=8", "val_size=4",
              "max_val_images=4", "min_size=160", "max_size=256"],
    "cpu": ["epochs=1", "max_train_images=16", "val_size=20",
            "max_val_images=10", "min_size=320", "max_size=544"],
    # the official recipe (2 epochs) on the other non-test images
    "tutorial": ["val_size=20"],
    # 3 of the preset's epochs, its own 20 validation images
    "best": ["epochs=3", "val_size=20"],
}
base = apply_overrides(preset, budgets[profile.name])
arms = {}
origins = {"COCO": "coco", "ImageNet backbone": "imagenet", "scratch": None}
for label, wanted in origins.items():
    # the profile decides: in smoke every arm is random
    actual = profile.weights(wanted)
    name = label if actual == wanted else f"{label} -> random"
    out = Path(base.output_dir).parent / f"transfer_{wanted or 'scratch'}"
    arms[name] = dataclasses.replace(base, weights=actual, output_dir=str(out))
arm_split = engine.run_split(base)
n_train, n_val = len(arm_split["train"]), len(arm_split["val"])
arm_train = min(n_train, base.max_train_images or n_train)
arm_val = min(n_val, base.max_val_images or n_val)
# the arms never see the profile's test images
assert arm_split["test"] == engine.run_split(preset)["test"]
print("budget:", base.epochs, "epoch(s) |", arm_train, "train images |",
      arm_val, "validation images |", f"min_size {base.min_size}")
print("run folders in", Path(base.output_dir).parent)
for name, cfg in arms.items():
    folder = Path(cfg.output_dir).name
    print(f"{name:27s} weights={cfg.weights!s:9s} -> {folder}")
starts = {cfg.weights for cfg in arms.values()}
print(f"{len(starts)} distinct starting point(s) among the three arms:",
      sorted(map(str, starts)))

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("arm_val_size", base.val_size, display=False)
glue("arm_val_images", arm_val, display=False)

# %%
from pedseg_lib import engine
from pedseg_lib.errors import NonFiniteLossError

histories, done = {}, {}
print(f"{'arm':27s} {'train loss':>10s} {'val loss':>8s} {'mask AP':>7s}",
      f"{'box AP':>6s} {'seconds':>7s}")
for name, cfg in arms.items():
    # Arms whose configurations are identical (in smoke: all random) are
    # trained once and shared.
    key = repr({k: v for k, v in cfg.to_dict().items() if k != "output_dir"})
    if key in done:
        print(f"{name}: same configuration, same run as {done[key][0]!r}")
    else:
        try:
            done[key] = (name, engine.fit(cfg, progress=False).history)
        except NonFiniteLossError as error:
            # random heads at the fine-tuning learning rate can diverge
            print(f"{name:27s} DIVERGED: {error}")
            continue
    histories[name] = done[key][1]
    last = histories[name]["epochs"][-1]
    print(f"{name:27s} {last['train_loss']:10.3f} {last['val_loss']:8.3f}",
          f"{last['segm_AP']:7.3f} {last['bbox_AP']:6.3f}",
          f"{last['seconds']:7.0f}")

# %% [markdown]
# The curves side by side: training loss per iteration (left) and validation mask {term}`AP` per epoch (right).
# With real weights, expect the COCO run to start with a far lower loss and reach a useful mask AP within the
# budget, the ImageNet run to learn more slowly, and the scratch run to achieve little in so short a time. This is
# an expectation, not a measurement: it is argued from what each arm starts with (the COCO detector already finds
# people and only its two predictors are new; the ImageNet arm must learn the FPN, RPN and heads; the scratch arm
# also its features) and from how little data and time the budget gives. The printout above and the curves below
# are this profile's measurement.
# An arm whose loss turns into NaN or infinity is stopped by the engine ({py:class}`pedseg_lib.errors.NonFiniteLossError`),
# reported as diverged above and left out of the curves: new, randomly initialised layers at the fine-tuning
# {term}`learning rate` can do that, which is itself a result (more {term}`warm-up`, a lower rate or
# {term}`gradient clipping` would be the cure). In the smoke profile all three are random starts on a few tiny
# images, so the picture means nothing; smoke numbers prove that the code runs, never how well it learns.

# %%
from pedseg_lib.visualize import compare_runs

fig = compare_runs(histories, metric="segm_AP")
plt.show()

# %%
fig = compare_runs(histories, metric="val_loss")
plt.show()

# %% [markdown]
# ## Check yourself
#
# :::{dropdown} Why are the box and mask predictors replaced, but not the box head or the mask head?
# Because only the predictors' sizes depend on the number of classes: `cls_score` gives one score per class,
# `bbox_pred` four box numbers per class and `mask_fcn_logits` one mask per class. The box head ends in 1024
# features and the mask head in 256 channels whatever the classes are, so their COCO training is kept.
# :::
#
# :::{dropdown} `maskrcnn_resnet50_fpn(weights=None)` still tries to download something. What, and why did the page pass `weights_backbone=None`?
# With `weights=None`, torchvision's default `weights_backbone` is the ImageNet ResNet-50, which it downloads and
# loads into the backbone. Passing `weights_backbone=None` builds a fully random model (nothing to download),
# exactly what `build_model(weights=None)` builds. With `weights="COCO_V1"` torchvision ignores `weights_backbone`.
# :::
#
# :::{dropdown} Most of the new mask-predictor parameters are in `conv5_mask`. Does the number of classes decide its size?
# No. `conv5_mask` is a 256-to-256-channel transposed convolution; only `mask_fcn_logits` (one output channel
# per class) depends on the classes. The recipe replaces the whole `MaskRCNNPredictor`, so `conv5_mask` starts
# from random values although COCO's trained one would fit; exercise 2 keeps it.
# :::
#
# :::{dropdown} The page's model and `build_model`'s are compared with `torch.equal`, not with a tolerance. Why may it be that strict?
# Both create the same layers in the same order after the same `torch.manual_seed(0)` (the library builds
# without weights, swaps in `FrozenBatchNorm2d` and loads the file afterwards; neither step draws random numbers),
# so the random initialisations draw the same numbers, and the pretrained values come from the same file. Nothing is
# computed differently, so the tensors are identical, not just close.
# :::
#
# :::{dropdown} Which batch-norm layers does each model have, and what does `FrozenBatchNorm2d` change?
# `FrozenBatchNorm2d` uses fixed statistics and a fixed scale and shift: it normalises every batch the same way
# and learns nothing. torchvision uses it in v1's backbone when weights are pretrained. A random v1 model and
# the v2 model (pretrained or not) use ordinary `BatchNorm2d`, which normalises with each batch's statistics in
# train mode; v2 also has them in its FPN and heads.
# :::
#
# ## Summary
#
# - Fine-tuning replaces only the two class-sized predictors; the rest of the COCO detector is reused. The
#   surgery is a few lines of torchvision, and `build_model` gives the same model, value for value.
# - `describe_model` shows the new parameters are a tiny fraction of the model, and most of them sit in
#   `conv5_mask`, a layer whose size does not depend on the classes.
# - `trainable_backbone_layers` freezes early ResNet stages; v1's backbone uses `FrozenBatchNorm2d` whenever
#   weights are pretrained, v2 keeps ordinary `BatchNorm2d`, and a randomly initialised model trains everything.
# - Under the same short budget, the starting point matters: compare the three arms in a real profile.
#
# ## Exercises
#
# 1. **Freeze more, or nothing.** *Needs: CPU, about 15 minutes in the `cpu` profile (two short runs).* Repeat the
#    COCO arm with `trainable_backbone_layers=0` and `=5`. Which is faster per iteration, and which ends with
#    the better mask AP?
#
#    :::{dropdown} Hint
#    Start from `base` (the arms' shortened budget) and change two keys with
#    {py:func}`pedseg_lib.config.apply_overrides`: `weights` and `trainable_backbone_layers`; give each run its
#    own `output_dir`. The epoch rows of a history hold `seconds` and `segm_AP`.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    for layers in (0, 5):
#        out = Path(base.output_dir).parent / f"transfer_layers{layers}"
#        cfg = apply_overrides(base, ["weights=coco", f"trainable_backbone_layers={layers}",
#                                     f"output_dir={out}"])
#        history = engine.fit(cfg, progress=False).history
#        last = history["epochs"][-1]
#        per_iteration = last["seconds"] / len(history["iterations"])  # includes validation time
#        print(f"layers={layers}: {per_iteration:.1f} s per iteration, mask AP {last['segm_AP']:.3f}")
#    ```
#    With 0 stages trainable no gradient is computed for the backbone's weights, so the backward pass is
#    shorter and each iteration faster; with 5 every stage and more memory is trained. On a budget this short
#    and a few validation images the AP difference is mostly noise: repeat with another `seed` before drawing a
#    conclusion. (In smoke the weights are random and the numbers mean nothing.)
#    :::
#
# 2. **Keep COCO's `conv5_mask`.** *Needs: CPU, about 5 minutes (downloads the COCO weights once).* Replace only
#    `mask_fcn_logits` instead of the whole mask predictor. How many new parameters are left, and how does the
#    first mask loss on one batch compare with the page's recipe?
#
#    :::{dropdown} Hint
#    The mask predictor is an `nn.Sequential` with children `conv5_mask`, `relu` and `mask_fcn_logits`;
#    assign a new `nn.Conv2d(256, 2, kernel_size=1)` to the last one. In train mode the model returns its losses
#    for `model(images, targets)`.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from torch import nn
#
#    from pedseg_lib import data
#
#    def surgery(keep_conv5: bool):
#        torch.manual_seed(0)
#        m = maskrcnn_resnet50_fpn(weights="COCO_V1", min_size=preset.min_size, max_size=preset.max_size)
#        m.roi_heads.box_predictor = FastRCNNPredictor(1024, 2)
#        if keep_conv5:
#            m.roi_heads.mask_predictor.mask_fcn_logits = nn.Conv2d(256, 2, kernel_size=1)
#        else:
#            m.roi_heads.mask_predictor = MaskRCNNPredictor(256, 256, 2)
#        return m.train()
#
#    dataset = data.PennFudanDataset(preset.data_root, transforms=data.build_transforms(False))
#    images, targets = next(iter(data.create_loader(dataset, 2, shuffle=False)))
#    for keep in (False, True):
#        m = surgery(keep)
#        new = sum(p.numel() for p in m.roi_heads.box_predictor.parameters())
#        new += sum(p.numel() for p in (m.roi_heads.mask_predictor if not keep
#                                       else m.roi_heads.mask_predictor.mask_fcn_logits).parameters())
#        torch.manual_seed(1)
#        print(f"keep conv5_mask={keep}: {new:,} new parameters, "
#              f"first loss_mask {m(images, targets)['loss_mask'].item():.3f}")
#    ```
#    Keeping `conv5_mask` leaves only the class-sized layers new, {glue}`class_params` parameters instead of
#    {glue}`new_params`, and the new 1x1 convolution reads features that COCO's `conv5_mask` already learnt to
#    turn into masks. Note that `nn.Conv2d` has its own default
#    initialisation, not the Kaiming-normal one `MaskRCNNPredictor` applies; part of any difference in the first
#    loss comes from that. Only a training run tells whether the final mask AP changes.
#    :::
#
# 3. **Batch norm in v2.** *Needs: CPU, about 5 minutes.* Build `variant="v2"` with
#    {py:func}`pedseg_lib.model.build_untrained` and count its `BatchNorm2d` layers per part. Which of them
#    have trainable weights, and do the frozen ones still change in train mode?
#
#    :::{dropdown} Hint
#    `requires_grad=False` stops the optimiser, not the running statistics: compare a frozen stage's
#    `running_mean` before and after one forward pass in train mode.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    v2 = M.build_untrained(variant="v2", weights="coco", min_size=320, max_size=544)
#    for part in ("backbone.body", "backbone.fpn", "rpn", "roi_heads.box_head", "roi_heads.mask_head"):
#        layers = [m for m in v2.get_submodule(part).modules() if isinstance(m, nn.BatchNorm2d)]
#        trainable = sum(m.weight.requires_grad for m in layers)
#        print(f"{part:20s} {len(layers):3d} BatchNorm2d, {trainable:3d} with trainable weights")
#
#    frozen = v2.backbone.body.layer1[0].bn1  # layer1 is frozen with trainable_backbone_layers=3
#    before = frozen.running_mean.clone()
#    v2.train()(*next(iter(data.create_loader(dataset, 2, shuffle=False))))
#    print("running mean changed:", not torch.equal(before, frozen.running_mean))
#    ```
#    The frozen stages' batch-norm layers have `requires_grad=False` weights, yet in train mode they still
#    normalise with the batch's statistics and update their running statistics; only `FrozenBatchNorm2d` (v1)
#    or putting those layers in eval mode stops that. (`dataset` is the one from exercise 2.)
#    :::

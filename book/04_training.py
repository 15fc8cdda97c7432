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
# # Chapter 4: Training
#
# [![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/pedseg/pedseg/blob/main/book/04_training.ipynb)
#
# **Learning objectives**
#
# - Write the training loop of {term}`Mask R-CNN` in about fifteen lines, check that the library's loop gives the same
#   numbers, and know what each of its five losses measures.
# - Understand the {term}`learning rate` {term}`warm-up`, the {term}`learning-rate schedule`, and why the recipe
#   uses batches of two images.
# - Train with a named recipe, follow the run live, and read its loss, validation and learning-rate curves.
# - Know what a run folder holds, how a run resumes and how {term}`early stopping` decides.
# - Run the same training from the command line, and on several GPUs with `torchrun` ({term}`DDP`).
#
# | Profile | Time to run |
# |---|---|
# | smoke | 1-2 minutes on 2 CPU cores |
# | cpu | about 4 minutes: 40 images, 1 {term}`epoch`, 480 px (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | a few minutes on a Colab T4 GPU (estimate) |

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
# ## The recipe is a config
#
# Everything that decides a run lives in one dataclass, {py:class}`pedseg_lib.config.TrainConfig`, and the
# book names four recipes (presets). `tutorial` is the official PyTorch {term}`fine-tuning` recipe unchanged; `best` is
# longer and stronger for a GPU; `cpu` fits a laptop; `smoke` finishes in seconds and learns nothing useful.
# The table compares the keys that differ.

# %%
from pedseg_lib.config import PRESETS, config_for_profile, load_preset

presets = {name: load_preset(name).to_dict() for name in PRESETS}
differing = [key for key in presets["tutorial"]
             if len({str(p[key]) for p in presets.values()}) > 1]
print(f"{'key':<20}" + "".join(f"{name:>14}" for name in PRESETS))
for key in differing:
    values = [str(presets[name][key]) for name in PRESETS]
    print(f"{key:<20}" + "".join(f"{value:>14}" for value in values))

# %% [markdown]
# The profile picks the preset, and {py:func}`pedseg_lib.config.config_for_profile` fills in where the data is
# and where the run is written (`runs/<preset>` in the project folder):

# %%
cfg = config_for_profile(profile)
print(f"preset: {cfg.preset}")
print(f"data: {cfg.data_root}")
print(f"run folder: {cfg.output_dir}")

# %% [markdown]
# ## Three sets of images: train, validation, test
#
# A run splits the data once, with a fixed seed, into three disjoint sets
# ({py:func}`pedseg_lib.engine.run_split`). The model learns from the **training** images (the
# {term}`training split`). The **validation** images (the {term}`validation split`) decide everything a run
# decides: which {term}`epoch` is kept as `best.pt`, when to stop early, and (chapter 5) the
# {term}`score threshold`. The **test** images (the {term}`test split`) decide nothing: nothing reads them until
# chapter 5 measures the final model on them, once. Choosing anything on the test images would make the
# reported test {term}`AP` optimistic, because the choice would be tuned to exactly those images.
#
# The `tutorial` preset follows the official recipe: it trains on every non-test image, keeps no validation
# images (`val_size=0`), makes no selection, and its model is simply the last epoch. The other presets take
# `val_size` images out of the non-test images for validation. Every run writes its split to `split.json`.

# %%
from pedseg_lib import engine

split = engine.run_split(cfg)
for name in ("train", "val", "test"):
    print(f"{name:<5} {len(split[name]):>4} images, e.g. {split[name][:6]}")
sets = {name: set(split[name]) for name in ("train", "val", "test")}
overlap = (sets["train"] & sets["val"] or sets["train"] & sets["test"]
           or sets["val"] & sets["test"])
print("disjoint:", not overlap)

# %% [markdown]
# ## The cpu recipe, and what it gives up
#
# The official recipe is sized for a GPU: on a laptop CPU, two epochs over every training image at 800 pixels
# take far longer than a reader wants to wait for a chapter. The `cpu` preset makes it fit a laptop or a free
# Colab runtime by changing a few values; the table computes what each change saves on Penn-Fudan's images:

# %%
import math
from pathlib import Path

from PIL import Image

tutorial_recipe, cpu_recipe = load_preset("tutorial"), load_preset("cpu")
pngs = sorted((Path(cfg.data_root) / "PNGImages").glob("*.png"))
short_sides = [min(Image.open(path).size) for path in pngs]
native_below = sum(side <= cpu_recipe.min_size for side in short_sides)
pixel_ratio = (cpu_recipe.min_size / tutorial_recipe.min_size) ** 2


PENNFUDAN_IMAGES = 170  # the size of the real dataset (chapter 1 counts it)


def steps(recipe):
    train = PENNFUDAN_IMAGES - recipe.test_size - recipe.val_size
    train = min(train, recipe.max_train_images or train)
    return recipe.epochs * math.ceil(train / recipe.batch_size), train


tutorial_steps, tutorial_train = steps(tutorial_recipe)
cpu_steps, cpu_train = steps(cpu_recipe)
table = [
    ("input size (shorter side, px)",
     tutorial_recipe.min_size, cpu_recipe.min_size),
    ("pixels per image (relative)", f"{1:.2f}", f"{pixel_ratio:.2f}"),
    ("training images", tutorial_train, cpu_train),
    ("epochs", tutorial_recipe.epochs, cpu_recipe.epochs),
    ("training steps (batch 2)", tutorial_steps, cpu_steps),
    ("validation images", tutorial_recipe.val_size, cpu_recipe.val_size),
]
print(f"{'change (tutorial -> cpu)':<34} {'tutorial':>10} {'cpu':>10}")
for label, in_tutorial, in_cpu in table:
    print(f"{label:<34} {in_tutorial:>10} {in_cpu:>10}")
print(f"images whose shorter side is at most {cpu_recipe.min_size} px:",
      f"{native_below} of {len(short_sides)}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
from pedseg_lib.notebook import glue

glue("native_below", native_below, display=False)
glue("cpu_train", cpu_train, display=False)
glue("n_short_sides", len(short_sides), display=False)
glue("cpu_val", cpu_recipe.val_size, display=False)
glue("pixel_ratio", pixel_ratio, display=False)
glue("size_ratio", cpu_recipe.min_size / tutorial_recipe.min_size,
     display=False)
glue("step_ratio", tutorial_steps / cpu_steps, display=False)

# %% [markdown]
# What each change costs in accuracy, and why:
#
# - **Input size.** The model sees {glue:text}`pixel_ratio:.2f` times the pixels of the recipe, and a step costs about
#   that much less. Little of the photographs is lost: {glue}`native_below` of the {glue}`n_short_sides`
#   images are at most that size to begin with, so the recipe's 800 pixels only enlarge them and the smaller
#   size loses nothing of them; the others are shrunk below their own size and lose some detail. What changes is
#   the apparent size of the pedestrians, {glue:text}`size_ratio:.1f` times the recipe's. Penn-Fudan's pedestrians are large
#   (chapter 1), so this should cost little; small, distant people would suffer first.
# - **Fewer images and one epoch.** {glue:text}`step_ratio:.0f` times fewer training steps. This is the change that costs
#   most: the new predictors see each of the few training images once, and fewer examples of occlusion and
#   unusual poses. The {term}`COCO` weights already detect people well, which is why one short epoch can be
#   expected to give a useful model. That is an expectation, argued from the starting point (COCO's person class,
#   and only two predictors to learn), not a measurement: chapter 5 measures what this profile's model reaches.
# - **Validation images.** {glue}`cpu_val` images are kept out of training to choose the model and, in chapter 5,
#   the score threshold honestly. They come out of the images the training set is drawn from; with only
#   {glue}`cpu_train` training images used, that costs the `cpu` recipe no training image.
#
# These effects are argued, not yet measured: this page cannot run the 800-pixel recipe on a CPU within its
# budget. Exercise 4 measures them on a GPU.

# %% [markdown]
# ## Five losses
#
# In train mode torchvision's Mask R-CNN takes images *and* targets and returns a dictionary of losses instead
# of predictions. Their sum is what the optimiser minimises. Each term trains one part of the network:
#
# | Loss | Part | What it measures |
# |---|---|---|
# | `loss_objectness` | {term}`region proposal network <RPN>` (RPN) | is there *an object* (of any class) in this {term}`anchor` box? binary cross-entropy |
# | `loss_rpn_box_reg` | RPN | how far the anchor must move and stretch to fit the object (smooth L1) |
# | `loss_classifier` | {term}`box head` | which class (pedestrian or background) each {term}`proposal` is (cross-entropy) |
# | `loss_box_reg` | box head | how to refine each proposal's box to the true box (smooth L1) |
# | `loss_mask` | {term}`mask head` | per-pixel binary cross-entropy of the 28x28 mask {term}`logits <logit>` of each positive proposal |
#
# The two RPN terms teach the network *where to look*, the box terms *what and exactly where*, and the mask term
# *which pixels*. You will see them fall at very different speeds in the curves below.

# %% [markdown]
# ## Warm-up and schedule
#
# A freshly replaced box and mask predictor produces large, random gradients. Starting at the full learning rate
# can throw the pretrained {term}`backbone` off (and, from random weights, can make the losses explode within a few
# iterations). So the learning rate starts at `lr * warmup_factor` and grows linearly to `lr` over the warm-up.
# After that a schedule takes over: `tutorial` divides the rate by 10 every 3 epochs (so never within its 2 epochs),
# `best` follows a cosine to zero.
#
# How long should the warm-up last? The official recipe takes its rule from torchvision's detection references:
# `min(1000, iterations per epoch - 1)`, in the first epoch only. That rule was written for COCO, and the length of
# the run decides what it means. The table computes it for torchvision's COCO recipe and for this book's presets on
# Penn-Fudan:

# %%
from pedseg_lib.engine import LRSchedule, default_warmup

# torchvision's Mask R-CNN recipe on COCO train2017
COCO_TRAIN_IMAGES, COCO_BATCH, COCO_EPOCHS = 118_287, 16, 26


def official_warmup(per_epoch):
    """The references' rule, in the first epoch: min(1000, per_epoch - 1)."""
    return min(1000, per_epoch - 1)


recipes = {name: load_preset(name) for name in ("tutorial", "cpu", "best")}
coco_run = "COCO (torchvision's references)"
coco_per_epoch = math.ceil(COCO_TRAIN_IMAGES / COCO_BATCH)
lengths = {coco_run: (coco_per_epoch, COCO_EPOCHS, None)}
for name, recipe in recipes.items():
    per_epoch = math.ceil(steps(recipe)[1] / recipe.batch_size)
    lengths[name] = (per_epoch, recipe.epochs, recipe)
warmups = {}
print(f"{'run':<32} {'iterations':>10} {'official warm-up':>18}",
      f"{'this book':>16}")
for name, (per_epoch, epochs, recipe) in lengths.items():
    total, official = per_epoch * epochs, official_warmup(per_epoch)
    if recipe is None:
        used = default_warmup(per_epoch, epochs)
    else:
        used = LRSchedule(recipe, per_epoch).warmup_iters
    warmups[name] = (total, official, used)
    print(f"{name:<32} {total:>10,} {official:>9,} ({official / total:6.1%})",
          f"{used:>7,} ({used / total:6.1%})")
coco_total, coco_official, _ = warmups[coco_run]

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("coco_warmup", coco_official, display=False)
glue("coco_warmup_share", 100 * coco_official / coco_total, display=False)
glue("tutorial_iters", warmups["tutorial"][0], display=False)
glue("tutorial_warmup", warmups["tutorial"][1], display=False)
glue("cpu_iters", warmups["cpu"][0], display=False)
glue("cpu_official_warmup", warmups["cpu"][1], display=False)
glue("cpu_warmup", warmups["cpu"][2], display=False)
glue("best_warmup", recipes["best"].warmup_iters, display=False)

# %% [markdown]
# On COCO the rule's {glue}`coco_warmup` iterations are {glue:text}`coco_warmup_share:.1f`% of the run: a short ramp
# at the start. On Penn-Fudan the other bound, one epoch, decides instead. The official tutorial warms up for
# {glue}`tutorial_warmup` of its {glue}`tutorial_iters` iterations, its whole first epoch; a one-epoch run would
# spend all but its last iteration warming up: {glue}`cpu_official_warmup` of the `cpu` run's {glue}`cpu_iters`, so
# that it would train almost entirely below its learning rate. What the warm-up guards against, the first large
# gradients of the new heads, lasts a number of steps, not a share of the run. So this book keeps the official rule
# and adds one bound ({py:func}`pedseg_lib.engine.default_warmup`): the warm-up never takes more than half of a run,
# about the share the official tutorial itself spends. That changes nothing for a run of two epochs or more, whose
# first epoch is at most half of it, so `tutorial` keeps the official {glue}`tutorial_warmup` iterations; it
# shortens the warm-up of a one-epoch run, so the `cpu` run warms up for {glue}`cpu_warmup` of its {glue}`cpu_iters`
# iterations and trains the rest at its full rate. `best` sets its own, {glue}`best_warmup` iterations
# (`warmup_iters`), and `warmup_iters=N` overrides the rule in any recipe.
#
# {py:class}`pedseg_lib.engine.LRSchedule` computes the factor for every iteration. Here it is for the run this
# profile trains below, and for `tutorial` and `best` on the real Penn-Fudan training split:

# %%
import matplotlib.pyplot as plt

n_train = len(split["train"])
profile_train = min(n_train, cfg.max_train_images or n_train)
run_name = f"this profile's run ({cfg.preset})"
panels = {run_name: (cfg, math.ceil(profile_train / cfg.batch_size))}
for name in ("tutorial", "best"):
    panels[name] = (recipes[name], lengths[name][0])
fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.4))
for ax, (name, (recipe, per_epoch)) in zip(axes, panels.items(), strict=True):
    schedule = LRSchedule(recipe, per_epoch)
    its = range(recipe.epochs * per_epoch)
    marker = "." if len(its) <= 50 else None
    ax.plot(its, [recipe.lr * schedule(i) for i in its], marker=marker)
    ax.axvline(schedule.warmup_iters, color="grey", ls="--", lw=1,
               label="end of warm-up")
    ax.set(title=f"{name}: {recipe.scheduler}, {recipe.epochs} epoch(s)",
           xlabel="iteration", ylabel="lr")
    ax.legend()
    print(f"{name}: {per_epoch} iterations per epoch, peak lr {recipe.lr}")
    print(f"  warm-up {schedule.warmup_iters} of {recipe.epochs * per_epoch}",
          "iterations")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Why batches of two
#
# Detection models are trained on large images (the shorter side resized to `min_size`, 800 pixels in
# `tutorial`) and keep many intermediate feature maps for the backward pass, so memory grows quickly with the
# batch; the official tutorial uses batches of two. Small batches are a problem for ordinary {term}`BatchNorm`,
# which normalises with the statistics of the batch in train mode: two images give noisy statistics. v1 with
# pretrained weights (the `tutorial` and `cpu` recipes) avoids it: torchvision builds its backbone with
# {term}`FrozenBatchNorm` (`FrozenBatchNorm2d`), whose statistics come from COCO and do not depend on the
# batch. That is **not** true of every recipe: the `best` preset's v2 model has ordinary, trainable
# `BatchNorm2d` layers (in the backbone, the {term}`FPN` and the heads) and trains with batches of four. The model this
# profile trains, and the `best` preset's, counted:

# %%
from collections import Counter

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pedseg_lib.model import build_untrained


def norm_layers(recipe):
    """Batch-norm layers of the exact model a recipe trains, built offline."""
    built = build_untrained(
        variant=recipe.variant, weights=recipe.weights,
        trainable_backbone_layers=recipe.trainable_backbone_layers,
    )
    norms = (nn.BatchNorm2d, FrozenBatchNorm2d)
    kinds = Counter(type(m).__name__ for m in built.modules()
                    if isinstance(m, norms))
    trainable = sum(1 for m in built.modules()
                    if type(m) is nn.BatchNorm2d and m.weight.requires_grad)
    return kinds["FrozenBatchNorm2d"], kinds["BatchNorm2d"], trainable


best_recipe = load_preset("best")
shown = {"this profile: " + cfg.preset: cfg, "best": best_recipe}
counts, columns = {}, {}
for label, recipe in shown.items():
    counts[label] = norm_layers(recipe)
    frozen, ordinary, trainable = counts[label]
    columns[label] = {
        "variant": recipe.variant, "weights": recipe.weights,
        "batch": recipe.batch_size, "lr": recipe.lr,
        "FrozenBatchNorm2d": frozen, "BatchNorm2d": ordinary,
        "trainable BatchNorm2d": trainable,
    }
print(f"{'':<21}" + "".join(f"{label:>24}" for label in columns))
for row in columns["best"]:
    cells = "".join(f"{column[row]!s:>24}" for column in columns.values())
    print(f"{row:<21}{cells}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("profile_frozen_bn", counts["this profile: " + cfg.preset][0],
     display=False)
glue("profile_bn", counts["this profile: " + cfg.preset][1], display=False)
glue("best_bn", counts["best"][1], display=False)
glue("best_trainable_bn", counts["best"][2], display=False)
glue("best_batch", best_recipe.batch_size, display=False)
glue("best_lr_ratio", best_recipe.lr / tutorial_recipe.lr, display=False)
glue("best_batch_ratio", best_recipe.batch_size / tutorial_recipe.batch_size,
     display=False)

# %% [markdown]
# The model this page trains has {glue}`profile_frozen_bn` `FrozenBatchNorm2d` and {glue}`profile_bn` ordinary
# `BatchNorm2d` layers (a smoke run starts from random weights, so torchvision gives it ordinary batch norm);
# the `best` preset's v2 has {glue}`best_bn` `BatchNorm2d` layers, {glue}`best_trainable_bn` of them with
# trainable weights, normalising batches of {glue}`best_batch` images. The learning rate goes with the batch
# size (the "linear scaling rule"): `best` multiplies the batch by {glue:text}`best_batch_ratio:.0f` and the
# rate by {glue:text}`best_lr_ratio:.0f`.

# %% [markdown]
# ## The loop
#
# Training is a short loop. The model in train mode takes images *and* targets and returns its five losses;
# their sum is back-propagated and an {term}`SGD` step (with {term}`momentum` and {term}`weight decay`) moves
# the trainable parameters. Here it is, written out, for two steps on the first training images of this
# profile's run (one image per step, to keep this cheap; the recipe's batches hold `batch_size` images),
# starting from the model the recipe builds. Warm-up is left out, so the rate is constant; it is the rate the
# recipe's warm-up starts from, `lr * warmup_factor`, so that two steps from a fresh predictor stay gentle.

# %%
import copy

import torch

from pedseg_lib import data
from pedseg_lib.model import build_model

# a few seconds per step in the cpu profile: enough to compare, not to learn
STEPS, BATCH = 2, 1
device = torch.device(profile.device)
train_images = data.PennFudanDataset(
    cfg.data_root, transforms=data.build_transforms(True, hflip=cfg.hflip)
)
torch.manual_seed(cfg.seed)  # the random flips
subset = torch.utils.data.Subset(train_images, split["train"][: STEPS * BATCH])
# the same batches for both loops
batches = list(data.create_loader(subset, BATCH, shuffle=False))
lr = cfg.lr * cfg.warmup_factor


def recipe_model():
    torch.manual_seed(cfg.seed)
    return build_model(
        variant=cfg.variant, weights=cfg.weights,
        min_size=cfg.min_size, max_size=cfg.max_size,
        trainable_backbone_layers=cfg.trainable_backbone_layers,
    ).to(device)


model = recipe_model()
start = copy.deepcopy(model.state_dict())  # for the library's loop below
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)

torch.manual_seed(1)  # the RPN and the box head sample proposals at random
model.train()
logged = []
for images, targets in batches:
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v
                for k, v in t.items()} for t in targets]
    loss_dict = model(images, targets)  # five losses
    loss = sum(loss_dict.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    logged.append({k: v.item() for k, v in {"loss": loss, **loss_dict}.items()})
print(f"{'step':<17}" + "".join(f"{s:>10}" for s in range(1, len(logged) + 1)))
for key in logged[0]:
    print(f"{key:<17}" + "".join(f"{row[key]:>10.4f}" for row in logged))

# %% [markdown]
# {py:func}`pedseg_lib.engine.train_one_epoch` is the library's version of that loop. From the same start
# (the state copied above), with the same batches, the same random seed, the same optimiser
# ({py:func}`pedseg_lib.engine.build_optimizer` builds it from the config) and with no schedule, no gradient
# clipping and no `amp` autocast, it must log the same losses and end with the same weights. The assert
# allows for rounding (`torch.testing.assert_close`'s float32 tolerances), since a GPU may sum in another order:

# %%
import dataclasses

library_model = recipe_model()
library_model.load_state_dict(start)
library_cfg = dataclasses.replace(cfg, lr=lr)
library_optimizer = engine.build_optimizer(library_model, library_cfg)
torch.manual_seed(1)
records = engine.train_one_epoch(
    library_model, library_optimizer, batches, device, epoch=1,
    scheduler=None, scaler=None, clip_grad_norm=None, amp=False,
)
keys = list(logged[0])
torch.testing.assert_close([[r[k] for k in keys] for r in records],
                           [[r[k] for k in keys] for r in logged])
pairs = list(zip(model.state_dict().values(),
                 library_model.state_dict().values(), strict=True))
for ours, theirs in pairs:
    torch.testing.assert_close(ours, theirs)
largest = max((a.float() - b.float()).abs().max().item() for a, b in pairs)
print("same losses at every step and same weights after",
      f"{len(records)} steps")
print(f"largest difference: {largest:.2g}")
# free the memory before the real run
del model, library_model, optimizer, library_optimizer, start, pairs

# %% [markdown]
# What `train_one_epoch` adds to those few lines, and why:
#
# - **Warm-up and schedule.** It steps a learning-rate scheduler after every iteration (the `LRSchedule` above),
#   and logs the rate each step used.
# - **{term}`Gradient clipping <gradient clipping>`.** With `clip_grad_norm`, the global gradient norm is capped
#   before the step, so one bad batch cannot throw the weights far (the `best` and `smoke` presets use it).
# - **A check for NaN and infinity.** A non-finite loss stops the run with a
#   {py:class}`pedseg_lib.errors.NonFiniteLossError` naming the epoch, the iteration and the batch's images,
#   raised *before* `optimizer.step()`, so the weights (and `last.pt`) stay finite.
# - **{term}`AMP`.** With `amp`, the forward pass runs under `torch.autocast`: float16 with a
#   `GradScaler` on CUDA (the scaler multiplies the loss so that small float16 gradients do not round to zero,
#   and unscales them before clipping), bfloat16 on the CPU, which has float32's range and needs no scaler.
# - **Several processes.** Under `torchrun` the model is wrapped in `DistributedDataParallel` by `fit`, and the
#   logged losses are averaged over the processes, so that every process sees the same numbers and a NaN on
#   one stops them all.
# - **Records and a progress bar.** One record per iteration (epoch, iteration, learning rate, the loss and its
#   five terms) for the history and the curves, and a tqdm bar with the running loss and the time left.
#
# {py:func}`pedseg_lib.engine.fit` wraps it: it seeds Python, NumPy and PyTorch, makes the seeded split and the
# data loaders (with {term}`data augmentation`: random flips, and colour changes in `best`), builds the model and optimiser, and after every
# epoch measures the validation loss ({py:func}`pedseg_lib.engine.evaluate_loss`) and the validation COCO AP,
# writes the history and the checkpoints, and decides whether to stop early.
#
# ## Train
#
# The progress bar shows the epoch, the running loss, the mask loss, the learning rate and the time left.

# %%
result = engine.fit(cfg, progress=True)
history = result.history

# %% [markdown]
# The first iteration's losses are measured before any learning. The official tutorial prints its own first
# iteration (COCO weights, new predictors, 800 pixels, batch 2); the cell puts it next to this run's:

# %%
# From the output printed on the official tutorial's page (TorchVision Object
# Detection Finetuning Tutorial, updated 2025-09-05), "Epoch: [0]  [ 0/60]":
# https://pytorch.org/tutorials/intermediate/torchvision_tutorial.html
OFFICIAL_FIRST = {"loss_classifier": 0.6642, "loss_box_reg": 0.4568,
                  "loss_mask": 1.8924, "loss_objectness": 0.0133,
                  "loss_rpn_box_reg": 0.0126}
first = history["iterations"][0]
print(f"{'loss':<18} {'this run':>9} {'official':>9}")
for key, official in OFFICIAL_FIRST.items():
    print(f"{key:<18} {first[key]:>9.4f} {official:>9.4f}")
print(f"ln 2 = {math.log(2):.4f}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("ln2", math.log(2), display=False)
glue("official_classifier", OFFICIAL_FIRST["loss_classifier"], display=False)
glue("official_mask", OFFICIAL_FIRST["loss_mask"], display=False)
glue("first_classifier", first["loss_classifier"], display=False)
glue("first_mask", first["loss_mask"], display=False)

# %% [markdown]
# A classifier that cannot yet tell pedestrian from background is a coin flip, with a cross-entropy of
# ln 2 = {glue:text}`ln2:.3f`; the tutorial's first `loss_classifier` is close to it
# ({glue:text}`official_classifier:.2f`). The mask loss is **not**: the tutorial's first `loss_mask` is
# {glue:text}`official_mask:.2f`, far above ln 2. A per-pixel binary cross-entropy is ln 2 only when the logits
# are near zero, and the new ones are not: `MaskRCNNPredictor` initialises its weights Kaiming-normal with
# `mode="fan_out"`, which for the final 1x1 convolution (2 output channels) means weights of standard deviation
# 1 over 256 input channels, so the first logits are large, and a confidently wrong pixel costs far more than
# ln 2. This run's first iteration gave {glue:text}`first_classifier:.2f` and {glue:text}`first_mask:.2f`; in
# smoke the whole model is random and tiny, so these prove only that the code runs.

# %% [markdown]
# ## Reading the curves
#
# Each loss term per iteration (log scale, smoothed over a few iterations):

# %%
from pedseg_lib.visualize import (
    plot_epoch_metrics,
    plot_loss_components,
    plot_lr,
)

plot_loss_components(history, smooth=min(5, len(history["iterations"])))
plt.show()

# %% [markdown]
# Per epoch: training loss against validation loss (a widening gap means {term}`overfitting`), and the validation AP,
# the number that matters (chapter 5 explains it). The validation loss is computed with the model in train mode
# (the only mode in which torchvision returns losses) under `torch.no_grad()`, with batch-norm statistics frozen,
# so measuring it changes nothing.

# %%
plot_epoch_metrics(history)
plt.show()
print(f"{'epoch':>5} {'train loss':>11} {'val loss':>9} {'box AP':>7}",
      f"{'mask AP':>8} {'seconds':>8}")
for row in history["epochs"]:
    print(f"{row['epoch']:>5} {row['train_loss']:>11.3f}",
          f"{row['val_loss']:>9.3f} {row['bbox_AP']:>7.3f}",
          f"{row['segm_AP']:>8.3f} {row['seconds']:>8.1f}")

# %% [markdown]
# And the learning rate the run actually used, iteration by iteration (the warm-up is the ramp at the start):

# %%
plot_lr(history)
plt.show()

# %% [markdown]
# ## The run folder
#
# Everything about the run is on disk, so nothing is lost when the notebook restarts:
#
# - `config.yaml`: the exact config (load it with {py:func}`pedseg_lib.config.load_config`);
# - `last.pt`: model, optimiser, schedule, gradient scaler, random-number states, history and early-stopping
#   counter after the last finished epoch: everything needed to continue;
# - `best.pt`: the model the run hands on: the epoch with the best validation mask AP (ties go to the lower
#   validation loss), or the last epoch when the run keeps no validation images (`tutorial`);
# - `split.json`: the dataset indices of the training, validation and test images;
# - `history.json`, `history_iterations.csv`, `history_epochs.csv`: the numbers behind the curves above.
#
# Checkpoints are written atomically (to a temporary file, then renamed), so an interruption never leaves a
# half-written `last.pt`.

# %%
for path in sorted(Path(result.run_dir).iterdir()):
    print(f"{path.name:<24} {path.stat().st_size / 1e6:8.2f} MB")

# %% [markdown]
# ## How the run ended
#
# The engine records why it stopped. With `patience` set (the `best` preset), it stops once the validation
# mask AP has not improved for that many epochs in a row, and `best.pt` keeps the best epoch either way:

# %%
status = history["status"]
print(status["reason"])
print(f"best epoch: {result.best_epoch}")
print(f"stopped early: {result.stopped_early}, patience: {status['patience']}")

# %% [markdown]
# ## Resuming
#
# `fit(cfg, resume=True)` (or `pedseg resume RUN_DIR` on the command line) restores everything from `last.pt`
# and continues with the next epoch. On the CPU a resumed run ends with the same weights and the same losses and
# learning rates at every iteration, to the bit, as one that was never interrupted, with any number of loader
# workers (the test suite checks this with 0 and 2; only the time each epoch took differs).
# That needs more than saving the random-number states: the loader's worker processes make their random flips
# with generators of their own, and a fresh loader, as a resumed run builds, would draw another order and other
# flips. So the order of each epoch comes from the run's seed and the epoch, and each image is loaded with a seed
# made from the seed, the epoch and the image ({py:class}`pedseg_lib.data.EpochSampler` and
# {py:class}`pedseg_lib.data.SeededDataset`), whichever worker loads it and whatever it loaded before. On a GPU
# the same state is restored, but the result is not bit-exact: some CUDA kernels (the backward pass of
# torchvision's `roi_align` among them) add their terms in an order that varies from run to run, so even two
# uninterrupted GPU runs drift apart in the last digits.
# Resuming a finished run does nothing more:

# %%
again = engine.fit(cfg, resume=True, progress=False)
n_before, n_after = len(history["epochs"]), len(again.history["epochs"])
print(f"epochs in history before: {n_before}, after resuming: {n_after}")
print("same history:", again.history["iterations"] == history["iterations"])

# %% [markdown]
# To train *longer*, resume with more epochs: `pedseg resume runs/<preset> --set epochs=4` continues from the
# last epoch with the schedule recomputed for the new length.
#
# ## From the command line
#
# The same engine runs from a terminal; the `pedseg` command is installed with the library:
#
# ```bash
# pedseg download                      # Penn-Fudan into ./data (checksums verified)
# pedseg train --preset cpu            # writes runs/cpu/
# pedseg train --preset tutorial --set epochs=4 --set lr=0.01 --out runs/longer
# pedseg resume runs/longer            # continue after an interruption
# ```
#
# Every option, from the command itself (a shell command run with this notebook's own Python):

# %%
# !{sys.executable} -m pedseg_lib train --help

# %% [markdown]
# ## On several GPUs
#
# Launched by `torchrun`, the same command trains with `DistributedDataParallel`: each process takes its share
# of every epoch (a `DistributedSampler`), the logged losses are averaged over the processes, the validation AP
# is computed once from the predictions of all of them, and only the first process prints, shows progress and
# writes the run folder:
#
# ```bash
# torchrun --nproc_per_node=4 -m pedseg_lib train --preset best --set lr=0.04
# ```
#
# The effective batch is `batch_size` times the number of processes, so scale the learning rate with it: each of
# the 4 processes takes `best`'s batch of 4 images, an effective batch of 16, four times `best`'s own, so the
# linear scaling rule multiplies `best`'s learning rate (0.01) by 4.

# %% [markdown]
# ## Check yourself
#
# :::{dropdown} Why does the loop call `optimizer.zero_grad()` at every step?
# Because `loss.backward()` adds to the `.grad` of every parameter instead of overwriting it. Without the reset,
# each step would use the sum of the gradients of all the batches so far.
# :::
#
# :::{dropdown} Both loops were started with `torch.manual_seed(1)`. Why is that needed for them to agree?
# In train mode the RPN and the box head draw a random sample of proposals (positives and negatives) for their
# losses at every step. With another seed they would draw other proposals and log other losses, although
# both loops are the same code.
# :::
#
# :::{dropdown} Why does the first classifier loss start near ln 2, but the first mask loss far above it?
# A two-class cross-entropy is ln 2 when the prediction is a coin flip, that is, when the logits are close to
# each other. The new box predictor's logits start small, but `MaskRCNNPredictor`'s Kaiming-normal
# initialisation gives the mask logits a large spread, so many pixels start confidently wrong, and each of
# them costs much more than ln 2.
# :::
#
# :::{dropdown} Is batch norm frozen in every recipe of this book?
# No. v1 with pretrained weights (`tutorial`, `cpu`) has `FrozenBatchNorm2d` in its backbone, whose statistics
# never change. A random model (smoke) and the v2 model of the `best` preset have ordinary `BatchNorm2d`, which
# normalises with the statistics of each training batch (four images in `best`) and keeps updating its running
# statistics in train mode.
# :::
#
# :::{dropdown} Why does `train_one_epoch` check the loss for NaN *before* `optimizer.step()`?
# A NaN loss gives NaN gradients, and one step with them makes every updated weight NaN. Raising
# `NonFiniteLossError` before the step keeps the weights finite, so `last.pt` from the previous epoch is a
# good point to resume from with a lower learning rate, more warm-up or gradient clipping.
# :::
#
# ## Summary
#
# - The training loop is about fifteen lines: forward with targets, sum the five losses, zero the gradients,
#   backward, step. `train_one_epoch` gives the same numbers from the same start, and adds warm-up and
#   schedule, gradient clipping, a NaN check, AMP, multi-process averaging and logging.
# - A run is a {py:class}`~pedseg_lib.config.TrainConfig`: presets for the official recipe, a stronger GPU recipe,
#   a CPU recipe and a smoke test; change any key with `--set key=value` or a YAML file.
# - Mask R-CNN minimises five losses: two for the proposal network, two for the box head, one for the masks.
# - Linear warm-up keeps the first steps stable; a step or cosine schedule lowers the rate later.
# - Batch norm is frozen only in v1 with pretrained weights; `best`'s v2 trains ordinary batch norm.
# - `fit` validates every epoch (loss and COCO AP), keeps `last.pt` and `best.pt`, writes the history, resumes
#   exactly (to the bit on the CPU, with any number of loader workers) and stops early on a plateau; a NaN loss
#   stops the run and names the images of the batch.
# - The same engine runs from the `pedseg` command and on several GPUs with `torchrun`.
#
# ## Exercises
#
# 1. **No warm-up, a high rate.** *Needs: CPU, about 10 minutes in the `cpu` profile.* Train with
#    `warmup_iters=0` and `lr=0.02`. What happens to the first iterations' losses? Does the engine stop, and
#    which images does it name?
#
#    :::{dropdown} Hint
#    Change the two keys with {py:func}`pedseg_lib.config.apply_overrides`, give the run its own `output_dir`, and
#    catch {py:class}`pedseg_lib.errors.NonFiniteLossError`: its `image_ids`, `losses` and `iteration` say
#    where it happened.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.config import apply_overrides
#    from pedseg_lib.errors import NonFiniteLossError
#
#    hot = apply_overrides(cfg, ["warmup_iters=0", "lr=0.02",
#                                f"output_dir={Path(cfg.output_dir).parent / 'no_warmup'}"])
#    try:
#        run = engine.fit(hot, progress=False)
#        for row in run.history["iterations"][:5]:
#            print(row["iteration"], f"loss {row['loss']:.3f}", f"mask {row['loss_mask']:.3f}")
#    except NonFiniteLossError as error:
#        print(f"stopped at iteration {error.iteration} on images {error.image_ids}: {error.losses}")
#    ```
#    Compare the first iterations with this page's run: without warm-up the new predictors take full-size steps
#    at once, and the losses jump before they fall, or turn into NaN. If the engine stops, it names the
#    dataset indices of the batch, and `last.pt` holds no broken weights.
#    :::
#
# 2. **Interrupt and resume.** *Needs: CPU, about 30 minutes (two 3-epoch runs of the `cpu` preset, in any profile).* Train
#    the `cpu` preset with `epochs=3`, stop it after its first epoch, resume it, and compare it with an
#    uninterrupted run.
#
#    :::{dropdown} Hint
#    `fit`'s `on_epoch_end` callback stops the run when it returns True, as an interruption would;
#    `engine.fit(cfg, resume=True)` continues from `last.pt`.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.config import apply_overrides
#    from pedseg_lib.profiles import get_profile
#
#    cpu_cfg = config_for_profile(get_profile("cpu"))  # the cpu preset, on the CPU even where there is a GPU
#    runs = Path(cpu_cfg.output_dir).parent
#    interrupted = apply_overrides(cpu_cfg, ["epochs=3", "device=cpu", f"output_dir={runs / 'interrupted'}"])
#    engine.fit(interrupted, progress=False, on_epoch_end=lambda row: row["epoch"] == 1)
#    resumed = engine.fit(interrupted, resume=True, progress=False)
#    straight = engine.fit(apply_overrides(interrupted, [f"output_dir={runs / 'straight'}"]), progress=False)
#    print("same iterations:", resumed.history["iterations"] == straight.history["iterations"])
#    ```
#    It prints `True`: the iteration records (losses and learning rates) are the same. `last.pt` holds the model,
#    the optimiser, the schedule and the random-number states, and the data order and every image's flip come
#    from the seed, the epoch and the image, not from the loader's two worker processes. Only the `seconds`
#    column of the epoch rows differs. The solution trains on the CPU on purpose: on a GPU, nondeterministic
#    CUDA kernels make even two uninterrupted runs differ slightly, so the comparison would print `False` there
#    for a reason that has nothing to do with resuming.
#    :::
#
# 3. **Early stopping.** *Needs: a GPU, about 30 minutes.* Run the `best` preset with `patience=2` and read
#    `history["status"]`. Which epoch did `best.pt` keep?
#
#    :::{dropdown} Hint
#    {py:func}`pedseg_lib.config.config_for_profile` with the `best` profile gives the preset with data and run
#    folder filled in; `fit` returns `best_epoch` and `stopped_early`.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.config import apply_overrides
#    from pedseg_lib.profiles import get_profile
#
#    best_cfg = apply_overrides(config_for_profile(get_profile("best")), ["patience=2"])
#    run = engine.fit(best_cfg)
#    print(run.history["status"]["reason"])
#    print("best epoch:", run.best_epoch, "stopped early:", run.stopped_early)
#    ```
#    With `patience=2` the run stops once the validation mask AP has not improved for two epochs in a row;
#    `best.pt` is the best epoch before that, which is not the last one when the run stopped early.
#    :::
#
# 4. **What the `cpu` recipe gives up.** *Needs: a GPU, about 30 minutes.* Train `cpu` with
#    `min_size=800, max_size=1333`, then with `max_train_images=null`, then with `epochs=2`, and compare the
#    validation mask AP of each with the `cpu` run's. Which change costs most?
#
#    :::{dropdown} Hint
#    Change one key at a time from `load_preset("cpu")` (with `config_for_profile(get_profile("cpu"))` the data
#    and run folder are filled in; on a GPU machine `device=auto` trains on the GPU), and give each run its own
#    `output_dir`.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.config import apply_overrides
#    from pedseg_lib.profiles import get_profile
#
#    cpu_cfg = config_for_profile(get_profile("cpu"))
#    changes = {"cpu": [], "800px": ["min_size=800", "max_size=1333"], "all_images": ["max_train_images=null"],
#               "2_epochs": ["epochs=2"]}
#    for name, change in changes.items():
#        run_cfg = apply_overrides(cpu_cfg, [*change, f"output_dir={Path(cpu_cfg.output_dir).parent / name}"])
#        epochs = engine.fit(run_cfg, progress=False).history["epochs"]
#        print(f"{name:<11} best validation mask AP {max(row['segm_AP'] for row in epochs):.3f}")
#    ```
#    Every variant keeps the same validation images, so their AP values are comparable; with so few validation images
#    differences of a point or two are noise (repeat with another `seed`). The page argued that fewer images
#    and epochs cost most; this measures it.
#    :::

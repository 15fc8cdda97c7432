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
# - Know which two modules of the COCO model are replaced for pedestrians, and why only those.
# - Read a parameter table: what is pretrained, what is new, what is trainable.
# - Understand what `trainable_backbone_layers` freezes, and why torchvision freezes batch norm.
# - Measure what pretraining buys: the same short budget from COCO weights, ImageNet-only weights and scratch.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 1 minute (three tiny random-weight runs) |
# | cpu | about 3 minutes: three runs of 16 images, 1 epoch, 320 px (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | about 10 minutes on a GPU: three runs of 2 epochs (estimate) |

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
# ## Two modules change, everything else is reused
#
# torchvision's COCO Mask R-CNN ends in two small **predictors**: the box predictor (a linear layer giving a
# score and a box correction per class) and the mask predictor (a transposed convolution and a 1x1 convolution
# giving one 28x28 mask per class). Their output size is the number of classes, 91 for COCO. Pedestrians need 2
# (background and person), so exactly these two are replaced with freshly initialised ones; the backbone,
# FPN, RPN and both heads keep what they learnt on COCO. This is the official tutorial's recipe, and
# {py:func}`pedseg_lib.model.build_model` does it in a few lines:

# %%
import inspect

from pedseg_lib import model as M

print(inspect.getsource(M._replace_predictors))

# %% [markdown]
# The shapes before and after. The structure below is built with
# {py:func}`pedseg_lib.model.build_untrained`, which gives the exact architecture of
# `build_model(weights="coco")` (frozen layers included) without downloading anything.

# %%
import torch

torch.manual_seed(0)
coco_like = M.build_untrained(num_classes=M.COCO_CLASSES, weights="coco")
ours = M.build_untrained(num_classes=2, weights="coco")
for name in ("box_predictor", "mask_predictor"):
    print(f"COCO {name}:", getattr(coco_like.roi_heads, name))
    print(f"ours {name}:", getattr(ours.roi_heads, name))

# %% [markdown]
# ## The parameter table
#
# {py:func}`pedseg_lib.model.describe_model` counts the parameters of each part, how many are trainable and
# where their values come from. Almost all parameters are reused; the new predictors are about one percent.

# %%
desc = M.describe_model(ours)
new = sum(r.parameters for r in desc.rows if r.source.startswith("new"))
print(f"new parameters: {new:,} of {desc.total:,} ({100 * new / desc.total:.2f}%)")
desc

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(9, 3.2))
names = [r.part for r in desc.rows]
ax.barh(names, [r.parameters for r in desc.rows], color="#999999", label="frozen")
ax.barh(names, [r.trainable for r in desc.rows], color="#0072B2", label="trainable")
for i, r in enumerate(desc.rows):
    ax.text(r.parameters, i, f" {r.source}", va="center", fontsize=8)
ax.set(xscale="symlog", xlabel="parameters (log scale)", title="build_model(weights='coco'): parameters per part")
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
# Batch norm is frozen everywhere in v1's backbone: torchvision swaps every `BatchNorm2d` for
# `FrozenBatchNorm2d`, fixed statistics and scale, because batches of two images give useless batch statistics.
# Without pretrained weights (`weights=None`) torchvision ignores `trainable_backbone_layers`: all five
# stages train and batch norm is ordinary `BatchNorm2d`.

# %%
from collections import Counter

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

print(f"{'weights':8s} {'layers':>6s} {'trainable backbone params':>26s} {'FrozenBatchNorm2d':>18s} {'BatchNorm2d':>12s}")
trainable_by_layers = {}
for weights, layers in [("coco", n) for n in range(6)] + [(None, 3)]:
    model = M.build_untrained(weights=weights, trainable_backbone_layers=layers, min_size=320)
    body = model.backbone.body
    kinds = Counter(type(m).__name__ for m in body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)))
    trainable = sum(p.numel() for p in body.parameters() if p.requires_grad)
    if weights:
        trainable_by_layers[layers] = trainable
    print(f"{str(weights):8s} {layers:6d} {trainable:26,d} {kinds['FrozenBatchNorm2d']:18d} {kinds['BatchNorm2d']:12d}")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([str(k) for k in trainable_by_layers], [v / 1e6 for v in trainable_by_layers.values()], color="#0072B2")
ax.set(xlabel="trainable_backbone_layers", ylabel="trainable backbone parameters (M)",
       title="Unfreezing ResNet-50 stages from the last one")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The experiment: what does pretraining buy?
#
# Three runs with the same data, the same budget and the same recipe, differing only in where the weights come
# from: COCO (the whole detector), ImageNet (the ResNet-50 backbone only; FPN, RPN and heads start random) and
# scratch (everything random). Each is an ordinary {py:func}`pedseg_lib.engine.fit` run of the profile's
# preset ({py:func}`pedseg_lib.config.config_for_profile`) with a shortened budget.

# %%
import dataclasses
from pathlib import Path

from pedseg_lib.config import apply_overrides, config_for_profile

# The profile's budget for the three runs. On a CPU each arm sees 16 training images at 320 px, so that the
# three runs together take a few minutes on 2 cores (the scratch arm trains every layer and is the slowest).
budgets = {
    "smoke": ["epochs=1", "max_train_images=8", "max_val_images=4", "min_size=160", "max_size=256"],
    "cpu": ["epochs=1", "max_train_images=16", "max_val_images=10", "min_size=320", "max_size=544"],
}
base = apply_overrides(config_for_profile(profile), budgets.get(profile.name, []))
arms = {}
for label, weights in [("COCO", "coco"), ("ImageNet backbone", "imagenet"), ("scratch", None)]:
    actual = profile.weights(weights)
    name = label if actual == weights else f"{label} -> random (smoke)"
    out = Path(base.output_dir).parent / f"transfer_{weights or 'scratch'}"
    arms[name] = dataclasses.replace(base, weights=actual, output_dir=str(out))
print("budget:", base.epochs, "epoch(s) |", base.max_train_images or "all", "train images |",
      base.max_val_images or "all", "validation images |", f"min_size {base.min_size}")
for name, cfg in arms.items():
    print(f"{name:35s} weights={cfg.weights!s:9s} -> {cfg.output_dir}")
if profile.is_smoke:
    print("SMOKE: no pretrained weights can be had, so ALL THREE ARMS START FROM RANDOM WEIGHTS; "
          "their differences below are noise.")

# %%
from pedseg_lib import engine
from pedseg_lib.errors import NonFiniteLossError

histories, done = {}, {}
for name, cfg in arms.items():
    # Arms whose configurations are identical (in smoke: all random) are trained once and shared.
    key = repr({k: v for k, v in cfg.to_dict().items() if k != "output_dir"})
    if key in done:
        print(f"{name}: same configuration as {done[key][0]!r}, so the same run")
    else:
        try:
            done[key] = (name, engine.fit(cfg, progress=False).history)
        except NonFiniteLossError as error:  # random heads at the fine-tuning learning rate can diverge
            print(f"{name:35s} DIVERGED: {error}")
            continue
    histories[name] = done[key][1]
    last = histories[name]["epochs"][-1]
    print(f"{name:35s} train loss {last['train_loss']:.3f} | val loss {last['val_loss']:.3f} | "
          f"mask AP {last['segm_AP']:.3f} | box AP {last['bbox_AP']:.3f} | {last['seconds']:.0f} s")

# %% [markdown]
# The curves side by side: training loss per iteration (left) and validation mask AP per epoch (right).
# With real weights, expect the COCO run to start with a far lower loss and reach a useful mask AP within the
# budget, the ImageNet run to learn more slowly, and the scratch run to achieve little in so short a time.
# An arm whose loss turns into NaN or infinity is stopped by the engine ({py:class}`pedseg_lib.errors.NonFiniteLossError`),
# reported as diverged above and left out of the curves: new, randomly initialised layers at the fine-tuning learning
# rate can do that, which is itself a result (more warm-up, a lower rate or gradient clipping would be the cure).
# In the smoke profile all three are random starts on a few tiny images, so the picture means nothing.

# %%
from pedseg_lib.visualize import compare_runs

fig = compare_runs(histories, metric="segm_AP")
if profile.is_smoke:
    fig.suptitle("SMOKE: all three arms are random-weight runs - meaningless", color="#D55E00")
    fig.tight_layout()
plt.show()

# %%
fig = compare_runs(histories, metric="val_loss")
plt.show()

# %% [markdown]
# ## Summary
#
# - Fine-tuning replaces only the two class-sized predictors; the rest of the COCO detector is reused.
# - `describe_model` shows the new parameters are a tiny fraction of the model.
# - `trainable_backbone_layers` freezes early ResNet stages; v1's backbone uses `FrozenBatchNorm2d` whenever
#   weights are pretrained, and neither applies to a randomly initialised model.
# - Under the same short budget, the starting point matters: compare the three arms in a real profile.
#
# ## Exercises
#
# 1. Repeat the experiment with `trainable_backbone_layers=0` and `=5` for the COCO arm. Which is faster per
#    iteration, and which ends with the better mask AP?
# 2. Run the ImageNet arm for three times the budget. Does it catch up with COCO?
# 3. Build `variant="v2"` with `build_untrained` and count its batch-norm modules. Why does v2 not need
#    `FrozenBatchNorm2d`?

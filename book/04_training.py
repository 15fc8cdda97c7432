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
# - Read the training loop piece by piece and know what each of Mask R-CNN's five losses measures.
# - Understand the learning-rate warm-up, the schedule, and why the recipe uses batches of two images.
# - Train with a named recipe, follow the run live, and read its loss, validation and learning-rate curves.
# - Know what a run folder holds, how a run resumes and how early stopping decides.
# - Run the same training from the command line, and on several GPUs with `torchrun`.
#
# | Profile | Time to run |
# |---|---|
# | smoke | 1-2 minutes on 2 CPU cores |
# | cpu | about 4 minutes: 40 images, 1 epoch, 480 px (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | a few minutes on a Colab T4 GPU (estimate) |

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
# ## The recipe is a config
#
# Everything that decides a run lives in one dataclass, {py:class}`pedseg_lib.config.TrainConfig`, and the
# book names four recipes (presets). `tutorial` is the official PyTorch fine-tuning recipe unchanged; `best` is
# longer and stronger for a GPU; `cpu` fits a laptop; `smoke` finishes in seconds and learns nothing useful.
# The table compares the keys that differ.

# %%
from pedseg_lib.config import PRESETS, config_for_profile, load_preset

presets = {name: load_preset(name).to_dict() for name in PRESETS}
differing = [key for key in presets["tutorial"] if len({str(p[key]) for p in presets.values()}) > 1]
print(f"{'key':<20}" + "".join(f"{name:>14}" for name in PRESETS))
for key in differing:
    print(f"{key:<20}" + "".join(f"{str(presets[name][key]):>14}" for name in PRESETS))

# %% [markdown]
# The profile picks the preset, and {py:func}`pedseg_lib.config.config_for_profile` fills in where the data is
# and where the run is written (`runs/<preset>` in the project folder):

# %%
cfg = config_for_profile(profile)
print(f"preset {cfg.preset}: data from {cfg.data_root}")
print(f"run folder: {cfg.output_dir}")

# %% [markdown]
# ## Three sets of images: train, validation, test
#
# A run splits the data once, with a fixed seed, into three disjoint sets
# ({py:func}`pedseg_lib.engine.run_split`). The model learns from the **training** images. The **validation**
# images decide everything a run decides: which epoch is kept as `best.pt`, when to stop early, and (chapter 5)
# the score threshold. The **test** images decide nothing: nothing reads them until chapter 5 measures the
# final model on them, once. Choosing anything on the test images would make the reported test AP optimistic,
# because the choice would be tuned to exactly those images.
#
# The `tutorial` preset follows the official recipe: it trains on every non-test image, keeps no validation
# images (`val_size=0`), makes no selection, and its model is simply the last epoch. The other presets take
# `val_size` images out of the non-test images for validation. Every run writes its split to `split.json`.

# %%
from pedseg_lib import engine

split = engine.run_split(cfg)
for name in ("train", "val", "test"):
    print(f"{name:<5} {len(split[name]):>4} images, e.g. {split[name][:6]}")
print("disjoint:", not (set(split["train"]) & set(split["val"]) or set(split["train"]) & set(split["test"])
                        or set(split["val"]) & set(split["test"])))

# %% [markdown]
# ## The cpu recipe, and what it gives up
#
# The official recipe is sized for a GPU: on a laptop CPU, two epochs over every training image at 800 pixels
# take far longer than a reader wants to wait for a chapter. The `cpu` preset makes it fit a laptop or a free
# Colab runtime by changing a few values; the table computes what each change saves on Penn-Fudan's images:

# %%
import math
from pathlib import Path

from myst_nb import glue
from PIL import Image

tutorial_recipe, cpu_recipe = load_preset("tutorial"), load_preset("cpu")
short_sides = [min(Image.open(path).size) for path in sorted((Path(cfg.data_root) / "PNGImages").glob("*.png"))]
native_below = sum(side <= cpu_recipe.min_size for side in short_sides)
pixel_ratio = (cpu_recipe.min_size / tutorial_recipe.min_size) ** 2


PENNFUDAN_IMAGES = 170  # the size of the real dataset (chapter 1 counts it)


def steps(recipe):
    train = PENNFUDAN_IMAGES - recipe.test_size - recipe.val_size
    train = min(train, recipe.max_train_images or train)
    return recipe.epochs * math.ceil(train / recipe.batch_size), train


tutorial_steps, tutorial_train = steps(tutorial_recipe)
cpu_steps, cpu_train = steps(cpu_recipe)
print(f"{'change (tutorial -> cpu)':<34} {'tutorial':>10} {'cpu':>10}")
print(f"{'input size (shorter side, px)':<34} {tutorial_recipe.min_size:>10} {cpu_recipe.min_size:>10}")
print(f"{'pixels per image (relative)':<34} {1:>10.2f} {pixel_ratio:>10.2f}")
print(f"{'training images':<34} {tutorial_train:>10} {cpu_train:>10}")
print(f"{'epochs':<34} {tutorial_recipe.epochs:>10} {cpu_recipe.epochs:>10}")
print(f"{'training steps (batch 2)':<34} {tutorial_steps:>10} {cpu_steps:>10}")
print(f"{'validation images':<34} {tutorial_recipe.val_size:>10} {cpu_recipe.val_size:>10}")
print(f"images whose shorter side is at most {cpu_recipe.min_size} px: {native_below} of {len(short_sides)}")
glue("native_below", native_below, display=False)
glue("n_short_sides", len(short_sides), display=False)
glue("cpu_val", cpu_recipe.val_size, display=False)
glue("pixel_ratio", pixel_ratio, display=False)
glue("size_ratio", cpu_recipe.min_size / tutorial_recipe.min_size, display=False)
glue("step_ratio", tutorial_steps / cpu_steps, display=False)

# %% [markdown]
# What each change costs in accuracy, and why:
#
# - **Input size.** The model sees {glue:text}`pixel_ratio:.2f` times the pixels of the recipe, and a step costs about
#   that much less. Nothing of the photographs is lost: {glue}`native_below` of the {glue}`n_short_sides`
#   images are at most that size to begin with, so the recipe's 800 pixels only enlarge them. What changes is
#   the apparent size of the pedestrians, {glue:text}`size_ratio:.1f` times the recipe's. Penn-Fudan's pedestrians are large
#   (chapter 1), so this should cost little; small, distant people would suffer first.
# - **Fewer images and one epoch.** {glue:text}`step_ratio:.0f` times fewer training steps. This is the change that costs
#   most: the new predictors see each of the few training images once, and fewer examples of occlusion and
#   unusual poses. The COCO weights already detect people well, which is why one short epoch still gives a
#   useful model.
# - **Validation images.** {glue}`cpu_val` images are kept out of training to choose the model and, in chapter 5, the score
#   threshold honestly; the training set is 20 images smaller for it.
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
# | `loss_objectness` | region proposal network (RPN) | is there *an object* (of any class) in this anchor box? binary cross-entropy |
# | `loss_rpn_box_reg` | RPN | how far the anchor must move and stretch to fit the object (smooth L1) |
# | `loss_classifier` | box head | which class (pedestrian or background) each proposal is (cross-entropy) |
# | `loss_box_reg` | box head | how to refine each proposal's box to the true box (smooth L1) |
# | `loss_mask` | mask head | per-pixel binary cross-entropy of the 28x28 mask of each positive proposal |
#
# The two RPN terms teach the network *where to look*, the box terms *what and exactly where*, and the mask term
# *which pixels*. You will see them fall at very different speeds in the curves below.

# %% [markdown]
# ## Warm-up and schedule
#
# A freshly replaced box and mask predictor produces large, random gradients. Starting at the full learning rate
# can throw the pretrained backbone off (and, from random weights, turns the losses into NaN within a few
# iterations). So the learning rate starts at `lr * warmup_factor` and grows linearly to `lr` over the warm-up,
# as the official tutorial does over its first epoch (at most 1000 iterations). After that a schedule takes over:
# `tutorial` divides the rate by 10 every 3 epochs (so never within its 2 epochs), `best` follows a cosine to zero.
# {py:class}`pedseg_lib.engine.LRSchedule` computes the factor for every iteration; here it is for the real
# Penn-Fudan training split, whatever profile this page runs in:

# %%
import matplotlib.pyplot as plt

from pedseg_lib.engine import LRSchedule

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for ax, name in zip(axes, ("tutorial", "best"), strict=True):
    recipe = load_preset(name)
    train_images = PENNFUDAN_IMAGES - recipe.test_size - recipe.val_size
    per_epoch = math.ceil(min(train_images, recipe.max_train_images or train_images) / recipe.batch_size)
    schedule = LRSchedule(recipe, per_epoch)
    its = range(recipe.epochs * per_epoch)
    ax.plot(its, [recipe.lr * schedule(i) for i in its])
    ax.axvline(schedule.warmup_iters, color="grey", ls="--", lw=1, label="end of warm-up")
    ax.set(title=f"{name}: {recipe.scheduler} schedule, {recipe.epochs} epochs", xlabel="iteration", ylabel="lr")
    ax.legend()
    print(f"{name}: {per_epoch} iterations per epoch, warm-up {schedule.warmup_iters} iterations, peak lr {recipe.lr}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Why batches of two
#
# Detection models are trained on large images (the shorter side resized to `min_size`, 800 pixels in `tutorial`)
# and keep many intermediate feature maps for the backward pass, so two such images already fill a small GPU.
# Small batches are fine here because the pretrained backbone's batch-norm layers are *frozen*
# (`FrozenBatchNorm2d`): their statistics come from COCO and do not depend on the batch. The learning rate
# goes with the batch size (the "linear scaling rule"): `best` doubles both.

# %% [markdown]
# ## The loop
#
# One epoch is {py:func}`pedseg_lib.engine.train_one_epoch`. Read it once; it is short. Per batch: move the data,
# compute the losses (under `autocast` when mixed precision is on), stop with a
# {py:class}`pedseg_lib.errors.NonFiniteLossError` naming the batch's images *before* a NaN can reach the
# weights, back-propagate (through a `GradScaler` with mixed precision), optionally clip the gradient norm,
# step the optimiser and the learning-rate schedule, and record every loss term.

# %%
import inspect

source = inspect.getsource(engine.train_one_epoch)
body = source.split('    """', 2)[2]  # skip the signature's docstring; the code is what matters here
print("def train_one_epoch(model, optimizer, loader, device, epoch, scheduler, scaler, clip_grad_norm, ...):")
print(body.split("\n", 1)[1])

# %% [markdown]
# {py:func}`pedseg_lib.engine.fit` wraps it: it seeds Python, NumPy and PyTorch, makes the seeded split and the
# data loaders, builds the model and optimiser, and after every epoch measures the validation loss
# ({py:func}`pedseg_lib.engine.evaluate_loss`) and the validation COCO AP, writes the history and the
# checkpoints, and decides whether to stop early.
#
# ## Train
#
# The progress bar shows the epoch, the running loss, the mask loss, the learning rate and the time left.

# %%
result = engine.fit(cfg, progress=True)
history = result.history

# %% [markdown]
# The first iteration's losses, before any learning. From COCO weights with a new, random predictor, expect the
# classifier and the mask terms near `ln 2` (a coin flip between pedestrian and background, per proposal and
# per pixel); from random weights (smoke) anything goes:

# %%
print(f"ln 2 = {math.log(2):.3f}")
first = history["iterations"][0]
for key, value in first.items():
    print(f"{key:<18} {value:.4g}" if isinstance(value, float) else f"{key:<18} {value}")
if profile.is_smoke:
    print("(smoke profile: random backbone, tiny images - these numbers mean nothing)")

# %% [markdown]
# ## Reading the curves
#
# Each loss term per iteration (log scale, smoothed over a few iterations):

# %%
from pedseg_lib.visualize import plot_epoch_metrics, plot_loss_components, plot_lr

plot_loss_components(history, smooth=min(5, len(history["iterations"])))
plt.show()

# %% [markdown]
# Per epoch: training loss against validation loss (a widening gap means over-fitting), and the validation AP,
# the number that matters (chapter 5 explains it). The validation loss is computed with the model in train mode
# (the only mode in which torchvision returns losses) under `torch.no_grad()`, with batch-norm statistics frozen,
# so measuring it changes nothing.

# %%
plot_epoch_metrics(history)
plt.show()
print(f"{'epoch':>5} {'train loss':>11} {'val loss':>9} {'box AP':>7} {'mask AP':>8} {'seconds':>8}")
for row in history["epochs"]:
    print(f"{row['epoch']:>5} {row['train_loss']:>11.3f} {row['val_loss']:>9.3f} {row['bbox_AP']:>7.3f} "
          f"{row['segm_AP']:>8.3f} {row['seconds']:>8.1f}")
if profile.is_smoke:
    print("SMOKE PROFILE: a few iterations from random weights - these numbers are meaningless.")

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
print(f"best epoch: {result.best_epoch}, stopped early: {result.stopped_early}, patience: {status['patience']}")

# %% [markdown]
# ## Resuming
#
# `fit(cfg, resume=True)` (or `pedseg resume RUN_DIR` on the command line) restores everything from `last.pt`
# and continues with the next epoch; a resumed run ends with the same weights and history as one that was never
# interrupted (the test suite checks this). Resuming a finished run does nothing more:

# %%
again = engine.fit(cfg, resume=True, progress=False)
print(f"epochs in history before: {len(history['epochs'])}, after resuming: {len(again.history['epochs'])}")
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
# Every option:

# %%
out = subprocess.run([sys.executable, "-m", "pedseg_lib", "train", "--help"], capture_output=True, text=True)
print(out.stdout or out.stderr)

# %% [markdown]
# ## On several GPUs
#
# Launched by `torchrun`, the same command trains with `DistributedDataParallel`: each process takes its share
# of every epoch (a `DistributedSampler`), losses and AP are averaged over processes, and only the first process
# prints, shows progress and writes the run folder:
#
# ```bash
# torchrun --nproc_per_node=4 -m pedseg_lib train --preset best --set lr=0.02
# ```
#
# The effective batch is `batch_size` times the number of processes, so scale the learning rate with it.

# %% [markdown]
# ## Summary
#
# - A run is a {py:class}`~pedseg_lib.config.TrainConfig`: presets for the official recipe, a stronger GPU recipe,
#   a CPU recipe and a smoke test; change any key with `--set key=value` or a YAML file.
# - Mask R-CNN minimises five losses: two for the proposal network, two for the box head, one for the masks.
# - Linear warm-up keeps the first steps stable; a step or cosine schedule lowers the rate later.
# - `fit` validates every epoch (loss and COCO AP), keeps `last.pt` and `best.pt`, writes the history, resumes
#   exactly and stops early on a plateau; a NaN loss stops the run and names the images of the batch.
# - The same engine runs from the `pedseg` command and on several GPUs with `torchrun`.
#
# ## Exercises
#
# 1. Train with `warmup_iters=0` and `lr=0.02` (`apply_overrides(cfg, [...])`). What happens to the first
#    iterations' losses? Does the engine stop, and which images does it name?
# 2. Train the `cpu` preset with `epochs=3`, interrupt it with the stop button after its first epoch, then
#    resume it with `engine.fit(cfg, resume=True)`. Compare `history_epochs.csv` with an uninterrupted run.
# 3. Run the `best` preset with `patience=2` on a GPU and read `history["status"]`. Which epoch did `best.pt` keep?
# 4. On a GPU, measure what the `cpu` recipe gives up: train `cpu` with `min_size=800, max_size=1333`, then
#    with `max_train_images=null`, then with `epochs=2`, and compare the validation mask AP of each with the
#    `cpu` run's. Which change costs most?

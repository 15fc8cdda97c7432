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
# # Chapter 1: The Penn-Fudan data
#
# [![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/pedseg/pedseg/blob/main/book/01_data.ipynb)
#
# **Learning objectives**
#
# - Get the Penn-Fudan pedestrian data and know its layout and licence terms.
# - Understand how one PNG encodes several instance masks, and turn it into a detection target.
# - Measure the dataset (instances, box sizes, image sizes) from the masks themselves.
# - Split it reproducibly and augment it without breaking image/box/mask alignment.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 1 minute |
# | cpu | about 10 seconds (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | about 1 minute (estimate) |

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
# ## Where the data comes from
#
# The [Penn-Fudan Database for Pedestrian Detection and Segmentation](https://www.cis.upenn.edu/~jshi/ped_html/)
# holds photos taken around the University of Pennsylvania and Fudan University, each with a pixel mask per
# pedestrian. It is free for research; its terms do not allow reposting it, so this book never copies it:
# {py:meth}`pedseg_lib.profiles.Profile.ensure_data` downloads it with
# {py:func}`pedseg_lib.data.download_pennfudan` (or, in the smoke profile without data, generates a synthetic
# look-alike with {py:func}`pedseg_lib.data.make_synthetic_pennfudan`). From a shell: `pedseg download`.
# The download is checked file by file against a bundled sha256 list, so a broken copy is caught here rather
# than as a strange loss curve three chapters later.

# %%
from pedseg_lib.data import find_dataset

root = find_dataset(profile.ensure_data())
synthetic = (root / ".pedseg-synthetic").exists()
print("dataset folder:", root, "(SYNTHETIC)" if synthetic else "(real Penn-Fudan)")
for sub in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
    files = sorted(sub.iterdir()) if sub.is_dir() else []
    print(f"{sub.name + ('/' if sub.is_dir() else ''):22s}", f"{len(files)} files, e.g. {files[0].name}" if files else "")

# %% [markdown]
# ## One PNG, many pedestrians
#
# Each `PedMasks/*_mask.png` is a single-channel image: 0 is background and every other value is one
# pedestrian. {py:class}`pedseg_lib.data.PennFudanDataset` takes the distinct non-zero values in increasing
# order (it does not assume they are 1..N) and makes one binary mask per value.

# %%
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from pedseg_lib.data import PennFudanDataset

dataset = PennFudanDataset(root)
raw = np.asarray(Image.open(dataset.mask_path(0)))
target = dataset.target(0)
print("mask values:", np.unique(raw).tolist(), "->", len(target["masks"]), "binary masks")
fig, axes = plt.subplots(1, 1 + len(target["masks"]), figsize=(3 * (1 + len(target["masks"])), 3))
axes[0].imshow(raw, cmap="viridis")
axes[0].set_title("raw mask PNG")
for ax, m, value in zip(axes[1:], target["masks"], np.unique(raw)[1:], strict=True):
    ax.imshow(m, cmap="gray")
    ax.set_title(f"instance value {value}")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# Boxes come from the masks with `torchvision.ops.masks_to_boxes`: 0-based pixel indices, `x2`/`y2` inclusive.
# An instance whose box would have zero width or height (a one-pixel sliver) is dropped, because box regression
# cannot learn a degenerate box. A mask with no pedestrian is a valid negative sample.

# %%
from pedseg_lib.visualize import draw_instances, show_grid

samples = [dataset[i] for i in range(min(4, len(dataset)))]
fig = show_grid([draw_instances(img, tgt) for img, tgt in samples],
                [f"{dataset.image_path(i).name}: {len(t['boxes'])} people" for i, (_, t) in enumerate(samples)],
                ncols=4, size=3)
plt.show()

# %% [markdown]
# ## How big is the dataset?
#
# {py:func}`pedseg_lib.data.dataset_statistics` reads only the masks (no RGB decoding), so it is quick.

# %%
from pedseg_lib.data import dataset_statistics, read_annotation

stats = dataset_statistics(dataset)
annotated = sum(len(read_annotation(p).objects) for p in sorted((root / "Annotation").glob("*.txt")))
print(f"images: {stats['images']}, instances in masks: {stats['instances']}, boxes in annotations: {annotated}, "
      f"images without pedestrians: {stats['negatives']}")
print("image sizes (w x h), most common:", stats["image_sizes"].most_common(3))
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
axes[0].hist(stats["instances_per_image"], bins=range(0, max(stats["instances_per_image"]) + 2))
axes[0].set_title("instances per image")
axes[1].hist(stats["box_heights"], bins=20)
axes[1].set_title("box height (px)")
axes[2].hist(stats["aspect_ratios"], bins=20)
axes[2].set_title("box width / height")
plt.show()

# %% [markdown]
# The readme promises 345 labelled pedestrians, yet the masks hold the number printed above. The difference
# is `added-object-list.txt`: pedestrians that were labelled after the readme was written.

# %%
readme = root / "readme.txt"
added = root / "added-object-list.txt"
if synthetic:
    print("SYNTHETIC data: no readme count to compare; the numbers above describe generated figures.")
else:
    added_lines = [ln for ln in added.read_text(errors="replace").splitlines() if ln.strip()] if added.exists() else []
    print(f"instances in masks: {stats['instances']}; lines in {added.name}: {len(added_lines)}")
    print("readme excerpt:", [ln.strip() for ln in readme.read_text(errors="replace").splitlines() if "345" in ln][:1])

# %% [markdown]
# ## Why `area` is the mask pixel count
#
# The official tutorial stores the box area. COCO evaluation uses `area` to put objects into small/medium/large
# buckets and to report AP by size; for mask AP the natural size is the mask's, which for a walking person is
# much smaller than the box.

# %%
import torch

box_area = torch.tensor([(w * h) for w, h in zip(stats["box_widths"], stats["box_heights"], strict=True)])
mask_area = torch.tensor(stats["areas"])
print(f"median mask area / box area: {float((mask_area / box_area).median()):.2f}")

# %% [markdown]
# ## A reproducible split
#
# The official tutorial splits with an unseeded `torch.randperm`, so each run tests on different images.
# {py:func}`pedseg_lib.data.split_indices` uses a seeded generator and returns sorted lists: every chapter and
# the CLI see the same test set.

# %%
from pedseg_lib.data import split_indices

test_size = min(50, len(dataset) // 3)
train_idx, test_idx = split_indices(len(dataset), test_size=test_size, seed=0)
print(f"train: {len(train_idx)}, test: {len(test_idx)}, first test indices: {test_idx[:8]}")
print("same split again:", (train_idx, test_idx) == split_indices(len(dataset), test_size=test_size, seed=0))

# %% [markdown]
# ## Augmentation keeps everything aligned
#
# {py:func}`pedseg_lib.data.build_transforms` uses torchvision's v2 transforms: because boxes and masks are
# `tv_tensors`, a flip or resize moves them together with the image.

# %%
from torchvision.transforms import v2

from pedseg_lib.data import build_transforms

torch.manual_seed(0)
image, target = dataset[0]
augment = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Resize(160)])
aug_image, aug_target = augment(image, target)
print("training pipeline:", build_transforms(train=True, scale_jitter=[160, 192]))
fig = show_grid([draw_instances(image, target), draw_instances(aug_image, aug_target)],
                ["original", "flipped + resized to 160 px"], ncols=2, size=4)
plt.show()

# %% [markdown]
# ## Summary
#
# - Penn-Fudan is small; get it with `pedseg download` (checked file by file), never repost it.
# - One mask PNG holds all pedestrians; each distinct non-zero value becomes one binary mask and one box.
# - Statistics come from the masks; `area` is the mask pixel count because COCO's size buckets use it.
# - The seeded split makes every chapter test on the same images; v2 transforms keep image, boxes and masks aligned.
#
# ## Exercises
#
# 1. Change `seed` in `split_indices` and check how many test images change.
# 2. Add `photometric=True` to `build_transforms` and show four augmented versions of one image.
# 3. Find the image whose mask-derived box differs most from its annotation box and look at it.

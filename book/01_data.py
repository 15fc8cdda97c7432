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
# - Write the `Dataset` that turns one instance-id PNG into a detection target, and check it against the library.
# - Measure the dataset (instances, box sizes, image sizes) from the masks themselves.
# - Split it reproducibly and augment it without breaking image/box/mask alignment.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 1 minute |
# | cpu | about 10 seconds: no model runs; every mask is decoded twice, by the page and the library (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | under 1 minute (estimate) |

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
# ## Where the data comes from
#
# The [Penn-Fudan Database for Pedestrian Detection and Segmentation](https://www.cis.upenn.edu/~jshi/ped_html/)
# holds photos taken around the University of Pennsylvania and Fudan University, each with a pixel mask per
# pedestrian: exactly what {term}`instance segmentation` needs, and what {term}`Mask R-CNN` learns from. Its readme
# asks that it not be reposted without the authors' permission, so this book never copies it:
# {py:meth}`pedseg_lib.profiles.Profile.ensure_data` downloads it with
# {py:func}`pedseg_lib.data.download_pennfudan` (or, in the smoke profile without data, generates a synthetic
# look-alike with {py:func}`pedseg_lib.data.make_synthetic_pennfudan`). From a shell: `pedseg download`.
# The download is checked file by file against a bundled sha256 list, so a broken copy is caught here rather
# than as a strange loss curve three chapters later.

# %%
from pedseg_lib.data import find_dataset

root = find_dataset(profile.ensure_data())
synthetic = (root / ".pedseg-synthetic").exists()
kind = "SYNTHETIC" if synthetic else "real Penn-Fudan"
print(f"dataset folder ({kind}):")
print(" ", root)
for sub in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
    files = sorted(sub.iterdir()) if sub.is_dir() else []
    name = sub.name + ("/" if sub.is_dir() else "")
    example = f"{len(files)} files, e.g. {files[0].name}" if files else ""
    print(f"{name:22s}", example)

# %% [markdown]
# ## One PNG, many pedestrians
#
# Each `PedMasks/*_mask.png` is a single-channel image: 0 is background and every other value is one
# pedestrian (the readme: "Pixels are labeled 0 for background, or > 0 corresponding to a particular pedestrian
# ID"). Comparing one value at a time turns the PNG into one binary mask per pedestrian.

# %%
import matplotlib.pyplot as plt
import torch
from torchvision.io import read_image

names = sorted(p.name for p in (root / "PNGImages").glob("*.png"))
mask_path = root / "PedMasks" / names[0].replace(".png", "_mask.png")
raw = read_image(str(mask_path))[0]
values = [v for v in raw.unique().tolist() if v != 0]
print(f"{names[0]}: mask {tuple(raw.shape)}, {raw.dtype}")
print(f"values {raw.unique().tolist()} -> {len(values)} binary masks")
ncols = 1 + len(values)
fig, axes = plt.subplots(1, ncols, figsize=(3 * ncols, 3))
axes[0].imshow(raw, cmap="viridis")
axes[0].set_title("raw mask PNG")
for ax, value in zip(axes[1:], values, strict=True):
    ax.imshow(raw == value, cmap="gray")
    ax.set_title(f"raw == {value}")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Writing the `Dataset` yourself
#
# The official tutorial asks you to write this class; here it is. `__getitem__` reads the photo and its mask,
# splits the mask into binary masks, derives each {term}`bounding box` from its mask with
# `torchvision.ops.masks_to_boxes` (0-based pixel indices, `x2`/`y2` inclusive) and fills the target dict that
# torchvision's detection models expect. Two details go beyond the tutorial:
#
# - The instance values are taken as found, not assumed to be 1..N.
# - An instance whose box has zero width or height (a one-pixel sliver) is dropped: torchvision's
#   `GeneralizedRCNN` refuses such a box in training ("All bounding boxes should have positive height and
#   width"), so keeping it would stop training at that image. A mask with no pedestrian gives an empty
#   target, a valid negative sample.

# %%
from pathlib import Path

from torchvision import tv_tensors
from torchvision.io import ImageReadMode
from torchvision.ops import masks_to_boxes


class PennFudan(torch.utils.data.Dataset):
    def __init__(self, root):
        self.root = Path(root)
        pngs = (self.root / "PNGImages").glob("*.png")
        self.names = sorted(p.name for p in pngs)

    def __len__(self):
        return len(self.names)

    def __getitem__(self, idx):
        name = self.names[idx]
        image_path = self.root / "PNGImages" / name
        mask_path = self.root / "PedMasks" / name.replace(".png", "_mask.png")
        image = read_image(str(image_path), ImageReadMode.RGB)
        mask = read_image(str(mask_path))[0]
        ids = mask.unique()
        ids = ids[ids != 0]  # 0 is background
        # [N, H, W]: one binary mask per pedestrian
        masks = (mask == ids[:, None, None]).to(torch.uint8)
        boxes = masks_to_boxes(masks)
        # drop zero-width or zero-height slivers
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        masks, boxes = masks[keep], boxes[keep]
        n = len(boxes)
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                boxes, format="XYXY", canvas_size=image.shape[-2:]
            ),
            "masks": tv_tensors.Mask(masks),
            # one class, pedestrian (label 0 is the background)
            "labels": torch.ones(n, dtype=torch.int64),
            "image_id": idx,
            "area": masks.flatten(1).sum(1).float(),  # mask pixels (see below)
            "iscrowd": torch.zeros(n, dtype=torch.int64),
        }
        return tv_tensors.Image(image), target


page_dataset = PennFudan(root)
image, target = page_dataset[0]
print(f"{len(page_dataset)} images")
print(f"item 0: image {tuple(image.shape)} {image.dtype}")
for key, value in target.items():
    shown = tuple(value.shape) if isinstance(value, torch.Tensor) else value
    print(f"  {key:8s}", shown)

# %% [markdown]
# {py:class}`pedseg_lib.data.PennFudanDataset` must give the same targets for every image of the data this
# profile uses (real Penn-Fudan when it is present). Both take the same steps, so the check is exact
# (`torch.equal`), dtypes included. The library's {py:meth}`pedseg_lib.data.PennFudanDataset.target` builds a
# target without decoding the photo, so the check decodes only the masks, and it caches the targets that the
# statistics below reuse.

# %%
from pedseg_lib.data import PennFudanDataset

dataset = PennFudanDataset(root)
assert page_dataset.names == dataset.images
for i in range(len(dataset)):
    ours, theirs = page_dataset[i][1], dataset.target(i)
    assert ours["image_id"] == theirs["image_id"]
    assert ours["boxes"].canvas_size == theirs["boxes"].canvas_size
    for key in ("boxes", "masks", "labels", "area", "iscrowd"):
        mine = ours[key].as_subclass(torch.Tensor)
        lib = theirs[key].as_subclass(torch.Tensor)
        same = mine.dtype == lib.dtype and torch.equal(mine, lib)
        assert same, (dataset.images[i], key)
assert torch.equal(page_dataset[0][0], dataset[0][0])  # and the same photo
print("the page's Dataset and PennFudanDataset agree on all",
      f"{len(dataset)} images")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
from pedseg_lib.notebook import glue

glue("n_checked", len(dataset), display=False)

# %% [markdown]
# They agree on all {glue}`n_checked` images. What the library adds is what a dataset class needs once other
# people's files reach it:
#
# - **Clear errors.** A missing mask, a mask whose size differs from its photo, a truncated or non-PNG file
#   each raise a one-line `DatasetError` naming the file and the fix, instead of a stack trace from deep in a
#   `DataLoader` worker.
# - **Lazy reads.** `target(i)` reads only the photo's PNG header (its size) and the mask, and caches the
#   target; statistics and splits never decode an RGB image.
# - **Layout help.** It accepts the folder or its parent, and masks saved as RGB by some tools.
# - **Transforms.** A torchvision v2 transform is applied to the image and the `tv_tensors` target together.
#
# A few items, drawn with {py:func}`pedseg_lib.visualize.draw_instances`:

# %%
from pedseg_lib.visualize import draw_instances, show_grid

samples = [dataset[i] for i in range(min(4, len(dataset)))]
titles = [
    f"{dataset.image_path(i).name}: {len(t['boxes'])} people"
    for i, (_, t) in enumerate(samples)
]
fig = show_grid(
    [draw_instances(img, tgt) for img, tgt in samples], titles, ncols=4, size=3
)
plt.show()

# %% [markdown]
# ## How big is the dataset?
#
# {py:func}`pedseg_lib.data.dataset_statistics` works from the cached targets (no RGB decoding), so it is quick.

# %%
from pedseg_lib.data import dataset_statistics, read_annotation

stats = dataset_statistics(dataset)
annotation_files = sorted((root / "Annotation").glob("*.txt"))
annotated = sum(len(read_annotation(p).objects) for p in annotation_files)
print(f"images: {stats['images']}, instances in masks: {stats['instances']},",
      f"boxes in annotations: {annotated}")
print(f"images without pedestrians: {stats['negatives']}")
print("image sizes (w x h), most common:")
print(" ", stats["image_sizes"].most_common(3))
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
per_image = stats["instances_per_image"]
axes[0].hist(per_image, bins=range(0, max(per_image) + 2))
axes[0].set_title("instances per image")
axes[1].hist(stats["box_heights"], bins=20)
axes[1].set_title("box height (px)")
axes[2].hist(stats["aspect_ratios"], bins=20)
axes[2].set_title("box width / height")
plt.show()

# %% [markdown]
# The official tutorial describes the data set as 170 images with 345 pedestrians. The readme explains why the
# masks hold more: the ACCV 2007 paper that the readme cites did not label very small, highly occluded
# pedestrians; this release of the data labels them, and lists the newly labelled ones in `added-object-list.txt`.

# %%
added = root / "added-object-list.txt"
added_rows = []
if added.exists():  # Penn-Fudan has it; the synthetic look-alike does not
    lines = added.read_text(errors="replace").splitlines()
    added_rows = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
print(f"instances in masks: {stats['instances']}")
print(f"newly labelled ({added.name}): {len(added_rows)}")
print(f"difference: {stats['instances'] - len(added_rows)}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_images", stats["images"], display=False)
glue("n_instances", stats["instances"], display=False)
glue("n_added", len(added_rows), display=False)
glue("n_original", stats["instances"] - len(added_rows), display=False)

# %% [markdown]
# Here the masks hold {glue}`n_instances` pedestrians in {glue}`n_images` images, the list names {glue}`n_added`
# newly labelled ones, and the difference is {glue}`n_original`. On real Penn-Fudan that difference is the
# tutorial's 345; on the synthetic smoke data all these numbers describe generated figures.
#
# ## Why `area` is the mask pixel count
#
# The official tutorial stores the box area. {term}`COCO` evaluation uses each object's `area` to put it into
# small, medium or large and to report {term}`AP` by size ({term}`APs`, {term}`APm`, {term}`APl`); for mask AP
# the natural size is the mask's, which for a walking person is much smaller than its box.

# %%
widths, heights = stats["box_widths"], stats["box_heights"]
box_area = torch.tensor([w * h for w, h in zip(widths, heights, strict=True)])
mask_area = torch.tensor(stats["areas"])
area_ratio = float((mask_area / box_area).median())
print(f"median mask area / box area: {area_ratio:.2f}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("area_ratio", area_ratio, display=False)

# %% [markdown]
# A pedestrian's mask covers a median {glue:text}`area_ratio:.0%` of its box here, so the box area would put
# some pedestrians in a larger size bucket than their masks deserve.
#
# ## A reproducible split
#
# The official tutorial splits with an unseeded `torch.randperm`, so each run tests on different images.
# {py:func}`pedseg_lib.data.split_indices` uses a seeded generator and returns sorted lists: every chapter and
# the CLI see the same {term}`test split`, and train on the same {term}`training split` (Chapter 4 also takes a
# {term}`validation split` out of the training images, with the same seeded permutation).

# %%
from pedseg_lib.config import load_preset
from pedseg_lib.data import split_indices

# the profile's test size
test_size = min(load_preset(profile.name).test_size, len(dataset) // 3)
train_idx, test_idx = split_indices(len(dataset), test_size=test_size, seed=0)
print(f"train: {len(train_idx)}, test: {len(test_idx)}")
print(f"first test indices: {test_idx[:8]}")
again = split_indices(len(dataset), test_size=test_size, seed=0)
assert (train_idx, test_idx) == again
print("same split again: True")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_train", len(train_idx), display=False)
glue("n_test", len(test_idx), display=False)

# %% [markdown]
# The profile's split keeps {glue}`n_test` test images apart from {glue}`n_train` training images, and gives
# the same lists on every call.
#
# ## Augmentation keeps everything aligned
#
# {term}`Data augmentation <data augmentation>` shows the model new variants of the same photos.
# {py:func}`pedseg_lib.data.build_transforms` builds a torchvision v2 pipeline: a horizontal flip (`hflip`, its
# probability) and, with `photometric=True`, torchvision's `RandomPhotometricDistort`, which changes brightness,
# contrast, saturation and hue and permutes the colour channels, each with probability 0.5. Because boxes and
# masks are `tv_tensors`, the flip moves them together with the image; colour changes touch only the image.
#
# One detail of the flip: this book's boxes are inclusive pixel indices (`x2` is the mask's last column), while
# v2 moves box coordinates as continuous positions and maps `x1` to `W - x2`. A flipped box would sit one pixel
# right of its flipped mask: in an image 10 pixels wide, the mask box `[1, 2, 3, 4]` becomes `[7, 2, 9, 4]`, but
# the flipped mask spans columns 6 to 8. So the pipeline recomputes every box from its mask after the flip
# ({py:class}`pedseg_lib.data.BoxesFromMasks`), and boxes stay `masks_to_boxes` of the masks.
#
# It does not resize. Mask R-CNN's own `GeneralizedRCNNTransform` rescales every image so that its short side
# is `min_size` (a model argument), and multi-scale training (`TrainConfig.scale_jitter`, Chapter 4) varies that
# size inside the model, so the dataset always hands over full-resolution images.

# %%
from pedseg_lib.data import build_transforms

torch.manual_seed(0)
image, target = dataset[0]
flip = build_transforms(train=True, hflip=1.0)  # always flip, to see it
colour = build_transforms(train=True, hflip=0.0, photometric=True)
print("flip pipeline:  ", flip)
print("colour pipeline:", colour)
flipped_image, flipped = flip(image, target)
coloured_image, coloured = colour(image, target)
# the masks moved with the pixels, and the boxes with the masks
assert torch.equal(flipped["masks"], target["masks"].flip(-1))
assert torch.equal(flipped["boxes"], masks_to_boxes(flipped["masks"]))
# colour leaves the geometry alone
assert torch.equal(coloured["boxes"], target["boxes"])
fig = show_grid(
    [
        draw_instances(image, target),
        draw_instances(flipped_image, flipped),
        draw_instances(coloured_image, coloured),
    ],
    ["original", "hflip=1.0", "photometric=True"],
    ncols=3,
    size=4,
)
plt.show()

# %% [markdown]
# ## Check yourself
#
# :::{dropdown} Why does the target hold one binary mask per pedestrian instead of the mask PNG as it is?
# Mask R-CNN does instance segmentation: it predicts a box, a label and a mask for each object, and during
# training matches each prediction to one ground-truth object. The PNG is an instance-id map (all pedestrians in
# one image); splitting it by value gives the per-object masks, and each mask gives its box.
# :::
#
# :::{dropdown} What happens if a one-pixel-wide instance is kept?
# `masks_to_boxes` gives it `x2 == x1` (the coordinates are inclusive), a box of zero width. torchvision's
# `GeneralizedRCNN` checks every training box and raises "All bounding boxes should have positive height and
# width", so training would stop at that image. The page and the library drop such instances.
# :::
#
# :::{dropdown} Why is `area` the number of mask pixels rather than the box area?
# COCO evaluation uses each ground-truth object's `area` to decide whether it counts for AP of small, medium or
# large objects. For mask AP the object is its mask; a walking person fills only part of the box, so the box
# area would move some people into a larger bucket.
# :::
#
# :::{dropdown} Why do all chapters split with a fixed seed?
# So that every chapter, the CLI and every rerun test on the same images. With an unseeded split (as in the
# official tutorial) two runs are scored on different test images, and a difference in AP may just be a
# different test set.
# :::
#
# :::{dropdown} Why does `build_transforms` not resize the images?
# The model resizes them itself: `GeneralizedRCNNTransform` scales the short side to `min_size` (capped by
# `max_size`) and maps predictions back to the original size. Multi-scale training changes that size inside the
# model (`TrainConfig.scale_jitter`), so the dataset only flips and recolours.
# :::
#
# ## Summary
#
# - Penn-Fudan is small; get it with `pedseg download` (checked file by file), never repost it.
# - One mask PNG holds all pedestrians; each distinct non-zero value becomes one binary mask and one box, and
#   degenerate (zero-width or zero-height) instances are dropped.
# - The page's twenty-line `Dataset` gives exactly the targets of {py:class}`pedseg_lib.data.PennFudanDataset`;
#   the library adds clear errors, lazy reads and a target cache.
# - Statistics come from the masks; `area` is the mask pixel count because COCO's size buckets use it.
# - The seeded split makes every chapter test on the same images; v2 transforms keep image, boxes and masks
#   aligned, and the model does the resizing.
#
# ## Exercises
#
# 1. **Another seed.** *Needs: CPU, about 5 minutes.* Split with `seed=1` instead of `seed=0` and count how
#    many of the test images change.
#
#    :::{dropdown} Hint
#    {py:func}`pedseg_lib.data.split_indices` returns `(train, test)` as sorted lists; compare the test lists as
#    sets.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.data import split_indices
#
#    _, test0 = split_indices(len(dataset), test_size=test_size, seed=0)
#    _, test1 = split_indices(len(dataset), test_size=test_size, seed=1)
#    changed = len(set(test0) - set(test1))
#    print(f"{changed} of {len(test0)} test images change")
#    ```
#    Two seeded draws of `k` test images out of `n` share about `k * k / n` images by chance, so most of the
#    test set changes: results from runs with different split seeds are not comparable.
#    :::
#
# 2. **Colour augmentation.** *Needs: CPU, about 5 minutes.* Show four augmented versions of one image with
#    `photometric=True`.
#
#    :::{dropdown} Hint
#    Each call of the pipeline draws new random parameters; {py:func}`pedseg_lib.visualize.show_grid` shows a
#    list of images.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.data import build_transforms
#    from pedseg_lib.visualize import draw_instances, show_grid
#
#    augment = build_transforms(train=True, photometric=True)
#    image, target = dataset[0]
#    views = [augment(image, target) for _ in range(4)]
#    show_grid([draw_instances(img, tgt) for img, tgt in views], ncols=4, size=3)
#    ```
#    Some views are flipped (`hflip` defaults to 0.5) and the boxes follow; the colours change, the boxes and
#    masks do not.
#    :::
#
# 3. **Annotation boxes versus mask boxes.** *Needs: CPU, about 15 minutes.* Find the image whose annotation
#    box differs most from the box derived from its mask, and look at it.
#
#    :::{dropdown} Hint
#    {py:func}`pedseg_lib.data.read_annotation` gives 1-based inclusive boxes in the order of the pedestrian IDs;
#    `dataset.target(i)["boxes"]` are 0-based. Subtract 1 before comparing.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    import torch
#    from pedseg_lib.data import read_annotation
#    from pedseg_lib.visualize import draw_instances, show_grid
#
#    worst = (-1.0, None, None)
#    for i in range(len(dataset)):
#        name = dataset.image_path(i).with_suffix(".txt").name
#        annotation = read_annotation(dataset.root / "Annotation" / name)
#        from_masks = dataset.target(i)["boxes"].as_subclass(torch.Tensor)
#        if len(annotation.objects) != len(from_masks):
#            print(f"{name}: {len(annotation.objects)} annotated, {len(from_masks)} in the mask")
#            continue
#        annotated = torch.tensor([obj.box for obj in annotation.objects], dtype=torch.float32) - 1
#        gap = (annotated - from_masks).abs().max().item()
#        worst = max(worst, (gap, i, annotated), key=lambda w: w[0])
#    gap, i, annotated = worst
#    image, target = dataset[i]
#    print(f"{dataset.image_path(i).name}: boxes differ by up to {gap:.0f} px")
#    show_grid([draw_instances(image, target), draw_instances(image, {"boxes": annotated})],
#              ["boxes from the masks", "boxes from the annotation"], ncols=2)
#    ```
#    The two boxes were drawn separately by the annotators; most agree within a pixel or two, and the largest
#    gaps show where a box and a mask disagree about what belongs to the pedestrian.
#    :::

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
# # Chapter 2: Inside Mask R-CNN
#
# [![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/pedseg/pedseg/blob/main/book/02_mask_rcnn.ipynb)
#
# **Learning objectives**
#
# - Follow one Penn-Fudan image through every stage of torchvision's Mask R-CNN, using forward hooks.
# - See how the input is resized and normalised, and what the ResNet and FPN feature maps look like.
# - Understand anchors, region proposals and the box head's scored detections.
# - See how a 28x28 mask logit map becomes a full-resolution mask.
# - Check what the COCO-trained model already recognises as `person` before any fine-tuning.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 1 minute (random weights, 320-pixel input) |
# | cpu | about 15 seconds after the 170 MB weights download (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | under 1 minute after the weights download (estimate) |

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
# ## The model and one image
#
# Before replacing any head (that is Chapter 3), we look at torchvision's COCO detector exactly as published:
# 91 classes, where label 1 is `person`. {py:func}`pedseg_lib.model.build_coco_model` builds it; the profile
# decides the weights. In the smoke profile no weights can be downloaded, so the same cells run on a
# **randomly initialised** model: every picture below is then meaningless noise that only shows the plumbing.
# A random model also scores every class near 1/91, under torchvision's default score threshold of 0.05, so in
# smoke we set the threshold to 0 to have detections to look at.

# %%
import matplotlib.pyplot as plt
import torch

from pedseg_lib.data import PennFudanDataset, find_dataset
from pedseg_lib.model import COCO_PERSON, build_coco_model

torch.manual_seed(0)
weights = profile.weights("coco")
size = dict(min_size=320, max_size=512) if profile.is_smoke else dict(min_size=800, max_size=1333)
model = build_coco_model(weights=weights, **size).to(profile.device)
if weights is None:
    model.roi_heads.score_thresh = 0.0
    print("weights: RANDOM (smoke profile) - the detections, features and masks below mean nothing.")
else:
    print("weights: torchvision's COCO Mask R-CNN (label", COCO_PERSON, "= person)")
print("input sizes:", size, "| score threshold:", model.roi_heads.score_thresh)

dataset = PennFudanDataset(find_dataset(profile.ensure_data()))
image, target = dataset[0]
image = image.float() / 255
print(f"{dataset.image_path(0).name}: {tuple(image.shape)}, {len(target['boxes'])} annotated pedestrians")

# %% [markdown]
# ## Following the image with forward hooks
#
# A forward hook is a function PyTorch calls with a module's inputs and output each time the module runs.
# {py:func}`pedseg_lib.introspect.trace_model` registers one on each stage (transform, ResNet body, FPN, anchor
# generator, RPN, RoI heads, mask predictor), runs the model once, removes the hooks and returns a
# {py:class}`pedseg_lib.introspect.Trace` with everything it saw. Nothing in the model is changed.

# %%
from pedseg_lib.introspect import anchors_at, paste_mask, trace_model

trace = trace_model(model, image.to(profile.device))
print("stages recorded: transform, backbone body, FPN, anchors, RPN, box head, mask head")

# %% [markdown]
# ## 1. Resize and normalise: `GeneralizedRCNNTransform`
#
# The model first rescales each image so that its short side is `min_size` (unless the long side would
# exceed `max_size`), normalises each channel with the ImageNet mean and standard deviation, and pads the
# batch to a multiple of 32 so every FPN level divides evenly. Predictions are mapped back to the original
# size at the very end, so callers never see the resized frame.

# %%
print("original (H, W):", trace.original_size)
print("resized  (H, W):", trace.resized_size,
      f"(scale {trace.resized_size[0] / trace.original_size[0]:.3f})")
print("padded batch   :", tuple(trace.batch.shape))
print("mean:", [round(m, 3) for m in trace.mean], "std:", [round(s, 3) for s in trace.std])
channel = trace.batch[0].cpu()
print(f"normalised red channel: mean {channel.mean():.2f}, std {channel.std():.2f}, "
      f"range {channel.min():.2f} to {channel.max():.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
axes[0].imshow(image.permute(1, 2, 0).cpu())
axes[0].set_title(f"input {trace.original_size[1]}x{trace.original_size[0]}")
axes[1].imshow(trace.resized_image().permute(1, 2, 0).cpu())
axes[1].set_title(f"resized {trace.resized_size[1]}x{trace.resized_size[0]}")
shown = axes[2].imshow(channel, cmap="RdBu_r")
axes[2].set_title(f"normalised + padded, red channel {tuple(trace.batch.shape[1:])}")
fig.colorbar(shown, ax=axes[2], fraction=0.04)
plt.show()

# %% [markdown]
# ## 2. Backbone and feature pyramid
#
# The ResNet-50 body produces four maps (C2-C5), each at half the resolution and more channels than the last.
# The feature pyramid network (FPN) mixes each level with the upsampled level above and gives every level 256
# channels (P2-P5), plus P6 by max-pooling P5. Small pedestrians are found on the fine levels, large ones on the
# coarse levels.

# %%
print(f"{'stage':7s} {'map':4s} {'shape [C, H, W]':18s} stride")
for row in trace.feature_table():
    print(f"{row['stage']:7s} {row['name']:4s} {str(row['shape']):18s} {row['stride']}")

# %%
levels = list(trace.features)
fig, axes = plt.subplots(3, len(levels), figsize=(3 * len(levels), 7))
for col, key in enumerate(levels):
    fmap = trace.features[key].cpu()
    strongest = fmap.mean(dim=(1, 2)).argsort(descending=True)[:3]  # the three most active channels
    for row, c in enumerate(strongest.tolist()):
        axes[row, col].imshow(fmap[c], cmap="viridis")
        axes[row, col].set_title(f"P{col + 2} ch {c} {tuple(fmap.shape[1:])}", fontsize=9)
        axes[row, col].axis("off")
fig.suptitle("FPN feature maps: the three most active channels per level")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Anchors
#
# The region proposal network (RPN) does not search for boxes from nothing: at every cell of every FPN level it
# starts from a few fixed **anchor** boxes, one per aspect ratio, whose size grows with the level's stride. It
# then scores each anchor ("object or not?") and regresses a correction to it.

# %%
generator = model.rpn.anchor_generator
total = 0
for (key, grid), sizes, ratios in zip(trace.anchors.items(), generator.sizes, generator.aspect_ratios, strict=True):
    count = grid.shape[0] * grid.shape[1] * grid.shape[2]
    total += count
    print(f"level {key:4s}: grid {grid.shape[0]}x{grid.shape[1]}, {grid.shape[2]} anchors per cell, "
          f"size {sizes[0]} px, aspect ratios {list(ratios)} -> {count:,} anchors")
print(f"all levels: {total:,} anchors for this one image")

# %%
from torchvision.utils import draw_bounding_boxes

from pedseg_lib.visualize import PALETTE, show_grid, to_uint8_image

h, w = trace.resized_size
points = [(w * 0.25, h * 0.5), (w * 0.5, h * 0.5), (w * 0.75, h * 0.5)]
canvas = to_uint8_image(trace.resized_image().cpu())
drawings, titles = [], []
for key, sizes in zip(trace.anchors, generator.sizes, strict=True):
    boxes = anchors_at(trace, key, points).cpu()
    per_cell = trace.anchors[key].shape[2]
    colors = [PALETTE[i // per_cell] for i in range(len(boxes))]
    drawings.append(draw_bounding_boxes(canvas, boxes, colors=colors, width=2))
    titles.append(f"level {key}: anchors of {sizes[0]} px at 3 cells")
show_grid(drawings, titles, ncols=len(drawings), size=3.2)
plt.show()

# %% [markdown]
# ## 4. Region proposals
#
# The RPN applies its corrections, keeps the best-scoring boxes per level, removes duplicates with
# non-maximum suppression and hands a fixed number of **proposals** (class-agnostic "something is here" boxes)
# to the second stage.

# %%
proposals = trace.proposals.cpu()
print(f"{len(proposals)} proposals reach the box head (rpn post-NMS top-n for testing: "
      f"{model.rpn._post_nms_top_n['testing']})")
top = 20
show_grid([draw_bounding_boxes(canvas, proposals[:top], colors="#56B4E9", width=1)],
          [f"top {top} RPN proposals (best first)"], ncols=1, size=5)
plt.show()

# %% [markdown]
# ## 5. The box head: classes and scores
#
# For each proposal, RoIAlign cuts a 7x7 patch out of the right FPN level; the box head classifies it into
# the 91 COCO classes and refines the box once more, per class. After the score threshold and per-class NMS at
# most 100 detections remain. We keep those labelled `person`.

# %%
det = {k: v.cpu() for k, v in trace.detections.items()}
person = det["labels"] == COCO_PERSON
print(f"{len(det['labels'])} detections, {int(person.sum())} of them labelled person (label {COCO_PERSON})")
if weights is None:
    # A random model rarely says "person"; show its top detections of any class so the cells still run.
    person = torch.ones_like(person)
    print("random weights: the scores are noise; showing the top detections of any class instead")
for i in person.nonzero().flatten()[:5].tolist():
    print(f"  #{i}: label {det['labels'][i]}, score {det['scores'][i]:.3f}, "
          f"box {[round(v) for v in det['boxes'][i].tolist()]}")

# %%
from pedseg_lib.visualize import draw_instances

persons = {"boxes": det["boxes"][person][:10], "scores": det["scores"][person][:10]}
threshold = 0.5 if weights else 0.0  # random scores are all tiny: draw the top ten anyway
show_grid([draw_instances(canvas, persons, score_threshold=threshold)],
          [f"person detections (score >= {threshold}, at most 10)"], ncols=1, size=5)
plt.show()

# %% [markdown]
# ## 6. From 28x28 mask logits to a full-resolution mask
#
# For each detection, the mask head looks at a 14x14 RoIAlign patch and predicts a 28x28 map of **logits**
# per class; only the map of the detected class is used. At inference torchvision takes its sigmoid and
# resizes it (bilinear) into the detection's box, then thresholds at 0.5. The map is always 28x28 whatever the
# box size, which is why large pedestrians get blocky outlines.

# %%
index = int(person.nonzero().flatten()[0]) if person.any() else 0
logits = trace.mask_logits[index].cpu()
pasted = paste_mask(trace, index).cpu()
print(f"detection #{index}: logits {tuple(logits.shape)}, range {logits.min():.2f} to {logits.max():.2f}; "
      f"pasted into {tuple(pasted.shape)}, {int((pasted > 0.5).sum())} pixels above 0.5")

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
shown = axes[0].imshow(logits, cmap="RdBu_r")
axes[0].set_title("28x28 mask logits")
fig.colorbar(shown, ax=axes[0], fraction=0.046)
axes[1].imshow(logits.sigmoid(), cmap="gray", vmin=0, vmax=1)
axes[1].set_title("sigmoid (probability)")
axes[2].imshow(trace.resized_image().permute(1, 2, 0).cpu())
axes[2].imshow(pasted, cmap="magma", alpha=0.6, vmin=0, vmax=1)
x0, y0, x1, y1 = det["boxes"][index].tolist()
axes[2].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="#E69F00", lw=2))
axes[2].set_title("pasted into its box")
plt.show()

# %% [markdown]
# ## 7. What the model returns
#
# Finally the transform maps boxes and masks back to the original image size. This is what
# {py:func}`pedseg_lib.inference.predict` returns for every image: boxes, labels, scores and a
# [N, 1, H, W] probability mask per detection.

# %%
out = {k: v.cpu() for k, v in trace.output.items()}
keep = out["labels"] == COCO_PERSON if weights else torch.ones_like(out["labels"], dtype=torch.bool)
final = {k: v[keep][:10] for k, v in out.items()}
print("output masks:", tuple(out["masks"].shape), "| detections drawn:", len(final["boxes"]))
show_grid([draw_instances(image, target), draw_instances(image, final, score_threshold=threshold)],
          ["ground truth", "COCO model's persons (before fine-tuning)" if weights else "random model (smoke)"],
          ncols=2, size=5)
plt.show()

# %% [markdown]
# ## Summary
#
# - `GeneralizedRCNNTransform` resizes, normalises and pads; outputs are mapped back to the original size.
# - A ResNet-50 body and an FPN give five 256-channel maps at strides 4 to 64.
# - The RPN turns anchors (3 aspect ratios per cell, one size per level) into class-agnostic proposals.
# - The box head classifies and refines the proposals; the mask head predicts a 28x28 logit map per detection,
#   which is pasted into the box at full resolution.
# - With COCO weights the model already finds most pedestrians as `person`: fine-tuning (Chapter 3) starts
#   from a detector that works, not from scratch.
#
# ## Exercises
#
# 1. Run {py:func}`pedseg_lib.introspect.trace_model` with `min_size=480` and with `min_size=1024`. How do the
#    feature-map shapes and the number of anchors change?
# 2. Change `model.rpn._post_nms_top_n["testing"]` to 100 and compare the detections. What does the second
#    stage lose?
# 3. Paste the same 28x28 map into a box twice as large. Where does the blockiness come from?

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
# - Follow one Penn-Fudan image through every stage of torchvision's {term}`Mask R-CNN` with forward hooks you
#   write.
# - See how the input is resized and normalised, and what the ResNet and {term}`FPN` feature maps look like.
# - Understand {term}`anchors <anchor>`, region {term}`proposals <proposal>` and the {term}`box head`'s scored
#   detections.
# - See how a 28x28 mask {term}`logit` map becomes a full-resolution {term}`soft mask`, and who thresholds it.
# - Check what the {term}`COCO`-trained model already recognises as `person` before any {term}`fine-tuning`.
#
# | Profile | Time to run |
# |---|---|
# | smoke | under 1 minute (random weights, the smoke preset's 160-pixel input) |
# | cpu | about 10 seconds after the 170 MB weights download: two forward passes at 480 px (measured by `bash .ci/rehearse` on 2 CPU cores) |
# | tutorial | under 1 minute after the weights download (estimate) |

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
# ## The model and one image
#
# Before replacing any head (that is Chapter 3), we look at torchvision's {term}`COCO` detector exactly as
# published: {term}`Mask R-CNN` with 91 classes, where label 1 is `person`.
# {py:func}`pedseg_lib.model.build_coco_model` builds it. The profile supplies the values: the weights (COCO,
# or random in the smoke profile, which cannot download anything) and the input size, the `min_size`/`max_size`
# of the profile's training preset, so this chapter shows the model at the size Chapter 4 trains it. With
# random weights every picture below is meaningless noise that only shows the plumbing.
#
# The figure is the map of this chapter. Each box is one module of the model, under the name that
# `model.named_modules()` gives it (a few boxes are methods or functions, which say so), in the order an image
# passes through them at inference, with the shape of what it returns. The numbered discs are the numbered
# sections below: each section says which box it is in.
#
# ```{figure} images/maskrcnn_pipeline.svg
# :name: fig-maskrcnn-pipeline
# :alt: The modules of torchvision's Mask R-CNN from top to bottom: transform, backbone.body, backbone.fpn, rpn.head, rpn.anchor_generator, rpn.filter_proposals, the roi_heads box branch and mask branch, and transform.postprocess, each with the shape of its output.
# :width: 100%
#
# torchvision's `maskrcnn_resnet50_fpn` at inference, one image: the model's modules, what each does and the
# shape of its output. K is the number of classes (91 here, 2 from Chapter 3 on); H′ × W′ is the resized,
# padded image. The names are checked against the model by the book's tests, so they are those of the
# torchvision release you run.
# ```

# %%
import matplotlib.pyplot as plt
import torch

from pedseg_lib.config import load_preset
from pedseg_lib.data import PennFudanDataset, find_dataset
from pedseg_lib.model import COCO_PERSON, build_coco_model

torch.manual_seed(0)
preset = load_preset(profile.name)
weights = profile.weights("coco")
model = build_coco_model(
    weights=weights, min_size=preset.min_size, max_size=preset.max_size
).to(profile.device)
model.eval()
print("weights:", weights or "random initialisation",
      f"| label {COCO_PERSON} = person")
print(f"input size: min_size {preset.min_size}, max_size {preset.max_size}")
print(f"score threshold {model.roi_heads.score_thresh} | at most "
      f"{model.roi_heads.detections_per_img} detections")

dataset = PennFudanDataset(find_dataset(profile.ensure_data()))
image, target = dataset[0]
image = (image.float() / 255).to(profile.device)
print(f"{dataset.image_path(0).name}: {tuple(image.shape)}, "
      f"{len(target['boxes'])} annotated pedestrians")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
from pedseg_lib.notebook import glue

glue("min_size", preset.min_size, display=False)
glue("score_thresh", model.roi_heads.score_thresh, display=False)
glue("detections_per_img", model.roi_heads.detections_per_img, display=False)
glue("profile_name", profile.name, display=False)  # quoted by the closing page

# %% [markdown]
# Here the short side is resized to {glue}`min_size` pixels (fewer if the long side would pass `max_size`); detections scoring under
# {glue}`score_thresh` (torchvision's default) are dropped and at most {glue}`detections_per_img` are kept.
#
# ## Following the image with forward hooks
#
# A forward hook is a function that PyTorch calls with a module, its inputs and its output every time that
# module runs; `register_forward_hook` returns a handle whose `remove()` takes the hook off again. We hook the
# {term}`backbone` (its ResNet body alone, and the whole backbone with the {term}`FPN`), the {term}`RPN`, and the
# {term}`box head <box head>` and {term}`mask head <mask head>` parts of `model.roi_heads`, run the model once and
# record what each stage returned. The names in `stages` are boxes of {numref}`fig-maskrcnn-pipeline`.

# %%
recorded = {}


def record(name):
    def hook(module, inputs, output):
        recorded[name] = output
    return hook


stages = {
    "resnet body": model.backbone.body,
    "backbone + FPN": model.backbone,
    "rpn": model.rpn,
    "box head": model.roi_heads.box_head,
    "box predictor": model.roi_heads.box_predictor,
    "mask head": model.roi_heads.mask_head,
    "mask predictor": model.roi_heads.mask_predictor,
}
handles = [module.register_forward_hook(record(name))
           for name, module in stages.items()]
try:
    with torch.no_grad():
        output = model([image])[0]
finally:
    for handle in handles:
        handle.remove()


def shapes(value):
    """The shapes inside a module's output: tensors, dicts, lists, tuples."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {key: shapes(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shapes(v) for v in value]
    return type(value).__name__


for name, value in recorded.items():
    kind = type(stages[name]).__name__
    print(f"{name:15s} {kind:24s} {shapes(value)}")

# %% [markdown]
# The RPN returns its proposals and an empty dict of losses (it only computes losses in training); the box
# predictor returns class logits and box corrections for every proposal; the mask predictor returns one 28x28 map
# per detection and class.
#
# {py:func}`pedseg_lib.introspect.trace_model` does the same with its own hooks (on the input transform, the
# ResNet body, the backbone, the anchor generator, the RPN, the RoI heads and the mask predictor), restores the
# model's train/eval mode, and returns a
# {py:class}`pedseg_lib.introspect.Trace` with the results sorted out, ready to draw. It runs the model a second
# time; both runs see the same weights and image, so what our hooks recorded must match what it records.

# %%
from pedseg_lib.introspect import anchors_at, paste_mask, trace_model

trace = trace_model(model, image)
# every hook was removed again
assert not any(module._forward_hooks for module in model.modules())
for key, fmap in trace.body.items():
    torch.testing.assert_close(recorded["resnet body"][key][0], fmap)
for key, fmap in trace.features.items():
    torch.testing.assert_close(recorded["backbone + FPN"][key][0], fmap)
torch.testing.assert_close(recorded["rpn"][0][0], trace.proposals)
# one row of class scores per proposal
assert recorded["box predictor"][0].shape[0] == len(trace.proposals)
for key in ("boxes", "labels", "scores", "masks"):
    torch.testing.assert_close(output[key], trace.output[key])
# the mask predictor runs even when no detection survived: [0, 91, 28, 28]
logits = recorded["mask predictor"]
per_label = logits[torch.arange(len(logits)), output["labels"]]
torch.testing.assert_close(per_label, trace.mask_logits)
print("the page's hooks and trace_model recorded the same stages")

# %% [markdown]
# (ch2-transform)=
# ## 1. Resize and normalise: `GeneralizedRCNNTransform`
#
# The model first rescales each image so that its short side is `min_size` (unless the long side would
# exceed `max_size`), normalises each channel with the ImageNet mean and standard deviation, and pads the
# batch to a multiple of 32 (`size_divisible`). Predictions are mapped back to the original size at the very
# end, so callers never see the resized frame. This is box 1 of {numref}`fig-maskrcnn-pipeline`, `transform`;
# the mapping back is box 7.

# %%
print("original (H, W):", trace.original_size)
print("resized  (H, W):", trace.resized_size,
      f"(scale {trace.resized_size[0] / trace.original_size[0]:.3f})")
print("padded batch   :", tuple(trace.batch.shape))
print("mean:", [round(m, 3) for m in trace.mean],
      "std:", [round(s, 3) for s in trace.std])
channel = trace.batch[0].cpu()
print(f"normalised red channel: mean {channel.mean():.2f}, "
      f"std {channel.std():.2f}, "
      f"range {channel.min():.2f} to {channel.max():.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
axes[0].imshow(image.permute(1, 2, 0).cpu())
axes[0].set_title(f"input {trace.original_size[1]}x{trace.original_size[0]}")
axes[1].imshow(trace.resized_image().permute(1, 2, 0).cpu())
axes[1].set_title(f"resized {trace.resized_size[1]}x{trace.resized_size[0]}")
shown = axes[2].imshow(channel, cmap="RdBu_r")
axes[2].set_title("normalised + padded, red channel "
                  f"{tuple(trace.batch.shape[1:])}")
fig.colorbar(shown, ax=axes[2], fraction=0.04)
plt.show()

# %% [markdown]
# (ch2-backbone)=
# ## 2. Backbone and feature pyramid
#
# The {term}`ResNet-50` body produces four maps (C2-C5), each at half the resolution and with more channels
# than the last. The feature pyramid network mixes each level with the upsampled level above and gives every
# level 256 channels (P2-P5), plus P6, which keeps every second row and column of P5 (torchvision's
# `LastLevelMaxPool` is a max-pool of kernel 1 and stride 2: a subsampling, not a pooling). Small pedestrians are
# found on the fine levels, large ones on the coarse levels. This is box 2 of {numref}`fig-maskrcnn-pipeline`,
# `backbone`: `backbone.body`, then `backbone.fpn` and its `extra_blocks`.

# %%
print(f"{'stage':7s} {'map':4s} {'shape [C, H, W]':18s} stride")
for row in trace.feature_table():
    shape = str(row["shape"])
    print(f"{row['stage']:7s} {row['name']:4s} {shape:18s} {row['stride']}")

# %%
levels = list(trace.features)
fig, axes = plt.subplots(3, len(levels), figsize=(3 * len(levels), 7))
for col, key in enumerate(levels):
    fmap = trace.features[key].cpu()
    # the three most active channels
    strongest = fmap.mean(dim=(1, 2)).argsort(descending=True)[:3]
    for row, c in enumerate(strongest.tolist()):
        axes[row, col].imshow(fmap[c], cmap="viridis")
        axes[row, col].set_title(f"P{col + 2} ch {c} {tuple(fmap.shape[1:])}",
                                 fontsize=9)
        axes[row, col].axis("off")
fig.suptitle("FPN feature maps: the three most active channels per level")
fig.tight_layout()
plt.show()

# %% [markdown]
# (ch2-anchors)=
# ## 3. Anchors
#
# The region proposal network does not search for boxes from nothing: at every cell of every FPN level it
# starts from a few fixed {term}`anchor` boxes, one per aspect ratio, whose size grows with the level's stride.
# It then scores each anchor ("object or not?") and regresses a correction to it. In
# {numref}`fig-maskrcnn-pipeline` this is box 3, `rpn`: `rpn.anchor_generator` makes the anchors and
# `rpn.head` scores and corrects them.

# %%
generator = model.rpn.anchor_generator
total = 0
per_level = zip(trace.anchors.items(), generator.sizes,
                generator.aspect_ratios, strict=True)
for (key, grid), sizes, ratios in per_level:
    rows, cols, per_cell = grid.shape[:3]
    count = rows * cols * per_cell
    total += count
    print(f"level {key:4s}: grid {rows}x{cols}, {per_cell} anchors per cell, "
          f"size {sizes[0]} px, ratios {list(ratios)} -> {count:,} anchors")
print(f"all levels: {total:,} anchors for this one image")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_anchors", total, display=False)

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
# (ch2-proposals)=
# ## 4. Region proposals
#
# The RPN applies its corrections to all {glue}`n_anchors` anchors, keeps the best-scoring boxes per level,
# removes duplicates with non-maximum suppression ({term}`NMS`) and hands a fixed number of {term}`proposals
# <proposal>` (class-agnostic "something is here" boxes) to the second stage. That is box 4 of
# {numref}`fig-maskrcnn-pipeline`, the method `rpn.filter_proposals`.

# %%
proposals = trace.proposals.cpu()
top_n = model.rpn._post_nms_top_n["testing"]
print(f"{len(proposals)} proposals reach the box head "
      f"(rpn post-NMS top-n for testing: {top_n})")
top = 20
show_grid([draw_bounding_boxes(canvas, proposals[:top], colors="#56B4E9",
                               width=1)],
          [f"top {top} RPN proposals (best first)"], ncols=1, size=5)
plt.show()

# %% [markdown]
# (ch2-box-head)=
# ## 5. The box head: classes and scores
#
# For each proposal, {term}`RoIAlign` cuts a 7x7 patch out of the right FPN level; the box head turns it into
# a feature vector, and the box predictor gives a score for each of the 91 COCO classes (a softmax over the
# class {term}`logits <logit>`) and a refined box per class. After the {term}`score threshold` and per-class NMS
# at most {glue}`detections_per_img` detections remain. We look at those labelled `person`. This is box 5 of
# {numref}`fig-maskrcnn-pipeline`: `roi_heads.box_roi_pool`, `box_head`, `box_predictor` and the method
# `postprocess_detections`.

# %%
class_probs = recorded["box predictor"][0].softmax(-1).cpu()
# the best object class of each proposal (class 0 is the background)
best_prob = class_probs[:, 1:].max(-1).values
det = {k: v.cpu() for k, v in trace.detections.items()}
person = det["labels"] == COCO_PERSON
print(f"{len(det['labels'])} detections, {int(person.sum())} of them "
      f"labelled person (label {COCO_PERSON})")
print("best object-class probability per proposal: "
      f"mean {best_prob.mean():.3f} "
      f"(an even spread would be 1/91 = {1 / 91:.3f})")
for i in range(min(5, len(det["labels"]))):
    tag = " (person)" if person[i] else ""
    box = [round(v) for v in det["boxes"][i].tolist()]
    print(f"  #{i}: label {int(det['labels'][i])}{tag}, "
          f"score {det['scores'][i]:.3f}, box {box}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
top_score = float(det["scores"].max()) if len(det["scores"]) else 0.0
glue("n_detections", len(det["labels"]), display=False)
glue("n_person", int(person.sum()), display=False)
glue("mean_best_prob", float(best_prob.mean()), display=False)
glue("uniform_prob", 1 / 91, display=False)
glue("top_score", top_score, display=False)

# %% [markdown]
# This run kept {glue}`n_detections` detections, {glue}`n_person` of them labelled person, with a top score of
# {glue:text}`top_score:.2f`. A score is a probability from a softmax over the 91 classes: a model that spread it
# evenly would give each class {glue:text}`uniform_prob:.3f`, but here the best class of a proposal gets
# {glue:text}`mean_best_prob:.3f` on average. That is true of a random model too: its untrained classifier
# still piles the probability onto a few arbitrary classes. A high score means something only after training,
# which is why the smoke profile's detections are noise however confident they look.

# %%
from pedseg_lib.visualize import draw_instances

draw_threshold = 0.5  # draw only confident persons
persons = {"boxes": det["boxes"][person][:10],
           "scores": det["scores"][person][:10]}
show_grid([draw_instances(canvas, persons, score_threshold=draw_threshold)],
          [f"person detections (score >= {draw_threshold}, at most 10)"],
          ncols=1, size=5)
plt.show()

# %% [markdown]
# (ch2-masks)=
# ## 6. From 28x28 mask logits to a full-resolution soft mask
#
# For each detection, the mask head looks at a 14x14 RoIAlign patch and the mask predictor gives a 28x28 map of
# logits per class; only the map of the detected class is used (box 6 of {numref}`fig-maskrcnn-pipeline`,
# from `roi_heads.mask_roi_pool` to `maskrcnn_inference`; the pasting belongs to box 7). At inference torchvision takes its sigmoid
# (`maskrcnn_inference`) and resizes the 28x28 probabilities bilinearly into the detection's box
# (`paste_masks_in_image`). It does **not** threshold: the model returns a {term}`soft mask`, a probability per
# pixel, and the caller decides where the pedestrian ends (the official tutorial draws pixels above 0.7;
# {py:func}`pedseg_lib.inference.predict` and {py:func}`pedseg_lib.visualize.draw_instances` use 0.5 by
# default). The map is always 28x28 whatever the box size, which is why large pedestrians get smooth but coarse
# outlines: the bilinear resize smooths between grid cells but cannot add detail finer than a cell. {py:func}`pedseg_lib.introspect.paste_mask` pastes one detection's map the way torchvision does.

# %%
# the best person detection; the best detection of any class when no person
# was found
index = int(person.nonzero().flatten()[0]) if person.any() else 0
logits = trace.mask_logits[index].cpu()
pasted = paste_mask(trace, index).cpu()
above = int((pasted > 0.01).sum())
soft = ((pasted > 0.01) & (pasted < 0.99)).sum() / max(1, above)
print(f"detection #{index}: logits {tuple(logits.shape)}, "
      f"range {logits.min():.2f} to {logits.max():.2f}; "
      f"pasted into {tuple(pasted.shape)}, "
      f"{int((pasted > 0.5).sum())} pixels above 0.5")
masks = trace.output["masks"]
print("output masks:", tuple(masks.shape), masks.dtype,
      f"values from {masks.min():.3f} to {masks.max():.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
shown = axes[0].imshow(logits, cmap="RdBu_r")
axes[0].set_title("28x28 mask logits")
fig.colorbar(shown, ax=axes[0], fraction=0.046)
axes[1].imshow(logits.sigmoid(), cmap="gray", vmin=0, vmax=1)
axes[1].set_title("sigmoid (probability)")
axes[2].imshow(trace.resized_image().permute(1, 2, 0).cpu())
axes[2].imshow(pasted, cmap="magma", alpha=0.6, vmin=0, vmax=1)
x0, y0, x1, y1 = det["boxes"][index].tolist()
axes[2].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                color="#E69F00", lw=2))
axes[2].set_title("pasted into its box")
plt.show()

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("soft_share", float(soft), display=False)

# %% [markdown]
# Of this detection's pixels with a probability above 0.01, {glue:text}`soft_share:.0%` stay below 0.99: the
# pasted mask is soft, not binary, until a caller thresholds it.
#
# (ch2-output)=
# ## 7. What the model returns
#
# Finally the transform maps boxes and masks back to the original image size: box 7 of
# {numref}`fig-maskrcnn-pipeline`, the method `transform.postprocess`, which pastes each 28x28 map into its box
# as in the previous section. This is what
# {py:func}`pedseg_lib.inference.predict` returns for every image: boxes, labels, scores and a
# [N, 1, H, W] probability mask per detection (binarised at its `mask_threshold` unless that is None).

# %%
out = {k: v.cpu() for k, v in trace.output.items()}
keep = out["labels"] == COCO_PERSON
final = {k: v[keep][:10] for k, v in out.items()}
print("output masks:", tuple(out["masks"].shape),
      "| person detections drawn:", len(final["boxes"]))
show_grid([draw_instances(image.cpu(), target),
           draw_instances(image.cpu(), final, score_threshold=draw_threshold)],
          ["ground truth", "the model's persons before fine-tuning "
                           f"(weights: {weights or 'random'})"],
          ncols=2, size=5)
plt.show()

# %% [markdown]
# ## Check yourself
#
# :::{dropdown} Does the model's `masks` output hold 0s and 1s?
# No. torchvision returns a soft mask per detection, [N, 1, H, W] float probabilities: the sigmoid of the 28x28
# logits, resized bilinearly into the box and pasted into the image. Thresholding is the caller's choice
# (0.5 in this book's {py:func}`pedseg_lib.inference.predict`, 0.7 in the official tutorial's drawing).
# :::
#
# :::{dropdown} What is the difference between a proposal and a detection?
# A proposal comes from the RPN: a class-agnostic box that probably holds some object. A detection comes from the
# box head: a proposal that was classified, refined for its class, kept above the score threshold and through
# per-class NMS. Hundreds of proposals go in, at most `detections_per_img` detections come out.
# :::
#
# :::{dropdown} Why are large pedestrians' masks coarser than small ones'?
# Every mask is predicted as a 28x28 grid whatever the size of the box. A 300-pixel-tall pedestrian gets about 11
# image pixels per grid cell, smoothed only by bilinear interpolation; a 50-pixel-tall one gets fewer than two.
# :::
#
# :::{dropdown} What does a forward hook receive, and why remove it afterwards?
# The module, the inputs of its `forward` and its output, each time the module runs. A hook left in place keeps
# running on every later forward pass (in training too) and keeps references to large tensors; the handle that
# `register_forward_hook` returns removes it.
# :::
#
# :::{dropdown} Why does the transform pad the batch?
# Images of different sizes must be stacked into one tensor, and the backbone halves the resolution at each
# stride; padding to a multiple of 32 (`size_divisible`) gives every image the same size and lets the FPN levels
# up to stride 32 divide evenly, so that a feature-map cell lines up with the same pixels at every level.
# :::
#
# ## Summary
#
# - `GeneralizedRCNNTransform` resizes, normalises and pads; outputs are mapped back to the original size.
# - Forward hooks see every stage without changing the model; remove them with their handles.
#   {py:func}`pedseg_lib.introspect.trace_model` records the same stages as the page's hooks.
# - A ResNet-50 body and an FPN give five 256-channel maps at strides 4 to 64.
# - The RPN turns anchors (3 aspect ratios per cell, one size per level) into class-agnostic proposals.
# - The box head classifies and refines the proposals; the mask head predicts a 28x28 logit map per detection,
#   which becomes a soft mask in the box at full resolution. The caller thresholds it.
# - A score is a softmax probability; it means something only for a trained model. {term}`Fine-tuning
#   <fine-tuning>` (Chapter 3) starts from the COCO detector, not from scratch.
#
# ## Exercises
#
# 1. **Input size.** *Needs: CPU, about 10 minutes.* Trace the image with the model's `min_size` set to 480 and
#    to 1024. How do the feature-map shapes and the number of anchors change?
#
#    :::{dropdown} Hint
#    The size lives in `model.transform.min_size`, a tuple (training draws one of its values at random; inference
#    uses the last). `max_size` caps the long side, so raise `model.transform.max_size` too.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.introspect import trace_model
#
#    for min_size in (480, 1024):
#        model.transform.min_size, model.transform.max_size = (min_size,), 2000
#        t = trace_model(model, image)
#        anchors = sum(g.shape[0] * g.shape[1] * g.shape[2] for g in t.anchors.values())
#        fpn = [row["shape"] for row in t.feature_table() if row["stage"] == "FPN"]
#        print(min_size, t.resized_size, fpn, f"{anchors:,} anchors")
#    model.transform.min_size, model.transform.max_size = (preset.min_size,), preset.max_size
#    ```
#    Each map's height and width follow the padded input divided by the level's stride, so the number of anchors
#    grows with the number of pixels, roughly (1024 / 480)² times from 480 to 1024. The anchor sizes (32 to 512 pixels) do
#    not change: at a larger input a pedestrian is bigger in pixels and is matched on a coarser level.
#    :::
#
# 2. **Fewer proposals.** *Needs: CPU, about 10 minutes.* Set `model.rpn._post_nms_top_n["testing"]` to 100
#    (from 1000) and to 10, and compare the person detections. What does the second stage lose?
#    `_post_nms_top_n` is a private attribute of torchvision's `RegionProposalNetwork` (its leading underscore
#    says so: it may change without notice); changing it in place suits an experiment. The public setting is the
#    constructor argument `rpn_post_nms_top_n_test`, e.g.
#    `maskrcnn_resnet50_fpn(weights=..., rpn_post_nms_top_n_test=100)`, which builds a new model.
#
#    :::{dropdown} Hint
#    Trace again after each change and count `trace.detections["labels"] == COCO_PERSON`; put the original value
#    back afterwards.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    from pedseg_lib.introspect import trace_model
#    from pedseg_lib.model import COCO_PERSON
#
#    default = model.rpn._post_nms_top_n["testing"]
#    for top_n in (default, 100, 10):
#        model.rpn._post_nms_top_n["testing"] = top_n
#        t = trace_model(model, image)
#        person = t.detections["labels"] == COCO_PERSON
#        print(top_n, len(t.proposals), "proposals ->", int(person.sum()), "persons, scores",
#              [round(s, 2) for s in t.detections["scores"][person][:5].tolist()])
#    model.rpn._post_nms_top_n["testing"] = default
#    ```
#    The box head can only classify and refine boxes that it is given: a pedestrian with no proposal on it
#    cannot be detected, however good the box head is. Where the persons survive the cut, the dropped proposals
#    only cost time; where they vanish (first the small and occluded ones, which compete with every other
#    object for the places), the cut costs {term}`recall`. Run it with COCO weights (the cpu profile): a random model's
#    proposals are noise.
#    :::
#
# 3. **Paste into a larger box.** *Needs: CPU, about 10 minutes.* Paste one detection's 28x28 map into its own
#    box and into a box twice as wide and twice as tall around the same centre. Where does the coarseness come
#    from?
#
#    :::{dropdown} Hint
#    {py:func}`pedseg_lib.introspect.paste_mask` takes an optional `box` (XYXY in resized-image pixels).
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    import torch
#    from pedseg_lib.introspect import paste_mask
#
#    x0, y0, x1, y1 = trace.detections["boxes"][index].tolist()
#    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
#    big = torch.tensor([cx - w, cy - h, cx + w, cy + h])
#    small_mask, big_mask = paste_mask(trace, index), paste_mask(trace, index, box=big)
#    print(f"pixels above 0.5: {int((small_mask > 0.5).sum())} in the box, {int((big_mask > 0.5).sum())} in the "
#          "doubled box (parts outside the image are cut off)")
#    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
#    for ax, m, title in zip(axes, (small_mask, big_mask), ("own box", "box twice as large")):
#        ax.imshow(m.cpu() > 0.5, cmap="gray")
#        ax.set_title(title)
#    plt.show()
#    ```
#    The same 28x28 grid is stretched over four times as many pixels, so each grid cell covers four times the
#    area; bilinear interpolation only smooths between neighbouring cells, it cannot add detail the grid does
#    not hold.
#    :::

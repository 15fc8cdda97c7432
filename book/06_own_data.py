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
# # Chapter 6: Your own data
#
# [![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/pedseg/pedseg/blob/main/book/06_own_data.ipynb)
#
# **Learning objectives**
#
# - Get annotations into the library: a {term}`COCO` instances file exported by CVAT, Label Studio or Roboflow,
#   LabelMe files or instance-id mask PNGs converted with `pedseg convert`, or a folder in Penn-Fudan's layout.
# - Read what a COCO instances file holds, and decode one annotation ({term}`polygon` or {term}`RLE`) into the
#   target Mask R-CNN trains on, by hand, checked against the library's dataset.
# - Find what is wrong with an annotation file before training, with the data doctor (`pedseg check-data`).
# - Train, evaluate per class and predict on data with several classes, with the same engine as before, and
#   convert Penn-Fudan to COCO without changing a single target.
#
# | Profile | Time to run |
# |---|---|
# | smoke | about 2 minutes on 2 CPU cores: a random-weight model trained for seconds on 16 synthetic images (measured with nbval) |
# | cpu | about 6-7 minutes on 2 CPU cores: the `cpu` recipe (COCO weights, 480 px) on 110 synthetic images, then 50 test images (measured by `bash .ci/rehearse`) |
# | tutorial | about 5 minutes on a Colab T4 GPU (estimate) |

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
# ## Where annotations come from
#
# Nothing in the model or the training loop is specific to pedestrians: chapters 1 to 5 only need images and,
# for each image, a target with one binary mask, box and label per object. This chapter gets such targets from
# your own annotations. The library reads three kinds of input:
#
# | You have | Export or conversion | Then |
# |---|---|---|
# | a project in [CVAT](https://docs.cvat.ai/) | export the dataset as **COCO 1.0**: a zip with `annotations/instances_<subset>.json` and, if you ask for them, the images | `pedseg train --coco FILE.json --images IMAGES_DIR` |
# | a project in [Label Studio](https://labelstud.io/) | export as **COCO** (rectangles and polygons only; brush masks are not part of this export) | the same |
# | a dataset in [Roboflow](https://roboflow.com/) | download it as **COCO JSON**: `train/`, `valid/` and `test/`, each with `_annotations.coco.json` beside its images | `pedseg train --coco EXPORT_DIR`: its three files are the split |
# | LabelMe `.json` files, one per image | `pedseg convert labelme FOLDER --out F.json` (polygons, rectangles, circles, masks) | `pedseg train --coco F.json` |
# | a VGG Image Annotator (VIA) file, such as the balloon set's `via_region_data.json` | `pedseg convert via FILE.json --class-name balloon --out F.json` (polygons, rectangles, circles, ellipses) | the same |
# | instance-id mask PNGs (value k for the k-th object, 0 for the background) | `pedseg convert masks IMAGES --masks MASKS --out F.json` | the same |
# | class-valued mask PNGs (say 127 for fire, 254 for smoke) | `pedseg convert masks IMAGES --masks MASKS --semantic --classes 127=fire,254=smoke --out F.json` | the same |
# | Penn-Fudan's layout: `PNGImages/NAME.png` and `PedMasks/NAME_mask.png` | none: read as is | `pedseg train --set data_root=FOLDER` |
#
# `pedseg check-data`, `pedseg train --coco` and `pedseg convert` share one input detector
# ({py:func}`pedseg_lib.data.detect_input`): given a LabelMe file where a COCO file was expected, say, they answer
# with one line naming what they saw and the exact command to run, here `pedseg convert labelme FOLDER --out ...`.
#
# ### What each tool writes, and what pedseg does with it
#
# The exports differ in small ways that matter. Each fact below was read in the tool's own source (or, for
# Roboflow, whose exporter is not public, in its exports):
#
# - **Label Studio** (`convert_to_coco` in `label_studio_converter/converter.py`,
#   [HumanSignal/label-studio-converter](https://github.com/HumanSignal/label-studio-converter), 2024) numbers
#   the categories from 0 in the order it meets them, writes `iscrowd: 0` on every annotation, a rectangle as
#   `segmentation: []` with its `bbox`, and exports only rectangles and polygons. `file_name` is the path the
#   converter saved the image under, joined by the operating system: on Windows `"images\\abc.jpg"`. pedseg reads a
#   backslash in `file_name` as a folder separator on every system, trains a box without segmentation as a
#   rectangle mask (one grouped warning), and maps id 0 to a label like any other id.
# - **CVAT** exports COCO 1.0 through Datumaro's exporter (`_InstancesExporter` in
#   `datumaro/plugins/coco_format/exporter.py`, [openvinotoolkit/datumaro](https://github.com/openvinotoolkit/datumaro)):
#   an object that ends up as a mask is written as an uncompressed RLE with `"iscrowd": int(is_crowd)` where
#   `is_crowd = mask is not None`, so *every* RLE of a CVAT file has `iscrowd` 1 and every polygon 0. A brush or
#   mask object becomes an RLE unless its label's `is_crowd` attribute is false. Every annotation carries CVAT's
#   `attributes` (`{"occluded": false, ...}`). In COCO's own files `iscrowd` 1 marks a crowd region, a group of
#   objects that is neither trained on nor counted by the evaluation ({term}`iscrowd`), so the two meanings clash.
#   pedseg's rule ({py:func}`pedseg_lib.data.crowd_rule`): in a file whose annotations carry CVAT's `attributes`,
#   an `iscrowd` 1 RLE is an instance (unless its `is_crowd` attribute is true); in any other file `iscrowd` 1 is a
#   crowd region, as in COCO. A file that marks its masks `iscrowd` 1 without CVAT's signature is the ambiguous
#   case: `--crowd-as-instances` (`pedseg train`, `pedseg check-data`; config key `crowd`) trains on them.
#   `pedseg check-data` ends with a `note: crowd rule ...` line naming the rule it applied and why. CVAT's images
#   are never beside `annotations/`: pass their folder with `--images`.
# - **Roboflow**'s COCO JSON download is a folder per split, each with `_annotations.coco.json` beside its images
#   (the layout [Datumaro documents](https://openvinotoolkit.github.io/datumaro/latest/docs/data-formats/formats/roboflow.html)).
#   Its files put a category 0 named after the project, with supercategory `"none"`, before the real classes,
#   and no annotation uses it; some repeat that name as a real class (id 0 and id 1 both `"car"`), and all write
#   `iscrowd: 0`. pedseg reads the folder as a whole (`pedseg check-data EXPORT_DIR`, `pedseg train --coco
#   EXPORT_DIR`), takes `train/`, `valid/` and `test/` as the split (without `test/`, `valid/` is the test set),
#   warns once per file about the unused category 0, and warns about a repeated name, whose classes then appear
#   as `car (id 0)` and `car (id 1)` in every table, keyed by id.
# - **LabelMe**'s own converter (`examples/instance_segmentation/labelme2coco.py`,
#   [wkentaro/labelme](https://github.com/wkentaro/labelme)) leaves the label `__ignore__` out of the categories
#   and skips every shape whose label is not a category; it turns a `circle` (its centre and a point on it) into a
#   polygon of `max(int(pi / arccos(1 - 1/r)), 12)` points. pedseg does the same. LabelMe 5's AI tools save a
#   `mask` shape: a base64 PNG of the mask inside its box, the box's corners inclusive; pedseg pastes it at the
#   box and stores the object as RLE. `line`, `linestrip` and `point` shapes have no area and cannot be
#   instances: they are skipped with one warning for the whole folder. When a photo exists only inside its JSON
#   (`imageData`), the converter writes it where `imagePath` points, so that the COCO file finds it.
# - **VIA** (the format of the balloon set in the Matterport and Detectron2 Mask R-CNN tutorials) maps each image
#   to its `regions`, a list in VIA 2 and a dict keyed `"0"`, `"1"`, ... in VIA 1; its shapes are `polygon`
#   (`all_points_x`, `all_points_y`), `rect`, `circle` and `ellipse`, which become polygons (circles and ellipses
#   with 32 points). VIA stores no image size, so the converter reads each image's header. Region attributes may
#   name the class (`--attribute NAME`); the balloon set has none, hence `--class-name balloon`.
# - **Mask folders** come in two kinds. Instance-id masks number the objects of each photo 1..N. Class-valued
#   masks give every pixel its class (127 fire, 254 smoke), so all the fires of a photo share one value: read as
#   ids, six fires would be one object. `pedseg convert masks` refuses masks whose values lie outside 1..N and recur
#   across masks, or whose only value 1 forms several separate regions in most masks, and points to `--semantic`,
#   which makes every 8-connected region of a value an object of that value's class.
#
# The Penn-Fudan layout stays the simplest format for one class: an instance-id mask per photo, saved losslessly
# as PNG (never JPEG, whose compression would invent new instance ids), a photo without objects being an all-zero
# mask.
#
# ## What a COCO instances file holds
#
# One JSON object with three lists (tools add `info` and `licenses`, which nothing here reads):
#
# - `images`: one entry per photo, with an integer `id`, the `file_name` (relative to an images folder), `width`
#   and `height`.
# - `categories`: one entry per class, with an integer `id` (its {term}`category id`) and a `name`.
# - `annotations`: one entry per object, with its own `id`, the `image_id` and `category_id` it belongs to, a
#   `segmentation`, a `bbox` (`[x, y, width, height]` in pixels), its `area`, and `iscrowd` (0 or 1).
#
# A segmentation is either a list of polygons, each a flat list `[x1, y1, x2, y2, ...]` of pixel coordinates
# (several polygons make one object when it is cut in parts, a person behind a lamp post for instance), or a
# run-length encoded mask: `{"size": [height, width], "counts": ...}`, with `counts` a list of integers
# (uncompressed) or a string (compressed). Category ids need not be consecutive. torchvision's detection models
# want labels 1, 2, ..., K for K classes and keep 0 for the background, so the library sorts the category ids and
# numbers them from 1; the model gets K + 1 classes.
#
# ## A small dataset with several classes
#
# {py:func}`pedseg_lib.data.make_synthetic_coco` writes a COCO dataset of made-up street scenes: persons (one
# polygon each for the head, the torso, the arms and the legs), signs (a plate and its pole) and balls (a single
# polygon), with COCO's own category ids, which have gaps. Some images have no object at all. The chapter makes as
# many images as this profile's recipe needs: its test images, its validation images, and its training images.

# %%
import dataclasses
import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision.ops
from pycocotools import mask as mask_utils

from pedseg_lib import data, engine, evaluation, inference, visualize
from pedseg_lib.config import config_for_profile
from pedseg_lib.errors import DatasetError
from pedseg_lib.model import model_classes

warnings.filterwarnings("ignore", "__array__ implementation",
                        DeprecationWarning)  # pycocotools under NumPy 2

# this profile's recipe (and its Penn-Fudan data, used at the end)
base = config_for_profile(profile)
n_images = base.test_size + base.val_size + (base.max_train_images or 60)
coco_root = Path(profile.runs_dir) / "synthetic-coco"
annotation_file = data.make_synthetic_coco(coco_root, n_images=n_images, seed=0)
coco = json.loads(annotation_file.read_text())
print(annotation_file)
print(f"{len(coco['images'])} images, {len(coco['annotations'])} annotations")
print("categories:")
for category in coco["categories"]:
    print(" ", category)
print("first image:")
print(" ", coco["images"][0])
first = coco["annotations"][0]
points = [len(part) // 2 for part in first["segmentation"]]
print("first annotation:")
for key, value in first.items():
    if key == "segmentation":  # the polygons, by their numbers of points
        value = f"{len(points)} polygons of {points} points"
    print(f"  {key:<13} {value}")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
from pedseg_lib.notebook import glue

glue("n_coco_images", len(coco["images"]), display=False)
glue("n_coco_annotations", len(coco["annotations"]), display=False)

# %% [markdown]
# ## One annotation by hand
#
# The file holds {glue}`n_coco_images` images and {glue}`n_coco_annotations` annotations. pycocotools, the COCO
# project's own library, turns any segmentation into a mask: `frPyObjects` converts polygons (one RLE per part)
# or an uncompressed RLE into compressed RLE, `merge` joins the parts of one object, and `decode` gives the binary
# mask. The label is the category id's rank, counted from 1. Below, every annotation of the image with the most
# kinds of objects:

# %%
def annotation_mask(segmentation, height, width):
    """The binary mask [H, W] of one COCO segmentation.

    Polygons, uncompressed RLE or compressed RLE.
    """
    # polygons: one flat [x1, y1, x2, y2, ...] list per part
    if isinstance(segmentation, list):
        parts = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(parts)
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:  # compressed RLE: counts is a string
        rle = segmentation
    return torch.from_numpy(mask_utils.decode(rle))


by_id = sorted(coco["categories"], key=lambda c: c["id"])
label_of = {c["id"]: label for label, c in enumerate(by_id, start=1)}
name_of = {c["id"]: c["name"] for c in coco["categories"]}
kinds = {im["id"]: {a["category_id"] for a in coco["annotations"]
                    if a["image_id"] == im["id"]}
         for im in coco["images"]}
image_entry = max(coco["images"], key=lambda im: len(kinds[im["id"]]))
anns = [a for a in coco["annotations"]
        if a["image_id"] == image_entry["id"] and not a["iscrowd"]]
height, width = image_entry["height"], image_entry["width"]
masks = torch.stack([annotation_mask(a["segmentation"], height, width)
                     for a in anns])
labels = torch.tensor([label_of[a["category_id"]] for a in anns])
boxes = torchvision.ops.masks_to_boxes(masks)
print(f"{image_entry['file_name']} ({width} x {height}):")
for a, label, box in zip(anns, labels.tolist(), boxes.tolist(), strict=True):
    category = a["category_id"]
    print(f"  annotation {a['id']:>3}: category {category:>2}",
          f"({name_of[category]:<6}) -> label {label},",
          f"{len(a['segmentation'])} part(s)")
    print(f"    JSON bbox {[round(v, 1) for v in a['bbox']]}, mask box {box}")

# %% [markdown]
# The JSON's `bbox` is the extent of the polygon's corners, as `[x, y, width, height]`; the box of the target is
# computed from the mask, as the `x1, y1, x2, y2` of its first and last pixels, the same convention as for
# Penn-Fudan in chapter 1. That makes boxes and masks agree whatever the annotation tool wrote.
#
# {py:class}`pedseg_lib.data.CocoInstancesDataset` reads the same file. Its targets must equal the ones built
# above, mask for mask:

# %%
# None: file names are relative to the JSON's folder
dataset = data.CocoInstancesDataset(None, annotation_file)
idx = next(i for i in range(len(dataset))
           if dataset.coco_image_id(i) == image_entry["id"])
target = dataset.target(idx)
assert torch.equal(target["masks"].as_subclass(torch.Tensor), masks)
assert torch.equal(target["labels"], labels)
assert torch.equal(target["boxes"].as_subclass(torch.Tensor), boxes)
assert torch.equal(target["area"], masks.flatten(1).sum(1).float())
print("by hand == CocoInstancesDataset.target: masks, labels, boxes, areas")
print("class_names: ", dataset.class_names)
print("category_ids:", dataset.category_ids)
n_classes = len(dataset.class_names) - 1

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_classes", n_classes, display=False)
glue("n_model_classes", len(dataset.class_names), display=False)
for label in range(1, n_classes + 1):
    glue(f"category_id_{label}", dataset.category_ids[label], display=False)

# %% [markdown]
# The category ids {glue}`category_id_1`, {glue}`category_id_2` and {glue}`category_id_3` became the labels 1 to
# {glue}`n_classes`, and `class_names[label]` names each; the model will have {glue}`n_model_classes` classes,
# the background included. What the dataset adds to the few lines above: it checks the whole file when it is
# opened and refuses it with one line naming the file and the entry at fault; it keeps crowd regions out of the
# target (evaluation gets them from `crowd_target`); it turns an annotation without a segmentation but with a box
# into a rectangle mask; it applies the photo's EXIF orientation and checks the size against the JSON; it caches
# the decoded targets; and it joins several annotation files (train, validation and test, say) into one
# dataset. Its items have exactly the contract of Penn-Fudan's, so the transforms, the loaders, the training loop
# and the evaluation work unchanged. `draw_instances` names each object's class:

# %%
shown = [i for i in range(len(dataset))
         if len(dataset.target(i)["labels"])][:3]
pictures = [visualize.draw_instances(*dataset[i],
                                     class_names=dataset.class_names)
            for i in shown]
visualize.show_grid(pictures, [dataset.images[i]["file_name"] for i in shown],
                    ncols=3, size=4)
plt.show()

# %% [markdown]
# ## The data doctor
#
# An annotation file can be wrong in ways that only show up late: an exporter that writes a polygon with a
# coordinate missing, an image that was renamed after labelling, an id used twice. Opening the dataset stops at
# the first error. {py:func}`pedseg_lib.data.check_coco` instead lists every problem of a file at once, errors
# (the data cannot be used as it is) before warnings (usable, but worth a look), each with the file, the entry
# and what to do, and counts the instances of each class. On the clean file:

# %%
report = data.check_coco(annotation_file)
print(report)

# %% [markdown]
# Only warnings: the images without objects, which train as negatives (the model learns that a street without
# a ball has no ball). Now a copy with the mistakes that real exports make, one of each. It is written with
# plain `json`, since {py:func}`pedseg_lib.data.write_coco` validates what it writes and would refuse it:

# %%
broken = json.loads(annotation_file.read_text())
anns = broken["annotations"]
anns[0]["category_id"] = 99  # a category that the file does not list
# a polygon that lost its last coordinate
anns[1]["segmentation"][0] = anns[1]["segmentation"][0][:-1]
anns[2]["id"] = anns[3]["id"]  # an annotation id used twice
anns[4]["bbox"][0] = -25.0  # a box that starts left of the image
anns[5]["iscrowd"] = 1  # a crowd region: not trained on, ignored by evaluation
# an image whose file does not exist
broken["images"].append({"id": 9999, "file_name": "images/renamed.jpg",
                         "width": 320, "height": 240})
# a category 0, as Roboflow exports it
broken["categories"].insert(0, {"id": 0, "name": "my-dataset",
                                "supercategory": "none"})
broken_file = coco_root / "broken.json"
broken_file.write_text(json.dumps(broken))

broken_report = data.check_coco(broken_file)
print(broken_report)
try:
    data.CocoInstancesDataset(None, broken_file)
except DatasetError as error:
    # what training would say: the first error, in one line
    print("\nCocoInstancesDataset:", error)

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_broken_errors", len(broken_report.errors), display=False)
glue("n_broken_warnings", len(broken_report.warnings), display=False)

# %% [markdown]
# {glue}`n_broken_errors` errors and {glue}`n_broken_warnings` warnings, each naming its entry. The unknown
# category, the odd number of coordinates, the repeated id and the missing file are errors: the dataset refuses
# the file, and `pedseg train` stops before the first step instead of crashing in the middle of an epoch. The box
# outside the image, the crowd region, the images without annotations and Roboflow's category 0, which no
# annotation uses, are warnings: training uses the mask (cut to the image), ignores the crowd region and keeps the
# negatives, but an unused category would become a class the model never sees. The `pedseg check-data`
# command prints the same report, and exits with status 1 when there are errors, so a script can stop there:

# %%
# !{sys.executable} -m pedseg_lib check-data "{broken_file}"

# %% [markdown]
# `pedseg check-data FOLDER` checks a folder in Penn-Fudan's layout the same way (images and masks readable and
# of the same size, photos without pedestrians). Exercise 4 repairs the broken copy.
#
# ## Train on it
#
# A config selects the data with four keys of {py:class}`pedseg_lib.config.TrainConfig`: `data_format="coco"`,
# `annotation_file`, and `data_root`, the folder the file names are relative to (None: the annotation file's own
# folder). Everything else is this profile's recipe, including its split: the images of the file are split
# into test, validation and training images by the same seeded split as Penn-Fudan's. `dataclasses.replace`
# validates the new config ({py:func}`pedseg_lib.config.validate`), and the engine takes the number of classes
# from the data.
#
# A preset's `test_size` and `val_size` are meant for Penn-Fudan's 170 images. When they would leave less than a
# fifth of your images for training, each shrinks to a fifth of the images, at least 1
# ({py:func}`pedseg_lib.data.fit_split_sizes`): 3 images split into 1 training, 1 validation and 1 test
# image, 10 into 6, 2 and 2, and `pedseg train` says so in the line that prints the split
# (`split of 3 images: 1 train, 1 validation, 1 test; the preset's test_size=4 and val_size=4 leave too few ...`).
# Sizes you set yourself (`--set test_size=...`) are kept, and a size that does not fit is refused with the
# number of images. Three images make a run that works, not a model that generalises.

# %%
cfg = dataclasses.replace(
    base, data_format="coco", annotation_file=str(annotation_file),
    data_root=None,
    output_dir=str(Path(profile.runs_dir) / f"{base.preset}-coco"),
)
split = engine.run_split(cfg)
print({role: len(indices) for role, indices in split.items()},
      "images (train, validation, test)")
trained = engine.load_or_train(cfg)
model = trained.model.to(profile.device)
print(trained.reason)
print("the model predicts (class names, category ids):")
print(" ", model_classes(model))

# %% [markdown]
# The checkpoint keeps the class names and the original category ids ({py:func}`pedseg_lib.model.model_classes`),
# so a model loaded later still knows what its labels mean.
#
# The evaluation is the one of chapter 5, on the {term}`test split` that nothing else read. With several classes,
# COCO's {term}`AP` is the **mean over the classes** of each class's AP, and `class_table()` shows the classes one by
# one (`n/a`: no instance of that class among the test images). The mean is easy to check by hand:

# %%
test_set = engine.test_split(cfg)
predictions = inference.predict_dataset(
    model, test_set, score_threshold=cfg.eval_score_threshold
)
metrics = evaluation.coco_evaluate(test_set, predictions)
print(metrics.class_table())
for iou_type in ("bbox", "segm"):
    measured = [aps["AP"] for aps in metrics.per_class[iou_type].values()
                if aps["AP"] >= 0]
    torch.testing.assert_close(float(np.mean(measured)),
                               metrics.stats[iou_type][0])
print("mean of the classes' AP == COCO's AP (stats[0]), for boxes and masks")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_test_images", len(test_set), display=False)

# %% [markdown]
# These are {glue}`n_test_images` test images. In the `smoke` profile, read this table for its shape only. That
# model starts from random weights and trains for seconds, so expect its detections to be noise and its APs to
# be near 0: this page then shows that the steps run, not what they give. The `cpu` and `tutorial` profiles
# {term}`fine-tune <fine-tuning>` COCO weights on the same kind of data, so their numbers can be expected to mean
# something (the argument of chapters 3 and 4; this page measures only the table above). The classes are also
# likely to differ in how hard they are, since a ball is one round blob and a person several parts of different
# colours; with real data, the table, not this argument, shows which class needs more examples.
#
# The predictions on the first test images, each box captioned with its class and score (those above the
# {term}`score threshold` an application would keep):

# %%
# the score an application keeps (chapter 5 chooses it on validation images)
OPERATING_THRESHOLD = 0.5
class_names, category_ids = model_classes(model)
first_test = test_set.indices[:3]
pictures = [
    visualize.draw_instances(test_set.dataset[i][0], predictions[i],
                             class_names=class_names,
                             score_threshold=OPERATING_THRESHOLD)
    for i in first_test
]
file_names = [test_set.dataset.images[i]["file_name"] for i in first_test]
visualize.show_grid(pictures, file_names, ncols=3, size=4)
plt.show()

# %% [markdown]
# `pedseg predict` does the same from a shell and writes `predictions.json`, a COCO results list. Its
# `category_id` values are the original ids of the annotation file, not the model's labels, so the results go
# back into the tools that use those ids (pycocotools' `loadRes`, or an annotation tool for correction). A low
# score threshold keeps some detections even for the `smoke` model:

# %%
import shutil

predict_inputs = Path(cfg.output_dir) / "predict_inputs"
predict_out = Path(cfg.output_dir) / "predictions"
# no stale predictions.json from an earlier run
shutil.rmtree(predict_out, ignore_errors=True)
predict_inputs.mkdir(exist_ok=True)
shutil.copy(test_set.dataset.image_path(first_test[0]), predict_inputs)
low_threshold = cfg.eval_score_threshold
arguments = (f'"{trained.checkpoint}" "{predict_inputs}"'
             f' --out "{predict_out}" --score-threshold {low_threshold}')

# %%
# !{sys.executable} -m pedseg_lib predict {arguments}

# %%
results = json.loads((predict_out / "predictions.json").read_text())
found = sorted({r["category_id"] for r in results})
assert set(found) <= set(dataset.category_ids[1:]), found
print(f"{len(results)} detections; their category ids: {found}")
print(f"the file's category ids: {dataset.category_ids[1:]}")

# %% [markdown]
# From a shell, the whole section is two commands (with `--preset cpu` or `tutorial` for a real model):
#
# ```bash
# pedseg check-data runs/synthetic-coco/annotations.json
# pedseg train --preset cpu --coco runs/synthetic-coco/annotations.json --out runs/cpu-coco
# pedseg evaluate runs/cpu-coco    # the box and mask tables, then AP per class
# ```
#
# `--coco FILE` sets `data_format` and `annotation_file`, `--images DIR` sets `data_root`.
#
# ## Penn-Fudan as a COCO file
#
# Penn-Fudan itself converts too: {py:func}`pedseg_lib.data.pennfudan_to_coco` writes each pedestrian of each
# instance-id mask as a compressed RLE, and {py:func}`pedseg_lib.data.write_coco` validates the result and writes
# it. Read back with `CocoInstancesDataset`, every target must be the one `PennFudanDataset` builds from the PNG
# masks, so a model trained on either route sees the same data:

# %%
pennfudan = data.PennFudanDataset(base.data_root)
pennfudan_coco = data.pennfudan_to_coco(pennfudan.root)
images_dir = pennfudan.root / "PNGImages"
pennfudan_file = data.write_coco(
    pennfudan_coco, Path(profile.runs_dir) / "pennfudan-coco.json",
    images_dir=images_dir,
)
converted = data.CocoInstancesDataset(images_dir, pennfudan_file)
assert len(converted) == len(pennfudan)
assert converted.class_names == pennfudan.class_names
n_instances = 0
for i in range(len(pennfudan)):
    a, b = pennfudan.target(i), converted.target(i)
    for key in ("masks", "boxes", "labels", "area", "iscrowd"):
        from_png = torch.as_tensor(a[key]).as_subclass(torch.Tensor)
        from_json = torch.as_tensor(b[key]).as_subclass(torch.Tensor)
        assert torch.equal(from_png, from_json), (i, key)
    assert a["image_id"] == b["image_id"] == i
    n_instances += len(a["labels"])
source = "synthetic stand-in" if profile.synthetic else "Penn-Fudan"
print(pennfudan_file)
print(f"{len(converted)} images, {n_instances} pedestrians,",
      f"every target identical ({source})")

# %% tags=["remove-cell"]
# for the book's text (this cell is hidden in the book):
glue("n_pf_images", len(converted), display=False)
glue("n_pf_instances", n_instances, display=False)

# %% [markdown]
# All {glue}`n_pf_images` images and {glue}`n_pf_instances` pedestrians agree: masks, boxes, labels and areas. The
# same conversion from a shell is `pedseg convert pennfudan FOLDER --out pennfudan.json`; train on it with
# `pedseg train --coco pennfudan.json --images FOLDER/PNGImages`.
#
# ## Check yourself
#
# :::{dropdown} Your file's categories have the ids 3, 7 and 12. How many classes does the model get, and which label does id 7 become?
# Four: the three categories and the background. The ids are sorted and numbered from 1, so 3 becomes label 1,
# 7 becomes label 2 and 12 label 3; `category_ids[2] == 7` maps the label back, which is what `pedseg predict`
# writes into `predictions.json`.
# :::
#
# :::{dropdown} Why is a polygon with an odd number of coordinates an error, and not fixed by dropping the last number?
# A polygon is a list of `x, y` pairs. An odd count means that the export lost or added a number somewhere, and
# nothing says where: if it is missing in the middle, every later `x` is read as a `y`. Guessing would train on
# a wrong shape without anyone noticing; the error makes someone look at the annotation.
# :::
#
# :::{dropdown} An object is annotated with `iscrowd` 1. Is it trained on, and does it count in the evaluation?
# It is not trained on: the target holds only the `iscrowd` 0 objects. In the evaluation, pycocotools ignores a
# detection that falls on a crowd region (it counts neither as right nor as wrong), and measures its overlap as
# the share of the detection inside the region. A CVAT export is the exception: CVAT writes `iscrowd` 1 on every
# brush or mask object, so in a file with CVAT's `attributes` pedseg trains on them as instances (unless their
# `is_crowd` attribute is true). `pedseg check-data` says which rule it applied; its crowd column counts the rest.
# :::
#
# :::{dropdown} Why keep images without any object in the training data?
# They teach the model what is *not* an object: every proposal on them is background, so the classifier learns
# to give low scores to the street, the walls and the trees. Without negatives a model tends to find objects
# everywhere, which shows up as false positives in the AP.
# :::
#
# :::{dropdown} Why check that the Penn-Fudan COCO file gives exactly the targets of `PennFudanDataset`?
# A conversion that changed anything (a box one pixel wider, a mask cut differently, an area computed from the
# polygon instead of the pixels) would change what the model trains on and how AP sorts objects by size, and
# runs on the two routes would not be comparable. Identical targets show that the COCO route loses nothing.
# :::
#
# ## Summary
#
# - CVAT (**COCO 1.0**), Label Studio (**COCO**) and Roboflow (**COCO JSON**, a folder of splits) export COCO
#   instances files, which the library reads as they are (Windows paths, CVAT's `iscrowd` 1 masks, Roboflow's
#   category 0 included); LabelMe files, VIA files and instance-id or class-valued masks convert with
#   `pedseg convert`; a folder in Penn-Fudan's layout needs nothing.
# - A COCO file lists images, categories and annotations; a segmentation is polygons or RLE. pycocotools'
#   `frPyObjects`, `merge` and `decode` give the mask, the box comes from the mask, and the sorted category ids
#   become labels 1 to K, with K + 1 classes in the model.
# - {py:class}`~pedseg_lib.data.CocoInstancesDataset` gives exactly those targets, with Penn-Fudan's item
#   contract, so the rest of the book works unchanged.
# - {py:func}`~pedseg_lib.data.check_coco` and `pedseg check-data` list every problem at once, errors before
#   warnings, one line per kind of finding with its count and first three entries (`--all`: every one), and a
#   per-class count table keyed by category id; fix the errors before training.
# - `data_format="coco"` and `annotation_file` (`pedseg train --coco FILE`) train on the file;
#   `class_table()` reports AP per class, whose mean is COCO's AP; predictions keep the file's category ids.
# - {py:func}`~pedseg_lib.data.pennfudan_to_coco` converts Penn-Fudan without changing one target.
#
# ## Exercises
#
# 1. **A LabelMe folder.** *Needs: CPU, about 15 minutes.* Draw polygons around two or three kinds of objects in
#    a few of your photos with [LabelMe](https://github.com/wkentaro/labelme) (one `.json` file per photo), convert
#    the folder, and check the result with the doctor. How do you mark two polygons as parts of one object?
#
#    :::{dropdown} Hint
#    `pedseg convert labelme FOLDER --out FILE.json`, then `pedseg check-data FILE.json --images FOLDER`. LabelMe's
#    label dialog has a *Group ID* field: shapes with the same label and the same group id become one object.
#    :::
#
#    :::{dropdown} Solution
#    ```bash
#    pedseg convert labelme my_photos --out my_photos.json   # outside the folder: it reads every .json in it
#    pedseg check-data my_photos.json --images my_photos
#    ```
#    ```python
#    from pedseg_lib import data, visualize
#
#    dataset = data.CocoInstancesDataset("my_photos", "my_photos.json")  # file names are relative to the folder
#    print(dataset.class_names)  # the labels you drew, sorted, after the background
#    visualize.show_grid([visualize.draw_instances(*dataset[i], class_names=dataset.class_names)
#                         for i in range(min(3, len(dataset)))])
#    ```
#    Give the parts of one object the same label and the same group id; the converter merges them into one
#    annotation with several polygons. A circle, line or point shape is refused with the file and the shape's
#    index: convert it to a polygon in LabelMe, or delete it.
#    :::
#
# 2. **A fourth class.** *Needs: CPU, about 10 minutes.* Turn every second ball of the synthetic file into a new
#    class, "cone", with the category id 44, write the file with `write_coco`, and train this page's recipe
#    (`cfg`, the profile's) on it. How many classes does the model have, and what does the doctor's table show?
#
#    :::{dropdown} Hint
#    Add `{"id": 44, "name": "cone"}` to `categories` and change the `category_id` of half the annotations whose
#    category is "ball". `len(dataset.class_names)` is the number of classes the engine builds.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    four = json.loads(annotation_file.read_text())
#    ball = next(c["id"] for c in four["categories"] if c["name"] == "ball")
#    four["categories"].append({"id": 44, "name": "cone", "supercategory": "outdoor"})
#    for a in [a for a in four["annotations"] if a["category_id"] == ball][::2]:
#        a["category_id"] = 44
#    four_file = data.write_coco(four, coco_root / "four_classes.json")
#    print(data.check_coco(four_file).table())
#    cfg4 = dataclasses.replace(cfg, annotation_file=str(four_file),
#                               output_dir=str(Path(profile.runs_dir) / f"{profile.name}-four"))
#    model4 = engine.load_or_train(cfg4).model
#    print(model_classes(model4))  # 5 classes: background, person, sign, ball, cone
#    ```
#    The drawing does not change (a "cone" still looks like a ball), so the model cannot tell the two apart:
#    the table shows about half the balls under each name, and a trained model's AP for both can be expected to
#    stay low. A class must look different to be learnt.
#    :::
#
# 3. **Separate train, validation and test files.** *Needs: CPU, about 10 minutes.* Roboflow and CVAT projects
#    often come as one file per subset. Split the synthetic file into three files by image, and train with
#    `annotation_file`, `val_annotation_file` and `test_annotation_file`. Which images does `test_split` return
#    now?
#
#    :::{dropdown} Hint
#    Each file keeps all categories and only its own images and their annotations. With `test_annotation_file`
#    set, the files are the split: no seeded split is made.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    full = json.loads(annotation_file.read_text())
#    ids = sorted(im["id"] for im in full["images"])
#    parts = {"test": ids[:base.test_size], "val": ids[base.test_size:base.test_size + 4],
#             "train": ids[base.test_size + 4:]}
#    files = {}
#    for name, keep in parts.items():
#        subset = {**full, "images": [im for im in full["images"] if im["id"] in keep],
#                  "annotations": [a for a in full["annotations"] if a["image_id"] in keep]}
#        files[name] = str(data.write_coco(subset, coco_root / f"{name}.json"))
#    cfg3 = dataclasses.replace(cfg, annotation_file=files["train"], val_annotation_file=files["val"],
#                               test_annotation_file=files["test"],
#                               output_dir=str(Path(profile.runs_dir) / "smoke-files"))
#    test3 = engine.test_split(cfg3)
#    print(len(test3), [test3.dataset.images[i]["file_name"] for i in test3.indices])
#    ```
#    The test images are exactly those of `test.json`, whatever `split_seed` says; `test_size` and `val_size` are
#    not used for the files. Roboflow's download has this shape already, each file beside its images
#    (`data_root` None), and `pedseg train --coco EXPORT_DIR` sets the three keys from its folders; remove its
#    unused category 0 first, or the model gets a class it never sees:
#    ```bash
#    pedseg train --preset cpu --coco my-roboflow-export/   # train/, valid/ and test/ are the split
#    ```
#    :::
#
# 4. **Repair the broken copy.** *Needs: CPU, about 10 minutes.* Fix `broken.json` until `check_coco` reports no
#    error, then open it with `CocoInstancesDataset`. Which of the changes would you make differently on real
#    data, where you do not know what went wrong?
#
#    :::{dropdown} Hint
#    Work through `broken_report.errors` one by one; each message says what to do. Delete what cannot be
#    repaired (the polygon missing a coordinate, the image without a file), renumber what can.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    fixed = json.loads(broken_file.read_text())
#    fixed["categories"] = [c for c in fixed["categories"] if c["id"] != 0]  # Roboflow's unused root category
#    known = {c["id"] for c in fixed["categories"]}
#    fixed["annotations"] = [a for a in fixed["annotations"] if a["category_id"] in known
#                            and all(len(part) % 2 == 0 for part in a["segmentation"])]
#    for new_id, a in enumerate(fixed["annotations"], start=1):  # unique ids again
#        a["id"] = new_id
#    fixed["images"] = [im for im in fixed["images"] if (coco_root / im["file_name"]).is_file()]
#    fixed_file = data.write_coco(fixed, coco_root / "fixed.json")  # validates before writing
#    print(data.check_coco(fixed_file))
#    print(len(data.CocoInstancesDataset(None, fixed_file)), "images")
#    ```
#    What is left are warnings: the box outside the image, the crowd region and the negatives. On real data,
#    deleting is the last resort: the unknown category is more likely a class missing from `categories` (add
#    it), the missing file a renamed one (fix `file_name`), and the odd polygon a sign of a buggy exporter worth
#    re-exporting.
#    :::

"""Penn-Fudan, COCO instance files and your own annotations, one module per concern.

==================== ==================================================================================
``pennfudan``        the dataset (:class:`PennFudanDataset`), masks to targets, statistics, the folder lookup
``annotations``      the PASCAL-style annotation files
``splits``           seeded train/validation/test splits
``download``         download, checksum and unpack Penn-Fudan
``synthetic``        a synthetic look-alike, a multi-class COCO set, and synthetic detections, for tests
``transforms``       augmentation pipelines and DataLoaders
``sampling``         a training order and augmentation seeded by (seed, epoch, image): exact resumes, any workers
``coco``             COCO instance files: reading, validation findings, :class:`CocoInstancesDataset`
``convert``          Penn-Fudan folders, instance- and class-valued mask folders, LabelMe and VIA files to COCO;
                     ``write_coco``
``formats``          what an input path holds (COCO, Roboflow export, LabelMe, VIA, Penn-Fudan): ``detect_input``
``doctor``           every problem of a COCO file, a Roboflow export or a Penn-Fudan folder, and per-class counts
                     (``check_data``)
==================== ==================================================================================

Conventions:
    * Instances are the distinct non-zero values of a mask PNG, in increasing order.
    * Boxes follow :func:`torchvision.ops.masks_to_boxes`: XYXY in 0-based pixel indices, x2/y2 inclusive.
    * An instance whose box has zero width or height (a one-pixel-wide or one-pixel-tall sliver) is
      dropped: Mask R-CNN's box regression cannot learn a degenerate box.
    * ``area`` is the mask pixel count (COCO's small/medium/large buckets use ``area``).

Every public name is importable from ``pedseg_lib.data`` itself.
"""

from pedseg_lib.data.annotations import AnnotatedObject, Annotation, read_annotation
from pedseg_lib.data.coco import (
    CocoInstancesDataset,
    CrowdRule,
    Finding,
    coco_findings,
    crowd_rule,
    read_coco_json,
)
from pedseg_lib.data.convert import (
    class_valued_masks,
    connected_components,
    labelme_to_coco,
    masks_to_coco,
    pennfudan_to_coco,
    via_to_coco,
    write_coco,
)
from pedseg_lib.data.doctor import DataReport, check_coco, check_data, check_pennfudan, check_roboflow
from pedseg_lib.data.download import MANIFEST_PATH, PENNFUDAN_URL, download_pennfudan, verify_manifest
from pedseg_lib.data.formats import DetectedInput, detect_input
from pedseg_lib.data.pennfudan import (
    BACKGROUND,
    PennFudanDataset,
    dataset_statistics,
    find_dataset,
    instances_to_target,
    mask_to_target,
)
from pedseg_lib.data.sampling import EpochSampler, SeededDataset
from pedseg_lib.data.splits import fit_split_sizes, split_indices, split_train_val_test
from pedseg_lib.data.synthetic import make_synthetic_coco, make_synthetic_pennfudan, synthetic_detections
from pedseg_lib.data.transforms import BoxesFromMasks, build_transforms, collate_fn, create_loader

__all__ = [
    "BACKGROUND", "MANIFEST_PATH", "PENNFUDAN_URL", "AnnotatedObject", "Annotation", "BoxesFromMasks",
    "build_transforms",
    "check_coco", "check_data", "check_pennfudan", "check_roboflow", "class_valued_masks", "coco_findings",
    "CocoInstancesDataset", "collate_fn", "connected_components", "create_loader", "crowd_rule", "CrowdRule",
    "DataReport", "dataset_statistics", "DetectedInput", "detect_input", "download_pennfudan", "EpochSampler",
    "find_dataset",
    "Finding", "fit_split_sizes", "instances_to_target", "labelme_to_coco", "make_synthetic_coco",
    "make_synthetic_pennfudan", "mask_to_target",
    "masks_to_coco", "pennfudan_to_coco", "PennFudanDataset", "read_annotation", "read_coco_json", "SeededDataset",
    "split_indices",
    "split_train_val_test", "synthetic_detections", "verify_manifest", "via_to_coco", "write_coco",
]

# Documented, pickled and shown under the name a reader imports (``pedseg_lib.data.PennFudanDataset``).
for _name in __all__:
    if callable(globals()[_name]):
        globals()[_name].__module__ = __name__
del _name

"""Follow one image through a torchvision Mask R-CNN with forward hooks (Chapter 2).

:func:`trace_model` runs the model once in eval mode and keeps what each stage produced: the resized,
normalised image, the backbone and FPN feature maps, the anchors, the RPN proposals, the box head's scored
detections and the 28x28 mask logits. The helpers below turn those into things one can draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.models.detection.roi_heads import paste_masks_in_image


@dataclass
class Trace:
    """What each stage of Mask R-CNN produced for one image (coordinates in the resized image unless said).

    Attributes:
        original_size: (H, W) of the input image.
        resized_size: (H, W) after ``GeneralizedRCNNTransform`` resized it (before padding).
        batch: the normalised, padded [3,H,W] tensor the backbone sees.
        body: ResNet stage outputs C2-C5, keyed by torchvision's names ``"0"``-``"3"``.
        features: FPN outputs P2-P6, keyed ``"0"``-``"3"`` and ``"pool"``.
        anchors: per FPN level, the anchors as a [H_l, W_l, A, 4] tensor (XYXY).
        proposals: the RPN's proposals [N,4], best first.
        detections: the box head's ``boxes``, ``scores``, ``labels`` (after score threshold and NMS), boxes in
            the resized image (``output`` holds the same detections mapped back to the original size).
        mask_logits: [N,28,28] logits of each detection's own class.
        output: the model's final output, in original image coordinates.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    batch: torch.Tensor
    body: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]
    anchors: dict[str, torch.Tensor]
    proposals: torch.Tensor
    detections: dict[str, torch.Tensor]
    mask_logits: torch.Tensor
    output: dict[str, torch.Tensor]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def resized_image(self) -> torch.Tensor:
        """The resized image without normalisation or padding: [3,H,W] float in 0-1."""
        h, w = self.resized_size
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (self.batch[:, :h, :w] * std + mean).clamp(0, 1)

    def feature_table(self) -> list[dict[str, object]]:
        """One row per backbone/FPN map: name, shape and stride relative to the padded batch."""
        rows = []
        height = self.batch.shape[-2]
        for stage, maps, names in (("ResNet", self.body, ("C2", "C3", "C4", "C5")),
                                   ("FPN", self.features, ("P2", "P3", "P4", "P5", "P6"))):
            for name, (key, value) in zip(names, maps.items(), strict=False):
                rows.append(dict(stage=stage, name=name, key=key, shape=tuple(value.shape),
                                 # a power of two; rounding in log space copes with odd padded sizes
                                 stride=2 ** round(math.log2(height / value.shape[-2]))))
        return rows


def trace_model(model: nn.Module, image: torch.Tensor) -> Trace:
    """Run ``model`` on one image in eval mode and record every stage with forward hooks.

    Args:
        model: a torchvision ``MaskRCNN`` (e.g. from :func:`pedseg_lib.model.build_model`).
        image: [3,H,W] float tensor in 0-1.

    Returns:
        A :class:`Trace`. The hooks are removed again, and the model's train/eval mode is restored.
    """
    seen: dict[str, object] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            if name == "roi_heads":
                # GeneralizedRCNN's transform.postprocess later rewrites these dicts in place (boxes to the
                # original image size, masks pasted): keep copies of the dicts to stay in the resized frame.
                detections, losses = output
                output = ([dict(d) for d in detections], losses)
            seen[name] = output
        return hook

    modules = {"transform": model.transform, "body": model.backbone.body, "fpn": model.backbone,
               "anchors": model.rpn.anchor_generator, "rpn": model.rpn, "roi_heads": model.roi_heads,
               "mask_predictor": model.roi_heads.mask_predictor}
    handles = [m.register_forward_hook(keep(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model([image])[0]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    image_list, _ = seen["transform"]
    features = {k: v[0] for k, v in seen["fpn"].items()}
    detections = {k: v for k, v in seen["roi_heads"][0][0].items() if k != "masks"}
    # torchvision's RoI heads run the mask predictor even on zero detections: its output is then [0, classes, 28, 28].
    logits = seen["mask_predictor"]
    mask_logits = logits[torch.arange(len(logits)), detections["labels"]]
    return Trace(
        original_size=tuple(image.shape[-2:]),
        resized_size=tuple(image_list.image_sizes[0]),
        batch=image_list.tensors[0],
        body={k: v[0] for k, v in seen["body"].items()},
        features=features,
        anchors=_split_anchors(seen["anchors"][0], features, model.rpn.anchor_generator),
        proposals=seen["rpn"][0][0],
        detections=detections,
        mask_logits=mask_logits,
        output=output,
        mean=list(model.transform.image_mean),
        std=list(model.transform.image_std),
    )


def _split_anchors(anchors: torch.Tensor, features: dict[str, torch.Tensor], generator) -> dict[str, torch.Tensor]:
    """Cut the concatenated anchors into levels shaped [H, W, A, 4] (torchvision's order: y, x, anchor)."""
    out, start = {}, 0
    for (key, fmap), per_cell in zip(features.items(), generator.num_anchors_per_location(), strict=True):
        h, w = fmap.shape[-2:]
        count = h * w * per_cell
        out[key] = anchors[start:start + count].view(h, w, per_cell, 4)
        start += count
    return out


def anchors_at(trace: Trace, level: str, points: list[tuple[float, float]]) -> torch.Tensor:
    """All anchors of one FPN level centred at the grid cells nearest to ``points``.

    Args:
        trace: from :func:`trace_model`.
        level: FPN key, ``"0"``-``"3"`` or ``"pool"``.
        points: (x, y) positions in resized-image pixels.

    Returns:
        [len(points) * A, 4] anchors (XYXY, resized-image coordinates).
    """
    grid = trace.anchors[level]
    h, w = grid.shape[:2]
    stride_y, stride_x = trace.batch.shape[-2] / h, trace.batch.shape[-1] / w
    cells = [grid[min(h - 1, int(y // stride_y)), min(w - 1, int(x // stride_x))] for x, y in points]
    return torch.cat(cells)


def paste_mask(trace: Trace, index: int, box: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    """Detection ``index``'s 28x28 mask, as probabilities pasted into a box at full resized size.

    This is what torchvision does in ``roi_heads.maskrcnn_inference`` + ``paste_masks_in_image``:
    sigmoid of the logits, then bilinear resize of the 28x28 grid into the (slightly padded) box. There is
    no threshold: the result is a soft mask.

    Args:
        trace: from :func:`trace_model`.
        index: the detection, a row of ``trace.detections``.
        box: (x1, y1, x2, y2) in resized-image pixels to paste into instead of the detection's own box,
            e.g. a larger box to see the 28x28 grid stretched. Parts outside the image are cut off.

    Returns:
        [H, W] float probabilities in the resized image.

    Raises:
        IndexError: when ``index`` is not a detection of ``trace``.
        ValueError: when ``box`` does not hold four numbers.
    """
    n = len(trace.mask_logits)
    if not -n <= index < n:
        raise IndexError(f"detection {index} does not exist: the trace has {n} detections")
    probs = trace.mask_logits[index].sigmoid()[None, None]
    if box is None:
        box = trace.detections["boxes"][index]
    box = torch.as_tensor(box, dtype=torch.float32, device=probs.device)
    if box.shape != (4,):
        raise ValueError(f"box must be 4 numbers (x1, y1, x2, y2), got shape {tuple(box.shape)}")
    return paste_masks_in_image(probs, box[None], trace.resized_size, padding=1)[0, 0]

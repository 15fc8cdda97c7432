"""Figures for the book: instance overlays, grids, curves. Drawing goes through ``torchvision.utils``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

# Colour-blind-friendly qualitative colours (Okabe-Ito), cycled over instances.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"]


def to_uint8_image(image: torch.Tensor) -> torch.Tensor:
    """A [3,H,W] uint8 tensor from a uint8 or float (0-1) image tensor."""
    image = torch.as_tensor(image).detach().cpu()
    if image.dtype == torch.uint8:
        return image.as_subclass(torch.Tensor)
    return (image.float().clamp(0, 1) * 255).round().to(torch.uint8).as_subclass(torch.Tensor)


def draw_instances(
    image: torch.Tensor,
    instances: Mapping[str, torch.Tensor],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    alpha: float = 0.45,
    width: int = 2,
    show_scores: bool = True,
) -> torch.Tensor:
    """Overlay masks and boxes of a target or a prediction on an image.

    Args:
        image: [3,H,W] uint8, or float in 0-1.
        instances: a target (``boxes``, uint8 ``masks`` [N,H,W]) or a prediction (``boxes``,
            ``scores``, float ``masks`` [N,1,H,W]); ``masks`` may be absent.
        score_threshold: predictions scoring below it are not drawn.
        mask_threshold: probability above which a predicted mask pixel is foreground.
        alpha: opacity of the mask colours.
        width: box line width in pixels.
        show_scores: write each prediction's score above its box.

    Returns:
        The drawing, [3,H,W] uint8.
    """
    canvas = to_uint8_image(image)
    boxes = torch.as_tensor(instances.get("boxes", torch.zeros(0, 4))).detach().cpu().float()
    scores = instances.get("scores")
    keep = torch.ones(len(boxes), dtype=torch.bool)
    if scores is not None:
        scores = torch.as_tensor(scores).detach().cpu().float()
        keep = scores >= score_threshold
    boxes = boxes[keep]
    if len(boxes) == 0:
        return canvas
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(boxes))]
    masks = instances.get("masks")
    if masks is not None:
        masks = torch.as_tensor(masks).detach().cpu()[keep]
        if masks.ndim == 4:  # predictions: [N,1,H,W] probabilities
            masks = masks[:, 0]
        masks = masks > mask_threshold if masks.is_floating_point() else masks.bool()
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colors)
    labels = None
    if show_scores and scores is not None:
        labels = [f"{s:.2f}" for s in scores[keep].tolist()]
    return draw_bounding_boxes(canvas, boxes, labels=labels, colors=colors, width=width)


def show_grid(
    images: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 3,
    size: float = 4.0,
) -> plt.Figure:
    """Show [3,H,W] images in a grid.

    Args:
        images: uint8 or float tensors.
        titles: one per image, or None.
        ncols: images per row.
        size: inches per grid cell.

    Returns:
        The matplotlib figure.
    """
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images)):
        ax.imshow(to_uint8_image(image).permute(1, 2, 0).numpy())
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


# --- training curves (from an engine run's history) ------------------------------------------


# --- evaluation figures (precision-recall, ground truth beside prediction, galleries) --------

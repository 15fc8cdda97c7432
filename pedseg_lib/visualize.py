"""Figures for the book: instance overlays, grids, curves. Drawing goes through ``torchvision.utils``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from pedseg_lib.model import LOSS_KEYS as LOSS_TERMS  # the loss terms the engine logs

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
    class_names: Sequence[str] | None = None,
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
        class_names: name of each label (``class_names[label]``, e.g. a model's
            :func:`~pedseg_lib.model.model_classes`): each box is captioned with its class name (and score).

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
    captions = [[] for _ in range(len(boxes))]
    if class_names is not None and instances.get("labels") is not None:
        for caption, label in zip(captions, torch.as_tensor(instances["labels"])[keep].tolist(), strict=True):
            caption.append(class_names[label] if 0 <= label < len(class_names) else f"class {label}")
    if show_scores and scores is not None:
        for caption, score in zip(captions, scores[keep].tolist(), strict=True):
            caption.append(f"{score:.2f}")
    labels = [" ".join(c) for c in captions] if any(captions) else None
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
    for i, (ax, image) in enumerate(zip(axes.flat, images, strict=False)):  # the grid may have spare cells
        ax.imshow(to_uint8_image(image).permute(1, 2, 0).numpy())
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


# --- training curves (from an engine run's history) ------------------------------------------


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average, so single noisy batches do not hide the trend."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_components(history: Mapping, smooth: int = 1, ax: plt.Axes | None = None) -> plt.Figure:
    """Training loss and its five terms per iteration (log scale).

    Args:
        history: an engine history (``history.json``) with ``iterations`` records.
        smooth: moving-average window in iterations (1 = raw values).
        ax: draw into this axes instead of a new figure.

    Returns:
        The figure.
    """
    rows = history["iterations"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4))
    x = [r["iteration"] for r in rows]
    for key in ("loss", *LOSS_TERMS):
        ax.plot(x, _smooth([r[key] for r in rows], smooth), label=key, lw=2.5 if key == "loss" else 1.2)
    ax.set(xlabel="iteration", ylabel="training loss", yscale="log", title="Training loss per term")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    return ax.figure


def plot_epoch_metrics(history: Mapping) -> plt.Figure:
    """Per epoch: training and validation loss (left), validation box and mask AP (right)."""
    rows = history["epochs"]
    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train loss")
    left.plot(epochs, [r["val_loss"] for r in rows], "s-", label="validation loss")
    left.set(xlabel="epoch", ylabel="loss", title="Loss per epoch")
    for key, style in (("bbox_AP", "o-"), ("segm_AP", "s-"), ("bbox_AP50", "o--"), ("segm_AP50", "s--")):
        right.plot(epochs, [r[key] for r in rows], style, label=key)
    right.set(xlabel="epoch", ylabel="COCO AP", title="Validation AP per epoch", ylim=(-0.02, 1.02))
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def plot_lr(history: Mapping, first: int | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """The learning rate of each iteration (optionally only the ``first`` ones, to see the warm-up)."""
    rows = history["iterations"][:first]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([r["iteration"] for r in rows], [r["lr"] for r in rows], ".-")
    ax.set(xlabel="iteration", ylabel="learning rate", title="Learning-rate schedule")
    ax.grid(alpha=0.3)
    return ax.figure


def compare_runs(histories: Mapping[str, Mapping], metric: str = "segm_AP") -> plt.Figure:
    """Several runs side by side: training loss per iteration (left) and ``metric`` per epoch (right).

    Args:
        histories: run name -> engine history.
        metric: a per-epoch key, e.g. ``segm_AP``, ``bbox_AP`` or ``val_loss``.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, history in histories.items():
        its = history["iterations"]
        left.plot([r["iteration"] for r in its], _smooth([r["loss"] for r in its], 5), label=name)
        right.plot([r["epoch"] for r in history["epochs"]], [r[metric] for r in history["epochs"]], "o-", label=name)
    left.set(xlabel="iteration", ylabel="training loss (5-iteration mean)", yscale="log", title="Training loss")
    right.set(xlabel="epoch", ylabel=metric, title=f"Validation {metric}")
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig



# --- evaluation figures (precision-recall, ground truth beside prediction, galleries) --------

def show_prediction(
    image: torch.Tensor,
    target: Mapping[str, torch.Tensor],
    prediction: Mapping[str, torch.Tensor],
    score_threshold: float = 0.5,
    title: str | None = None,
    size: float = 4.5,
) -> plt.Figure:
    """Ground truth (left) beside a prediction (right) on the same image.

    Args:
        image: [3,H,W] uint8 or float image.
        target: its ground truth (``boxes``, ``masks``).
        prediction: a prediction dict for it.
        score_threshold: predictions below it are not drawn.
        title: figure title.
        size: inches per panel.
    """
    kept = int((torch.as_tensor(prediction["scores"]) >= score_threshold).sum())
    fig = show_grid(
        [draw_instances(image, target), draw_instances(image, prediction, score_threshold=score_threshold)],
        [f"ground truth ({len(target['boxes'])})", f"prediction, score >= {score_threshold} ({kept})"],
        ncols=2, size=size,
    )
    if title:
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_pr_curves(evaluation, iou_type: str = "segm", ax: plt.Axes | None = None) -> plt.Figure:
    """Precision-recall curves at IoU 0.5, 0.75 and averaged over 0.5:0.95 (area all, maxDets 100).

    Args:
        evaluation: a :class:`pedseg_lib.evaluation.CocoEvaluation`.
        iou_type: ``"bbox"`` or ``"segm"``.
        ax: draw into this axes instead of a new figure.
    """
    evaluator = evaluation.evaluators[iou_type]
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # [IoU, recall] for category 1, area all, 100 dets
    recall = evaluator.params.recThrs
    at = {round(float(t), 2): i for i, t in enumerate(evaluator.params.iouThrs)}
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    stats = evaluation.stats[iou_type]
    curves = [(f"IoU 0.50 (AP50 {stats[1]:.3f})", precision[at[0.5]]),
              (f"IoU 0.75 (AP75 {stats[2]:.3f})", precision[at[0.75]]),
              (f"mean over IoU 0.50:0.95 (AP {stats[0]:.3f})", precision.clip(min=0).mean(0))]
    for label, values in curves:
        ax.plot(recall, values.clip(min=0), label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"Precision-recall ({iou_type})")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return ax.figure



def plot_threshold_sweep(sweep: Mapping[str, Any], ax: plt.Axes | None = None) -> plt.Figure:
    """Precision, recall and F1 against the score threshold, with the best-F1 threshold marked.

    Args:
        sweep: :func:`pedseg_lib.evaluation.score_threshold_sweep` output.
        ax: draw into this axes instead of a new figure.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for key in ("precision", "recall", "f1"):
        ax.plot(sweep["threshold"], sweep[key], marker=".", label=key)
    best = sweep["best"]
    if not math.isnan(best):
        ax.axvline(best, color="grey", ls="--", lw=1, label=f"best F1 at {best:.2f}")
    ax.set(xlabel="score threshold", ylabel="value", xlim=(0, 1), ylim=(0, 1.02), title="Choosing a score threshold")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure

def plot_errors(
    images: Mapping[int, torch.Tensor],
    targets: Mapping[int, Mapping[str, torch.Tensor]],
    predictions: Mapping[int, Mapping[str, torch.Tensor]],
    errors: Mapping[int, Mapping[str, list]],
    max_images: int = 6,
    ncols: int = 3,
) -> plt.Figure:
    """Gallery of mistakes: false positives (red) and missed pedestrians (blue) per image.

    Args:
        images: image_id -> image.
        targets: image_id -> ground truth.
        predictions: image_id -> prediction.
        errors: :func:`pedseg_lib.evaluation.find_errors` output.
        max_images: show at most this many images, those with the most errors first.
        ncols: images per row.
    """
    ranked = sorted((i for i in errors if i in images and (errors[i]["fp"] or errors[i]["fn"])),
                    key=lambda i: -(len(errors[i]["fp"]) + len(errors[i]["fn"])))[:max_images]
    drawings, titles = [], []
    for image_id in ranked:
        fp = [p for p, _ in errors[image_id]["fp"]]
        fn = errors[image_id]["fn"]
        canvas = to_uint8_image(images[image_id])
        for instances, idx, colour in ((predictions[image_id], fp, "#D55E00"), (targets[image_id], fn, "#0072B2")):
            if not idx:
                continue
            masks = torch.as_tensor(instances["masks"])[idx]
            masks = (masks[:, 0] > 0.5) if masks.ndim == 4 else masks.bool()
            canvas = draw_segmentation_masks(canvas, masks, alpha=0.5, colors=[colour] * len(idx))
            canvas = draw_bounding_boxes(canvas, torch.as_tensor(instances["boxes"])[idx].float(),
                                         colors=[colour] * len(idx), width=3)
        drawings.append(canvas)
        titles.append(f"image {image_id}: {len(fp)} false pos. (red), {len(fn)} missed (blue)")
    if not drawings:
        fig, ax = plt.subplots(figsize=(5, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no false positives or missed pedestrians", ha="center", va="center")
        return fig
    return show_grid(drawings, titles, ncols=ncols)

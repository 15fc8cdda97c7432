"""Batched inference on tensors, PIL images, files or a dataset, and its outputs as COCO results and PNG bytes."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from pedseg_lib.errors import InputError
from pedseg_lib.evaluation import predictions_to_coco

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def load_image(image: Any) -> torch.Tensor:
    """A float [3,H,W] image in 0-1 from a tensor (uint8 or float), a PIL image or a path.

    Raises:
        InputError: the file cannot be read as an image, or the tensor is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image) as pil:
                image = pil.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise InputError(f"{image}: cannot read as an image ({type(exc).__name__}); check the file") from exc
    if not isinstance(image, torch.Tensor):
        from torchvision.transforms.v2.functional import pil_to_tensor

        image = pil_to_tensor(image.convert("RGB"))
    image = image.as_subclass(torch.Tensor)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise InputError(f"image tensor of shape {tuple(image.shape)}: expected [3,H,W] (or [1,H,W])")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def predict(
    model: nn.Module,
    images: Iterable[Any],
    score_threshold: float = 0.05,
    mask_threshold: float | None = 0.5,
    batch_size: int = 2,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """Predictions of a Mask R-CNN for each image, in order.

    Args:
        model: a torchvision detection model; it runs in eval mode and its previous mode is restored.
        images: tensors [3,H,W] (uint8 or float 0-1), PIL images or paths.
        score_threshold: detections scoring below it are dropped.
        mask_threshold: masks become float 0/1 at this probability; None keeps the probabilities.
        batch_size: images per forward pass.
        device: where to run (the model is moved there); None = the model's device.
        progress: show a tqdm bar.

    Returns:
        One dict per image on the CPU: ``boxes`` [N,4] XYXY, ``scores`` [N], ``labels`` [N],
        ``masks`` float [N,1,H,W] at the image's size.
    """
    if device is not None:
        model.to(device)
    device = _model_device(model)
    images = list(images)
    batches = range(0, len(images), max(1, batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="predict", unit="batch")
    was_training = model.training
    model.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    try:
        with torch.inference_mode():
            for start in batches:
                batch = [load_image(im).to(device) for im in images[start:start + batch_size]]
                for out in model(batch):
                    keep = out["scores"] >= score_threshold
                    out = {k: v[keep].cpu() for k, v in out.items()}
                    if mask_threshold is not None and "masks" in out:
                        out["masks"] = (out["masks"] > mask_threshold).float()
                    outputs.append(out)
    finally:
        model.train(was_training)
    return outputs


def predict_dataset(
    model: nn.Module,
    dataset,
    batch_size: int = 2,
    score_threshold: float = 0.05,
    progress: bool = False,
    mask_threshold: float | None = 0.5,
) -> dict[int, dict[str, torch.Tensor]]:
    """Predictions for every item of a dataset (or Subset), keyed by each target's ``image_id``.

    Masks are binarised at ``mask_threshold`` (0.5, as :func:`pedseg_lib.evaluation.coco_evaluate`
    does) so that 50 images x 100 detections stay small enough; pass None to keep probabilities.
    """
    results: dict[int, dict[str, torch.Tensor]] = {}
    indices = range(len(dataset))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="predict", unit="image")
    ids, images = [], []
    for i in indices:
        image, target = dataset[i]
        ids.append(int(target["image_id"]))
        images.append(image)
        if len(images) == batch_size or i == len(dataset) - 1:
            preds = predict(model, images, score_threshold, mask_threshold, batch_size)
            results.update(zip(ids, preds, strict=True))
            ids, images = [], []
    return results


def prediction_to_coco_results(prediction: dict, image_id: int, file_name: str,
                               category_ids: Sequence[int] | None = None) -> list[dict]:
    """JSON-ready COCO results of one prediction (RLE ``counts`` as str, plus ``file_name``).

    Args:
        prediction: one :func:`predict` output.
        image_id: the ``image_id`` written in each result.
        file_name: the image's file name, written in each result.
        category_ids: ``category_ids[label]`` is the COCO category id written for that label (the ids of the
            annotation file the model was trained on: :func:`pedseg_lib.model.model_classes`); None = the labels.
    """
    boxes = predictions_to_coco({image_id: prediction}, "bbox")
    masks = predictions_to_coco({image_id: prediction}, "segm") if "masks" in prediction else [{}] * len(boxes)
    results = []
    for box, mask in zip(boxes, masks, strict=True):
        row = {"file_name": file_name, **box}
        if category_ids is not None:
            row["category_id"] = int(category_ids[row["category_id"]])
        if "segmentation" in mask:
            rle = mask["segmentation"]
            row["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        results.append(row)
    return results


def write_png_bytes(image: torch.Tensor) -> bytes:
    """PNG bytes of a [3,H,W] uint8 image (PIL, since torchvision's image IO is deprecated)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


__all__: Sequence[str] = ("IMAGE_SUFFIXES", "load_image", "predict", "predict_dataset", "prediction_to_coco_results",
                          "write_png_bytes")

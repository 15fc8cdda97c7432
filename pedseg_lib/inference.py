"""Batched inference on tensors, PIL images, files or a dataset, and the ``pedseg evaluate``/``predict`` commands."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pedseg_lib.errors import CheckpointError, PedsegError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def load_image(image: Any) -> torch.Tensor:
    """A float [3,H,W] image in 0-1 from a tensor (uint8 or float), a PIL image or a path.

    Raises:
        PedsegError: the file cannot be read as an image.
    """
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image) as pil:
                image = pil.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise PedsegError(f"{image}: cannot read as an image ({type(exc).__name__}); check the file") from exc
    if not isinstance(image, torch.Tensor):
        from torchvision.transforms.v2.functional import pil_to_tensor

        image = pil_to_tensor(image.convert("RGB"))
    image = image.as_subclass(torch.Tensor)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise PedsegError(f"image tensor of shape {tuple(image.shape)}: expected [3,H,W] (or [1,H,W])")
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


# --------------------------------------------------------------------------- CLI
def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when visible, else CPU), ``cpu`` or ``cuda``.

    Raises:
        PedsegError: ``cuda`` asked for but no CUDA GPU is visible.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise PedsegError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _resolve_checkpoint(path: Path) -> tuple[Path, Path | None]:
    """(checkpoint, config.yaml or None) for a run folder or a checkpoint file."""
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                config = path / "config.yaml"
                return path / name, config if config.is_file() else None
        raise CheckpointError(f"{path}: no best.pt or last.pt in this run folder; train first (pedseg train)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint or run folder; check the path")
    return path, None


def _evaluation_data(args: argparse.Namespace, checkpoint: dict, checkpoint_path: Path, config_path: Path | None):
    """The run's test images and where their list comes from, on ``--data`` if given.

    The list is the ``test`` entry of the ``split.json`` beside the checkpoint (in the run folder) when there
    is one, else the test split recomputed from the run's config (:func:`pedseg_lib.engine.test_split`,
    the same one chapter 5 evaluates).

    Returns:
        ``(dataset, source)``: an unaugmented Subset and a few words naming where its indices come from.
    """
    import dataclasses

    from pedseg_lib.config import TrainConfig, load_config
    from pedseg_lib.engine import SPLIT_FILE, load_split, test_split

    if config_path is not None:
        cfg = load_config(config_path)
    else:
        try:
            cfg = TrainConfig(**(checkpoint.get("config") or {}))
        except TypeError as exc:
            raise CheckpointError(f"{args.checkpoint}: its training config does not fit this version ({exc}); "
                                  "pass the run folder with its config.yaml instead") from None
    root = args.data or cfg.data_root
    if root is None:
        from pedseg_lib.profiles import get_profile

        root = get_profile().ensure_data()
    split_path = checkpoint_path.parent / SPLIT_FILE
    if not split_path.is_file():
        return test_split(dataclasses.replace(cfg, data_root=str(root))), "recomputed from the run's config"
    from torch.utils.data import Subset

    from pedseg_lib.data import PennFudanDataset, build_transforms, find_dataset

    found = find_dataset(root)
    if found is None:
        raise PedsegError(f"no Penn-Fudan dataset at {root} (no PNGImages/ and PedMasks/): run `pedseg download` "
                          "or pass --data DIR")
    dataset = PennFudanDataset(found, transforms=build_transforms(False))
    test = load_split(split_path, dataset_size=len(dataset))["test"]
    return Subset(dataset, test), f"from {split_path}"


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pedseg_lib.evaluation import coco_evaluate
    from pedseg_lib.model import load_checkpoint, model_from_checkpoint

    checkpoint_path, config_path = _resolve_checkpoint(Path(args.checkpoint))
    if args.out:
        _check_writable(Path(args.out).parent)
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint, checkpoint_path, map_location=device)
    dataset, source = _evaluation_data(args, checkpoint, checkpoint_path, config_path)
    predictions = predict_dataset(model, dataset, batch_size=args.batch_size,
                                  score_threshold=args.score_threshold, progress=not args.quiet)
    result = coco_evaluate(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        print(f"== {iou_type} ({len(dataset)} test images {source}, {checkpoint_path}, {device.type}) ==")
        print(result.table(iou_type))
    if args.out:
        from pedseg_lib._io import atomic_write_json

        atomic_write_json(args.out, {"checkpoint": str(checkpoint_path), "num_images": len(dataset),
                                     "test_images": source, "image_ids": [int(i) for i in dataset.indices],
                                     **result.to_dict()})
        print(f"wrote {args.out}")
    return 0


def _check_writable(folder: Path) -> None:
    from pedseg_lib._io import ensure_writable_dir

    ensure_writable_dir(folder, "the output folder", "choose a writable folder with --out")


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PedsegError(f"{path}: no such image or folder; check the path")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PedsegError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return files


def prediction_to_coco_results(prediction: dict, image_id: int, file_name: str) -> list[dict]:
    """JSON-ready COCO results of one prediction (RLE ``counts`` as str, plus ``file_name``)."""
    from pedseg_lib.evaluation import predictions_to_coco

    boxes = predictions_to_coco({image_id: prediction}, "bbox")
    masks = predictions_to_coco({image_id: prediction}, "segm") if "masks" in prediction else [{}] * len(boxes)
    results = []
    for box, mask in zip(boxes, masks, strict=True):
        row = {"file_name": file_name, **box}
        if "segmentation" in mask:
            rle = mask["segmentation"]
            row["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        results.append(row)
    return results


def _cmd_predict(args: argparse.Namespace) -> int:
    from pedseg_lib._io import atomic_open, atomic_write_json
    from pedseg_lib.model import load_model
    from pedseg_lib.visualize import draw_instances

    files = _image_files(Path(args.images))
    out = Path(args.out)
    _check_writable(out)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device)
    results, written = [], 0
    for image_id, path in enumerate(files):
        try:
            image = load_image(path)
        except PedsegError as exc:
            print(f"pedseg: warning: skipping {exc}", file=sys.stderr)
            continue
        (prediction,) = predict(model, [image], score_threshold=args.score_threshold)
        overlay = draw_instances(image, prediction, score_threshold=args.score_threshold)
        with atomic_open(out / f"{path.stem}.png", "wb") as f:
            f.write(write_png_bytes(overlay))
        results.extend(prediction_to_coco_results(prediction, image_id, path.name))
        written += 1
        print(f"{path.name}: {len(prediction['scores'])} pedestrian(s) -> {out / (path.stem + '.png')}")
    if not written:
        raise PedsegError(f"{args.images}: none of the {len(files)} image(s) could be read; check the files")
    atomic_write_json(out / "predictions.json", results)
    print(f"wrote {written} overlay(s) and {out / 'predictions.json'}")
    return 0


def write_png_bytes(image: torch.Tensor) -> bytes:
    """PNG bytes of a [3,H,W] uint8 image (PIL, since torchvision's image IO is deprecated)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def add_cli_commands(subparsers: Any) -> None:
    """Add ``evaluate`` and ``predict`` to the ``pedseg`` command's sub-parsers."""
    p = subparsers.add_parser("evaluate", help="COCO box and mask AP of a checkpoint on the test split",
                              description="Evaluate a run folder (its best.pt, else last.pt) or a checkpoint file on "
                                          "the run's test images (the test list of the split.json beside the "
                                          "checkpoint, else the test split of its configuration) and print the "
                                          "COCO tables.")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run folder or .pt checkpoint")
    p.add_argument("--data", metavar="DIR", help="Penn-Fudan folder (default: the run's data root or the profile's)")
    p.add_argument("--out", metavar="FILE.json", help="also write the metrics and per-image AP as JSON")
    p.add_argument("--batch-size", type=int, default=2, metavar="N", help="images per forward pass (default 2)")
    p.add_argument("--score-threshold", type=float, default=0.05, help="drop detections below this (default 0.05)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (default auto: a CUDA GPU when visible)")
    p.set_defaults(func=_cmd_evaluate)

    p = subparsers.add_parser("predict", help="draw predicted pedestrians on images and write COCO results",
                              description="Predict pedestrians in one image or every image of a folder; writes an "
                                          "overlay PNG per image and predictions.json (COCO results, RLE masks).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt checkpoint (e.g. runs/tutorial/best.pt)")
    p.add_argument("images", metavar="IMAGE_OR_FOLDER", help="an image file or a folder of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this (0.5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (default auto: a CUDA GPU when visible)")
    p.set_defaults(func=_cmd_predict)


__all__: Sequence[str] = ("load_image", "predict", "predict_dataset", "add_cli_commands", "prediction_to_coco_results",
                          "resolve_device")

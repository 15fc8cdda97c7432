"""Mask R-CNN exported by ``pedseg export``, run with ONNX Runtime: no torch, no torchvision.

:class:`OnnxPredictor` has the contract of :func:`pedseg_lib.inference.predict` (one dict per image with
``boxes`` [N,4] XYXY in the image's pixels, ``scores`` [N], ``labels`` [N] and ``masks`` [N,1,H,W] at the
image's size), with NumPy arrays instead of tensors. The exported graph holds the whole model: resizing and
normalisation before the network, and box decoding, non-maximum suppression, the score threshold of the export
(torchvision's ``box_score_thresh``, 0.05) and mask pasting after it. One image runs at a time, at its own size.

This module imports only NumPy, Pillow and ONNX Runtime, so that it can serve a model on a machine without
PyTorch (``pip install onnxruntime numpy pillow`` and this file, or ``pip install pedseg[deploy]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pedseg_lib.errors import InputError, MissingDependencyError

ONNX_FORMAT = "pedseg-onnx"  # the metadata key "format" of every file `pedseg export` writes
ONNX_VERSION = 1  # the layout of inputs, outputs and metadata this module reads
INPUT_NAME = "image"  # float32 [3, H, W], RGB in 0-1, any H and W
OUTPUT_NAMES = ("boxes", "labels", "scores", "masks")
# metadata keys every export carries (values are strings; lists and numbers as JSON)
METADATA_KEYS = ("format", "version", "class_names", "category_ids", "min_size", "max_size", "variant",
                 "box_score_thresh", "detections_per_img", "opset", "source")


def _session_options(ort, threads: int | None, optimization: str):
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise InputError(f"graph optimisation {optimization!r}: use one of {', '.join(levels)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    if threads:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # errors only: the exported graph makes ONNX Runtime warn about unused inputs
    return options


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("ONNX Runtime is not installed: pip install 'pedseg[deploy]' (or onnxruntime)") from None
    return onnxruntime


def read_metadata(session_or_path: Any) -> dict[str, Any]:
    """The pedseg metadata of an exported model, decoded (lists and numbers from JSON).

    Args:
        session_or_path: an ``onnxruntime.InferenceSession`` or the path of the ``.onnx`` file.

    Returns:
        ``{"format": "pedseg-onnx", "version": 1, "class_names": [...], "category_ids": [...], "min_size": ...}``.

    Raises:
        InputError: the file is not an ONNX model, or was not made by ``pedseg export`` (metadata missing).
    """
    session = session_or_path
    path = getattr(session, "_model_path", None) or session_or_path
    if isinstance(session_or_path, (str, os.PathLike)):
        session = _open_session(Path(session_or_path), None, "basic")
    raw = dict(session.get_modelmeta().custom_metadata_map)
    missing = [k for k in METADATA_KEYS if k not in raw]
    if raw.get("format") != ONNX_FORMAT or missing:
        what = "has no pedseg metadata" if not raw.get("format") else f"lacks metadata {', '.join(missing)}"
        raise InputError(f"{path}: {what}, so it was not made by `pedseg export`; export the checkpoint with "
                         "`pedseg export CHECKPOINT --out model.onnx`")
    meta = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    if meta["version"] != ONNX_VERSION:
        raise InputError(f"{path}: pedseg ONNX version {meta['version']!r}, this pedseg reads version "
                         f"{ONNX_VERSION}; export the checkpoint again with this pedseg")
    return meta


def _open_session(path: Path, threads: int | None, optimization: str, providers: Sequence[str] | None = None):
    ort = _import_onnxruntime()
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file; check the path or run `pedseg export`")
    try:
        session = ort.InferenceSession(str(path), sess_options=_session_options(ort, threads, optimization),
                                       providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # ONNX Runtime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a loadable ONNX model ({first}); export it again with `pedseg export`") from None
    session._model_path = str(path)
    return session


def image_array(image: Any) -> np.ndarray:
    """A float32 [3,H,W] RGB array in 0-1 from a path, a PIL image, an [H,W,3] uint8 array or a [3,H,W] array/tensor.

    Raises:
        InputError: the file cannot be read as an image, the array is not an image, or a side is 0 pixels.
    """
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image) as pil:
                image = np.asarray(pil.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise InputError(f"{image}: cannot read as an image ({type(exc).__name__}); check the file") from None
    elif hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    elif hasattr(image, "detach"):  # a torch tensor, without importing torch
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (1, 3) and array.shape[0] not in (1, 3):
        array = array.transpose(2, 0, 1)  # HWC -> CHW
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise InputError(f"image array of shape {array.shape}: expected [3,H,W] or [H,W,3]")
    if 0 in array.shape[1:]:
        raise InputError(f"image of {array.shape[2]}x{array.shape[1]} pixels: a side is 0; give a non-empty image")
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    return np.ascontiguousarray(array, dtype=np.float32)


class OnnxPredictor:
    """Predict with a model written by ``pedseg export``, through ONNX Runtime.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime's intra-op threads (None = its default, one per physical core).
        optimization: graph optimisation level: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"``.
        providers: ONNX Runtime execution providers (default: the CPU).

    Attributes:
        metadata: the export's metadata (:func:`read_metadata`).
        class_names: ``class_names[label]``; ``class_names[0]`` is the background.
        category_ids: the COCO category id of each label (the annotation file's own ids).

    Raises:
        InputError: missing file, not an ONNX model, or no pedseg metadata.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, optimization: str = "all",
                 providers: Sequence[str] | None = None):
        self.path = Path(path)
        self.session = _open_session(self.path, threads, optimization, providers)
        self.metadata = read_metadata(self.session)
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.category_ids: list[int] = [int(i) for i in self.metadata["category_ids"]]

    def __repr__(self) -> str:
        return (f"OnnxPredictor({str(self.path)!r}, classes={self.class_names[1:]}, "
                f"min_size={self.metadata['min_size']}, max_size={self.metadata['max_size']})")

    def predict_one(self, image: Any, score_threshold: float = 0.05,
                    mask_threshold: float | None = 0.5) -> dict[str, np.ndarray]:
        """:meth:`predict` for one image."""
        array = image_array(image)
        boxes, labels, scores, masks = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        keep = scores >= score_threshold
        out = {"boxes": boxes[keep].astype(np.float32), "labels": labels[keep].astype(np.int64),
               "scores": scores[keep].astype(np.float32), "masks": masks[keep].astype(np.float32)}
        if mask_threshold is not None:
            out["masks"] = (out["masks"] > mask_threshold).astype(np.float32)
        return out

    def predict(self, images: Iterable[Any], score_threshold: float = 0.05, mask_threshold: float | None = 0.5,
                progress: bool = False) -> list[dict[str, np.ndarray]]:
        """Predictions for each image, in order: the contract of :func:`pedseg_lib.inference.predict`.

        Args:
            images: paths, PIL images, [H,W,3] uint8 arrays or [3,H,W] arrays/tensors (uint8 or float 0-1).
            score_threshold: detections scoring below it are dropped (the export already dropped those below
                its ``box_score_thresh``, 0.05).
            mask_threshold: masks become float 0/1 at this probability; None keeps the probabilities.
            progress: show a tqdm bar.

        Returns:
            One dict per image: ``boxes`` float32 [N,4] XYXY, ``scores`` float32 [N], ``labels`` int64 [N],
            ``masks`` float32 [N,1,H,W] at the image's size.
        """
        images = list(images)
        if progress:
            from tqdm.auto import tqdm

            images = tqdm(images, desc="predict (onnx)", unit="image")
        return [self.predict_one(image, score_threshold, mask_threshold) for image in images]


__all__ = ["INPUT_NAME", "METADATA_KEYS", "ONNX_FORMAT", "ONNX_VERSION", "OUTPUT_NAMES", "OnnxPredictor",
           "image_array", "read_metadata"]

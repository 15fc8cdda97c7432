"""Export a checkpoint to ONNX (``pedseg export``), and check an export against PyTorch detection by detection.

torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``, opset 17) traces torchvision's
Mask R-CNN on one sample image. The graph it writes takes one float32 image [3, H, W] of any size and holds the
whole model: :class:`~torchvision.models.detection.transform.GeneralizedRCNNTransform` (normalisation, resizing to
``min_size``/``max_size``), the backbone, the RPN, the RoI heads with box decoding, non-maximum suppression, the
score threshold ``box_score_thresh`` and the ``detections_per_img`` cap, and the pasting of 28x28 mask logits into
the image (torchvision switches to an ONNX-friendly pasting loop while tracing). Its outputs are ``boxes``,
``labels``, ``scores`` and ``masks`` at the image's size, as the eager model returns them.
:class:`pedseg_lib.runtime.OnnxPredictor` runs it without torch.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pedseg_lib._io import ensure_writable_dir
from pedseg_lib.errors import OutputError
from pedseg_lib.model import load_checkpoint, model_classes, model_from_checkpoint
from pedseg_lib.runtime import INPUT_NAME, ONNX_FORMAT, ONNX_VERSION, OUTPUT_NAMES

OPSET = 17  # the opset torch 2.14's TorchScript exporter writes Mask R-CNN with (RoiAlign, NonMaxSuppression)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    metadata: dict[str, str]
    seconds: float
    megabytes: float


def _metadata(model: torch.nn.Module, source: str) -> dict[str, str]:
    names, ids = model_classes(model)
    args = model.pedseg_args
    values = {
        "format": ONNX_FORMAT, "version": ONNX_VERSION, "class_names": names, "category_ids": ids,
        "min_size": args["min_size"], "max_size": args["max_size"], "variant": args["variant"],
        "box_score_thresh": float(model.roi_heads.score_thresh),
        "detections_per_img": int(model.roi_heads.detections_per_img), "opset": OPSET, "source": source,
    }
    return {k: v if isinstance(v, str) and k == "format" else json.dumps(v) for k, v in values.items()}


def _sample(model: torch.nn.Module) -> torch.Tensor:
    """A seeded random image at the model's input size (4:3), to trace the graph with."""
    side = int(model.pedseg_args["min_size"])
    return torch.rand(3, side, side * 4 // 3, generator=torch.Generator().manual_seed(0))


def export_model(model: torch.nn.Module, path: str | os.PathLike, source: str = "model",
                 score_threshold: float | None = None) -> ExportResult:
    """Write ``model`` as an ONNX file that takes images of any size, with pedseg's metadata.

    Args:
        model: a Mask R-CNN from :func:`pedseg_lib.model.build_model` or :func:`~pedseg_lib.model.load_model`.
        path: the ``.onnx`` file to write; it appears only when the export succeeded (no partial file).
        source: recorded in the metadata (e.g. the checkpoint's path).
        score_threshold: the graph drops detections scoring below it (sets the model's
            ``roi_heads.score_thresh``, torchvision's ``box_score_thresh``); None keeps the model's (0.05).

    Returns:
        An :class:`ExportResult`.

    Raises:
        OutputError: the folder cannot be written, or the exporter failed (the message says why).
    """
    import onnx

    path = Path(path)
    ensure_writable_dir(path.parent if str(path.parent) else Path("."), "the output folder",
                        "choose a writable folder with --out")
    model = model.eval().cpu()
    if score_threshold is not None:
        model.roi_heads.score_thresh = float(score_threshold)
    tic = time.perf_counter()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer warns about every Python-level shape computation
            torch.onnx.export(
                model, ([_sample(model)],), tmp, opset_version=OPSET, dynamo=False,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {1: "height", 2: "width"}, "boxes": {0: "detections"},
                              "labels": {0: "detections"}, "scores": {0: "detections"},
                              "masks": {0: "detections", 2: "height", 3: "width"}},
            )
        proto = onnx.load(tmp)
        metadata = _metadata(model, source)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"exporting to {path} failed ({type(exc).__name__}: {first}); nothing was written") from exc
    return ExportResult(path, metadata, time.perf_counter() - tic, path.stat().st_size / 2**20)


def export_onnx(checkpoint: str | os.PathLike, path: str | os.PathLike,
                score_threshold: float | None = None) -> ExportResult:
    """``pedseg export``: the model of a pedseg checkpoint as an ONNX file (see :func:`export_model`).

    Raises:
        CheckpointError: the file is missing or not a pedseg checkpoint.
        OutputError: as :func:`export_model`.
    """
    ckpt = load_checkpoint(checkpoint)
    return export_model(model_from_checkpoint(ckpt, checkpoint), path, source=Path(checkpoint).name,
                        score_threshold=score_threshold)


# --------------------------------------------------------------------------- parity
@dataclass
class ImageParity:
    """PyTorch against ONNX Runtime on one image, detections matched by box IoU (greedy, in PyTorch's score order)."""

    reference_count: int
    other_count: int
    matched: int
    max_score_diff: float  # over matched detections (0 when none)
    max_box_diff: float  # pixels, largest coordinate difference
    min_mask_iou: float  # 1 when no detection has a mask
    box_ious: list[float] = field(default_factory=list, repr=False)

    def ok(self, score_tol: float = 1e-4, box_tol: float = 0.5, mask_iou: float = 0.99) -> bool:
        """Equal counts, every detection matched, and every matched pair within the tolerances."""
        return (self.reference_count == self.other_count == self.matched and self.max_score_diff <= score_tol
                and self.max_box_diff <= box_tol and self.min_mask_iou >= mask_iou)


def _array(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou

    return box_iou(torch.as_tensor(a, dtype=torch.float64).reshape(-1, 4),
                   torch.as_tensor(b, dtype=torch.float64).reshape(-1, 4)).numpy()


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_predictions(reference: Mapping[str, Any], other: Mapping[str, Any], min_iou: float = 0.5) -> ImageParity:
    """Match ``other``'s detections to ``reference``'s by box IoU and measure how far apart the pairs are.

    Each reference detection, in decreasing score order, takes the unmatched ``other`` detection of the same label
    with the highest box IoU, if that IoU is at least ``min_iou``.

    Args:
        reference: a prediction dict (PyTorch's), tensors or arrays; ``masks`` binarised or probabilities.
        other: the prediction to check (ONNX Runtime's).
        min_iou: the box IoU a pair needs.

    Returns:
        An :class:`ImageParity`.
    """
    ref = {k: _array(v) for k, v in reference.items()}
    oth = {k: _array(v) for k, v in other.items()}
    n_ref, n_oth = len(ref["scores"]), len(oth["scores"])
    ious = _box_iou(ref["boxes"], oth["boxes"]) if n_ref and n_oth else np.zeros((n_ref, n_oth))
    taken: set[int] = set()
    score_diff = box_diff = 0.0
    mask_iou, pair_ious = 1.0, []
    for i in np.argsort(-ref["scores"], kind="stable"):
        candidates = [(ious[i, j], j) for j in range(n_oth)
                      if j not in taken and ious[i, j] >= min_iou and ref["labels"][i] == oth["labels"][j]]
        if not candidates:
            continue
        best, j = max(candidates)
        taken.add(j)
        pair_ious.append(float(best))
        score_diff = max(score_diff, float(abs(ref["scores"][i] - oth["scores"][j])))
        box_diff = max(box_diff, float(np.abs(ref["boxes"][i] - oth["boxes"][j]).max()))
        if "masks" in ref and "masks" in oth:
            mask_iou = min(mask_iou, _mask_iou(ref["masks"][i], oth["masks"][j]))
    return ImageParity(n_ref, n_oth, len(taken), score_diff, box_diff, mask_iou, pair_ious)


def parity_table(results: Sequence[ImageParity], names: Sequence[str]) -> str:
    """One line per image: counts, matches and the largest differences."""
    lines = [f"{'image':<22}{'torch':>6}{'onnx':>6}{'matched':>8}{'score diff':>12}{'box diff px':>12}"
             f"{'min mask IoU':>13}"]
    for name, r in zip(names, results, strict=True):
        lines.append(f"{name[:21]:<22}{r.reference_count:>6}{r.other_count:>6}{r.matched:>8}"
                     f"{r.max_score_diff:>12.2e}{r.max_box_diff:>12.4f}{r.min_mask_iou:>13.4f}")
    return "\n".join(lines)


__all__ = ["OPSET", "ExportResult", "ImageParity", "compare_predictions", "export_model", "export_onnx",
           "parity_table"]

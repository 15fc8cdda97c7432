"""Mask R-CNN for pedestrians: build it (with or without pretrained weights), describe it, save and load it.

:func:`build_model` is the official tutorial's recipe: torchvision's ``maskrcnn_resnet50_fpn`` (``"v1"``) or
``maskrcnn_resnet50_fpn_v2`` (``"v2"``) whose box and mask predictors are replaced for ``num_classes``
(background counts as a class, so pedestrians need 2).

Pretrained weights are fetched into torchvision's cache (``torch.hub.get_dir()/checkpoints``) with a socket
timeout; when that fails the error says which file was needed and how to run without it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.detection import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from pedseg_lib._io import atomic_torch_save
from pedseg_lib.config import VARIANTS, WEIGHTS
from pedseg_lib.data import BACKGROUND, PennFudanDataset
from pedseg_lib.errors import CheckpointError, ConfigError, WeightsUnavailableError

#: The loss terms torchvision's Mask R-CNN returns in train mode (the keys of its loss dict), in log order.
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
#: Classes of torchvision's COCO detectors (background + 90 category ids).
COCO_CLASSES = 91  # torchvision's COCO detectors: background + 90 category ids
#: The COCO label of "person".
COCO_PERSON = 1
CHECKPOINT_FORMAT = "pedseg-checkpoint"
CHECKPOINT_VERSION = 1
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation: a firewall that drops packets fails instead of hanging

_BUILDERS = {"v1": maskrcnn_resnet50_fpn, "v2": maskrcnn_resnet50_fpn_v2}
_COCO_WEIGHTS = {"v1": MaskRCNN_ResNet50_FPN_Weights.COCO_V1, "v2": MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1}
# torchvision's detection references (and the tutorial's pretrained_backbone=True) use ImageNet V1.
_IMAGENET_WEIGHTS = ResNet50_Weights.IMAGENET1K_V1


# --------------------------------------------------------------------------- weights
def weights_file(url: str) -> Path:
    """Where torchvision caches the file at ``url``: ``torch.hub.get_dir()/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def pretrained_urls(variant: str, weights: str | None) -> dict[str, str]:
    """The torchvision weights files a :func:`build_model` call with these arguments loads.

    Args:
        variant: ``"v1"`` or ``"v2"``.
        weights: ``"coco"``, ``"imagenet"`` or None.

    Returns:
        ``{description: url}``; empty for random weights.
    """
    if weights == "coco":
        return {f"COCO Mask R-CNN {variant}": _COCO_WEIGHTS[variant].url}
    if weights == "imagenet":
        return {"ImageNet ResNet-50": _IMAGENET_WEIGHTS.url}
    return {}


@dataclass(frozen=True)
class WeightsCheck:
    """The result of :func:`check_weights_file` for one cached torchvision weights file.

    Attributes:
        what: what the file holds, e.g. ``"COCO Mask R-CNN v1"``.
        path: where torchvision caches it.
        expected: the SHA-256 prefix in the file name (torchvision's own naming), or None.
        digest: the file's SHA-256, or None when the file is not cached.
        status: ``"verified"``, ``"mismatch"``, ``"not cached"`` or ``"no hash in name"``.
    """

    what: str
    path: Path
    expected: str | None
    digest: str | None
    status: str

    @property
    def trusted(self) -> bool:
        """False only for a cached file whose hash is not the published one."""
        return self.status != "mismatch"

    def describe(self) -> str:
        """One line for the chapters' banner."""
        if self.status == "verified":
            return (f"{self.what}: {self.path.name}, SHA-256 starts with {self.expected} as torchvision "
                    "publishes it (verified)")
        if self.status == "not cached":
            return f"{self.what}: {self.path.name}, not downloaded yet (torchvision checks its hash on download)"
        if self.status == "no hash in name":
            return f"{self.what}: {self.path.name}, no hash in the file name to check against"
        return (f"{self.what}: {self.path} is NOT torchvision's published file: its SHA-256 starts with "
                f"{self.digest[:len(self.expected)]}, not {self.expected}")


_CHECKED: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _CHECKED[key] = digest.hexdigest()
    return _CHECKED[key]


def check_weights_file(url: str, what: str) -> WeightsCheck:
    """Check the cached copy of ``url`` against the hash prefix in its file name.

    torchvision names each weights file ``<name>-<first hex digits of its SHA-256>.pth`` and checks that
    prefix only while downloading; a file already in the cache is loaded unchecked. This check runs before
    every use instead (the digest is remembered per file size and modification time).

    Args:
        url: a torchvision weights URL.
        what: what it holds, for messages.

    Returns:
        A :class:`WeightsCheck`.
    """
    path = weights_file(url)
    match = torch.hub.HASH_REGEX.search(path.name)
    expected = match.group(1) if match else None
    if not path.is_file():
        return WeightsCheck(what, path, expected, None, "not cached")
    digest = _sha256(path)
    if expected is None:
        return WeightsCheck(what, path, None, digest, "no hash in name")
    return WeightsCheck(what, path, expected, digest, "verified" if digest.startswith(expected) else "mismatch")


def untrusted_warning(checks: list[WeightsCheck]) -> str | None:
    """The warning every chapter shows when a cached weights file is not torchvision's, else None."""
    bad = [c for c in checks if not c.trusted]
    if not bad:
        return None
    names = ", ".join(c.path.name for c in bad)
    return (f"WARNING: {names} in {bad[0].path.parent} {'is' if len(bad) == 1 else 'are'} NOT torchvision's "
            "published weights (the SHA-256 does not match the hash in the file name): stand-ins or a damaged "
            "download. EVERY NUMBER, CURVE AND PICTURE BELOW IS MEANINGLESS. Delete the file to download the "
            "real one.")


def _fetch_state_dict(url: str, what: str) -> dict[str, torch.Tensor]:
    """Load a weights file through torchvision's cache, downloading it once, never hanging silently.

    A cached file whose hash differs from the one in its name is still loaded (so that offline rehearsals
    with stand-in weights run end to end), with a warning that says what that means.
    """
    target = weights_file(url)
    check = check_weights_file(url, what)
    warning = untrusted_warning([check])
    if warning is not None:
        warnings.warn(warning, stacklevel=3)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True)
    except (OSError, http.client.HTTPException, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise WeightsUnavailableError(
            f"cannot get the {what} weights {target.name} from {url} ({reason}); torchvision caches them in "
            f"{target.parent} (set TORCH_HOME to move it): run without them with weights=None or "
            f"PEDSEG_PROFILE=smoke, or download the file on another machine and copy it to {target}."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _freeze_like_pretrained(model: MaskRCNN, variant: str, trainable_backbone_layers: int, eps: float) -> None:
    """Turn a randomly built model into the architecture torchvision builds when weights are given.

    With weights, torchvision freezes all but the last ``trainable_backbone_layers`` ResNet stages and,
    for v1, replaces every BatchNorm2d of the ResNet by FrozenBatchNorm2d (fixed statistics and affine).
    """
    body = model.backbone.body
    if variant == "v1":
        for name, module in list(body.named_modules()):
            if isinstance(module, nn.BatchNorm2d):
                parent_name, _, child = name.rpartition(".")
                parent = body.get_submodule(parent_name) if parent_name else body
                setattr(parent, child, FrozenBatchNorm2d(module.num_features, eps=eps))
    layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_backbone_layers]
    if trainable_backbone_layers == 5:
        layers.append("bn1")
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name.startswith(layer) for layer in layers))


def _check_args(num_classes: int, variant: str, weights: str | None, trainable_backbone_layers: int) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"variant={variant!r} is not a model variant: use 'v1' or 'v2'.")
    if weights not in WEIGHTS:
        raise ConfigError(f"weights={weights!r} is not known: use 'coco', 'imagenet' or None (random).")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r} must be an int >= 2 (background counts as a class).")
    if not 0 <= trainable_backbone_layers <= 5:
        raise ConfigError(f"trainable_backbone_layers={trainable_backbone_layers!r} must be between 0 and 5.")


def _torchvision_model(variant: str, weights: str | None, trainable_backbone_layers: int, min_size: int,
                       max_size: int, load_weights: bool) -> MaskRCNN:
    """torchvision's 91-class model of ``variant``, with pretrained weights loaded when ``load_weights``."""
    # Built without weights first (no download), then made identical to torchvision's pretrained build.
    model = _BUILDERS[variant](weights=None, weights_backbone=None, num_classes=COCO_CLASSES,
                               min_size=min_size, max_size=max_size)
    if weights is None:
        return model  # torchvision: every layer trainable, ordinary BatchNorm2d
    coco_v1 = weights == "coco" and variant == "v1"
    # torchvision's COCO_V1 checkpoint was trained with eps=0 in its frozen batch norms (overwrite_eps).
    _freeze_like_pretrained(model, variant, trainable_backbone_layers, eps=0.0 if coco_v1 else 1e-5)
    if not load_weights:
        return model
    ((what, url),) = pretrained_urls(variant, weights).items()
    state = _fetch_state_dict(url, what)
    if weights == "coco":
        model.load_state_dict(state)
    else:
        model.backbone.body.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    return model


def _replace_predictors(model: MaskRCNN, num_classes: int, mask_hidden: int) -> None:
    """The tutorial's head surgery: new box and mask predictors sized for ``num_classes``."""
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    in_channels = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_channels, mask_hidden, num_classes)


def build_model(num_classes: int = 2, variant: str = "v1", weights: str | None = "coco",
                trainable_backbone_layers: int = 3, min_size: int = 800, max_size: int = 1333,
                mask_hidden: int = 256) -> MaskRCNN:
    """Mask R-CNN with its box and mask predictors replaced for ``num_classes``.

    Args:
        num_classes: classes including background (2 for pedestrians).
        variant: ``"v1"`` (``maskrcnn_resnet50_fpn``, the tutorial's) or ``"v2"`` (``maskrcnn_resnet50_fpn_v2``).
        weights: ``"coco"`` (torchvision's COCO-trained detector), ``"imagenet"`` (ImageNet ResNet-50 backbone
            only) or None (random initialisation, no download at all).
        trainable_backbone_layers: ResNet stages left trainable (0-5), counted from the last. Only used with
            weights: like torchvision, a randomly initialised model trains all 5 stages, and v1 then uses
            ordinary BatchNorm2d instead of FrozenBatchNorm2d.
        min_size: shortest image side inside the model.
        max_size: cap on the longest image side inside the model.
        mask_hidden: channels of the new mask predictor's hidden layer (the tutorial's 256).

    Returns:
        The model, in training mode, with its arguments in ``model.pedseg_args``.

    Raises:
        ConfigError: for an unknown variant or weights name, or out-of-range numbers.
        WeightsUnavailableError: pretrained weights are needed and cannot be downloaded.
    """
    return _build(num_classes, variant, weights, trainable_backbone_layers, min_size, max_size, mask_hidden,
                  load_weights=True)


def build_untrained(num_classes: int = 2, variant: str = "v1", weights: str | None = "coco",
                    trainable_backbone_layers: int = 3, min_size: int = 800, max_size: int = 1333,
                    mask_hidden: int = 256) -> MaskRCNN:
    """The exact architecture :func:`build_model` returns for these arguments, with random values, offline.

    Frozen layers and (v1) FrozenBatchNorm2d are those of the pretrained build, but nothing is downloaded:
    use it to inspect what ``weights`` and ``trainable_backbone_layers`` change, or to load a state dict.
    Arguments are those of :func:`build_model`.
    """
    return _build(num_classes, variant, weights, trainable_backbone_layers, min_size, max_size, mask_hidden,
                  load_weights=False)


def _build(num_classes: int, variant: str, weights: str | None, trainable_backbone_layers: int, min_size: int,
           max_size: int, mask_hidden: int, load_weights: bool) -> MaskRCNN:
    """Shared by :func:`build_model` and :func:`build_untrained`: they differ only in loading the weights."""
    _check_args(num_classes, variant, weights, trainable_backbone_layers)
    model = _torchvision_model(variant, weights, trainable_backbone_layers, min_size, max_size, load_weights=load_weights)
    _replace_predictors(model, num_classes, mask_hidden)
    model.pedseg_args = dict(num_classes=num_classes, variant=variant, weights=weights,
                             trainable_backbone_layers=trainable_backbone_layers, min_size=min_size,
                             max_size=max_size, mask_hidden=mask_hidden)
    return model


def set_classes(model: nn.Module, class_names: list[str], category_ids: list[int] | None = None) -> nn.Module:
    """Record the class names (and COCO category ids) a model predicts; checkpoints keep them.

    Args:
        model: a model from :func:`build_model` (or its DDP wrapper).
        class_names: one name per label, ``class_names[0] == "__background__"`` (torchvision's convention).
        category_ids: the COCO category id of each label (``category_ids[0]`` is 0); None = the labels.

    Returns:
        The model.

    Raises:
        ConfigError: the lists do not have one entry per class of the model, or label 0 is not the background.
    """
    module = getattr(model, "module", model)
    args = module.pedseg_args
    ids = list(range(len(class_names))) if category_ids is None else [int(i) for i in category_ids]
    if len(class_names) != args["num_classes"] or len(ids) != args["num_classes"]:
        raise ConfigError(f"{len(class_names)} class names and {len(ids)} category ids for a model of "
                          f"{args['num_classes']} classes: give one per class, background first.")
    if class_names[0] != BACKGROUND:
        raise ConfigError(f"class_names[0] is {class_names[0]!r}: label 0 is the background; put {BACKGROUND!r} "
                          "first.")
    args["class_names"], args["category_ids"] = [str(n) for n in class_names], ids
    return model


def model_classes(model: nn.Module) -> tuple[list[str], list[int]]:
    """``(class_names, category_ids)`` of a model: those recorded by :func:`set_classes`, else the defaults.

    Defaults: Penn-Fudan's ``["__background__", "person"]`` for 2 classes, torchvision's COCO category names
    for the 91-class COCO detector, ``"class k"`` otherwise; category ids are then the labels
    (Penn-Fudan's person is COCO's category 1 too).
    """
    args = getattr(model, "module", model).pedseg_args
    if "class_names" in args:
        return list(args["class_names"]), list(args["category_ids"])
    n = args["num_classes"]
    if n == len(PennFudanDataset.class_names):
        names = list(PennFudanDataset.class_names)
    elif n == COCO_CLASSES:
        names = list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
    else:
        names = [BACKGROUND, *(f"class {k}" for k in range(1, n))]
    return names, list(range(n))


def build_coco_model(variant: str = "v1", weights: str | None = "coco", min_size: int = 800,
                     max_size: int = 1333) -> MaskRCNN:
    """torchvision's 91-class COCO detector with its own predictors (label ``COCO_PERSON`` = person).

    Args:
        variant: ``"v1"`` or ``"v2"``.
        weights: ``"coco"``, or None for random weights (smoke runs: the detections then mean nothing).
        min_size: shortest image side inside the model.
        max_size: cap on the longest image side inside the model.

    Returns:
        The model in eval mode; ``pedseg_args`` records it (``mask_hidden`` is torchvision's 256).
    """
    if weights not in ("coco", None):
        raise ConfigError(f"weights={weights!r}: the COCO detector is built with 'coco' or None (random).")
    _check_args(COCO_CLASSES, variant, weights, 3)
    model = _torchvision_model(variant, weights, 3, min_size, max_size, load_weights=True)
    model.pedseg_args = dict(num_classes=COCO_CLASSES, variant=variant, weights=weights,
                             trainable_backbone_layers=3, min_size=min_size, max_size=max_size, mask_hidden=256)
    model._pedseg_coco_heads = True  # describe_model: these predictors are COCO's, not new
    return model.eval()


# --------------------------------------------------------------------------- description
PARTS = (
    ("transform", "transform"),
    ("backbone body", "backbone.body"),
    ("FPN", "backbone.fpn"),
    ("RPN", "rpn"),
    ("box head", "roi_heads.box_head"),
    ("box predictor", "roi_heads.box_predictor"),
    ("mask head", "roi_heads.mask_head"),
    ("mask predictor", "roi_heads.mask_predictor"),
)


@dataclass
class PartRow:
    """One row of :class:`ModelDescription`."""

    part: str
    module: str
    type: str
    parameters: int
    trainable: int
    source: str


@dataclass
class ModelDescription:
    """Parameter counts per part of a Mask R-CNN. ``str()`` gives a text table, notebooks show HTML."""

    rows: list[PartRow]
    total: int
    trainable: int

    def _table(self) -> tuple[list[str], list[list[str]]]:
        header = ["part", "module", "type", "parameters", "trainable", "weights from"]
        body = [[r.part, r.module, r.type, f"{r.parameters:,}", f"{r.trainable:,}", r.source] for r in self.rows]
        body.append(["total", "", "", f"{self.total:,}", f"{self.trainable:,}", ""])
        return header, body

    def __str__(self) -> str:
        header, body = self._table()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        numeric = {3, 4}

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in
                             enumerate(zip(cells, widths, strict=True))).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(header), rule, *(line(r) for r in body[:-1]), rule, line(body[-1])])

    def _repr_html_(self) -> str:
        import html

        header, body = self._table()
        cell = '<td style="text-align:{}">{}</td>'
        rows = "".join(
            "<tr>" + "".join(cell.format("right" if i in (3, 4) else "left", html.escape(c))
                             for i, c in enumerate(r)) + "</tr>" for r in body)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


_UNKNOWN = object()


def _source(part: str, weights: str | None | object) -> str:
    if weights is _UNKNOWN:
        return "unknown"
    if part == "transform":
        return "no parameters"
    if part in ("box predictor", "mask predictor") and weights != "coco-heads":
        return "new (random)"
    if weights in ("coco", "coco-heads"):
        return "pretrained (COCO)"
    if weights == "imagenet" and part == "backbone body":
        return "pretrained (ImageNet)"
    return "new (random)"


def describe_model(model: nn.Module) -> ModelDescription:
    """Parameter and trainable-parameter counts of each part, and where its weights come from.

    Args:
        model: a Mask R-CNN, ideally from :func:`build_model` (its ``pedseg_args`` say which parts are
            pretrained; for other models the source column says ``unknown``).

    Returns:
        A :class:`ModelDescription` with ``rows`` in forward order and ``total``/``trainable`` sums.
    """
    args = getattr(model, "pedseg_args", None)
    weights: Any = _UNKNOWN if args is None else args["weights"]
    if args is not None and args["weights"] == "coco" and getattr(model, "_pedseg_coco_heads", False):
        weights = "coco-heads"
    rows = []
    for part, path in PARTS:
        module = model.get_submodule(path)
        params = list(module.parameters())
        rows.append(PartRow(part, path, type(module).__name__, sum(p.numel() for p in params),
                            sum(p.numel() for p in params if p.requires_grad), _source(part, weights)))
    all_params = list(model.parameters())
    return ModelDescription(rows, sum(p.numel() for p in all_params),
                            sum(p.numel() for p in all_params if p.requires_grad))


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically: the model's weights and arguments, the training config and ``extra``.

    Args:
        path: the ``.pt`` file to write.
        model: a model from :func:`build_model` (a DDP/DataParallel wrapper is unwrapped).
        config: the training configuration as a plain dict (``TrainConfig.to_dict()``).
        extra: anything else ``torch.load(weights_only=True)`` can read back: tensors, dicts, lists,
            numbers, strings, None.
    """
    model = getattr(model, "module", model)
    args = getattr(model, "pedseg_args", None)
    if args is None:
        raise CheckpointError(f"cannot save {path}: the model has no pedseg_args; build it with build_model().")
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_args": dict(args),
        "model_state": model.state_dict(),
        "config": dict(config) if config is not None else None,
        "extra": dict(extra) if extra is not None else {},
    }, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``).

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go, as for :func:`torch.load`.

    Returns:
        A dict with ``format``, ``version``, ``model_args``, ``model_state``, ``config`` and ``extra``.

    Raises:
        CheckpointError: the file is missing, truncated, not a torch file or not a pedseg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path or train a model first.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # the unpickler of a corrupt file can raise almost anything (IndexError, KeyError...)
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({first}): it is truncated or not a torch file; "
            "use another file or train again."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        what = "a plain state_dict" if isinstance(ckpt, dict) and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()) else f"a {type(ckpt).__name__}"
        raise CheckpointError(
            f"{path} is not a pedseg checkpoint (it holds {what}); save one with "
            "pedseg_lib.model.save_checkpoint, or load a plain state_dict with model.load_state_dict."
        )
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {ckpt.get('version')!r}; this pedseg reads "
                              f"version {CHECKPOINT_VERSION}: use the pedseg release that wrote it.")
    missing = [k for k in ("model_args", "model_state", "config", "extra") if k not in ckpt]
    if missing or not isinstance(ckpt["model_args"], dict) or not isinstance(ckpt["model_state"], dict):
        raise CheckpointError(f"checkpoint {path} is incomplete (missing or bad: {', '.join(missing) or 'model'}); "
                              "use another file or train again.")
    return ckpt


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """``model.load_state_dict(state)`` with a one-line CheckpointError naming the first mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise CheckpointError(f"{source} does not fit the model: {'; '.join(parts)}; "
                              "build the model with the checkpoint's variant and num_classes.")
    model.load_state_dict(state)


def load_model(path: str | os.PathLike, map_location: Any = "cpu", variant: str | None = None,
               num_classes: int | None = None) -> MaskRCNN:
    """Rebuild the model a checkpoint was saved from and load its weights (nothing is downloaded).

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go, as for :func:`torch.load`.
        variant: when given, the variant the caller expects; a different one is an error.
        num_classes: when given, the class count the caller expects; a different one is an error.

    Returns:
        The model in eval mode, with the checkpoint's ``pedseg_args``.

    Raises:
        CheckpointError: bad file, or the checkpoint's variant/num_classes differ from those asked.
    """
    return model_from_checkpoint(load_checkpoint(path, map_location), path, map_location, variant, num_classes)


def model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, map_location: Any = "cpu",
                          variant: str | None = None, num_classes: int | None = None) -> MaskRCNN:
    """:func:`load_model` for a checkpoint already read with :func:`load_checkpoint` (``path`` names it in errors)."""
    args = dict(ckpt["model_args"])
    for key, wanted in (("variant", variant), ("num_classes", num_classes)):
        if wanted is not None and args.get(key) != wanted:
            raise CheckpointError(f"checkpoint {path} holds a {key}={args.get(key)!r} model, not {key}={wanted!r}: "
                                  f"load it with {key}={args.get(key)!r} or pick the matching checkpoint.")
    try:
        _check_args(args["num_classes"], args["variant"], args["weights"], args["trainable_backbone_layers"])
        model = _torchvision_model(args["variant"], args["weights"], args["trainable_backbone_layers"],
                                   args["min_size"], args["max_size"], load_weights=False)
        if args["num_classes"] != COCO_CLASSES or "roi_heads.box_predictor.cls_score.weight" not in ckpt["model_state"] \
                or args.get("mask_hidden", 256) != 256:
            _replace_predictors(model, args["num_classes"], args.get("mask_hidden", 256))
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {path} has bad model_args ({exc}); use another file.") from None
    load_state(model, ckpt["model_state"], source=f"checkpoint {path}")
    model.pedseg_args = args
    if map_location is not None and not callable(map_location):
        model.to(map_location)
    return model.eval()

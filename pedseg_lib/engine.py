"""The training loop: one epoch, a validation loss, and :func:`fit`, which ties them to data, checkpoints and history.

Runs unchanged on one CPU, one GPU, or several processes under ``torchrun`` (DistributedDataParallel;
rank 0 alone prints, writes checkpoints and history).

A run splits its dataset three ways (:func:`run_split`): training images, validation images (``val_size``,
possibly none) and test images (``test_size``). Training reads only the training images; every decision of
the run (the best epoch in ``best.pt``, early stopping) reads only the validation images; nothing in a run
reads the test images, which are left for the final evaluation (:func:`test_split`, ``pedseg evaluate``).
Each run folder records the images it used in ``split.json``.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from pedseg_lib import distributed as dist
from pedseg_lib._io import atomic_open, atomic_write_json, ensure_writable_dir
from pedseg_lib.config import TrainConfig, default_output_dir, save_config
from pedseg_lib.data.sampling import EpochSampler, SeededDataset
from pedseg_lib.errors import CheckpointError, ConfigError, NonFiniteLossError
from pedseg_lib.evaluation import coco_evaluate
from pedseg_lib.inference import predict_dataset
from pedseg_lib.model import LOSS_KEYS
from pedseg_lib.profiles import dataset_root

AP_KEYS = {"bbox_AP": ("bbox", 0), "bbox_AP50": ("bbox", 1), "segm_AP": ("segm", 0), "segm_AP50": ("segm", 1)}
VAL_KEYS = ("val_loss", *(f"val_{k}" for k in LOSS_KEYS), *AP_KEYS)  # the validation columns of an epoch row
SPLIT_FILE = "split.json"  # in every run folder: the dataset indices the run trained, validated and tested on
SPLIT_ROLES = ("train", "val", "test")


@dataclass
class FitResult:
    """What :func:`fit` produced. ``history`` is the content of ``history.json``."""

    run_dir: Path | None
    history: dict[str, Any]
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    stopped_early: bool
    best_epoch: int | None
    model: nn.Module | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- learning rate
WARMUP_CAP = 1000  # the official rule's longest warm-up, in iterations (torchvision's references/detection)
WARMUP_MAX_SHARE = 0.5  # never more of a run than the official tutorial spends warming up (59 of its 120 steps)


def default_warmup(iters_per_epoch: int, epochs: int) -> int:
    """The warm-up of a run whose config leaves ``warmup_iters`` unset, in iterations.

    The official rule, ``min(1000, iterations per epoch - 1)``, plus a third bound: at most half of the run's
    iterations. The official rule was sized for COCO, where 1000 iterations are half a percent of the run; the
    tutorial's 2 epochs of 60 iterations already spend 59 of their 120 on it. The third bound changes nothing
    for runs of two epochs or more (the first epoch is at most half of them) and stops a one-epoch run from
    being nearly all warm-up (19 of 20 iterations becomes 10).
    """
    iters_per_epoch = max(1, iters_per_epoch)
    return max(0, min(WARMUP_CAP, iters_per_epoch - 1, int(WARMUP_MAX_SHARE * epochs * iters_per_epoch)))


class LRSchedule:
    """Learning-rate factor per global iteration: linear warm-up times a step, cosine or constant schedule.

    A plain object (not a lambda), so ``LambdaLR.state_dict()`` saves it and a resumed run continues exactly.
    """

    def __init__(self, cfg: TrainConfig, iters_per_epoch: int):
        self.iters_per_epoch = max(1, iters_per_epoch)
        self.total = cfg.epochs * self.iters_per_epoch
        self.warmup_iters = default_warmup(self.iters_per_epoch, cfg.epochs) if cfg.warmup_iters is None \
            else cfg.warmup_iters
        self.warmup_factor = cfg.warmup_factor
        self.kind, self.step_size, self.gamma = cfg.scheduler, cfg.step_size, cfg.gamma

    def __call__(self, it: int) -> float:
        factor = 1.0
        if it < self.warmup_iters:
            factor = self.warmup_factor + (1 - self.warmup_factor) * it / self.warmup_iters
        if self.kind == "step":
            factor *= self.gamma ** ((it // self.iters_per_epoch) // self.step_size)
        elif self.kind == "cosine":
            factor *= 0.5 * (1 + math.cos(math.pi * min(it, self.total) / self.total))
        return factor


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the detection default) or AdamW over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# --------------------------------------------------------------------------- one epoch
def _to_device(images, targets, device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
    return images, targets


def _image_ids(targets) -> list[int]:
    return [int(t["image_id"]) for t in targets]


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device | str,
    epoch: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad_norm: float | None = None,
    start_iteration: int = 0,
    progress: bool = False,
    amp: bool = False,
) -> list[dict[str, float]]:
    """Train for one pass over ``loader``.

    Args:
        model: a torchvision Mask R-CNN (or its DDP wrapper).
        optimizer: its optimiser.
        loader: yields ``(images, targets)`` tuples.
        device: where to train.
        epoch: 1-based epoch number, for the records and the progress bar.
        scheduler: stepped after every iteration (warm-up and schedule in one).
        scaler: a GradScaler for float16 mixed precision on CUDA (it also turns ``amp`` on), or None.
        clip_grad_norm: clip the global gradient norm to this, or None.
        start_iteration: global iterations done before this epoch.
        progress: show a tqdm bar with the running losses and the ETA.
        amp: mixed precision: the forward pass runs under ``torch.autocast``, in float16 on CUDA (with
            ``scaler``) and in bfloat16 on the CPU (bfloat16 has float32's range, so it needs no scaler).

    Returns:
        One record per iteration: epoch, iteration (1-based, global), lr, loss and the five loss terms,
        averaged over processes when distributed.

    Raises:
        NonFiniteLossError: when a loss is NaN or infinite; raised before ``optimizer.step()``, so the
            weights stay finite.
    """
    from tqdm.auto import tqdm

    model.train()
    scaling = scaler is not None and scaler.is_enabled()
    device_type = torch.device(device).type
    use_amp = amp or scaling
    amp_dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    records = []
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=True, dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar):
        iteration = start_iteration + step + 1
        images, targets = _to_device(images, targets, device)
        with torch.autocast(device_type=device_type, dtype=amp_dtype, enabled=use_amp):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        # Averaged over processes (a no-op on one), so every rank sees the same numbers and a NaN
        # on any rank stops them all together instead of leaving the others waiting in backward.
        logged = dist.mean_dict({"loss": loss.detach(), **{k: v.detach() for k, v in loss_dict.items()}})
        if not all(math.isfinite(v) for v in logged.values()):
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch}, iteration {iteration} on images {_image_ids(targets)} "
                f"({', '.join(f'{k}={v:.4g}' for k, v in logged.items())}); lower lr, add warm-up or "
                "clip_grad_norm; the last checkpoint is unchanged",
                _image_ids(targets), logged, iteration,
            )
        optimizer.zero_grad(set_to_none=True)
        if scaling:
            scaler.scale(loss).backward()
            if clip_grad_norm:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        records.append({"epoch": epoch, "iteration": iteration, "lr": lr, **logged})
        bar.set_postfix(loss=f"{logged['loss']:.3f}", mask=f"{logged['loss_mask']:.3f}", lr=f"{lr:.2g}")
    return records


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@torch.no_grad()
def evaluate_loss(model: nn.Module, loader: Iterable, device: torch.device | str) -> dict[str, float]:
    """Mean validation loss and its five terms.

    torchvision detection models return losses only in train mode, so the model runs in train mode
    under ``torch.no_grad()``. That changes nothing learned: no gradients flow, pretrained backbones use
    FrozenBatchNorm2d, and any ordinary BatchNorm is put back in eval mode so its running statistics are
    not updated by validation images. (The RPN and box heads still sample proposals at random, as in training.)

    Returns:
        ``{"val_loss": ..., "val_loss_classifier": ..., ...}``, averaged over every batch of every process.
    """
    was_training = model.training
    model.train()
    _freeze_batchnorm(model)
    sums = torch.zeros(len(LOSS_KEYS) + 2, dtype=torch.float64)
    for images, targets in loader:
        images, targets = _to_device(images, targets, device)
        loss_dict = model(images, targets)
        values = [float(loss_dict[k]) for k in LOSS_KEYS]
        sums += torch.tensor([sum(values), *values, 1.0], dtype=torch.float64)
    sums = dist.sum_tensor(sums)
    model.train(was_training)
    count = max(sums[-1].item(), 1.0)
    names = ["val_loss", *(f"val_{k}" for k in LOSS_KEYS)]
    return {name: (sums[i].item() / count if sums[-1] > 0 else float("nan")) for i, name in enumerate(names)}


def evaluate_ap(model: nn.Module, dataset, score_threshold: float = 0.05) -> dict[str, float]:
    """Validation COCO AP (box and mask, all IoUs and IoU 0.5) of ``model`` on ``dataset``.

    Each process predicts its own share of ``dataset``; rank 0 gathers the predictions and scores them,
    and every rank receives the same numbers.
    """
    full = dataset
    shard = dist.shard(dataset)
    module = model.module if hasattr(model, "module") else model
    predictions = predict_dataset(module, shard, score_threshold=score_threshold) if len(shard) else {}
    predictions = dist.gather_dicts(predictions)
    metrics = None
    if dist.is_main():
        stats = coco_evaluate(full, predictions).stats
        metrics = {key: float(stats[iou][i]) for key, (iou, i) in AP_KEYS.items()}
    return dist.broadcast_object(metrics)


# --------------------------------------------------------------------------- fit
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        # numpy's state holds an ndarray; plain lists load with torch.load(weights_only=True).
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _run_dir(cfg: TrainConfig) -> Path:
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg.preset)
    if dist.is_main():
        ensure_writable_dir(run_dir, "the run folder", "choose another with --out or output_dir=...")
    return run_dir


def run_dataset(cfg: TrainConfig, transforms: Callable | None = None):
    """Every image of ``cfg``'s data, as one dataset (the split picks its train, validation and test images).

    Args:
        cfg: the run's config: ``data_format``, ``data_root`` and, for COCO data, the annotation file(s).
        transforms: called as ``transforms(image, target)``; None = unaugmented (:func:`pedseg_lib.data.build_transforms`).

    Returns:
        A :class:`~pedseg_lib.data.PennFudanDataset` (``data_format="pennfudan"``; a missing ``data_root`` is the
        profile's data, :func:`pedseg_lib.profiles.dataset_root`) or a :class:`~pedseg_lib.data.CocoInstancesDataset`
        (``data_format="coco"``) of the training file, then the validation and test files when they are given.
    """
    from pedseg_lib import data

    transforms = transforms or data.build_transforms(False)
    if cfg.data_format == "coco":
        files = [f for f in (cfg.annotation_file, cfg.val_annotation_file, cfg.test_annotation_file) if f]
        return data.CocoInstancesDataset(cfg.data_root, files, transforms=transforms, crowd=cfg.crowd)
    return data.PennFudanDataset(dataset_root(cfg.data_root, cfg.preset), transforms=transforms)


def _data_source(cfg: TrainConfig, dataset) -> str | list[str]:
    """What ``split.json`` records as the run's data: the Penn-Fudan folder or the annotation files."""
    if cfg.data_format == "coco":
        return [str(path) for path, _ in dataset.files]
    return str(dataset.root)


def _full_split(cfg: TrainConfig, dataset) -> dict[str, list[int]]:
    return _split_and_note(cfg, dataset)[0]


def _split_and_note(cfg: TrainConfig, dataset) -> tuple[dict[str, list[int]], str | None]:
    """The split, and a sentence when the preset's test_size/val_size were reduced to fit a small dataset
    (:func:`pedseg_lib.data.fit_split_sizes`; sizes set by hand are kept)."""
    from pedseg_lib import data
    from pedseg_lib.config import PRESETS, load_preset
    from pedseg_lib.data.splits import fit_split_sizes

    size = len(dataset)
    preset = load_preset(cfg.preset) if cfg.preset in PRESETS else None
    adjustable = preset is not None and (cfg.test_size, cfg.val_size) == (preset.test_size, preset.val_size)
    source = ", ".join(map(str, _data_source(cfg, dataset))) if cfg.data_format == "coco" else _data_source(cfg, dataset)
    if cfg.data_format == "coco" and cfg.test_annotation_file:  # the files are the split
        ranges = [list(indices) for _, indices in dataset.files]
        train, test = ranges[0], ranges[-1]
        if cfg.val_annotation_file:
            return {"train": train, "val": ranges[1], "test": test}, None
        val_size, note = cfg.val_size, None
        if adjustable and val_size and 5 * (len(train) - val_size) < len(train):
            val_size = min(val_size, max(1, len(train) // 5)) if len(train) > 1 else 0
            note = (f"the preset's val_size={cfg.val_size} leaves too few of the {len(train)} images of "
                    f"{cfg.annotation_file} for training: using val_size={val_size}")
        if not 0 <= val_size < len(train):
            raise ConfigError(f"val_size={val_size} must be smaller than the {len(train)} images of "
                              f"{cfg.annotation_file}: lower val_size or give val_annotation_file=...")
        rest, val = data.split_indices(len(train), val_size, cfg.split_seed) if val_size else (
            list(range(len(train))), [])
        return {"train": [train[i] for i in rest], "val": [train[i] for i in val], "test": test}, note
    test_size, val_size, note = fit_split_sizes(size, cfg.test_size, cfg.val_size, adjustable)
    if not 0 < test_size < size:
        raise ConfigError(f"test_size={test_size} must be between 1 and {size - 1}: {source} has {size} images; "
                          "set test_size=...")
    return data.split_train_val_test(size, test_size, val_size, cfg.split_seed), note


def split_summary(cfg: TrainConfig) -> str:
    """One line for the command line: how many images the run trains, validates and tests on, and why, when the
    preset's sizes were reduced to fit a small dataset.

    Args:
        cfg: the run's config.

    Returns:
        E.g. ``"split of 3 images: 1 train, 1 validation, 1 test (the preset's test_size=4 ...)"``.
    """
    dataset = run_dataset(cfg)
    split, note = _split_and_note(cfg, dataset)
    used = _used(cfg, split)
    train = f"{len(split['train'])} train" + (f" ({len(used['train'])} used: max_train_images)"
                                             if len(used["train"]) < len(split["train"]) else "")
    files = cfg.data_format == "coco" and cfg.test_annotation_file
    line = (f"split of {len(dataset)} images{' (from the files)' if files else ''}: {train}, "
            f"{len(used['val'])} validation, {len(split['test'])} test")
    return f"{line}; {note}" if note else line


def _used(cfg: TrainConfig, split: dict[str, list[int]]) -> dict[str, list[int]]:
    """The images a run really uses: the first ``max_train_images`` / ``max_val_images``, every test image."""
    return {"train": split["train"][: cfg.max_train_images], "val": split["val"][: cfg.max_val_images],
            "test": list(split["test"])}


def run_split(cfg: TrainConfig) -> dict[str, list[int]]:
    """The whole train/validation/test split of ``cfg``'s dataset (:func:`pedseg_lib.data.split_train_val_test`).

    The three sets are disjoint and cover the dataset; the test set is
    :func:`pedseg_lib.data.split_indices`' test set. A run uses the first ``max_train_images`` of the
    training set and the first ``max_val_images`` of the validation set (when set) and reads every other
    image of those two sets nowhere; the ``split.json`` that :func:`fit` writes records the images really
    used: the truncated training and validation lists and the whole test list.

    Args:
        cfg: the run's config (``data_root``, ``test_size``, ``val_size``, ``split_seed``).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: sorted dataset indices (``val`` empty when
        ``val_size`` is 0).

    Raises:
        PedsegError: no dataset at ``data_root`` (DatasetError), or ``test_size``/``val_size`` that do not fit it.
    """
    return _full_split(cfg, run_dataset(cfg))


def _data(cfg: TrainConfig, split: dict[str, list[int]]) -> tuple[Subset, Subset]:
    """Training (augmented) and validation (unaugmented) Subsets of the images in ``split``."""
    from pedseg_lib import data

    train_tf = data.build_transforms(True, hflip=cfg.hflip, photometric=cfg.photometric)
    return Subset(run_dataset(cfg, train_tf), split["train"]), Subset(run_dataset(cfg), split["val"])


def test_split(cfg: TrainConfig) -> Subset:
    """The whole held-out test split of ``cfg`` (``test_size`` images, never trained on, never used to choose
    anything during a run), without augmentation.

    Args:
        cfg: the run's config (``data_root``, ``test_size``, ``val_size``, ``split_seed``).

    Returns:
        A ``Subset`` of a :class:`~pedseg_lib.data.PennFudanDataset`; its ``image_id`` values are the
        indices into the full dataset.
    """
    dataset = run_dataset(cfg)
    return Subset(dataset, _full_split(cfg, dataset)["test"])


def val_split(cfg: TrainConfig) -> Subset:
    """The validation images of ``cfg`` as the run uses them (at most ``max_val_images``), without augmentation.

    Returns:
        A ``Subset`` of a :class:`~pedseg_lib.data.PennFudanDataset`, empty when ``val_size`` is 0.
    """
    dataset = run_dataset(cfg)
    return Subset(dataset, _used(cfg, _full_split(cfg, dataset))["val"])


def decision_split(cfg: TrainConfig) -> tuple[Subset, str]:
    """The images on which a reader of a run may choose things such as a score threshold, and why those.

    Never the test images: the run's validation images when it has any, else its training images (the
    ones it trained on, at most ``max_train_images``), without augmentation.

    Returns:
        ``(subset, sentence)``: a ``Subset`` of a :class:`~pedseg_lib.data.PennFudanDataset` and one
        sentence saying which images these are and why.
    """
    dataset = run_dataset(cfg)
    used = _used(cfg, _full_split(cfg, dataset))
    if used["val"]:
        return Subset(dataset, used["val"]), (
            f"the threshold is chosen on the run's {len(used['val'])} validation images, which it did not "
            "train on (they also chose its best epoch); the test images stay untouched")
    return Subset(dataset, used["train"]), (
        "this preset keeps no validation images (the official recipe trains on all non-test images), so the "
        f"threshold is chosen on the {len(used['train'])} training images; that is optimistic, but the test "
        "images stay untouched")


def load_split(path: str | Path, dataset_size: int | None = None) -> dict[str, list[int]]:
    """The ``split.json`` of a run folder (or the file itself).

    Args:
        path: a run folder or its ``split.json``.
        dataset_size: when given, every index must lie in ``range(dataset_size)``.

    Returns:
        The file's content; ``train``, ``val`` and ``test`` are lists of dataset indices.

    Raises:
        CheckpointError: naming the file when it is missing, not a split file, or names images outside the dataset.
    """
    import json

    path = Path(path)
    if path.is_dir():
        path = path / SPLIT_FILE
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or type(exc).__name__}): train the run again "
                          "or check the path.") from None
    except ValueError:
        raise CheckpointError(f"{path} is not valid JSON: restore it or train the run again.") from None
    if not isinstance(split, dict) or not all(
            isinstance(split.get(role), list) and all(type(i) is int for i in split[role]) for role in SPLIT_ROLES):
        raise CheckpointError(f"{path} is not a split file (lists of image indices under train, val and test): "
                          "restore it or train the run again.")
    if dataset_size is not None:
        outside = sorted({i for role in SPLIT_ROLES for i in split[role] if not 0 <= i < dataset_size})
        if outside:
            raise CheckpointError(f"{path} names images {outside[:5]} outside the dataset of {dataset_size} images: "
                              "evaluate with the run's own data (--data) or train the run again.")
    return split


test_split.__test__ = False  # a library function, not a pytest test


@dataclass
class TrainedModel:
    """What :func:`load_or_train` returns: the best model of a run, and whether it was trained just now."""

    model: nn.Module = field(repr=False)
    checkpoint: Path
    epoch: int | None
    trained_now: bool
    reason: str


def load_or_train(cfg: TrainConfig, progress: bool = True) -> TrainedModel:
    """The ``best.pt`` model of ``cfg``'s run folder, training the run first if it has none.

    ``best.pt`` is the model a run hands on: its best validation epoch, or its last epoch when the run has
    no validation images (``val_size=0``).

    A ``best.pt`` saved with a different config (another preset, data folder or split) is not reused:
    the run is trained again so that the model matches ``cfg``.

    Args:
        cfg: the run's config; its ``output_dir`` (default ``runs/<preset>``) is where ``best.pt`` is looked for.
        progress: show progress bars when training.

    Returns:
        A :class:`TrainedModel` with the model in eval mode on the CPU.
    """
    from pedseg_lib import model as M

    best_path = _run_dir(cfg) / "best.pt"
    reason = f"no {best_path} yet: training the {cfg.preset!r} preset now"
    if best_path.is_file():
        saved = M.load_checkpoint(best_path)
        if saved.get("config") == cfg.to_dict():
            return TrainedModel(M.model_from_checkpoint(saved, best_path), best_path, saved.get("extra", {}).get("epoch"), False,
                                f"loaded {best_path} (same config as this profile's preset)")
        changed = sorted(k for k, v in cfg.to_dict().items() if (saved.get("config") or {}).get(k) != v)
        reason = f"{best_path} was trained with another config ({', '.join(changed)} differ): training again"
    result = fit(cfg, progress=progress)
    return TrainedModel(M.load_model(best_path), best_path, result.best_epoch, True, reason)


def _multiscale(model: nn.Module, cfg: TrainConfig) -> None:
    """Scale jitter inside the model: torchvision picks a random ``min_size`` from the tuple for each
    training batch and uses the last one at test time."""
    if cfg.scale_jitter:
        low, high = (int(cfg.min_size * f) for f in cfg.scale_jitter)
        sizes = sorted({*range(low, high + 1, 32), cfg.min_size} - {cfg.min_size})
        model.transform.min_size = (*sizes, cfg.min_size)


def _roi_sampling(model: nn.Module, cfg: TrainConfig) -> None:
    """How many RoIs per image the box and mask heads' training losses sample (torchvision's sampler)."""
    model.roi_heads.fg_bg_sampler.batch_size_per_image = cfg.box_batch_size_per_image


def _write_history(run_dir: Path, history: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "history.json", history)
    for name, rows in (("iterations", history["iterations"]), ("epochs", history["epochs"])):
        buffer = io.StringIO()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        with atomic_open(run_dir / f"history_{name}.csv", "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())


def _score(row: dict[str, float]) -> tuple[float, float]:
    """Rank epochs by validation segm AP, then by lower validation loss; NaN (or COCO's -1) ranks last."""
    ap, loss = row.get("segm_AP", float("nan")), row.get("val_loss", float("nan"))
    ap = ap if math.isfinite(ap) and ap >= 0 else -math.inf
    return ap, -loss if math.isfinite(loss) else -math.inf


def fit(config: TrainConfig, resume: bool = False, progress: bool = True,
        on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None) -> FitResult:
    """Train a model as ``config`` says, validating, checkpointing and logging every epoch.

    Training reads only the run's training images and validation only its validation images
    (:func:`run_split`); ``split.json`` in the run folder records both and the test images, which the run
    never reads. ``best.pt`` is the epoch with the best validation mask AP (ties: lower validation loss);
    with ``val_size=0`` nothing is validated, nothing is selected and ``best.pt`` is the last epoch (the
    validation columns of the history are NaN).

    Args:
        config: the run's :class:`~pedseg_lib.config.TrainConfig`.
        resume: continue from ``<run folder>/last.pt`` (model, optimiser, schedule, scaler, RNG, history).
        progress: show progress bars (rank 0 only).
        on_epoch_end: called with each epoch's record after its checkpoint is written; returning True
            stops the run there (as an interruption would; ``resume=True`` continues it).

    Returns:
        A :class:`FitResult`; ``history`` is also in ``history.json`` and two CSV files in the run folder.

    Raises:
        NonFiniteLossError: a loss became NaN/inf (``last.pt`` keeps the last good epoch).
        PedsegError: missing data, unwritable run folder, unusable checkpoint.
    """
    from pedseg_lib import data
    from pedseg_lib import model as M

    dist.init()
    try:
        return _fit(config, resume, progress, on_epoch_end, data, M)
    finally:
        dist.cleanup()


def _fit(cfg, resume, progress, on_epoch_end, data, M) -> FitResult:
    main = dist.is_main()
    seed_everything(cfg.seed)
    device = dist.resolve_device(cfg.device)
    run_dir = _run_dir(cfg)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and not last_path.is_file():
        raise CheckpointError(f"cannot resume: {last_path} does not exist; train first or check the run folder.")
    dataset = run_dataset(cfg)
    split = _used(cfg, _full_split(cfg, dataset))
    if resume and (run_dir / SPLIT_FILE).is_file():
        saved = load_split(run_dir / SPLIT_FILE)
        if any(saved[role] != split[role] for role in SPLIT_ROLES):
            raise ConfigError(f"cannot resume: {run_dir / SPLIT_FILE} records other images than this config "
                              "selects; resume with the run's own data_root, test_size, val_size, split_seed, "
                              "max_train_images and max_val_images.")
    train_set, val_set = _data(cfg, split)
    validated = len(val_set) > 0

    # The order and every image's augmentation depend only on (seed, epoch, image), never on the loader's or
    # its workers' history: a resumed run sees the same batches as an uninterrupted one, with any workers.
    sampler = EpochSampler(len(train_set), cfg.seed, order=dist.sampler(train_set, seed=cfg.seed))
    loader = data.create_loader(SeededDataset(train_set), cfg.batch_size, shuffle=False, workers=cfg.workers,
                                seed=cfg.seed, sampler=sampler)
    val_loader = (data.create_loader(dist.shard(val_set), cfg.batch_size, shuffle=False, workers=cfg.workers)
                  if validated else None)

    # num_classes comes from the data: background + its classes (Penn-Fudan: person)
    model = M.build_model(num_classes=len(dataset.class_names), variant=cfg.variant, weights=cfg.weights,
                          min_size=cfg.min_size, max_size=cfg.max_size,
                          trainable_backbone_layers=cfg.trainable_backbone_layers).to(device)
    M.set_classes(model, dataset.class_names, dataset.category_ids)
    _multiscale(model, cfg)
    _roi_sampling(model, cfg)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(cfg, len(loader)))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    history: dict[str, Any] = {"iterations": [], "epochs": [], "status": {}}
    start_epoch, best, best_epoch, bad_epochs = 0, (-math.inf, -math.inf), None, 0

    if resume:
        ckpt = M.load_checkpoint(last_path, map_location="cpu")
        model.load_state_dict(ckpt["model_state"])
        extra = ckpt["extra"]
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        scheduler.lr_lambdas = [LRSchedule(cfg, len(loader))]  # the config may extend the run (epochs=...)
        scaler.load_state_dict(extra["scaler"])
        history = extra["history"]
        start_epoch, best_epoch, bad_epochs = extra["epoch"], extra["best_epoch"], extra["bad_epochs"]
        best = tuple(extra["best_score"])
        _set_rng_state(extra["rng"])
        if history["status"].get("stopped_early"):
            start_epoch = cfg.epochs  # early stopping is a decision, not an interruption
    if main:
        save_config(cfg, run_dir / "config.yaml")
        atomic_write_json(run_dir / SPLIT_FILE, {"dataset": _data_source(cfg, dataset), **split})

    train_model = dist.wrap(model, device)
    stopped_early = bool(history["status"].get("stopped_early"))
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        tic = time.perf_counter()
        sampler.set_epoch(epoch)  # this epoch's order and augmentation seeds
        records = train_one_epoch(train_model, optimizer, loader, device, epoch, scheduler, scaler,
                                  cfg.clip_grad_norm, len(history["iterations"]), progress and main, amp=cfg.amp)
        history["iterations"].extend(records)
        row = {"epoch": epoch, "train_loss": float(np.mean([r["loss"] for r in records]))}
        if validated:
            row.update(evaluate_loss(train_model, val_loader, device))
            row.update(evaluate_ap(model, val_set, cfg.eval_score_threshold))
        else:
            row.update(dict.fromkeys(VAL_KEYS, math.nan))  # not measured: the run has no validation images
        row.update(lr=records[-1]["lr"], seconds=time.perf_counter() - tic)
        history["epochs"].append(row)

        if validated:
            score = _score(row)
            improved = best_epoch is None or score > best
            if improved:
                best, best_epoch, bad_epochs = score, epoch, 0
            else:
                bad_epochs += 1
        else:  # no selection: the model a run without validation hands on is its last epoch
            improved, best_epoch, bad_epochs = True, epoch, 0
        stopped_early = cfg.patience is not None and bad_epochs >= cfg.patience and epoch < cfg.epochs
        history["status"] = _status(cfg, epoch, best_epoch, bad_epochs, stopped_early, len(val_set))
        extra = {
            "epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": _scheduler_state(scheduler),
            "scaler": scaler.state_dict(), "history": history, "best_epoch": best_epoch,
            "best_score": list(best), "bad_epochs": bad_epochs, "rng": _rng_state(),
        }
        if main:
            M.save_checkpoint(last_path, model, config=cfg.to_dict(), extra=extra)
            if improved:
                M.save_checkpoint(best_path, model, config=cfg.to_dict(),
                                  extra={"epoch": epoch, "metrics": row, "selected_by": _selected_by(validated)})
            _write_history(run_dir, history)
            if progress:
                print(_epoch_line(row, improved, validated))
        stop = bool(on_epoch_end(row)) if on_epoch_end is not None else False
        if stopped_early or stop:
            break

    if main and not history["epochs"]:
        _write_history(run_dir, history)
    dist.barrier()
    return FitResult(run_dir if main else None, history, best_path if main else None,
                     last_path if main else None, stopped_early, best_epoch, model)


def _scheduler_state(scheduler) -> dict[str, Any]:
    # LambdaLR saves a callable object's __dict__ (plain numbers), which weights_only loading accepts.
    return scheduler.state_dict()


def _selected_by(validated: bool) -> str:
    return "best validation segm AP" if validated else "last epoch (no validation images, val_size=0)"


def _status(cfg: TrainConfig, epoch: int, best_epoch: int | None, bad_epochs: int, stopped_early: bool,
            val_images: int) -> dict:
    if stopped_early:
        reason = (f"stopped early after epoch {epoch}: validation segm AP has not improved for {bad_epochs} "
                  f"epoch(s) (patience {cfg.patience}); best epoch {best_epoch}")
    elif epoch < cfg.epochs:
        reason = f"interrupted after epoch {epoch} of {cfg.epochs}; `pedseg resume` continues"
    elif val_images:
        reason = f"finished all {cfg.epochs} epochs; best epoch {best_epoch} (validation segm AP on {val_images} images)"
    else:
        reason = (f"finished all {cfg.epochs} epochs; no validation images (val_size=0), so no epoch was selected "
                  f"and best.pt is the last epoch, {best_epoch}")
    return {"epochs_done": epoch, "best_epoch": best_epoch, "epochs_without_improvement": bad_epochs,
            "patience": cfg.patience, "stopped_early": stopped_early, "validation_images": val_images,
            "selected_by": _selected_by(val_images > 0), "reason": reason}


def _epoch_line(row: dict[str, float], improved: bool, validated: bool = True) -> str:
    if not validated:
        return (f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, no validation (val_size=0), "
                f"{row['seconds']:.0f} s")
    mark = " (best so far)" if improved else ""
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, val loss {row['val_loss']:.3f}, "
            f"box AP {row['bbox_AP']:.3f}, mask AP {row['segm_AP']:.3f}, {row['seconds']:.0f} s{mark}")

"""Training configuration: one typed dataclass, four named presets, YAML files and ``key=value`` overrides.

A run is fully described by a :class:`TrainConfig`. Start from a preset, change what you need::

    cfg = load_preset("cpu")
    cfg = apply_overrides(cfg, ["epochs=3", "lr=0.01"])

or write a YAML file that names a ``preset:`` and the keys it changes, and load it with :func:`load_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pedseg_lib.errors import ConfigError

PRESETS = ("tutorial", "best", "cpu", "smoke")
VARIANTS = ("v1", "v2")
WEIGHTS = ("coco", "imagenet", None)
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("step", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
DATA_FORMATS = ("pennfudan", "coco")
# A number in exponent notation without a dot ("1e-5"), which YAML 1.1 (PyYAML) reads as a string.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
DEFAULT_RUNS_DIR = "runs"  # run folders go to <checkout>/runs/<preset> unless output_dir (or PEDSEG_RUNS) says otherwise


@dataclass
class TrainConfig:
    """Everything that decides a training run. Field comments give the default's reason."""

    preset: str = "tutorial"  # the preset this config started from (names the default run folder)
    # model
    variant: str = "v1"  # "v1": maskrcnn_resnet50_fpn (the tutorial's); "v2": the improved 2022 recipe
    weights: str | None = "coco"  # "coco", "imagenet" (backbone only) or None (random: smoke tests only)
    trainable_backbone_layers: int = 3  # torchvision's default for fine-tuning: freeze the stem and layer1
    min_size: int = 800  # shortest image side inside the model (torchvision's default)
    max_size: int = 1333  # longest side cap (torchvision's default)
    # RoIs sampled per image for the box and mask heads' training losses (torchvision's 512); fewer train faster,
    # as Detectron2's balloon tutorial does with 128 on a toy dataset. Training only: inference is unchanged
    box_batch_size_per_image: int = 512
    # data
    data_format: str = "pennfudan"  # "pennfudan" (PNGImages/ + PedMasks/) or "coco" (a COCO instances JSON file)
    # pennfudan: the Penn-Fudan folder (or its parent); None = the profile's data (pedseg_lib.profiles.dataset_root).
    # coco: the folder the JSON's file names are relative to; None = each annotation file's own folder
    data_root: str | None = None
    # coco: the instances JSON; its images are split by split_seed into train/validation/test, unless
    # test_annotation_file is set, in which case this file holds the training images only
    annotation_file: str | None = None
    val_annotation_file: str | None = None  # coco: validation images in a file of their own (needs a test file)
    test_annotation_file: str | None = None  # coco: test images in a file of their own (no seeded test split)
    # coco: which iscrowd-1 annotations are crowd regions: "auto" (a CVAT export's masks are instances, else
    # COCO's meaning), "coco" or "instances" (pedseg train --crowd-as-instances); pedseg_lib.data.crowd_rule
    crowd: str = "auto"
    test_size: int = 50  # images held out as the test set, as in the official tutorial; no decision reads them
    # images taken out of the non-test images for validation (best epoch, early stopping, thresholds);
    # 0 = no validation: the run makes no selection and keeps its last epoch, as the official tutorial
    val_size: int = 0
    split_seed: int = 0  # seed of the train/validation/test split (fixed, so runs are comparable)
    max_train_images: int | None = None  # keep only the first N training images (quick runs)
    max_val_images: int | None = None  # keep only the first N validation images (quick runs)
    batch_size: int = 2  # the tutorial's: two 800-px images fit an 8 GB GPU
    workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    # optimisation
    epochs: int = 2  # the tutorial trains 2 epochs
    optimizer: str = "sgd"  # "sgd" (the detection default) or "adamw"
    lr: float = 0.005  # the tutorial's learning rate for batch 2
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty, the tutorial's
    scheduler: str = "step"  # "step" (StepLR), "cosine" (to zero at the end) or "constant"
    step_size: int = 3  # StepLR: epochs between decays
    gamma: float = 0.1  # StepLR: decay factor
    # linear warm-up length; None = min(1000, iterations per epoch - 1, half the run's iterations):
    # the official rule (the tutorial's 59 of 120), never most of a short run (engine.default_warmup)
    warmup_iters: int | None = None
    warmup_factor: float = 0.001  # warm-up starts at lr * warmup_factor
    amp: bool = False  # mixed precision: float16 + GradScaler on CUDA, bfloat16 autocast on the CPU
    clip_grad_norm: float | None = None  # clip the global gradient norm to this (None = no clipping)
    # augmentation
    hflip: float = 0.5  # horizontal flip probability
    scale_jitter: list[float] | None = None  # [low, high] factors of min_size for multi-scale training
    photometric: bool = False  # RandomPhotometricDistort: brightness, contrast, saturation, hue, channel order
    # run
    seed: int = 0  # seeds python, numpy and torch
    output_dir: str | None = None  # run folder; None = runs/<preset> in the project (or working) folder
    patience: int | None = None  # stop after this many epochs without a better validation segm AP (needs val_size)
    device: str = "auto"  # "auto" (CUDA when available), "cuda" or "cpu"
    eval_score_threshold: float = 0.05  # detections below this score are not kept for validation AP

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON-safe) of every field."""
        return dataclasses.asdict(self)


def _preset_values() -> dict[str, dict[str, Any]]:
    return {
        # The official "TorchVision Object Detection Finetuning" recipe, unchanged: it trains on every
        # non-test image and makes no selection (val_size 0), so its model is the last epoch.
        "tutorial": dict(preset="tutorial"),
        # Longer, stronger recipe for a GPU: v2 model, cosine schedule, multi-scale + colour augmentation;
        # 20 validation images choose the best epoch and stop early (patience), never the test images.
        "best": dict(
            preset="best", variant="v2", batch_size=4, epochs=24, lr=0.01, weight_decay=1e-4,
            scheduler="cosine", warmup_iters=100, amp=True, clip_grad_norm=10.0,
            scale_jitter=[0.8, 1.25], photometric=True, patience=6, workers=4, val_size=20,
        ),
        # A laptop or free Colab CPU: one epoch on 40 of the training images at 480 px, validated on 20 images,
        # so that the book's chapter 4 stays within its budget on a 2-core machine.
        "cpu": dict(preset="cpu", min_size=480, max_size=800, epochs=1, workers=2, max_train_images=40, val_size=20),
        # Seconds, for CI: random weights, tiny inputs, 128 sampled RoIs per image (quicker steps); warm-up and
        # clipping keep lr 0.01 from diverging; 4 test images, 4 validation images, 8 training images.
        "smoke": dict(
            preset="smoke", weights=None, min_size=160, max_size=256, box_batch_size_per_image=128,
            max_train_images=8, epochs=2, lr=0.01, warmup_iters=4, clip_grad_norm=5.0, workers=0,
            test_size=4, val_size=4, scheduler="constant",
        ),
    }


def load_preset(name: str) -> TrainConfig:
    """The named preset.

    Args:
        name: ``tutorial``, ``best``, ``cpu`` or ``smoke``.

    Returns:
        A fresh :class:`TrainConfig`.

    Raises:
        ConfigError: for an unknown name.
    """
    presets = _preset_values()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}.")
    return TrainConfig(**presets[name])


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_field_types()), n=1)
    hint = f" - did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(_field_types())}"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the field type ``hint``; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option, where)
            except ConfigError:
                pass
        raise _bad_type(key, value, hint, where)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise _bad_type(key, value, hint, where)
        return [_coerce(key, v, item, where) for v in value]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and type(value) is hint:
        return value
    raise _bad_type(key, value, hint, where)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def _bad_type(key: str, value: Any, hint: Any, where: str) -> ConfigError:
    return ConfigError(
        f"config key {key!r} in {where}: {value!r} ({type(value).__name__}) is not a {_type_name(hint)}; "
        f"fix the value."
    )


def _check(ok: bool, key: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {value!r} is not valid - {what}.")


def validate(cfg: TrainConfig) -> None:
    """Check types and ranges of every field.

    Raises:
        ConfigError: naming the first bad key and value.
    """
    for key, hint in _field_types().items():
        setattr(cfg, key, _coerce(key, getattr(cfg, key), hint, "the config"))
    _check(cfg.preset in (*PRESETS, "custom"), "preset", cfg.preset, f"use one of {', '.join(PRESETS)}")
    _check(cfg.variant in VARIANTS, "variant", cfg.variant, "use v1 or v2")
    _check(cfg.weights in WEIGHTS, "weights", cfg.weights, "use coco, imagenet or none")
    _check(0 <= cfg.trainable_backbone_layers <= 5, "trainable_backbone_layers", cfg.trainable_backbone_layers,
           "use 0 to 5")
    _check(cfg.min_size > 0, "min_size", cfg.min_size, "must be positive")
    _check(cfg.box_batch_size_per_image >= 1, "box_batch_size_per_image", cfg.box_batch_size_per_image,
           "must be at least 1")
    _check(cfg.max_size >= cfg.min_size, "max_size", cfg.max_size, "must be at least min_size")
    _check(cfg.data_format in DATA_FORMATS, "data_format", cfg.data_format, "use pennfudan or coco")
    files = {k: getattr(cfg, k) for k in ("annotation_file", "val_annotation_file", "test_annotation_file")}
    if cfg.data_format == "coco" and cfg.annotation_file is None:
        raise ConfigError("data_format=coco needs 'annotation_file': set annotation_file=PATH/TO/instances.json.")
    if cfg.data_format == "pennfudan" and any(files.values()):
        key = next(k for k, v in files.items() if v)
        raise ConfigError(f"config key {key!r} ({files[key]!r}) is for COCO data: set data_format=coco, or remove it.")
    if cfg.val_annotation_file and not cfg.test_annotation_file:
        raise ConfigError("config key 'val_annotation_file' needs 'test_annotation_file' too (the test images must "
                          "come from a file as well): set test_annotation_file=..., or drop val_annotation_file.")
    _check(cfg.crowd in ("auto", "coco", "instances"), "crowd", cfg.crowd, "use auto, coco or instances")
    _check(cfg.test_size > 0, "test_size", cfg.test_size, "must be positive")
    _check(cfg.val_size >= 0, "val_size", cfg.val_size, "must be 0 (no validation) or more")
    for key in ("max_train_images", "max_val_images", "patience", "warmup_iters"):
        value = getattr(cfg, key)
        _check(value is None or value >= (0 if key == "warmup_iters" else 1), key, value,
               "must be positive or null")
    _check(cfg.batch_size >= 1, "batch_size", cfg.batch_size, "must be at least 1")
    _check(cfg.workers >= 0, "workers", cfg.workers, "must be 0 or more")
    _check(cfg.epochs >= 1, "epochs", cfg.epochs, "must be at least 1")
    _check(cfg.optimizer in OPTIMIZERS, "optimizer", cfg.optimizer, "use sgd or adamw")
    _check(cfg.lr > 0, "lr", cfg.lr, "must be positive")
    _check(cfg.scheduler in SCHEDULERS, "scheduler", cfg.scheduler, f"use one of {', '.join(SCHEDULERS)}")
    _check(cfg.step_size >= 1, "step_size", cfg.step_size, "must be at least 1")
    _check(0 < cfg.warmup_factor <= 1, "warmup_factor", cfg.warmup_factor, "must be in (0, 1]")
    _check(cfg.clip_grad_norm is None or cfg.clip_grad_norm > 0, "clip_grad_norm", cfg.clip_grad_norm,
           "must be positive or null")
    _check(0 <= cfg.hflip <= 1, "hflip", cfg.hflip, "must be a probability in [0, 1]")
    _check(cfg.scale_jitter is None or (len(cfg.scale_jitter) == 2 and 0 < cfg.scale_jitter[0] <= cfg.scale_jitter[1]),
           "scale_jitter", cfg.scale_jitter, "use [low, high] with 0 < low <= high, or null")
    _check(cfg.device in DEVICES, "device", cfg.device, "use auto, cpu or cuda")
    if cfg.patience is not None and cfg.val_size == 0:
        raise ConfigError(f"config key 'patience' ({cfg.patience}) needs validation images but 'val_size' is 0: "
                          "set val_size=N (e.g. 20) or patience=null.")


def _parse_weights(value: Any) -> Any:
    # "none" reads naturally on a command line (weights=none); YAML gives the string "none".
    return None if isinstance(value, str) and value.lower() in ("none", "null", "random") else value


def _updated(cfg: TrainConfig, values: dict[str, Any], where: str) -> TrainConfig:
    hints = _field_types()
    changes = {}
    for key, value in values.items():
        if key not in hints:
            raise _unknown_key(key, where)
        if key == "weights":
            value = _parse_weights(value)
        changes[key] = _coerce(key, value, hints[key], where)
    return dataclasses.replace(cfg, **changes)


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Change fields from ``key=value`` strings; values are parsed as YAML and type-checked.

    Args:
        cfg: the config to start from (not modified).
        overrides: e.g. ``["lr=0.01", "weights=none", "scale_jitter=[0.8,1.2]"]``.

    Returns:
        A new :class:`TrainConfig`.

    Raises:
        ConfigError: for a malformed item, an unknown key (with the closest known one) or a bad value.
    """
    values = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value: write e.g. lr=0.01.")
        try:
            values[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value {text!r} is not valid YAML; quote or fix it.") from None
    return _updated(cfg, values, "--set")


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A config from a YAML file: a mapping of fields, optionally starting from ``preset: NAME``.

    Args:
        path: the YAML file.

    Returns:
        The preset (or the defaults) updated with the file's keys.

    Raises:
        ConfigError: for a missing or unparsable file, a non-mapping, unknown keys or bad values.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}; check the path.") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax.") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value, not a {type(values).__name__}.")
    preset = values.get("preset", None)
    cfg = load_preset(preset) if preset is not None else TrainConfig(preset="custom")
    return _updated(cfg, values, str(path))


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML (atomically) so :func:`load_config` reads it back unchanged."""
    from pedseg_lib._io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def project_root() -> Path | None:
    """The checkout this code runs from (the folder with ``_toc.yml``), searched upwards from cwd."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "pedseg_lib").is_dir():
            return folder
    return None


def project_dir() -> Path:
    """The folder that default data and run folders are relative to: the checkout, or the working folder outside one."""
    return project_root() or Path.cwd()


def default_output_dir(preset: str) -> Path:
    """``runs/<preset>`` in :func:`project_dir`."""
    return project_dir() / DEFAULT_RUNS_DIR / preset


def config_for_profile(profile: Any) -> TrainConfig:
    """The profile's preset, with its data (made or downloaded if needed) and run folder.

    Args:
        profile: a :class:`pedseg_lib.profiles.Profile`.

    Returns:
        The :class:`TrainConfig` a chapter trains with; its run folder is ``<profile.runs_dir>/<preset>``.
    """
    cfg = load_preset(profile.name)
    root = profile.ensure_data()
    return dataclasses.replace(cfg, data_root=str(root), output_dir=str(Path(profile.runs_dir) / cfg.preset))


__all__ = [
    "DATA_FORMATS", "PRESETS", "TrainConfig", "apply_overrides", "config_for_profile", "default_output_dir", "project_dir", "project_root",
    "load_config", "load_preset", "save_config", "validate",
]

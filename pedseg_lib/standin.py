"""Stand-in weights: rehearse the real profiles offline, where torchvision's weights cannot be downloaded.

A stand-in is a randomly initialised state dict of the right architecture, saved under torchvision's own
cache file name in a *temporary* ``TORCH_HOME``, so that ``build_model(weights="coco")`` and every chapter run
exactly the code paths of the real profiles. Stand-ins prove control flow and timing, never accuracy: their
SHA-256 cannot match the hash prefix in the file name, so :func:`pedseg_lib.model.check_weights_file` reports
them, and every chapter's banner says that its numbers are meaningless.

Random convolutions under frozen batch norm with identity statistics (mean 0, variance 1) multiply the
activations at every layer, and training turns them into NaN within a few iterations. So the batch-norm
statistics of each stand-in are calibrated first: the model runs forward in training mode on a few real
images, and every ``BatchNorm2d`` keeps the average of the batch statistics it saw.

For maintainers (``bash .ci/rehearse``)::

    python -m pedseg_lib.standin --torch-home /tmp/standin-torch --data ../shared/data
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from pedseg_lib import model as M
from pedseg_lib._io import atomic_torch_save
from pedseg_lib.errors import ConfigError, DatasetError, PedsegError

CALIBRATION_IMAGES = 8  # enough for stable statistics; each batch-norm layer averages over all of them
CALIBRATION_SIZE = 480  # shorter image side while calibrating (the cpu profile's)
# ImageNet normalisation, as torchvision's classification transforms apply it.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _batches(data_root: Path, n_images: int, batch_size: int = 2) -> Iterator[tuple[list, list]]:
    from pedseg_lib import data

    dataset = data.PennFudanDataset(data_root, transforms=data.build_transforms(False))
    picks = range(min(n_images or CALIBRATION_IMAGES, len(dataset)))
    for start in range(0, len(picks), batch_size):
        images, targets = zip(*(dataset[i] for i in picks[start:start + batch_size]), strict=True)
        yield list(images), list(targets)


def _start_calibration(module: nn.Module) -> list[nn.BatchNorm2d]:
    layers = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over every calibration batch
    module.train()
    return layers


def _finish_calibration(layers: list[nn.BatchNorm2d]) -> None:
    for layer in layers:
        layer.momentum = 0.1  # torchvision's default, as saved in real checkpoints
        # v1's FrozenBatchNorm2d divides by sqrt(var + 0) (torchvision loads COCO v1 with eps=0).
        layer.running_var.clamp_(min=1e-5)
        if not (torch.isfinite(layer.running_mean).all() and torch.isfinite(layer.running_var).all()):
            raise DatasetError("batch-norm calibration of the stand-in weights produced non-finite statistics; "
                               "calibrate on other images (--data).")


def _unit_variance_hooks(module: nn.Module, skip: str) -> list:
    """Forward hooks that rescale each convolution and linear layer (outside ``skip``) at its first call so its
    output has unit standard deviation on the calibration batch: layer-sequential unit-variance
    initialisation (Mishkin and Matas, 2016) in one pass. Without it, the random FPN and heads of a detector
    whose backbone was normalised still produce logits in the tens, and fine-tuning diverges."""
    handles = []
    for name, layer in module.named_modules():
        if name.startswith(skip) or not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            continue

        def rescale(layer, inputs, output, done=[]):  # noqa: B006 - one flag list per layer, made below
            if done or not torch.is_tensor(output) or output.numel() < 2:
                return None
            done.append(True)
            std = output.float().std().clamp(min=1e-6)
            layer.weight.div_(std)
            if layer.bias is not None:
                layer.bias.div_(std)
            return output / std

        handles.append(layer.register_forward_hook(lambda m, i, o, f=rescale, d=[]: f(m, i, o, d)))
    return handles


@torch.no_grad()
def detector_state(variant: str, data_root: Path, n_images: int | None = None, seed: int = 0) -> dict:
    """A random COCO-shaped (91-class) Mask R-CNN state dict with calibrated batch-norm statistics.

    Args:
        variant: ``"v1"`` or ``"v2"``.
        data_root: a Penn-Fudan folder whose first ``n_images`` images calibrate batch norm.
        n_images: calibration images (default ``CALIBRATION_IMAGES``).
        seed: seeds the random initialisation.

    Returns:
        A state dict that ``build_model(variant=variant, weights="coco")`` loads (strictly).
    """
    torch.manual_seed(seed)
    # Without weights torchvision builds ordinary BatchNorm2d everywhere, which can learn statistics.
    detector = M._BUILDERS[variant](weights=None, weights_backbone=None, num_classes=M.COCO_CLASSES,
                                    min_size=CALIBRATION_SIZE, max_size=CALIBRATION_SIZE * 5 // 3)
    layers = _start_calibration(detector)
    batches = list(_batches(data_root, n_images))
    hooks = _unit_variance_hooks(detector, skip="backbone.body")
    detector(*batches[0])  # scales the FPN, RPN and heads (the backbone is normalised by its batch norm)
    for handle in hooks:
        handle.remove()
    layers = _start_calibration(detector)
    for images, targets in batches:
        detector(images, targets)  # training mode: every batch-norm layer sees its batch statistics
    _finish_calibration(layers)
    state = detector.state_dict()
    if variant == "v1":
        # The published v1 file holds FrozenBatchNorm2d buffers, which have no batch counter.
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return state


@torch.no_grad()
def imagenet_state(data_root: Path, n_images: int | None = None, seed: int = 0) -> dict:
    """A random ResNet-50 classifier state dict (torchvision's ImageNet file layout) with calibrated batch norm."""
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    classifier = resnet50(weights=None)
    layers = _start_calibration(classifier)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    for images, _ in _batches(data_root, n_images):
        resized = [nn.functional.interpolate(((img - mean) / std)[None], size=(224, 224), mode="bilinear",
                                             align_corners=False) for img in images]
        classifier(torch.cat(resized))
    _finish_calibration(layers)
    return classifier.state_dict()


def standin_states(data_root: Path) -> dict[str, dict]:
    """``{torchvision weights URL: stand-in state dict}`` for v1 COCO, v2 COCO and the ImageNet ResNet-50."""
    states = {}
    for variant in M.VARIANTS:
        ((_, url),) = M.pretrained_urls(variant, "coco").items()
        states[url] = detector_state(variant, data_root)
    ((_, url),) = M.pretrained_urls("v1", "imagenet").items()
    states[url] = imagenet_state(data_root)
    return states


def _default_torch_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser().resolve() / "torch"


def write_standin_weights(torch_home: str | os.PathLike, data_root: str | os.PathLike) -> list[Path]:
    """Write stand-in weights under torchvision's cache file names in ``torch_home/hub/checkpoints``.

    Args:
        torch_home: a temporary folder to use as ``TORCH_HOME``; never the user's own torch cache.
        data_root: Penn-Fudan folder (or the folder holding ``PennFudanPed/``) for the batch-norm calibration.

    Returns:
        The files written.

    Raises:
        ConfigError: ``torch_home`` is the user's torch cache.
        DatasetError: there is no dataset at ``data_root``.
    """
    from pedseg_lib.data import find_dataset

    torch_home = Path(torch_home).expanduser().resolve()
    if torch_home == _default_torch_home():
        raise ConfigError(f"{torch_home} is your own torch cache: stand-in weights go into a temporary TORCH_HOME "
                          "(e.g. one from mktemp -d), never where real weights live.")
    root = find_dataset(data_root)
    if root is None:
        raise DatasetError(f"no Penn-Fudan dataset at {data_root} to calibrate batch norm on: pass --data.")
    written = []
    for url, state in standin_states(root).items():
        path = torch_home / "hub" / "checkpoints" / os.path.basename(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m pedseg_lib.standin --torch-home DIR --data DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m pedseg_lib.standin",
        description="Write stand-in weights (random, batch norm calibrated on real images) under torchvision's "
                    "cache file names, to rehearse the real profiles offline. Their numbers mean nothing.")
    parser.add_argument("--torch-home", required=True, metavar="DIR", help="a temporary TORCH_HOME to fill")
    parser.add_argument("--data", required=True, metavar="DIR", help="Penn-Fudan folder for the calibration")
    args = parser.parse_args(argv)
    try:
        for path in write_standin_weights(args.torch_home, args.data):
            print(f"stand-in: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    except PedsegError as exc:
        print(f"standin: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run profiles: the one place that reads ``PEDSEG_PROFILE`` and ``PEDSEG_DATA``.

A profile says how much work a chapter or a command may do and with what:

========== ============================================================================
tutorial   the official fine-tuning recipe on a CUDA GPU, COCO weights, real data
best       a longer recipe on a GPU (v2, more augmentation, AMP), expected to be this book's strongest
cpu        fits a laptop or free Colab CPU: smaller inputs, one epoch, COCO weights
smoke      seconds per chapter, for CI and offline runs: random weights, tiny budgets;
           real Penn-Fudan data when present at ``PEDSEG_DATA``, synthetic data otherwise
========== ============================================================================

``PEDSEG_PROFILE=auto`` (the default) picks ``tutorial`` with a CUDA GPU and ``cpu`` without,
and falls back to ``smoke`` when the dataset or the COCO weights cannot be had; it always says why.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pedseg_lib import distributed as dist
from pedseg_lib.config import DEFAULT_RUNS_DIR, PRESETS, load_preset, project_dir
from pedseg_lib.data import PENNFUDAN_URL, find_dataset
from pedseg_lib.errors import ConfigError, DatasetError

ENV_PROFILE = "PEDSEG_PROFILE"
ENV_DATA = "PEDSEG_DATA"
PROFILES = PRESETS  # each profile trains with the preset of the same name
DEFAULT_DATA_DIR = "data"
# Where a smoke run writes its synthetic stand-in when the real data is not there.
SYNTHETIC_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pedseg" / "synthetic"
SYNTHETIC_IMAGES = 24  # enough for a seeded split with a few test images
ENV_RUNS = "PEDSEG_RUNS"
REACH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Profile:
    """The profile in force and where its data lives.

    Attributes:
        name: ``tutorial``, ``best``, ``cpu`` or ``smoke``; also the name of the training preset.
        requested: what ``PEDSEG_PROFILE`` asked for (``auto`` when unset).
        reason: one sentence saying why this profile was chosen.
        data_root: the Penn-Fudan folder (the one holding ``PNGImages/``), present or to be downloaded.
        synthetic: True when ``data_root`` is generated synthetic data, not Penn-Fudan.
        device: ``"cuda"`` or ``"cpu"``.
        runs_dir: where the chapters write their run folders (``PEDSEG_RUNS``, default ``runs/`` in the checkout).
    """

    name: str
    requested: str
    reason: str
    data_root: Path
    synthetic: bool
    device: str
    runs_dir: Path = dataclasses.field(default_factory=lambda: runs_dir())

    @property
    def is_smoke(self) -> bool:
        """True for the smoke profile, whose numbers mean nothing."""
        return self.name == "smoke"

    @property
    def pretrained(self) -> bool:
        """Whether pretrained (COCO or ImageNet) weights are used: never in smoke."""
        return not self.is_smoke

    def weights(self, requested: str | None) -> str | None:
        """The weights a chapter should build with: ``requested``, or None (random) in smoke."""
        return requested if self.pretrained else None

    def weights_checks(self) -> list:
        """The pretrained weights this profile's chapters load, each checked against torchvision's hash.

        Returns:
            :class:`pedseg_lib.model.WeightsCheck` per file: the preset's detector, and the ImageNet
            backbone of chapter 3's comparison. Empty in smoke (random weights).
        """
        from pedseg_lib.model import check_weights_file, pretrained_urls

        if not self.pretrained:
            return []
        preset = load_preset(self.name)
        files = {**pretrained_urls(preset.variant, preset.weights), **pretrained_urls(preset.variant, "imagenet")}
        return [check_weights_file(url, what) for what, url in files.items()]

    def banner(self) -> str:
        """A short block of text that every chapter prints first: profile, data, device and weights."""
        from pedseg_lib.model import untrusted_warning

        data = "synthetic pedestrians (not Penn-Fudan)" if self.synthetic else str(self.data_root)
        lines = [
            f"pedseg profile: {self.name} (requested: {self.requested}) - {self.reason}",
            f"data: {data} | device: {self.device}",
        ]
        checks = self.weights_checks()
        if checks:
            lines += [f"weights: {check.describe()}" for check in checks]
        else:
            lines.append("weights: random initialisation (no pretrained weights in this profile)")
        warning = untrusted_warning(checks)
        if self.is_smoke or warning:
            lines.insert(0, "=" * 78)
            if self.is_smoke:
                lines.append(
                    "SMOKE PROFILE: random weights and tiny budgets, so every number, curve and picture "
                    "below is meaningless. Set PEDSEG_PROFILE=cpu or tutorial for real results."
                )
            if warning:
                lines.append(warning)
            lines.append("=" * 78)
        return "\n".join(lines)

    def ensure_data(self) -> Path:
        """Make sure ``data_root`` holds a dataset: generate synthetic data or download Penn-Fudan.

        Returns:
            ``data_root``.
        """
        from pedseg_lib import data

        if find_dataset(self.data_root) is not None:
            return self.data_root
        if self.synthetic:
            return data.make_synthetic_pennfudan(self.data_root, n_images=SYNTHETIC_IMAGES, seed=0)
        return data.download_pennfudan(self.data_root.parent)


def dataset_root(data_root: str | os.PathLike | None, preset: str | None = None) -> Path:
    """The Penn-Fudan folder a run or a command reads: the one rule for a missing ``data_root``.

    Args:
        data_root: a Penn-Fudan folder or the folder holding ``PennFudanPed/``; None means the profile's data
            (``PEDSEG_DATA``, else ``data/`` in the checkout), downloaded when missing, or synthetic
            data in the smoke profile when Penn-Fudan is not there (:meth:`Profile.ensure_data`).
        preset: the run's preset; when it names a profile, that profile's data, else ``PEDSEG_PROFILE``'s.

    Returns:
        The folder holding ``PNGImages/`` and ``PedMasks/``.

    Raises:
        DatasetError: ``data_root`` holds no Penn-Fudan dataset.
    """
    if data_root is None:
        root = get_profile(preset if preset in PROFILES else None).ensure_data()
    else:
        root = Path(data_root)
    found = find_dataset(root)
    if found is None:
        raise DatasetError(f"no Penn-Fudan dataset at {root} (no PNGImages/ and PedMasks/): run `pedseg download` "
                           "or pass the folder that holds it (--data, or data_root=...)")
    return found


def data_dir() -> Path:
    """``PEDSEG_DATA``, or ``data/`` in the checkout (in the working folder outside one)."""
    value = os.environ.get(ENV_DATA)
    if value:
        return Path(value).expanduser().resolve()
    return (project_dir() / DEFAULT_DATA_DIR).resolve()


def runs_dir() -> Path:
    """``PEDSEG_RUNS``, or ``runs/`` in the checkout (in the working folder outside one)."""
    value = os.environ.get(ENV_RUNS)
    if value:
        return Path(value).expanduser().resolve()
    return (project_dir() / DEFAULT_RUNS_DIR).resolve()


def _reachable(url: str) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=REACH_TIMEOUT_S):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _coco_weights_url() -> str:
    from pedseg_lib.model import pretrained_urls

    (url,) = pretrained_urls("v1", "coco").values()
    return url


def get_profile(requested: str | None = None) -> Profile:
    """Resolve the profile from ``requested`` or ``PEDSEG_PROFILE``.

    Args:
        requested: ``auto``, ``tutorial``, ``best``, ``cpu`` or ``smoke``; None reads the environment.

    Returns:
        The :class:`Profile` in force. Its ``reason`` says why, and :meth:`Profile.banner` shows it.

    Raises:
        ConfigError: for a name that is not a profile.
    """
    requested = (requested or os.environ.get(ENV_PROFILE) or "auto").strip().lower()
    if requested not in ("auto", *PROFILES):
        raise ConfigError(
            f"{ENV_PROFILE}={requested!r} is not a profile: use one of auto, {', '.join(PROFILES)}."
        )
    device = dist.resolve_device("auto").type
    folder = data_dir()
    found = find_dataset(folder)
    real_root = found or folder / "PennFudanPed"

    if requested == "smoke":
        if found is not None:
            return Profile("smoke", requested, "asked for", found, False, device)
        return Profile(
            "smoke", requested, f"asked for; no Penn-Fudan at {folder}, so synthetic data",
            SYNTHETIC_DIR, True, device,
        )
    if requested != "auto":
        return Profile(requested, requested, "asked for", real_root, False, device)

    name = "tutorial" if device == "cuda" else "cpu"
    why = "a CUDA GPU is present" if device == "cuda" else "no CUDA GPU"
    missing = []
    if found is None and not _reachable(PENNFUDAN_URL):
        missing.append(f"no Penn-Fudan at {folder} and its server cannot be reached")
    coco_url = _coco_weights_url()
    from pedseg_lib.model import weights_file

    if not weights_file(coco_url).is_file() and not _reachable(coco_url):
        missing.append("the COCO weights are not cached and cannot be downloaded")
    if missing:
        fallback = get_profile("smoke")
        return Profile(
            "smoke", "auto", f"fell back to smoke: {'; '.join(missing)}",
            fallback.data_root, fallback.synthetic, device,
        )
    return Profile(name, "auto", why, real_root, False, device)

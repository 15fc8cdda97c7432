"""Profiles: how PEDSEG_PROFILE and PEDSEG_DATA are read, and what auto falls back to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pedseg_lib import data, profiles
from pedseg_lib._io import atomic_open, atomic_write_json
from pedseg_lib.errors import ConfigError


def _fake_dataset(root: Path) -> Path:
    (root / "PennFudanPed" / "PNGImages").mkdir(parents=True)
    (root / "PennFudanPed" / "PedMasks").mkdir()
    return root / "PennFudanPed"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setattr(profiles, "_reachable", lambda url: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no cached weights


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(profiles, "_reachable", lambda url: True)


def test_find_dataset_accepts_the_folder_or_its_parent(tmp_path):
    dataset = _fake_dataset(tmp_path)
    assert data.find_dataset(tmp_path) == dataset
    assert data.find_dataset(dataset) == dataset
    assert data.find_dataset(tmp_path / "elsewhere") is None


def test_unknown_profile_names_the_value(monkeypatch):
    monkeypatch.setenv("PEDSEG_PROFILE", "fast")
    with pytest.raises(ConfigError, match=r"PEDSEG_PROFILE='fast' is not a profile.*smoke"):
        profiles.get_profile()


def test_smoke_uses_real_data_when_present(monkeypatch, tmp_path):
    dataset = _fake_dataset(tmp_path)
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    profile = profiles.get_profile("smoke")
    assert (profile.name, profile.data_root, profile.synthetic) == ("smoke", dataset, False)
    assert profile.weights("coco") is None
    assert "meaningless" in profile.banner()


def test_smoke_falls_back_to_synthetic_data(monkeypatch, tmp_path):
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path / "empty"))
    profile = profiles.get_profile("smoke")
    assert profile.synthetic and profile.data_root == profiles.SYNTHETIC_DIR
    assert "synthetic" in profile.reason and "synthetic" in profile.banner()


def test_explicit_profile_is_kept_even_without_data(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    profile = profiles.get_profile("cpu")
    assert profile.name == "cpu" and profile.data_root == tmp_path / "PennFudanPed"
    assert profile.weights("coco") == "coco"
    banner = profile.banner()
    assert "meaningless" not in banner.lower()
    assert "weights: COCO Mask R-CNN v1: maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth, not downloaded yet" in banner
    assert "weights: ImageNet ResNet-50: resnet50-0676ba61.pth, not downloaded yet" in banner


def _cache_file(torch_home: Path, name: str, payload: bytes) -> Path:
    path = torch_home / "hub" / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_banner_names_verified_weights(monkeypatch, tmp_path):
    import hashlib

    from pedseg_lib import model

    payload = b"not really weights"
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    url = f"https://download.example/models/maskrcnn_resnet50_fpn_coco-{prefix}.pth"
    monkeypatch.setattr(model, "_COCO_WEIGHTS", {"v1": type("W", (), {"url": url})(), "v2": model._COCO_WEIGHTS["v2"]})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    _cache_file(tmp_path / "th", f"maskrcnn_resnet50_fpn_coco-{prefix}.pth", payload)
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    banner = profiles.get_profile("cpu").banner()
    assert f"SHA-256 starts with {prefix} as torchvision publishes it (verified)" in banner
    assert "NOT torchvision" not in banner and "MEANINGLESS" not in banner


@pytest.mark.parametrize("name", ["tutorial", "cpu", "best"])
def test_banner_warns_in_plain_words_when_cached_weights_are_not_torchvisions(monkeypatch, tmp_path, name):
    from pedseg_lib.config import load_preset
    from pedseg_lib.model import pretrained_urls

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    (url,) = pretrained_urls(load_preset(name).variant, "coco").values()
    bad = _cache_file(tmp_path / "th", Path(url).name, b"stand-in weights")
    profile = profiles.get_profile(name)
    banner = profile.banner()
    assert banner.splitlines()[1].startswith(f"pedseg profile: {name} ")
    assert f"{bad} is NOT torchvision's published file" in banner
    assert "EVERY NUMBER, CURVE AND PICTURE BELOW IS MEANINGLESS" in banner
    assert [c.status for c in profile.weights_checks()] == ["mismatch", "not cached"]


def test_auto_without_gpu_picks_cpu_when_everything_can_be_had(monkeypatch, tmp_path, online):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fake_dataset(tmp_path)
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    monkeypatch.delenv("PEDSEG_PROFILE", raising=False)
    profile = profiles.get_profile()
    assert (profile.name, profile.requested, profile.reason) == ("cpu", "auto", "no CUDA GPU")


def test_auto_with_gpu_picks_tutorial(monkeypatch, tmp_path, online):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    profile = profiles.get_profile("auto")
    assert (profile.name, profile.device) == ("tutorial", "cuda")


def test_auto_offline_falls_back_to_smoke_and_says_why(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    profile = profiles.get_profile("auto")
    assert profile.name == "smoke" and profile.requested == "auto"
    assert "cannot be reached" in profile.reason and "COCO weights" in profile.reason
    assert profile.reason in profile.banner()


def test_auto_offline_with_local_data_names_only_the_weights(monkeypatch, tmp_path, offline):
    dataset = _fake_dataset(tmp_path)
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path))
    profile = profiles.get_profile("auto")
    assert profile.name == "smoke" and profile.data_root == dataset and not profile.synthetic
    assert "Penn-Fudan" not in profile.reason and "COCO weights" in profile.reason


def test_data_dir_defaults_to_the_checkout(monkeypatch):
    monkeypatch.delenv("PEDSEG_DATA", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "book")
    assert profiles.data_dir() == Path(__file__).resolve().parents[1] / "data"


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "history.json"
    atomic_write_json(target, {"epoch": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write('{"epoch": 2, "trunc')
            raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "epoch": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_a_missing_data_root_uses_the_presets_profile(monkeypatch, tmp_path):
    """`pedseg train --preset smoke` without data_root trains on smoke's data, whatever PEDSEG_PROFILE says."""
    from pedseg_lib.errors import DatasetError

    real = tmp_path / "real" / "PennFudanPed"
    (real / "PNGImages").mkdir(parents=True)
    (real / "PedMasks").mkdir()
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path / "real"))
    monkeypatch.setenv("PEDSEG_PROFILE", "cpu")
    synthetic = tmp_path / "synthetic"
    monkeypatch.setattr(profiles, "SYNTHETIC_DIR", synthetic)
    assert profiles.dataset_root(None, "smoke") == real  # smoke's rule: real data when present
    monkeypatch.setenv("PEDSEG_DATA", str(tmp_path / "empty"))
    made = []
    monkeypatch.setattr(data, "make_synthetic_pennfudan", lambda root, **kw: made.append(root) or real)
    assert profiles.dataset_root(None, "smoke") == real and made == [synthetic]  # smoke makes synthetic data
    assert profiles.dataset_root(str(tmp_path / "real"), "smoke") == real  # a given folder wins
    with pytest.raises(DatasetError, match="no Penn-Fudan dataset at"):
        profiles.dataset_root(tmp_path / "empty", "smoke")

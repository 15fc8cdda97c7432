"""Stand-in weights for offline rehearsals: the right architecture, torchvision's file names, finite training."""

from __future__ import annotations

import warnings

import pytest
import torch

from pedseg_lib import model as M
from pedseg_lib import standin
from pedseg_lib.data import PennFudanDataset, build_transforms
from pedseg_lib.errors import PedsegError


@pytest.fixture
def small_calibration(monkeypatch):
    monkeypatch.setattr(standin, "CALIBRATION_SIZE", 160)
    monkeypatch.setattr(standin, "CALIBRATION_IMAGES", 2)


def test_stand_ins_are_written_under_torchvisions_names_and_flagged(monkeypatch, tmp_path, synthetic_root):
    # The architectures are checked below; here only the files: names, place, and the hash check's verdict.
    monkeypatch.setattr(standin, "detector_state", lambda variant, root: {"variant": torch.tensor(len(variant))})
    monkeypatch.setattr(standin, "imagenet_state", lambda root: {"fc.weight": torch.zeros(1)})
    written = standin.write_standin_weights(tmp_path / "th", synthetic_root)
    urls = {**M.pretrained_urls("v1", "coco"), **M.pretrained_urls("v2", "coco"), **M.pretrained_urls("v1", "imagenet")}
    assert [p.name for p in written] == [url.rsplit("/", 1)[1] for url in urls.values()]
    assert all(p.parent == tmp_path / "th" / "hub" / "checkpoints" for p in written)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    # A stand-in can never pass for the real file.
    assert [M.check_weights_file(url, what).status for what, url in urls.items()] == ["mismatch"] * 3


# v1 only: v2 (ordinary batch norm everywhere, the easier case) runs in every `.ci/rehearse` (pedseg train --preset best).
@pytest.mark.parametrize("variant", ["v1"])
def test_calibrated_stand_ins_load_into_the_pretrained_build_and_train_finitely(variant, monkeypatch, tmp_path,
                                                                               synthetic_root, small_calibration):
    state = standin.detector_state(variant, synthetic_root)
    variances = [v for k, v in state.items() if k.startswith("backbone.body") and k.endswith("running_var")]
    assert variances and all(torch.isfinite(v).all() for v in variances)
    assert all(bool((v != 1).any()) for v in variances)  # every layer saw real statistics, none kept identity
    # v1's published file holds FrozenBatchNorm2d buffers (no batch counter); v2's ordinary BatchNorm2d ones.
    assert any(k.endswith("num_batches_tracked") for k in state) == (variant == "v2")
    (url,) = M.pretrained_urls(variant, "coco").values()
    path = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = M.build_model(variant=variant, weights="coco", min_size=160, max_size=256)  # strict load
    dataset = PennFudanDataset(synthetic_root, transforms=build_transforms(False))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=5e-3, momentum=0.9)
    model.train()
    for step in range(4):  # the tutorial's learning rate, without warm-up
        images, targets = zip(*(dataset[i] for i in (2 * step, 2 * step + 1)), strict=True)
        loss = sum(model(list(images), list(targets)).values())
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_stand_ins_never_go_into_the_users_torch_cache(monkeypatch, tmp_path, synthetic_root):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(PedsegError, match="your own torch cache"):
        standin.write_standin_weights(tmp_path / "cache" / "torch", synthetic_root)
    with pytest.raises(PedsegError, match="no Penn-Fudan dataset"):
        standin.write_standin_weights(tmp_path / "th", tmp_path / "nothing")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "th").exists()

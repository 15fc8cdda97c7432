"""The model: it builds offline, counts like torchvision, fails clearly offline, and checkpoints round-trip."""

from __future__ import annotations

import socket
import time
import urllib.error
import zlib

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.ops.misc import FrozenBatchNorm2d

from pedseg_lib import model as M
from pedseg_lib.errors import CheckpointError, ConfigError, WeightsUnavailableError

SMALL = dict(min_size=128, max_size=160)
# torchvision's published parameter counts (weights docs, "num_params") of the 91-class COCO models.
PUBLISHED = {"v1": 44_401_393, "v2": 46_359_409}
BUILDERS = {"v1": maskrcnn_resnet50_fpn, "v2": maskrcnn_resnet50_fpn_v2}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def predictor_params(num_classes: int, hidden: int = 256, box_features: int = 1024, mask_in: int = 256) -> int:
    """FastRCNNPredictor + MaskRCNNPredictor parameters, by formula (weights + biases)."""
    cls_score = box_features * num_classes + num_classes
    bbox_pred = box_features * 4 * num_classes + 4 * num_classes
    conv5_mask = mask_in * hidden * 2 * 2 + hidden  # ConvTranspose2d(mask_in, hidden, 2, stride 2)
    logits = hidden * num_classes + num_classes  # Conv2d(hidden, num_classes, 1)
    return cls_score + bbox_pred + conv5_mask + logits


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


_FAKE_FILES: dict[str, dict[str, torch.Tensor]] = {}


def _fake_file(url: str) -> dict[str, torch.Tensor]:
    """A random state dict shaped like the file at ``url``, the same for the same URL."""
    if url not in _FAKE_FILES:
        torch.manual_seed(zlib.crc32(url.encode()))
        if "resnet50-" in url:
            _FAKE_FILES[url] = torchvision.models.resnet50().state_dict()
        else:
            variant = "v2" if "_v2_" in url else "v1"
            _FAKE_FILES[url] = BUILDERS[variant](weights=None, weights_backbone=None, num_classes=91).state_dict()
    return _FAKE_FILES[url]


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Serve random 'pretrained' state dicts instead of downloads, and record the requested URLs."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def fake(url, *args, **kwargs):
        calls.append((url, socket.getdefaulttimeout()))
        return _fake_file(url)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    # torchvision's own builders import the function by name; serve them the same files.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake)
    return calls


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-class v1 model at 128 px and its checkpoint."""
    torch.manual_seed(0)
    model = fast(M.build_model(weights=None, **SMALL)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    M.save_checkpoint(path, model, config={"lr": 0.01, "preset": "smoke"}, extra={"epoch": 3, "t": torch.ones(2)})
    return model, path


def fast(model: nn.Module) -> nn.Module:
    """Fewer RPN proposals and sampled RoIs: the heads then cost a fraction of the defaults on a CPU.

    The defaults send 1000 test (512 sampled training) RoIs through the box head, which dominates the
    time of a random-weights forward pass; these tests check plumbing and identity, not accuracy.
    """
    model.rpn._pre_nms_top_n = dict(training=200, testing=100)
    model.rpn._post_nms_top_n = dict(training=100, testing=50)
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    return model


def image() -> torch.Tensor:
    return torch.rand(3, 150, 110, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- building
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_builds_offline_and_runs_train_and_eval(variant, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("weights=None must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    torch.manual_seed(0)
    model = fast(M.build_model(variant=variant, weights=None, **SMALL))
    assert model.pedseg_args == dict(num_classes=2, variant=variant, weights=None, trainable_backbone_layers=3,
                                     mask_hidden=256, **SMALL)
    assert model.transform.min_size == (128,) and model.transform.max_size == 160
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 140.0]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 150, 110, dtype=torch.uint8)}
    target["masks"][0, 20:140, 10:60] = 1
    losses = model([image()], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model([image()])[0]
    assert out["masks"].shape[1:] == (1, 150, 110) and set(out["labels"].tolist()) <= {1}


def test_bad_arguments_are_config_errors():
    for kwargs in (dict(variant="v3"), dict(weights="imagenet21k"), dict(num_classes=1),
                   dict(trainable_backbone_layers=6)):
        with pytest.raises(ConfigError) as exc:
            M.build_model(**kwargs)
        key = next(iter(kwargs))
        assert key in one_line(exc)


# --------------------------------------------------------------------------- parameter counts
def test_counts_match_torchvision_published_numbers():
    torch.manual_seed(0)
    # v1 with weights uses FrozenBatchNorm2d, whose affine values are buffers, not parameters.
    tv_v1 = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    bn_affine = sum(n_params(m) for m in tv_v1.backbone.body.modules() if isinstance(m, nn.BatchNorm2d))
    assert n_params(tv_v1) - bn_affine == PUBLISHED["v1"]
    pretrained_v1 = M._torchvision_model("v1", "coco", 3, 800, 1333, load_weights=False)
    assert M.describe_model(pretrained_v1).total == PUBLISHED["v1"]
    tv_v2 = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    assert n_params(tv_v2) == PUBLISHED["v2"]

    # After the head surgery: 91-class total minus the old predictors plus the 2-class ones.
    for variant, tv in (("v1", tv_v1), ("v2", tv_v2)):
        expected = n_params(tv) - predictor_params(91) + predictor_params(2)
        built = M.describe_model(M.build_model(variant=variant, weights=None))
        assert built.total == expected == built.trainable
        assert sum(r.parameters for r in built.rows) == expected
        rows = {r.part: r for r in built.rows}
        assert rows["box predictor"].parameters + rows["mask predictor"].parameters == predictor_params(2)
    hidden = M.describe_model(M.build_model(num_classes=5, weights=None, mask_hidden=64))
    assert hidden.total == n_params(tv_v1) - predictor_params(91) + predictor_params(5, hidden=64)


def test_description_table_and_sources(fake_hub):
    desc = M.describe_model(M.build_model(weights="coco", **SMALL))
    assert [r.part for r in desc.rows] == [p for p, _ in M.PARTS]
    rows = {r.part: r for r in desc.rows}
    assert desc.total == PUBLISHED["v1"] - predictor_params(91) + predictor_params(2)
    assert rows["backbone body"].source == "pretrained (COCO)" and rows["mask head"].source == "pretrained (COCO)"
    assert rows["box predictor"].source == rows["mask predictor"].source == "new (random)"
    assert rows["transform"].parameters == 0
    # trainable_backbone_layers=3 freezes the stem and layer1.
    body = M.build_model(weights="coco", **SMALL).backbone.body
    frozen = n_params(body.conv1) + n_params(body.layer1)
    assert rows["backbone body"].trainable == rows["backbone body"].parameters - frozen
    assert desc.trainable == desc.total - frozen
    text, html = str(desc), desc._repr_html_()
    assert "mask predictor" in text and f"{desc.total:,}" in text and "<table>" in html
    imagenet = {r.part: r.source for r in M.describe_model(M.build_model(weights="imagenet", **SMALL)).rows}
    assert imagenet["backbone body"] == "pretrained (ImageNet)" and imagenet["FPN"] == "new (random)"
    coco_detector = {r.part: r.source for r in M.describe_model(M.build_coco_model(**SMALL)).rows}
    assert coco_detector["mask predictor"] == "pretrained (COCO)"


def test_pretrained_build_matches_torchvision_builder(fake_hub):
    """Same modules, frozen parameters, state and outputs as torchvision's own weights="DEFAULT" build."""
    for layers in (3, 0, 5):
        ours = fast(M._torchvision_model("v1", "coco", layers, 128, 160, load_weights=True).eval())
        theirs = fast(maskrcnn_resnet50_fpn(weights="DEFAULT", trainable_backbone_layers=layers, min_size=128,
                                       max_size=160).eval())
        assert [type(m) for m in ours.modules()] == [type(m) for m in theirs.modules()]
        assert {n: p.requires_grad for n, p in ours.named_parameters()} == \
               {n: p.requires_grad for n, p in theirs.named_parameters()}
        assert all(m.eps == 0.0 for m in ours.modules() if isinstance(m, FrozenBatchNorm2d))
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(),
                                                      strict=True))
    with torch.no_grad():  # the last pair (all layers trainable)
        assert torch.equal(ours([image()])[0]["boxes"], theirs([image()])[0]["boxes"])


def test_random_weights_ignore_trainable_layers_like_torchvision():
    model = M.build_model(weights=None, trainable_backbone_layers=0, **SMALL)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert model.pedseg_args["trainable_backbone_layers"] == 0  # recorded as asked


# --------------------------------------------------------------------------- offline
def test_offline_coco_weights_raise_a_clear_error_quickly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    seen = []

    def offline(url, *args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    tic = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as exc:
        M.build_model(weights="coco", **SMALL)
    assert time.perf_counter() - tic < 20
    message = one_line(exc)
    for needed in ("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
                   "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
                   str(tmp_path / "hub" / "checkpoints"), "TORCH_HOME", "weights=None", "PEDSEG_PROFILE=smoke",
                   "name resolution"):
        assert needed in message
    assert seen == [M.DOWNLOAD_TIMEOUT_S]  # the download ran under a socket timeout ...
    assert socket.getdefaulttimeout() is None  # ... which is restored afterwards


def _cached(torch_home, name: str, payload: bytes):
    path = torch_home / "hub" / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_weights_check_compares_the_cached_file_with_the_hash_in_its_name(monkeypatch, tmp_path):
    import hashlib

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    payload = b"pretend weights"
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    url = f"https://download.example/models/thing-{prefix}.pth"
    assert M.check_weights_file(url, "thing").status == "not cached"
    good = _cached(tmp_path, f"thing-{prefix}.pth", payload)
    check = M.check_weights_file(url, "thing")
    assert (check.status, check.expected, check.trusted, check.path) == ("verified", prefix, True, good)
    good.write_bytes(payload + b" changed")  # same name, other bytes: torchvision would load it unchecked
    check = M.check_weights_file(url, "thing")
    assert check.status == "mismatch" and not check.trusted
    assert check.digest == hashlib.sha256(payload + b" changed").hexdigest()
    assert f"NOT torchvision's published file: its SHA-256 starts with {check.digest[:8]}, not {prefix}" in check.describe()
    assert "MEANINGLESS" in M.untrusted_warning([check]) and M.untrusted_warning([]) is None


def test_stand_in_weights_load_with_a_warning_and_never_download(monkeypatch, tmp_path):
    """A cached COCO file that is not torchvision's still loads (offline rehearsals), with the warning."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    reference = M.build_untrained(num_classes=M.COCO_CLASSES, weights="coco", **SMALL)
    state = {k: v for k, v in reference.state_dict().items()}
    (url,) = M.pretrained_urls("v1", "coco").values()
    path = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(state, path)

    def no_download(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.warns(UserWarning, match="NOT torchvision's published weights.*MEANINGLESS"):
        model = M.build_model(weights="coco", **SMALL)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if "predictor" not in k)


def test_offline_error_from_torch_hub_own_download(monkeypatch, tmp_path):
    """The real torch.hub download path, failing in urlopen, for the ImageNet backbone file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def refused(*args, **kwargs):
        raise urllib.error.URLError("[Errno 111] Connection refused")

    monkeypatch.setattr(torch.hub, "urlopen", refused)
    with pytest.raises(WeightsUnavailableError) as exc:
        M.build_model(weights="imagenet", variant="v2", **SMALL)
    message = one_line(exc)
    assert "resnet50-0676ba61.pth" in message and "Connection refused" in message
    assert not any((tmp_path / "hub" / "checkpoints").glob("*.pth"))


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_identical_outputs(tiny):
    model, path = tiny
    ckpt = M.load_checkpoint(path)
    assert ckpt["format"] == M.CHECKPOINT_FORMAT and ckpt["version"] == M.CHECKPOINT_VERSION
    assert ckpt["model_args"] == model.pedseg_args
    assert ckpt["config"] == {"lr": 0.01, "preset": "smoke"}
    assert ckpt["extra"]["epoch"] == 3 and torch.equal(ckpt["extra"]["t"], torch.ones(2))
    loaded = fast(M.load_model(path, variant="v1", num_classes=2))
    assert not loaded.training and loaded.pedseg_args == model.pedseg_args
    with torch.no_grad():
        a, b = model([image()])[0], loaded([image()])[0]
    assert all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels", "masks"))
    assert [p.name for p in path.parent.iterdir()] == ["tiny.pt"]  # no temporary files left


def test_pretrained_checkpoint_round_trip_keeps_frozen_batch_norm(fake_hub, tmp_path):
    model = fast(M.build_model(weights="coco", **SMALL).eval())
    path = tmp_path / "coco.pt"
    M.save_checkpoint(path, model)
    count = len(fake_hub)
    skeleton = M.build_untrained(weights="coco", **SMALL)  # the same architecture, offline
    assert {n: p.requires_grad for n, p in skeleton.named_parameters()} == \
           {n: p.requires_grad for n, p in model.named_parameters()}
    assert skeleton.pedseg_args == model.pedseg_args
    loaded = fast(M.load_model(path))
    assert len(fake_hub) == count  # loading downloads nothing
    assert [type(m) for m in loaded.modules()] == [type(m) for m in model.modules()]
    assert {n: p.requires_grad for n, p in loaded.named_parameters()} == \
           {n: p.requires_grad for n, p in model.named_parameters()}
    with torch.no_grad():
        assert torch.equal(model([image()])[0]["masks"], loaded([image()])[0]["masks"])


def test_bad_checkpoints_give_clear_errors(tiny, tmp_path):
    model, good = tiny
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    noise = tmp_path / "noise.pt"
    noise.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                    dtype=torch.uint8).numpy().tobytes())
    text = tmp_path / "notes.pt"
    text.write_text("epoch 3: loss 0.4\n")
    plain = tmp_path / "state_dict.pt"
    torch.save(model.state_dict(), plain)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    cases = {
        tmp_path / "missing.pt": "does not exist",
        truncated: "truncated or not a torch file",
        noise: "truncated or not a torch file",
        text: "truncated or not a torch file",
        empty: "truncated or not a torch file",
        plain: "plain state_dict",
    }
    for path, expected in cases.items():
        with pytest.raises(CheckpointError) as exc:
            M.load_model(path)
        message = one_line(exc)
        assert str(path) in message and expected in message, message

    with pytest.raises(CheckpointError) as exc:
        M.load_model(good, variant="v2")
    assert "variant='v1'" in one_line(exc) and str(good) in str(exc.value)
    with pytest.raises(CheckpointError) as exc:
        M.load_model(good, num_classes=3)
    assert "num_classes=2" in one_line(exc)


def test_state_dict_mismatch_is_a_clear_error(tiny):
    model, _ = tiny
    other = M.build_model(num_classes=3, weights=None, **SMALL)
    with pytest.raises(CheckpointError) as exc:
        M.load_state(other, model.state_dict(), source="runs/x/best.pt")
    message = one_line(exc)
    assert "runs/x/best.pt" in message and "shape mismatch" in message and "cls_score" in message
    state = dict(model.state_dict())
    del state["rpn.head.conv.0.0.weight"]
    with pytest.raises(CheckpointError, match="1 missing keys"):
        M.load_state(M.build_model(weights=None, **SMALL), state)


def test_save_needs_a_pedseg_model(tmp_path):
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    with pytest.raises(CheckpointError, match="build_model"):
        M.save_checkpoint(tmp_path / "x.pt", tv)
    assert not (tmp_path / "x.pt").exists()

"""The training engine: it learns, resumes exactly, stops cleanly on NaN, and keeps its files consistent."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch.utils.data import Subset

from pedseg_lib import data, engine
from pedseg_lib.config import apply_overrides, load_preset
from pedseg_lib.errors import ConfigError, NonFiniteLossError, PedsegError

HEADS = ("backbone.body", "backbone.fpn", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor",
         "roi_heads.mask_head", "roi_heads.mask_predictor")
ITERATION_KEYS = ["epoch", "iteration", "lr", "loss", *engine.LOSS_KEYS]
EPOCH_KEYS = ["epoch", "train_loss", "val_loss", *(f"val_{k}" for k in engine.LOSS_KEYS),
              "bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50", "lr", "seconds"]


def tiny_config(root, out, *extra):
    """Two training images, one validation image (of the smoke preset's 4), 128 px: a few seconds per epoch."""
    return apply_overrides(load_preset("smoke"), [
        f"data_root={root}", f"output_dir={out}", "min_size=128", "max_size=160", "max_train_images=2",
        "max_val_images=1", "batch_size=1", "epochs=2", "warmup_iters=2", *extra,
    ])


def test_lr_schedule_warmup_then_schedule():
    cfg = apply_overrides(load_preset("tutorial"), ["epochs=6"])
    sched = engine.LRSchedule(cfg, iters_per_epoch=60)
    assert sched.warmup_iters == 59  # the tutorial's min(1000, len(loader) - 1)
    assert sched(0) == pytest.approx(0.001) and sched(59) == 1.0
    assert sched(30) == pytest.approx(0.001 + 0.999 * 30 / 59)
    assert sched(3 * 60 - 1) == 1.0 and sched(3 * 60) == pytest.approx(0.1)  # StepLR(3, 0.1), per epoch
    cosine = engine.LRSchedule(apply_overrides(cfg, ["scheduler=cosine", "warmup_iters=0"]), 10)
    assert cosine(0) == 1.0 and cosine(30) == pytest.approx(0.5) and cosine(60) == pytest.approx(0.0, abs=1e-12)
    assert engine.LRSchedule(load_preset("tutorial"), 2000).warmup_iters == 1000


def test_default_warmup_keeps_the_official_rule_and_never_takes_most_of_a_run():
    """min(1000, iterations per epoch - 1, half the run): the official numbers unchanged, short runs mostly trained."""
    assert engine.default_warmup(60, 2) == 59  # the tutorial: 120 Penn-Fudan images, batch 2, 2 epochs
    assert engine.default_warmup(7393, 26) == 1000  # torchvision's COCO recipe: 118,287 images, batch 16, 26 epochs
    assert engine.default_warmup(20, 1) == 10  # the cpu preset: 40 images, batch 2, 1 epoch (was 19 of 20)
    assert engine.default_warmup(8, 1) == 4  # chapter 3's cpu arms: 16 images (was 7 of 8)
    assert engine.default_warmup(1, 1) == 0 and engine.default_warmup(2, 1) == 1 and engine.default_warmup(3, 1) == 1
    for per_epoch in range(1, 200):
        for epochs in (1, 2, 3, 26):
            warmup = engine.default_warmup(per_epoch, epochs)
            assert 0 <= warmup <= min(per_epoch - 1, 1000) and 2 * warmup <= per_epoch * epochs
            if epochs >= 2:  # the third bound changes nothing for runs of two epochs or more
                assert warmup == min(1000, per_epoch - 1)
    cpu = load_preset("cpu")
    assert engine.LRSchedule(cpu, 20).warmup_iters == 10
    assert engine.LRSchedule(apply_overrides(cpu, ["warmup_iters=3"]), 20).warmup_iters == 3  # an explicit value wins


def test_score_ranks_nan_and_missing_ap_last():
    good = {"segm_AP": 0.2, "val_loss": 1.0}
    tie_lower_loss = {"segm_AP": 0.2, "val_loss": 0.9}
    assert engine._score(tie_lower_loss) > engine._score(good)
    assert engine._score({"segm_AP": float("nan"), "val_loss": 0.1}) < engine._score({"segm_AP": 0.0, "val_loss": 9})
    assert engine._score({"segm_AP": -1.0, "val_loss": 0.1}) < engine._score({"segm_AP": 0.0, "val_loss": 9})
    assert engine._score({"segm_AP": 0.0, "val_loss": float("nan")}) < engine._score({"segm_AP": 0.0, "val_loss": 9})


def test_box_batch_size_per_image_is_what_torchvision_s_sampler_draws(synthetic_root):
    """engine._roi_sampling sets torchvision's own sampler: its training samples per image, nothing else."""
    from pedseg_lib.model import build_model

    image, target = data.PennFudanDataset(synthetic_root, transforms=data.build_transforms(False))[0]
    torch.manual_seed(0)
    corners = torch.rand(300, 2, 2) * torch.tensor([image.shape[-1], image.shape[-2]])
    proposals = [torch.cat([corners.min(1).values, corners.max(1).values + 1], dim=1)]
    drawn = {}
    model = build_model(weights=None, min_size=128, max_size=160)
    for size in (512, 16):
        engine._roi_sampling(model, apply_overrides(load_preset("smoke"), [f"box_batch_size_per_image={size}"]))
        _, _, labels, _ = model.roi_heads.select_training_samples([p.clone() for p in proposals], [target])
        drawn[size] = len(labels[0])
        assert model.roi_heads.detections_per_img == 100  # inference keeps torchvision's default
    assert drawn[16] == 16 and drawn[512] == 300 + len(target["boxes"])  # 512 > proposals + ground truth: all


@pytest.mark.slow
def test_overfits_a_few_images_and_every_head_learns(synthetic_root):
    from pedseg_lib.model import build_model

    torch.manual_seed(0)
    images = Subset(data.PennFudanDataset(synthetic_root, transforms=data.build_transforms(False)), [0, 1] * 20)
    loader = data.create_loader(images, batch_size=2, shuffle=False)
    model = build_model(weights=None, min_size=128, max_size=160)
    cfg = apply_overrides(load_preset("smoke"), ["warmup_iters=10", "epochs=1"])
    engine._roi_sampling(model, cfg)  # the smoke preset's 128 RoIs per image, as its runs train
    optimizer = engine.build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, engine.LRSchedule(cfg, len(loader)))
    records = engine.train_one_epoch(model, optimizer, loader, "cpu", 1, scheduler, clip_grad_norm=5.0)

    def mean(key, part):
        return sum(r[key] for r in part) / len(part)

    first, last = records[:10], records[-10:]
    assert len(records) == 20 and all(math.isfinite(r["loss"]) for r in records)
    assert mean("loss", last) <= 0.6 * mean("loss", first), (mean("loss", first), mean("loss", last))
    for key in ("loss_classifier", "loss_mask", "loss_objectness"):
        assert mean(key, last) < mean(key, first), key
    grads = dict(model.named_parameters())
    for head in HEADS:
        norms = [p.grad.abs().sum().item() for n, p in grads.items() if n.startswith(head) and p.grad is not None]
        assert norms and sum(norms) > 0, f"{head} received no gradient"


def test_amp_on_the_cpu_trains_under_bfloat16_autocast(synthetic_root):
    """amp=True on a CPU: the forward pass runs in bfloat16 (no GradScaler), the losses stay finite."""
    from pedseg_lib.model import build_model

    # One small image: bfloat16 convolutions are slow on most CPUs, and one step shows the dtype and the losses.
    dataset = Subset(data.PennFudanDataset(synthetic_root, transforms=data.build_transforms(False)), [0])
    loader = data.create_loader(dataset, batch_size=1, shuffle=False)
    seen = []
    for amp in (False, True):
        torch.manual_seed(0)
        model = build_model(weights=None, min_size=96, max_size=128)
        handle = model.backbone.body.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        records = engine.train_one_epoch(model, optimizer, loader, "cpu", 1, amp=amp)
        handle.remove()
        assert all(math.isfinite(r["loss"]) for r in records)
    assert seen == [torch.float32, torch.bfloat16]


def _weights(path):
    from pedseg_lib.model import load_checkpoint

    return load_checkpoint(path)["model_state"]


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.mark.slow
def test_resume_gives_the_same_weights_and_history(synthetic_root, tmp_path):
    whole = engine.fit(tiny_config(synthetic_root, tmp_path / "whole"), progress=False)

    cfg = tiny_config(synthetic_root, tmp_path / "split")
    first = engine.fit(cfg, progress=False, on_epoch_end=lambda row: True)  # "interrupted" after epoch 1
    assert len(first.history["epochs"]) == 1 and "interrupted" in first.history["status"]["reason"]
    resumed = engine.fit(cfg, resume=True, progress=False)

    assert resumed.history["iterations"] == whole.history["iterations"]
    assert _without_seconds(resumed.history["epochs"]) == _without_seconds(whole.history["epochs"])
    assert resumed.history["status"] == whole.history["status"]
    a, b = _weights(whole.last_checkpoint), _weights(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)

    # The run folder holds what the contract lists, in the agreed shapes.
    files = {p.name for p in (tmp_path / "split").iterdir()}
    assert files == {"config.yaml", "split.json", "last.pt", "best.pt", "history.json", "history_iterations.csv",
                     "history_epochs.csv"}
    history = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [r["iteration"] for r in history["iterations"]] == [1, 2, 3, 4]  # 2 images, batch 1, 2 epochs
    assert list(history["iterations"][0]) == ITERATION_KEYS and list(history["epochs"][0]) == EPOCH_KEYS
    with open(tmp_path / "split" / "history_epochs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and list(rows[0]) == EPOCH_KEYS
    assert resumed.best_epoch in (1, 2) and resumed.best_checkpoint.is_file()

    # Resuming a finished run trains nothing more.
    again = engine.fit(cfg, resume=True, progress=False)
    assert again.history["iterations"] == resumed.history["iterations"]

    # A resumed run keeps its split: a config that selects other images is refused before anything is written.
    before = (tmp_path / "split" / "split.json").read_text()
    with pytest.raises(ConfigError, match=r"cannot resume: .*split.json records other images.*val_size"):
        engine.fit(apply_overrides(cfg, ["val_size=2", "epochs=3"]), resume=True, progress=False)
    assert (tmp_path / "split" / "split.json").read_text() == before


def _light(build):
    """A build_model for fast engine tests: the ResNet body frozen, the heads sampling few proposals in training."""

    def patched(*args, **kwargs):
        model = build(*args, **kwargs)
        model.backbone.body.requires_grad_(False)
        model.rpn._pre_nms_top_n["training"] = model.rpn._post_nms_top_n["training"] = 64
        model.roi_heads.fg_bg_sampler.batch_size_per_image = 32
        return model

    return patched


@pytest.mark.slow
def test_resume_with_loader_workers_gives_the_same_run(synthetic_root, tmp_path, monkeypatch):
    """workers=2 (persistent worker processes): a run interrupted after epoch 1 and resumed repeats the
    uninterrupted run exactly: the same data order and augmentation, so the same losses, rates and weights."""
    import shutil

    import pedseg_lib.model as M

    monkeypatch.setattr(M, "build_model", _light(M.build_model))
    extra = ("workers=2", "val_size=0", "min_size=64", "max_size=96")

    def interrupt_a_copy(row):  # the run folder as an interruption after epoch 1 leaves it
        if row["epoch"] == 1:
            shutil.copytree(tmp_path / "whole", tmp_path / "split", ignore=shutil.ignore_patterns("best.pt"))

    whole = engine.fit(tiny_config(synthetic_root, tmp_path / "whole", *extra), progress=False,
                       on_epoch_end=interrupt_a_copy)
    resumed = engine.fit(tiny_config(synthetic_root, tmp_path / "split", *extra), resume=True, progress=False)

    assert [r["iteration"] for r in resumed.history["iterations"]] == [1, 2, 3, 4]
    assert resumed.history["iterations"] == whole.history["iterations"]
    a, b = _weights(whole.last_checkpoint), _weights(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []


def _nan_at(k, build):
    """A build_model whose k-th training forward (with grad) returns NaN losses."""
    calls = {"n": 0}

    def patched(*args, **kwargs):
        model = build(*args, **kwargs)
        forward = model.forward

        def nan_forward(images, targets=None):
            losses = forward(images, targets)
            if targets is not None and torch.is_grad_enabled():
                calls["n"] += 1
                if calls["n"] == k:
                    losses = {name: value * float("nan") for name, value in losses.items()}
            return losses

        model.forward = nan_forward
        return model

    return patched


@pytest.mark.slow
def test_nan_loss_names_the_batch_and_keeps_the_checkpoint(synthetic_root, tmp_path, monkeypatch):
    import pedseg_lib.model as M

    cfg = tiny_config(synthetic_root, tmp_path / "run", "epochs=1", "batch_size=2")
    engine.fit(cfg, progress=False)
    before = _weights(tmp_path / "run" / "last.pt")

    build = M.build_model
    monkeypatch.setattr(M, "build_model", _nan_at(1, build))
    with pytest.raises(NonFiniteLossError) as info:
        engine.fit(apply_overrides(cfg, ["epochs=2"]), resume=True, progress=False)
    train_ids = engine.run_split(cfg)["train"]  # training images only: no validation or test image
    assert sorted(info.value.image_ids) == train_ids[:2] and info.value.iteration == 2
    assert math.isnan(info.value.losses["loss"]) and "images" in str(info.value)

    after = _weights(tmp_path / "run" / "last.pt")
    for name, value in after.items():
        assert torch.equal(value, before[name]) and (not value.is_floating_point() or value.isfinite().all())

    # In memory too: the step is skipped, so the weights are still the finite ones from before.
    model = _nan_at(1, build)(weights=None, min_size=128, max_size=160)
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = data.create_loader(Subset(data.PennFudanDataset(synthetic_root, data.build_transforms(False)),
                                       [3, 5]), 2, shuffle=False)
    with pytest.raises(NonFiniteLossError) as info:
        engine.train_one_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, "cpu", 1)
    assert info.value.image_ids == [3, 5] and info.value.iteration == 1
    assert all(torch.equal(p, snapshot[n]) for n, p in model.named_parameters())


def test_missing_data_and_unwritable_folder_are_clear(tmp_path, synthetic_root):
    with pytest.raises(PedsegError, match=r"no Penn-Fudan dataset at .*nowhere.*pedseg download"):
        engine.fit(tiny_config(tmp_path / "nowhere", tmp_path / "run"), progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PedsegError, match=r"cannot write to the run folder .*file/run.*--out"):
        engine.fit(tiny_config(synthetic_root, blocker / "run"), progress=False)
    with pytest.raises(PedsegError, match="test_size=40 must be between 1 and 11"):
        engine.fit(tiny_config(synthetic_root, tmp_path / "r2", "test_size=40"), progress=False)


def test_resume_without_checkpoint(tmp_path, synthetic_root):
    with pytest.raises(PedsegError, match=r"cannot resume: .*last.pt does not exist"):
        engine.fit(tiny_config(synthetic_root, tmp_path / "run"), resume=True, progress=False)


def test_load_or_train_trains_once_then_loads_and_retrains_on_a_new_config(synthetic_root, tmp_path, monkeypatch):
    cfg = tiny_config(synthetic_root, tmp_path / "run", "epochs=1")
    first = engine.load_or_train(cfg, progress=False)
    assert first.trained_now and first.checkpoint == tmp_path / "run" / "best.pt" and first.epoch == 1

    real_fit = engine.fit

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train trained although best.pt matches the config")

    monkeypatch.setattr(engine, "fit", no_training)
    again = engine.load_or_train(cfg, progress=False)
    assert not again.trained_now and not again.model.training
    for (name, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    monkeypatch.setattr(engine, "fit", real_fit)
    other = engine.load_or_train(apply_overrides(cfg, ["seed=1"]), progress=False)
    assert other.trained_now and "seed" in other.reason


def test_test_split_is_the_whole_held_out_split(synthetic_root, tmp_path):
    cfg = tiny_config(synthetic_root, tmp_path / "run", "test_size=3")
    test = engine.test_split(cfg)
    train_idx, test_idx = data.split_indices(12, 3, cfg.split_seed)
    assert list(test.indices) == test_idx and not set(test_idx) & set(train_idx)
    split = engine.run_split(cfg)
    assert split["test"] == test_idx and not set(test_idx) & set(split["val"] + split["train"])
    image, target = test[0]
    assert int(target["image_id"]) == test_idx[0] and image.shape[0] == 3

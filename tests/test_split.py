"""Train/validation/test split: one seeded function, recorded in split.json, and no decision reads the test images."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest
import torch

from pedseg_lib import cli, data, engine
from pedseg_lib.config import apply_overrides, load_preset
from pedseg_lib.data import find_dataset
from pedseg_lib.errors import ConfigError, PedsegError


@pytest.fixture(scope="module")
def root(synthetic_root):
    """The real Penn-Fudan folder when PEDSEG_DATA holds it, else the 12-image synthetic copy."""
    found = find_dataset(os.environ["PEDSEG_DATA"]) if os.environ.get("PEDSEG_DATA") else None
    return found or synthetic_root


def tiny(root, out, *extra):
    """The smoke preset (4 test, 4 validation images), two training images, one validation image, 128 px."""
    return apply_overrides(load_preset("smoke"), [
        f"data_root={root}", f"output_dir={out}", "min_size=128", "max_size=160", "max_train_images=2",
        "max_val_images=1", "batch_size=1", "epochs=2", "warmup_iters=2", *extra,
    ])


# --------------------------------------------------------------------------- the split function
@pytest.mark.parametrize("n, test_size, val_size, seed", [(170, 50, 20, 0), (170, 50, 0, 0), (12, 4, 4, 3), (9, 1, 7, 1)])
def test_three_sets_are_disjoint_cover_and_keep_the_test_set(n, test_size, val_size, seed):
    split = data.split_train_val_test(n, test_size, val_size, seed)
    train, val, test = split["train"], split["val"], split["test"]
    assert list(split) == ["train", "val", "test"]
    assert (len(train), len(val), len(test)) == (n - test_size - val_size, val_size, test_size)
    assert sorted(train + val + test) == list(range(n))  # disjoint and covering
    assert all(part == sorted(part) for part in (train, val, test))
    old_train, old_test = data.split_indices(n, test_size, seed)
    assert test == old_test  # the test set chapter 1 shows is unchanged
    assert set(val) <= set(old_train)  # validation images come out of the former training images
    assert split == data.split_train_val_test(n, test_size, val_size, seed)  # deterministic
    if val_size == 0:
        assert train == old_train


def test_the_seed_changes_the_split():
    a, b = data.split_train_val_test(170, 50, 20, 0), data.split_train_val_test(170, 50, 20, 1)
    assert a["test"] != b["test"] and a["val"] != b["val"]


@pytest.mark.parametrize("n, test_size, val_size", [(10, 5, 5), (10, 9, 1), (10, 0, 2), (10, 2, -1)])
def test_a_split_without_training_images_is_a_one_line_config_error(n, test_size, val_size):
    with pytest.raises(ConfigError, match=r"test_size.*val_size") as info:
        data.split_train_val_test(n, test_size, val_size)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the engine's views of it
def test_engine_splits_agree(root, tmp_path):
    cfg = tiny(root, tmp_path / "run")
    n = len(data.PennFudanDataset(root))
    split = engine.run_split(cfg)
    assert split == data.split_train_val_test(n, cfg.test_size, cfg.val_size, cfg.split_seed)  # untruncated
    assert list(engine.test_split(cfg).indices) == split["test"]
    assert list(engine.val_split(cfg).indices) == split["val"][:1]  # max_val_images=1
    chosen, why = engine.decision_split(cfg)
    assert list(chosen.indices) == split["val"][:1] and "validation images" in why
    image, target = chosen[0]
    assert image.dtype == torch.float32 and int(target["image_id"]) == split["val"][0]

    none = apply_overrides(cfg, ["val_size=0"])
    assert len(engine.val_split(none)) == 0
    chosen, why = engine.decision_split(none)
    assert list(chosen.indices) == engine.run_split(none)["train"][:2]  # the training images the run used
    assert "no validation images" in why and "training images" in why and "test images stay untouched" in why
    assert not set(chosen.indices) & set(engine.test_split(none).indices)
    assert list(engine.test_split(none).indices) == split["test"]  # val_size never moves the test set

    with pytest.raises(ConfigError, match="leave no training image"):
        engine.run_split(apply_overrides(cfg, [f"val_size={n - cfg.test_size}"]))


# --------------------------------------------------------------------------- what a run reads
class Reads:
    """Dataset indices read (``__getitem__`` and ``target``) in each phase of a run."""

    def __init__(self, monkeypatch):
        self.phase = "outside"
        self.seen: dict[str, set[int]] = {}
        getitem, target = data.PennFudanDataset.__getitem__, data.PennFudanDataset.target

        def record_getitem(dataset, idx):
            self.seen.setdefault(self.phase, set()).add(int(idx))
            return getitem(dataset, idx)

        def record_target(dataset, idx):
            self.seen.setdefault(self.phase, set()).add(int(idx))
            return target(dataset, idx)

        monkeypatch.setattr(data.PennFudanDataset, "__getitem__", record_getitem)
        monkeypatch.setattr(data.PennFudanDataset, "target", record_target)
        for name, phase in (("train_one_epoch", "train"), ("evaluate_loss", "val"), ("evaluate_ap", "val")):
            monkeypatch.setattr(engine, name, self.during(phase, getattr(engine, name)))

    def during(self, phase, function):
        def wrapped(*args, **kwargs):
            before, self.phase = self.phase, phase
            try:
                return function(*args, **kwargs)
            finally:
                self.phase = before

        return wrapped


@pytest.mark.slow
def test_a_run_records_its_split_and_never_reads_the_test_images(root, tmp_path, monkeypatch, capsys):
    cfg = tiny(root, tmp_path / "run", "epochs=1")
    reads = Reads(monkeypatch)
    result = engine.fit(cfg, progress=False)

    split = json.loads((tmp_path / "run" / "split.json").read_text())
    train, val, test = (split[k] for k in ("train", "val", "test"))
    assert train and val and test and not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    full = engine.run_split(cfg)
    assert (train, val, test) == (full["train"][:2], full["val"][:1], full["test"])  # what was really used
    assert find_dataset(split["dataset"]) == find_dataset(root)

    assert reads.seen.get("train") == set(train)  # training read every training image and nothing else
    assert reads.seen.get("val") == set(val)  # validation read only the validation images
    assert "outside" not in reads.seen, reads.seen
    assert result.history["status"]["validation_images"] == 1

    # The test images are first read by the final evaluation, which reads exactly them.
    reads.phase = "evaluate"
    assert cli.main(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "m.json"), "--quiet"]) == 0
    assert reads.seen["evaluate"] == set(test)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["image_ids"] == test and metrics["num_images"] == len(test)
    assert f"{len(test)} test images from {tmp_path / 'run' / 'split.json'}" in capsys.readouterr().out


def _scripted(monkeypatch, values):
    """Selection without the cost of training: each "epoch" only writes its number into one bias of the
    model (so a checkpoint's weights say which epoch they are), the validation loss is constant and
    evaluate_ap returns ``values`` in turn as segm_AP. Returns the image indices evaluate_ap was given."""
    given = []

    def train(model, optimizer, loader, device, epoch, *args, **kwargs):
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias.fill_(float(epoch))
        start = args[3] if len(args) > 3 else kwargs.get("start_iteration", 0)
        return [{"epoch": epoch, "iteration": start + 1, "lr": 0.01, "loss": 1.0,
                 **dict.fromkeys(engine.LOSS_KEYS, 0.2)}]

    def ap(model, dataset, score_threshold=0.05):
        given.append(list(dataset.indices))
        value = values[len(given) - 1]
        return {"bbox_AP": value, "bbox_AP50": value, "segm_AP": value, "segm_AP50": value}

    monkeypatch.setattr(engine, "train_one_epoch", train)
    monkeypatch.setattr(engine, "evaluate_loss", lambda *a, **k: dict.fromkeys(engine.VAL_KEYS[:6], 1.0))
    monkeypatch.setattr(engine, "evaluate_ap", ap)
    return given


def _epoch_of(checkpoint_path) -> int:
    from pedseg_lib.model import load_checkpoint

    saved = load_checkpoint(checkpoint_path)
    weights = int(saved["model_state"]["roi_heads.box_predictor.cls_score.bias"][0])
    assert weights == saved["extra"]["epoch"]
    return weights


def test_best_checkpoint_follows_validation_ap(root, tmp_path, monkeypatch):
    cfg = tiny(root, tmp_path / "run", "epochs=3")
    given = _scripted(monkeypatch, [0.1, 0.3, 0.2])
    result = engine.fit(cfg, progress=False)
    assert given == [engine.run_split(cfg)["val"][:1]] * 3  # AP measured on the validation images only
    assert result.best_epoch == 2 and result.history["status"]["best_epoch"] == 2
    assert _epoch_of(result.best_checkpoint) == 2 and _epoch_of(result.last_checkpoint) == 3
    assert [row["segm_AP"] for row in result.history["epochs"]] == [0.1, 0.3, 0.2]
    assert "best epoch 2 (validation segm AP on 1 images)" in result.history["status"]["reason"]


def test_early_stopping_follows_validation_ap(root, tmp_path, monkeypatch):
    # Without patience epoch 5 (AP 0.5) would win; two epochs without a better AP after epoch 2 stop the run.
    cfg = tiny(root, tmp_path / "run", "epochs=5", "patience=2")
    _scripted(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.5])
    result = engine.fit(cfg, progress=False)
    assert result.stopped_early and len(result.history["epochs"]) == 4
    assert result.best_epoch == 2 and _epoch_of(result.best_checkpoint) == 2
    assert "stopped early after epoch 4" in result.history["status"]["reason"]

    # The same run without patience goes on to epoch 5, whose AP is the best.
    _scripted(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.5])
    longer = engine.fit(tiny(root, tmp_path / "longer", "epochs=5"), progress=False)
    assert not longer.stopped_early and longer.best_epoch == 5 and _epoch_of(longer.best_checkpoint) == 5


@pytest.mark.slow
def test_a_run_without_validation_keeps_its_last_epoch_and_resumes(root, tmp_path, monkeypatch, capsys):
    from pedseg_lib.model import load_checkpoint

    def never(*args, **kwargs):
        raise AssertionError("a run with val_size=0 must not validate")

    monkeypatch.setattr(engine, "evaluate_ap", never)
    monkeypatch.setattr(engine, "evaluate_loss", never)
    cfg = tiny(root, tmp_path / "whole", "val_size=0", "max_train_images=1")
    whole = engine.fit(cfg, progress=True)

    assert whole.best_epoch == 2 and not whole.stopped_early
    status = whole.history["status"]
    assert "no validation images" in status["reason"] and "last epoch" in status["reason"]
    assert status["validation_images"] == 0 and status["best_epoch"] == 2
    best, last = load_checkpoint(whole.best_checkpoint), load_checkpoint(whole.last_checkpoint)
    assert best["extra"]["epoch"] == 2 and "last epoch" in best["extra"]["selected_by"]
    for name, value in last["model_state"].items():
        assert torch.equal(value, best["model_state"][name]), name
    assert capsys.readouterr().out.count("no validation (val_size=0)") == 2

    rows = whole.history["epochs"]
    assert all(math.isnan(row[key]) for row in rows for key in engine.VAL_KEYS)
    with open(tmp_path / "whole" / "history_epochs.csv", newline="") as handle:
        assert [row["segm_AP"] for row in csv.DictReader(handle)] == ["nan", "nan"]
    split = json.loads((tmp_path / "whole" / "split.json").read_text())
    assert split["val"] == [] and split["train"] == engine.run_split(cfg)["train"][:1]

    # Interrupted after epoch 1 and resumed: the same weights and history as the uninterrupted run.
    parts = tiny(root, tmp_path / "parts", "val_size=0", "max_train_images=1")
    engine.fit(parts, progress=False, on_epoch_end=lambda row: True)
    resumed = engine.fit(parts, resume=True, progress=False)
    assert resumed.best_epoch == 2 and resumed.history["status"]["reason"] == status["reason"]
    assert resumed.history["iterations"] == whole.history["iterations"]
    a, b = load_checkpoint(resumed.best_checkpoint)["model_state"], best["model_state"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_patience_needs_validation_images():
    with pytest.raises(ConfigError, match=r"'patience'.*'val_size' is 0.*val_size=.*patience=null"):
        apply_overrides(load_preset("tutorial"), ["patience=3"])
    assert apply_overrides(load_preset("tutorial"), ["patience=3", "val_size=10"]).patience == 3


def test_load_split_rejects_foreign_files(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [0, 1], "val": [2], "test": [3]}))
    assert engine.load_split(tmp_path, dataset_size=4)["test"] == [3]
    with pytest.raises(PedsegError, match=r"split.json names images \[3\] outside the dataset of 3 images"):
        engine.load_split(path, dataset_size=3)
    path.write_text(json.dumps({"train": [0], "test": [1]}))
    with pytest.raises(PedsegError, match="split.json is not a split file"):
        engine.load_split(path)
    path.write_text("{")
    with pytest.raises(PedsegError, match="split.json is not valid JSON"):
        engine.load_split(path)

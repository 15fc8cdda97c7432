"""COCO data through the whole workflow: the same numbers as Penn-Fudan's own loader, and a multi-class run
through the command line (check-data, convert, train, evaluate per class, predict with class names)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from pedseg_lib import engine
from pedseg_lib.cli import main
from pedseg_lib.config import load_preset
from pedseg_lib.data import (
    CocoInstancesDataset,
    PennFudanDataset,
    convert,
    find_dataset,
    make_synthetic_coco,
    make_synthetic_pennfudan,
)
from pedseg_lib.evaluation import coco_evaluate
from pedseg_lib.inference import predict_dataset
from pedseg_lib.model import load_model, model_classes

REAL = find_dataset(Path(os.environ["PEDSEG_DATA"])) if os.environ.get("PEDSEG_DATA") else None


def _tiny(cfg, out: Path):
    """Seconds: one epoch on 2 training images, 2 validation and 2 test images, 128 px."""
    return dataclasses.replace(cfg, epochs=1, max_train_images=2, val_size=2, test_size=2, min_size=128, max_size=192,
                               output_dir=str(out))


def _same_numbers_on_both_loaders(root: Path, tmp_path: Path) -> None:
    annotation_file = convert.write_coco(convert.pennfudan_to_coco(root), tmp_path / "pennfudan.json",
                                         images_dir=root / "PNGImages")
    pennfudan = _tiny(dataclasses.replace(load_preset("smoke"), data_root=str(root)), tmp_path / "pf")
    coco = _tiny(dataclasses.replace(load_preset("smoke"), data_format="coco", annotation_file=str(annotation_file),
                                     data_root=str(root / "PNGImages")), tmp_path / "coco")
    assert engine.run_split(pennfudan) == engine.run_split(coco)
    runs = [engine.fit(cfg, progress=False) for cfg in (pennfudan, coco)]
    losses = [[(r["loss"], r["loss_mask"]) for r in run.history["iterations"]] for run in runs]
    assert losses[0] == losses[1]  # the same images and targets, the same seed: the same training
    rows = [run.history["epochs"][0] for run in runs]
    for key in ("val_loss", "bbox_AP", "segm_AP"):
        assert rows[0][key] == pytest.approx(rows[1][key], abs=1e-9, nan_ok=True), key
    evaluations = []
    for cfg, run in zip((pennfudan, coco), runs, strict=True):
        test = engine.test_split(cfg)
        evaluations.append(coco_evaluate(test, predict_dataset(run.model, test)))
    for iou_type in ("bbox", "segm"):
        assert evaluations[0].stats[iou_type] == pytest.approx(evaluations[1].stats[iou_type], abs=1e-9)


def test_pennfudan_and_its_coco_conversion_train_and_evaluate_alike(tmp_path):
    root = make_synthetic_pennfudan(tmp_path / "synthetic", n_images=8)
    _same_numbers_on_both_loaders(root, tmp_path)


@pytest.mark.skipif(REAL is None, reason="the real Penn-Fudan data is not here (set PEDSEG_DATA)")
def test_real_pennfudan_and_its_coco_conversion_train_and_evaluate_alike(tmp_path):
    _same_numbers_on_both_loaders(REAL, tmp_path)


def test_separate_split_files_make_the_split(tmp_path):
    path = make_synthetic_coco(tmp_path / "data", n_images=12)
    coco = json.loads(path.read_text())
    files = {}
    for name, ids in (("train", range(1, 7)), ("val", range(7, 10)), ("test", range(10, 13))):
        part = {**coco, "images": [im for im in coco["images"] if im["id"] in ids],
                "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
        files[name] = tmp_path / "data" / f"{name}.json"
        files[name].write_text(json.dumps(part))
    cfg = dataclasses.replace(load_preset("smoke"), data_format="coco", annotation_file=str(files["train"]),
                              val_annotation_file=str(files["val"]), test_annotation_file=str(files["test"]))
    assert engine.run_split(cfg) == {"train": list(range(6)), "val": [6, 7, 8], "test": [9, 10, 11]}
    # without a validation file, val_size images are drawn from the training file, never from the test file
    cfg = dataclasses.replace(cfg, val_annotation_file=None, val_size=2)
    split = engine.run_split(cfg)
    assert split["test"] == [6, 7, 8] and len(split["val"]) == 2 and set(split["val"]) <= set(range(6))
    assert sorted(split["train"] + split["val"]) == list(range(6))
    test = engine.test_split(cfg)
    assert [test.dataset.image_path(i).name for i in test.indices] == [
        Path(im["file_name"]).name for im in sorted(coco["images"], key=lambda im: im["id"])[9:]]


def test_a_multiclass_run_through_the_command_line(tmp_path, capsys):
    path = make_synthetic_coco(tmp_path / "data", n_images=18)
    assert main(["check-data", str(path)]) == 0
    report = capsys.readouterr().out
    assert all(name in report for name in ("person", "sign", "ball"))

    run = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--coco", str(path), "--out", str(run), "--quiet",
                 "--set", "epochs=1", "--set", "max_train_images=4", "--set", "min_size=128",
                 "--set", "max_size=192"]) == 0
    capsys.readouterr()
    model = load_model(run / "best.pt")
    assert model_classes(model) == (["__background__", "person", "sign", "ball"], [0, 1, 13, 37])

    assert main(["evaluate", str(run), "--out", str(tmp_path / "metrics.json"), "--quiet",
                 "--score-threshold", "0"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("AP per class"):].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["person", "sign", "ball"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_class"]["segm"]) == {"person", "sign", "ball"}

    dataset = CocoInstancesDataset(None, path)
    images = tmp_path / "some"
    images.mkdir()
    for i in (0, 1):
        (images / dataset.image_path(i).name).write_bytes(dataset.image_path(i).read_bytes())
    assert main(["predict", str(run / "best.pt"), str(images), "--out", str(tmp_path / "pred"),
                 "--score-threshold", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert results, "a random model keeps 100 detections at threshold 0"
    assert {r["category_id"] for r in results} <= {1, 13, 37}  # the file's own ids, not the labels 1..3
    assert any(name in out for name in ("person", "sign", "ball"))


def test_check_data_exits_non_zero_on_errors_only(tmp_path, capsys):
    path = make_synthetic_coco(tmp_path / "data", n_images=6)
    coco = json.loads(path.read_text())
    coco["annotations"][0]["category_id"] = 99  # unknown category: an error
    broken = tmp_path / "data" / "broken.json"
    broken.write_text(json.dumps(coco))
    assert main(["check-data", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"annotation {coco['annotations'][0]['id']}" in out and "99" in out
    assert main(["check-data", str(path)]) == 0  # the negatives are warnings only


def test_convert_writes_a_file_the_doctor_and_the_dataset_accept(tmp_path, capsys):
    root = make_synthetic_pennfudan(tmp_path / "pf", n_images=4)
    out = tmp_path / "pf.json"
    assert main(["convert", "pennfudan", str(root), "--out", str(out)]) == 0
    assert "4 images" in capsys.readouterr().out
    assert main(["check-data", str(out), "--images", str(root / "PNGImages")]) == 0
    dataset = CocoInstancesDataset(root / "PNGImages", out)
    assert len(dataset) == 4 and dataset.class_names == ["__background__", "person"]
    assert torch.equal(dataset.target(0)["masks"], PennFudanDataset(root).target(0)["masks"])
    assert main(["convert", "masks", str(root / "PNGImages"), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()

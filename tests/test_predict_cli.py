"""`pedseg evaluate` and `pedseg predict`: outputs, and one clear error line for each bad input."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from pedseg_lib.cli import main
from pedseg_lib.data import PennFudanDataset, split_indices
from pedseg_lib.model import build_model, save_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_root):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(weights=None, min_size=128, max_size=160),
                    config={"data_root": str(synthetic_root), "test_size": 3, "split_seed": 0})
    return path


@pytest.fixture()
def images(tmp_path, synthetic_root):
    folder = tmp_path / "images"
    folder.mkdir()
    dataset = PennFudanDataset(synthetic_root)
    for i in range(2):
        (folder / dataset.images[i]).write_bytes(dataset.image_path(i).read_bytes())
    return folder


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pedseg: error: ")
    return err[0]


def test_predict_writes_overlays_and_coco_json(checkpoint, images, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(images), "--out", str(out), "--score-threshold", "0.0"]) == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "warning" in err  # skipped, named, the rest processed
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 2 and "broken.png" not in pngs
    results = json.loads((out / "predictions.json").read_text())
    for row in results:
        assert isinstance(row["segmentation"]["counts"], str) and row["file_name"].endswith(".png")
        assert len(row["bbox"]) == 4 and row["category_id"] == 1


def test_evaluate_prints_tables_and_writes_json(checkpoint, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(checkpoint), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "== bbox" in text and "== segm" in text and text.count("Average Precision") == 12
    assert "3 test images recomputed from the run's config" in text  # no split.json beside this checkpoint
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 3 and set(metrics["stats"]) == {"bbox", "segm"}
    _, test = split_indices(12, 3, 0)
    assert metrics["image_ids"] == test and sorted(map(int, metrics["per_image"])) == test


@pytest.fixture()
def run_folder(checkpoint, synthetic_root, tmp_path):
    """A run folder (best.pt, config.yaml, split.json) whose split.json names test images [0, 5]: not the
    test split its config would give, so the evaluated images show where they came from."""
    from pedseg_lib.config import apply_overrides, load_preset, save_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(checkpoint.read_bytes())
    save_config(apply_overrides(load_preset("smoke"), [f"data_root={synthetic_root}", "test_size=3"]),
                run / "config.yaml")
    (run / "split.json").write_text(json.dumps({"train": [1, 2], "val": [3], "test": [0, 5]}))
    return run


def test_evaluate_uses_the_runs_split_json(run_folder, tmp_path, capsys):
    for target in (run_folder, run_folder / "best.pt"):  # a run folder, or a checkpoint beside its split.json
        out = tmp_path / "m.json"
        assert main(["evaluate", str(target), "--out", str(out), "--quiet"]) == 0
        metrics = json.loads(out.read_text())
        assert metrics["image_ids"] == [0, 5] and metrics["num_images"] == 2
        assert sorted(map(int, metrics["per_image"])) == [0, 5]
        assert f"== segm (2 test images from {run_folder / 'split.json'}" in capsys.readouterr().out


def test_evaluate_refuses_a_split_json_outside_the_dataset(run_folder, capsys):
    (run_folder / "split.json").write_text(json.dumps({"train": [1], "val": [], "test": [0, 40]}))
    assert main(["evaluate", str(run_folder), "--quiet"]) == 2
    line = _error(capsys)
    assert str(run_folder / "split.json") in line and "[40] outside the dataset of 12 images" in line


def test_missing_checkpoint(images, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.pt"), str(images), "--out", str(tmp_path / "o")]) == 2
    assert "nope.pt" in _error(capsys)


def test_corrupt_checkpoint(images, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["predict", str(bad), str(images), "--out", str(tmp_path / "o")]) == 2
    assert "bad.pt" in _error(capsys)


def test_run_folder_without_checkpoint(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "best.pt" in _error(capsys)


def test_empty_folder(checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(checkpoint), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in _error(capsys)


def test_only_unreadable_images(checkpoint, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"xx")
    assert main(["predict", str(checkpoint), str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "could be read" in capsys.readouterr().err


def test_unwritable_output(checkpoint, images, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # chmod alone does not stop root, so writing into the folder is also made to fail as a read-only one does.
    locked.chmod(0o500)
    real_write = Path.write_bytes

    def read_only(path, data):
        if locked in path.parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    try:
        assert main(["predict", str(checkpoint), str(images), "--out", str(locked)]) == 2
        line = _error(capsys)
        assert "locked" in line and "Permission denied" in line
        assert not any(locked.iterdir()), "nothing may be written into an unwritable folder"
    finally:
        locked.chmod(0o700)


def test_output_path_is_a_file(checkpoint, images, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["predict", str(checkpoint), str(images), "--out", str(blocker / "sub")]) == 2
    assert "cannot write" in _error(capsys)


def test_grayscale_and_rgba_images_are_read(checkpoint, tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.new("L", (90, 70), 128).save(folder / "gray.png")
    Image.new("RGBA", (90, 70)).save(folder / "rgba.png")
    assert main(["predict", str(checkpoint), str(folder), "--out", str(tmp_path / "o")]) == 0


def test_cuda_without_a_gpu_is_one_clear_line(checkpoint, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["predict", str(checkpoint), str(images), "--out", str(tmp_path / "o"), "--device", "cuda"]) != 0
    assert "device 'cuda' asked for, but no CUDA GPU is visible" in _error(capsys)
    assert main(["predict", str(checkpoint), str(images), "--out", str(tmp_path / "o"), "--device", "auto"]) == 0

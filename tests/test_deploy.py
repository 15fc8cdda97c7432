"""ONNX export and ONNX Runtime inference: the file, its metadata, the predictor's contract, bad input, no torch.

Parity with PyTorch detection by detection is measured with :func:`pedseg_lib.export.compare_predictions`; its own
behaviour is tested here on predictions with known differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'pedseg[deploy]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'pedseg[deploy]')")

from pedseg_lib.cli import main  # noqa: E402
from pedseg_lib.errors import CheckpointError, InputError, OutputError  # noqa: E402
from pedseg_lib.export import compare_predictions, export_model, export_onnx, parity_table  # noqa: E402
from pedseg_lib.inference import predict  # noqa: E402
from pedseg_lib.model import build_untrained, save_checkpoint, set_classes  # noqa: E402
from pedseg_lib.runtime import METADATA_KEYS, OnnxPredictor, image_array, read_metadata  # noqa: E402

CLASSES = ["__background__", "person", "sign", "ball"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random three-class model, its checkpoint and its export (about 10 s)."""
    folder = tmp_path_factory.mktemp("deploy")
    torch.manual_seed(0)
    model = build_untrained(num_classes=4, weights=None, min_size=96, max_size=160).eval()
    set_classes(model, CLASSES, [0, 1, 13, 37])
    save_checkpoint(folder / "model.pt", model)
    result = export_onnx(folder / "model.pt", folder / "model.onnx")
    return model, folder, result


def test_export_writes_metadata_and_only_the_file(exported):
    _, folder, result = exported
    assert result.path == folder / "model.onnx" and result.megabytes > 1
    meta = read_metadata(result.path)
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["format"] == "pedseg-onnx" and meta["class_names"] == CLASSES and meta["category_ids"] == [0, 1, 13, 37]
    assert (meta["min_size"], meta["max_size"], meta["box_score_thresh"], meta["opset"]) == (96, 160, 0.05, 17)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.pt"]  # no temporary file left


@pytest.mark.parametrize("size", [(120, 90), (64, 200), (333, 77)])
def test_the_predictor_keeps_predicts_contract_at_any_size(exported, size):
    model, folder, _ = exported
    predictor = OnnxPredictor(folder / "model.onnx")
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(size[0]))
    (ours,) = predictor.predict([image.numpy()], score_threshold=0.0)
    (theirs,) = predict(model, [image], score_threshold=0.0, batch_size=1)
    for key in ("boxes", "labels", "scores", "masks"):
        assert ours[key].dtype == theirs[key].numpy().dtype, key
        assert ours[key].shape[1:] == tuple(theirs[key].shape[1:]), key
    assert ours["masks"].shape[-2:] == size
    assert set(np.unique(ours["masks"])) <= {0.0, 1.0}
    assert set(ours["labels"].tolist()) <= {1, 2, 3}


def test_an_image_without_detections_gives_empty_arrays(exported, tmp_path):
    model, _, _ = exported
    path = export_model(model, tmp_path / "strict.onnx", score_threshold=1.0).path  # no score reaches 1
    (out,) = OnnxPredictor(path).predict([np.zeros((50, 70, 3), dtype=np.uint8)], score_threshold=0.0)
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 1, 50, 70) and out["scores"].shape == (0,)
    assert read_metadata(path)["box_score_thresh"] == 1.0


def test_images_are_read_like_load_image(tmp_path):
    from PIL import Image

    from pedseg_lib.inference import load_image

    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for source in (tmp_path / "a.png", rgb, rgb.transpose(2, 0, 1), torch.from_numpy(rgb).permute(2, 0, 1)):
        assert np.array_equal(image_array(source), load_image(tmp_path / "a.png").numpy())
    with pytest.raises(InputError, match="a side is 0"):
        image_array(np.zeros((0, 10, 3), dtype=np.uint8))
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="b.png: cannot read as an image"):
        image_array(tmp_path / "b.png")


def test_bad_files_get_one_line(exported, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    model, folder, _ = exported
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a pedseg checkpoint"):
        export_onnx(tmp_path / "plain.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    # an ONNX file pedseg did not write
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["boxes"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, None, None])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [3, None, None])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "other.onnx")
    with pytest.raises(InputError, match="other.onnx: has no pedseg metadata.*pedseg export"):
        OnnxPredictor(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="junk.onnx: not a loadable ONNX model"):
        OnnxPredictor(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="no such ONNX file"):
        OnnxPredictor(tmp_path / "missing.onnx")
    for error in (CheckpointError, InputError):
        assert "\n" not in str(error("x"))


def test_a_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    model, _, _ = exported

    def broken(*args, **kwargs):
        Path(args[2]).write_bytes(b"partial")
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(OutputError, match="exporter exploded.*nothing was written"):
        export_model(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError):
        export_model(model, tmp_path / "file" / "m.onnx")


def test_the_runtime_needs_neither_torch_nor_torchvision(exported, tmp_path):
    _, folder, _ = exported
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\nsys.modules['torchvision'] = None\n"  # any import of them now fails
        "import numpy as np\n"
        "from pedseg_lib.runtime import OnnxPredictor\n"
        f"p = OnnxPredictor({str(folder / 'model.onnx')!r})\n"
        "out = p.predict([np.full((40, 50, 3), 128, np.uint8)], score_threshold=0.0)[0]\n"
        "print(sorted(out), out['masks'].shape[-2:], p.class_names)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "['boxes', 'labels', 'masks', 'scores'] (40, 50)" in done.stdout


def _prediction(boxes, scores, labels, masks) -> dict:
    return {"boxes": np.asarray(boxes, np.float32), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels), "masks": np.asarray(masks, np.float32)}


def test_compare_predictions_matches_by_iou_and_label():
    masks = np.zeros((3, 1, 20, 20), np.float32)
    masks[0, 0, :10, :10] = masks[1, 0, 10:, 10:] = masks[2, 0, :5, 15:] = 1
    ref = _prediction([[0, 0, 9, 9], [10, 10, 19, 19], [15, 0, 19, 4]], [0.9, 0.8, 0.7], [1, 2, 1], masks)
    # the same detections in another order, one box 0.3 px off, one score 5e-5 off, one mask pixel less
    other_masks = masks[[1, 0, 2]].copy()
    other_masks[1, 0, 0, 0] = 0
    other = _prediction([[10, 10, 19, 19], [0.3, 0, 9, 9], [15, 0, 19, 4]], [0.8, 0.90005, 0.7], [2, 1, 1],
                        other_masks)
    result = compare_predictions(ref, other)
    assert (result.reference_count, result.other_count, result.matched) == (3, 3, 3)
    assert result.max_box_diff == pytest.approx(0.3, abs=1e-6)
    assert result.max_score_diff == pytest.approx(5e-5, abs=1e-6)
    assert result.min_mask_iou == pytest.approx(99 / 100)
    assert result.ok(mask_iou=0.99) and not result.ok(mask_iou=0.995) and not result.ok(box_tol=0.2)
    # a wrong label or a missing detection is no match
    other["labels"][0] = 3
    assert compare_predictions(ref, other).matched == 2 and not compare_predictions(ref, other).ok()
    empty = _prediction(np.zeros((0, 4)), [], [], np.zeros((0, 1, 20, 20)))
    nothing = compare_predictions(empty, empty)
    assert nothing.ok() and nothing.matched == 0
    assert "matched" in parity_table([result, nothing], ["a.png", "b.png"]).splitlines()[0]


def test_export_predict_and_evaluate_through_the_command_line(exported, tmp_path, capsys):
    _, folder, _ = exported
    out = tmp_path / "m.onnx"
    assert main(["export", str(folder / "model.pt"), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file()
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(images / "a.png")
    assert main(["predict", "--onnx", str(out), str(images), "--out", str(tmp_path / "pred"),
                 "--score-threshold", "0"]) == 0
    results = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert results and {r["category_id"] for r in results} <= {1, 13, 37}
    assert (tmp_path / "pred" / "a.png").is_file()
    assert main(["predict", str(out), "--out", str(tmp_path / "p2")]) == 2  # a checkpoint is needed without --onnx
    assert "use: pedseg predict CHECKPOINT INPUT" in capsys.readouterr().err

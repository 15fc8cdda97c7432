"""predict / predict_dataset on a tiny untrained Mask R-CNN (weights=None, 128 px)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from pedseg_lib.data import PennFudanDataset
from pedseg_lib.inference import predict, predict_dataset
from pedseg_lib.model import build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(weights=None, min_size=128, max_size=160)


def test_inputs_of_every_kind_give_the_same_prediction(model, synthetic_root):
    dataset = PennFudanDataset(synthetic_root)
    path = dataset.image_path(0)
    uint8 = dataset[0][0]
    pil = Image.open(path)
    model.train()
    outs = predict(model, [uint8, uint8.float() / 255, pil, path, str(path)], score_threshold=0.0, batch_size=2)
    assert model.training  # the previous mode is restored
    assert len(outs) == 5
    H, W = uint8.shape[-2:]
    for out in outs:
        assert set(out) >= {"boxes", "scores", "labels", "masks"}
        assert out["masks"].dtype == torch.float32 and out["masks"].shape[1:] == (1, H, W)
        assert out["boxes"].device.type == "cpu"
        torch.testing.assert_close(out["scores"], outs[0]["scores"])


def test_score_threshold_and_mask_threshold(model, synthetic_root):
    image = PennFudanDataset(synthetic_root)[1][0]
    model.eval()
    (raw,) = predict(model, [image], score_threshold=0.0, mask_threshold=None)
    (kept,) = predict(model, [image], score_threshold=0.05)
    assert len(kept["scores"]) == int((raw["scores"] >= 0.05).sum())
    assert set(kept["masks"].unique().tolist()) <= {0.0, 1.0}
    assert not model.training


def test_predict_dataset_keys_by_image_id(model, synthetic_root):
    subset = Subset(PennFudanDataset(synthetic_root), [5, 2, 9])
    preds = predict_dataset(model, subset, batch_size=2, score_threshold=0.0)
    assert list(preds) == [5, 2, 9]

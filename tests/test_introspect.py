"""Introspection (Chapter 2): trace_model records every stage, and the helpers draw what torchvision does."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from pedseg_lib import model as M
from pedseg_lib.introspect import anchors_at, paste_mask, trace_model


def image() -> torch.Tensor:
    return torch.rand(3, 150, 110, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def traced():
    """A random 2-class v1 model at 128-160 px, with fewer RPN proposals (plumbing, not accuracy), and its trace."""
    torch.manual_seed(0)
    model = M.build_model(weights=None, min_size=128, max_size=160).eval()
    model.rpn._pre_nms_top_n = dict(training=200, testing=100)
    model.rpn._post_nms_top_n = dict(training=100, testing=50)
    return model, trace_model(model, image())


def test_trace_records_every_stage_consistently(traced):
    model, trace = traced
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
    assert not model.training  # mode restored
    assert trace.original_size == (150, 110) and max(trace.resized_size) == 160  # max_size caps it
    assert [r["stride"] for r in trace.feature_table()] == [4, 8, 16, 32, 4, 8, 16, 32, 64]
    counts = [g.shape[0] * g.shape[1] * g.shape[2] for g in trace.anchors.values()]
    assert [g.shape[0] for g in trace.anchors.values()] == [f.shape[-2] for f in trace.features.values()]
    assert sum(counts) == sum(f.shape[-2] * f.shape[-1] * 3 for f in trace.features.values())
    centre = anchors_at(trace, "1", [(40.0, 40.0)])
    assert centre.shape == (3, 4) and torch.allclose((centre[:, :2] + centre[:, 2:]) / 2, torch.tensor(40.0))
    n = len(trace.detections["boxes"])
    assert n > 0 and trace.mask_logits.shape == (n, 28, 28) and len(trace.output["masks"]) == n
    # The 28x28 logits, pasted as torchvision does, give the model's output masks. The sigmoid and the paste run
    # here outside the model, so the float reductions may be ordered differently (with 2 threads one pixel
    # differed by 2.3e-10): equal within float rounding, not bit for bit.
    pasted = paste_masks_in_image(trace.mask_logits.sigmoid()[:, None], trace.output["boxes"], trace.original_size)
    torch.testing.assert_close(pasted, trace.output["masks"], rtol=0, atol=1e-6)
    assert paste_mask(trace, 0).shape == trace.resized_size
    resized = torch.nn.functional.interpolate(image()[None], size=trace.resized_size, mode="bilinear",
                                              align_corners=False)[0]
    assert torch.allclose(trace.resized_image(), resized, atol=1e-5)


def test_mask_predictor_runs_without_detections(traced):
    """torchvision runs the mask predictor even when no detection survives: its output is [0, classes, 28, 28]."""
    model, _ = traced
    shapes = []
    handle = model.roi_heads.mask_predictor.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    threshold, model.roi_heads.score_thresh = model.roi_heads.score_thresh, 1.1  # no score can pass
    try:
        trace = trace_model(model, image())
    finally:
        model.roi_heads.score_thresh = threshold
        handle.remove()
    assert shapes == [(0, 2, 28, 28)]
    assert len(trace.detections["boxes"]) == 0 and trace.mask_logits.shape == (0, 28, 28)
    assert trace.output["masks"].shape == (0, 1, 150, 110)


def test_trace_restores_training_mode(traced):
    model, _ = traced
    model.train()
    try:
        trace_model(model, image())
        assert model.training and not any(m._forward_hooks for m in model.modules())
    finally:
        model.eval()


def test_paste_mask_into_another_box(traced):
    _, trace = traced
    h, w = trace.resized_size
    own = trace.detections["boxes"][0]
    # the default box is the detection's own, as a list or a tensor
    assert torch.equal(paste_mask(trace, 0, box=own.tolist()), paste_mask(trace, 0))
    # a box away from the image edges, and one twice as wide and tall around the same centre
    small = torch.tensor([w / 2 - 10, h / 2 - 15, w / 2 + 10, h / 2 + 15])
    centre, half = (small[:2] + small[2:]) / 2, (small[2:] - small[:2])
    large = torch.cat([centre - half, centre + half])
    pasted_small, pasted_large = paste_mask(trace, 0, box=small), paste_mask(trace, 0, box=large)
    for pasted, box in ((pasted_small, small), (pasted_large, large)):
        assert pasted.shape == (h, w) and 0 <= pasted.min() and pasted.max() <= 1
        x0, y0, x1, y1 = box.long().tolist()
        outside = pasted.clone()
        outside[max(0, y0 - 2):y1 + 3, max(0, x0 - 2):x1 + 3] = 0  # padding=1 widens the box by a pixel or two
        assert outside.abs().sum() == 0, "probabilities pasted outside the box"
    # the same 28x28 grid over four times the area: about four times the probability mass
    ratio = float(pasted_large.sum() / pasted_small.sum())
    assert 3.3 < ratio < 4.7, ratio


def test_paste_mask_rejects_bad_arguments(traced):
    _, trace = traced
    n = len(trace.mask_logits)
    with pytest.raises(IndexError, match=f"{n} detections"):
        paste_mask(trace, n)
    with pytest.raises(ValueError, match="4 numbers"):
        paste_mask(trace, 0, box=[1.0, 2.0, 3.0])


def test_detections_stay_in_the_resized_frame(traced):
    """The model's postprocess rewrites the RoI heads' dicts in place; the trace keeps the resized-frame boxes."""
    _, trace = traced
    (h, w), (oh, ow) = trace.resized_size, trace.original_size
    boxes = trace.detections["boxes"]
    assert (boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all()
    scale = torch.tensor([ow / w, oh / h, ow / w, oh / h])
    torch.testing.assert_close(boxes * scale, trace.output["boxes"])
    assert "masks" not in trace.detections

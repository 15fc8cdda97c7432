"""Figures draw what they are given: the right pixels, the right curves, the right panels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pedseg_lib import visualize
from pedseg_lib.data import PennFudanDataset
from pedseg_lib.evaluation import coco_evaluate, find_errors, score_threshold_sweep
from pedseg_lib.model import LOSS_KEYS


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _prediction(scores):
    masks = torch.zeros(len(scores), 1, 40, 60)
    masks[:, :, 10:30, 20:40] = 0.9
    return {"boxes": torch.tensor([[20.0, 10, 40, 30]] * len(scores)), "scores": torch.tensor(scores),
            "labels": torch.ones(len(scores), dtype=torch.int64), "masks": masks}


def test_draw_instances_paints_inside_the_mask_only_and_honours_the_threshold():
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    drawn = visualize.draw_instances(image, _prediction([0.9]), show_scores=False, width=1)
    assert drawn.dtype == torch.uint8 and drawn.shape == image.shape
    assert drawn[:, 15:25, 25:35].sum() > 0  # inside the mask: coloured
    assert drawn[:, :5, :5].sum() == 0 and drawn[:, 35:, 50:].sum() == 0  # far outside box and mask: untouched
    assert torch.equal(visualize.draw_instances(image, _prediction([0.3]), score_threshold=0.5), image)


def test_show_grid_has_one_titled_panel_per_image_and_hides_spare_cells():
    fig = visualize.show_grid([torch.zeros(3, 8, 8)] * 4, [f"t{i}" for i in range(4)], ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and [ax.get_title() for ax in shown] == ["t0", "t1", "t2", "t3"]


def _history(iterations=6, epochs=2):
    its = [{"epoch": 1 + i * epochs // iterations, "iteration": i, "lr": 0.001 * (i + 1), "loss": 5.0 - i,
            **{key: 1.0 - 0.1 * i for key in LOSS_KEYS}} for i in range(iterations)]
    eps = [{"epoch": e, "train_loss": 3.0 / e, "val_loss": 3.5 / e, "bbox_AP": 0.1 * e, "segm_AP": 0.2 * e,
            "bbox_AP50": 0.3 * e, "segm_AP50": 0.4 * e} for e in range(1, epochs + 1)]
    return {"iterations": its, "epochs": eps}


def test_training_curves_plot_every_series_of_the_history():
    history = _history()
    ax = visualize.plot_loss_components(history).axes[0]
    assert [line.get_label() for line in ax.lines] == ["loss", *visualize.LOSS_TERMS]
    assert list(ax.lines[0].get_ydata()) == [r["loss"] for r in history["iterations"]]
    left, right = visualize.plot_epoch_metrics(history).axes
    assert list(right.lines[1].get_ydata()) == [0.2, 0.4]  # segm_AP per epoch
    lr = visualize.plot_lr(history, first=3).axes[0].lines[0]
    assert list(lr.get_ydata()) == pytest.approx([0.001, 0.002, 0.003])
    runs = visualize.compare_runs({"a": history, "b": history}).axes[1]
    assert [line.get_label() for line in runs.lines] == ["a", "b"]


@pytest.fixture(scope="module")
def evaluated(synthetic_root):
    from pedseg_lib.data import synthetic_detections

    dataset = PennFudanDataset(synthetic_root)
    predictions = synthetic_detections(dataset, range(len(dataset)), seed=1)
    return dataset, predictions, coco_evaluate(dataset, predictions)


def test_pr_curves_are_pycocotools_precision(evaluated):
    _, _, evaluation = evaluated
    ax = visualize.plot_pr_curves(evaluation, "segm").axes[0]
    precision = evaluation.evaluators["segm"].eval["precision"][0, :, 0, 0, -1]  # IoU 0.50, area all, 100 dets
    assert np.allclose(ax.lines[0].get_ydata(), precision.clip(min=0))
    assert f"{evaluation.stats['segm'][1]:.3f}" in ax.lines[0].get_label()


def test_error_gallery_shows_the_images_with_mistakes_first(evaluated):
    dataset, predictions, _ = evaluated
    errors = find_errors(dataset, predictions, score_threshold=0.3)
    with_errors = [i for i, e in errors.items() if e["fp"] or e["fn"]]
    images = {i: dataset[i][0] for i in with_errors}
    targets = {i: dataset.target(i) for i in with_errors}
    fig = visualize.plot_errors(images, targets, predictions, errors, max_images=4)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == min(4, len(with_errors)) > 0
    counts = [int(t.split(": ")[1].split(" ")[0]) + int(t.split(", ")[1].split(" ")[0]) for t in titles]
    assert counts == sorted(counts, reverse=True)
    empty = visualize.plot_errors({}, {}, {}, {i: {"tp": [], "fp": [], "fn": []} for i in range(2)})
    assert "no false positives" in empty.axes[0].texts[0].get_text()


def test_threshold_sweep_plot_marks_the_best_threshold(evaluated):
    dataset, predictions, _ = evaluated
    sweep = score_threshold_sweep(dataset, predictions)
    ax = visualize.plot_threshold_sweep(sweep).axes[0]
    assert [line.get_label() for line in ax.lines[:3]] == ["precision", "recall", "f1"]
    assert list(ax.lines[2].get_ydata()) == sweep["f1"]
    assert np.allclose(ax.lines[0].get_ydata(), sweep["precision"], equal_nan=True)
    assert ax.lines[3].get_xdata()[0] == sweep["best"]

"""After every geometric step of the training pipeline, a target's boxes are masks_to_boxes of its masks."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from pedseg_lib.data import BoxesFromMasks, PennFudanDataset, build_transforms

# Every step build_transforms can put in the training pipeline, by kind. A new step must be added here, and a
# geometric one to GEOMETRIC_STEPS below with a way to force it, before test_every_step_is_classified passes.
NON_GEOMETRIC = (v2.RandomPhotometricDistort, v2.ToDtype, BoxesFromMasks)
# Each geometric step, with the build_transforms arguments that make it always happen and what it does to a mask.
GEOMETRIC_STEPS = {
    v2.RandomHorizontalFlip: ({"hflip": 1.0}, lambda masks: masks.flip(-1)),
}


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def test_every_step_is_classified():
    pipeline = build_transforms(True, hflip=1.0, photometric=True)
    kinds = [type(step) for step in pipeline.transforms]
    assert all(issubclass(k, NON_GEOMETRIC + tuple(GEOMETRIC_STEPS)) for k in kinds), kinds
    assert set(GEOMETRIC_STEPS) <= set(kinds)


def test_flip_of_an_inclusive_box():
    """The issue's example: a mask over columns 1-3 of a 10-pixel-wide image lies over columns 6-8 flipped."""
    masks = torch.zeros((1, 6, 10), dtype=torch.uint8)
    masks[0, 2:5, 1:4] = 1
    boxes = tv_tensors.BoundingBoxes(masks_to_boxes(masks), format="XYXY", canvas_size=(6, 10))
    assert boxes.tolist() == [[1, 2, 3, 4]]
    image = tv_tensors.Image(torch.zeros((3, 6, 10), dtype=torch.uint8))
    _, flipped = build_transforms(True, hflip=1.0)(image, {"boxes": boxes, "masks": tv_tensors.Mask(masks)})
    assert _plain(flipped["boxes"]).tolist() == [[6, 2, 8, 4]]  # v2's flip alone gives [7, 2, 9, 4]
    assert isinstance(flipped["boxes"], tv_tensors.BoundingBoxes) and flipped["boxes"].canvas_size == (6, 10)


def _check(dataset: PennFudanDataset, indices: list[int], step: type, images: bool) -> None:
    kwargs, move = GEOMETRIC_STEPS[step]
    pipeline = build_transforms(True, photometric=images, **kwargs)
    for i in indices:
        target = dataset.target(i)
        if images:
            image = dataset[i][0]
        else:  # the geometry of boxes and masks does not depend on the pixels: a blank image of the right size
            image = tv_tensors.Image(torch.zeros((3, *target["boxes"].canvas_size), dtype=torch.uint8))
        _, moved = pipeline(image, target)
        assert torch.equal(_plain(moved["masks"]), move(_plain(target["masks"]))), (step, i)
        assert moved["boxes"].dtype == torch.float32 and moved["boxes"].canvas_size == target["boxes"].canvas_size
        assert torch.equal(_plain(moved["boxes"]), masks_to_boxes(moved["masks"])), (step, i)
        assert torch.equal(moved["labels"], target["labels"]) and torch.equal(moved["area"], target["area"])


@pytest.mark.parametrize("step", list(GEOMETRIC_STEPS))
def test_geometric_steps_keep_boxes_on_masks_real(real_root, step):
    """Real masks (every 17th image: ten images, both sizes of people) and one real photograph, photometric on."""
    dataset = PennFudanDataset(real_root)
    _check(dataset, list(range(0, len(dataset), 17)), step, images=False)
    _check(dataset, [0], step, images=True)


@pytest.mark.parametrize("step", list(GEOMETRIC_STEPS))
def test_geometric_steps_keep_boxes_on_masks_synthetic(synthetic_root, step):
    dataset = PennFudanDataset(synthetic_root)
    _check(dataset, list(range(len(dataset))), step, images=False)
    _check(dataset, [0], step, images=True)


def test_boxes_from_masks_passes_other_inputs_through():
    image = tv_tensors.Image(torch.zeros((3, 4, 5), dtype=torch.uint8))
    assert BoxesFromMasks()(image) is image
    boxes_only = {"boxes": tv_tensors.BoundingBoxes([[0, 0, 2, 2]], format="XYXY", canvas_size=(4, 5))}
    assert BoxesFromMasks()(image, boxes_only)[1] is boxes_only
    empty = {"boxes": tv_tensors.BoundingBoxes([[1, 1, 3, 3]], format="XYXY", canvas_size=(4, 5)),
             "masks": tv_tensors.Mask(torch.zeros((1, 4, 5), dtype=torch.uint8))}
    assert _plain(BoxesFromMasks()(image, empty)[1]["boxes"]).tolist() == [[1, 1, 3, 3]]  # an empty mask keeps its box

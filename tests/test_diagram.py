"""The Mask R-CNN pipeline diagram (book/images/maskrcnn_pipeline.svg) against the model it draws (issue 20).

The SVG is written by hand, so nothing keeps it true but these checks: it is plain, well-formed SVG; every module,
method and function it names exists in torchvision's model as pedseg_lib builds it (a module renamed or moved by a
torchvision release fails here, not silently in the book); the class written beside a module is that module's class;
the numbers it prints (RoIAlign sizes, anchors, thresholds, channels) are the model's; and chapter 2 shows it.

Conventions in the SVG: each box is a ``<g class="box">``; ``class="module"`` marks a module's dotted name (as in
``model.named_modules()``; an element showing only the last part of the name carries the full one in ``data-name``),
``class="method"`` a method (``owner.method``), ``class="function"`` a function of the torchvision module named in
``data-in``, ``class="type"`` the class of the box's first module; ``<g class="badge">`` discs number Chapter 2's
sections.
"""

from __future__ import annotations

import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jupytext
import pytest
import torch

from pedseg_lib.model import build_coco_model, build_untrained

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "book" / "images" / "maskrcnn_pipeline.svg"
CHAPTER = ROOT / "book" / "02_mask_rcnn.py"
NS = "{http://www.w3.org/2000/svg}"
FIGURE_LABEL = "fig-maskrcnn-pipeline"


def _classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def _text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _marked(root: ET.Element, kind: str) -> list[ET.Element]:
    return [e for e in root.iter() if kind in _classes(e)]


def _module_name(element: ET.Element) -> str:
    """The dotted name an element marks: its data-name, else its text."""
    return element.get("data-name") or _text(element)


def _boxes(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if "box" in _classes(g)]


def _box_text(root: ET.Element, first_module: str) -> str:
    """All the text of the box whose first marked module (or method) is ``first_module``."""
    for box in _boxes(root):
        named = [e for e in box.iter() if _classes(e) & {"module", "method"}]
        if named and _module_name(named[0]) == first_module:
            return _text(box)
    raise AssertionError(f"no box of {SVG.name} starts with {first_module!r}")


@pytest.fixture(scope="module")
def svg() -> ET.Element:
    return ET.parse(SVG).getroot()


# Chapter 2's model (91 COCO classes) and the fine-tuned model from chapter 3 on (2 classes): the same names.
BUILDERS = {
    "build_coco_model": lambda: build_coco_model(weights=None),
    "build_untrained": lambda: build_untrained(weights=None),
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def model(request) -> torch.nn.Module:
    torch.manual_seed(0)
    return BUILDERS[request.param]().eval()


@pytest.fixture(scope="module")
def coco_model() -> torch.nn.Module:
    return build_coco_model(weights=None).eval()


def test_diagram_is_plain_well_formed_svg_with_a_viewbox(svg):
    assert svg.tag == f"{NS}svg", f"{SVG.name}: the root element is {svg.tag}, not <svg>"
    box = [float(v) for v in svg.get("viewBox", "").replace(",", " ").split()]
    assert len(box) == 4 and box[2] > 0 and box[3] > 0, f"{SVG.name}: no usable viewBox ({svg.get('viewBox')!r})"
    tags = {e.tag.removeprefix(NS) for e in svg.iter()}
    banned = tags & {"script", "foreignObject", "image", "iframe", "a"}
    assert not banned, f"{SVG.name}: no scripts, embedded documents, raster images or links: {sorted(banned)}"
    external = [f"{e.tag}: {k}={v}" for e in svg.iter() for k, v in e.attrib.items()
                if k.endswith("href") and not v.startswith("#")]
    assert not external, f"{SVG.name}: references outside the file: {external}"
    css = " ".join(_text(e) for e in svg.iter(f"{NS}style"))
    assert not re.search(r"@import|@font-face|url\((?!#)", css), f"{SVG.name}: the CSS loads something external"
    assert len(list(svg.iter(f"{NS}text"))) >= 40, f"{SVG.name}: its text must be <text> elements, not paths"
    assert svg.find(f"{NS}title") is not None and _text(svg.find(f"{NS}title")), f"{SVG.name}: add a <title>"


def test_every_module_the_diagram_names_is_in_the_model(svg, model):
    modules = dict(model.named_modules())
    marked = _marked(svg, "module")
    assert len(marked) >= 20, f"{SVG.name}: only {len(marked)} elements marked class='module'"
    for element in marked:
        name = _module_name(element)
        assert re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*", name), f"{SVG.name}: {name!r} is not a module path"
        if element.get("data-name"):
            assert _text(element) == name.rsplit(".", 1)[-1], \
                f"{SVG.name}: an element marked {name!r} shows {_text(element)!r}, not the name's last part"
    missing = sorted({_module_name(e) for e in marked} - set(modules))
    assert not missing, f"{SVG.name} names modules that {type(model).__name__} lacks (renamed?): {missing}"


def test_the_diagram_draws_every_stage_of_the_model(svg, model):
    # The children of the model and of its four parts: a module added or removed there must be drawn or dropped.
    drawn = {_module_name(e) for e in _marked(svg, "module")}
    parts = {"": model, "backbone": model.backbone, "rpn": model.rpn, "roi_heads": model.roi_heads}
    expected = {f"{prefix}.{child}".lstrip(".") for prefix, part in parts.items()
                for child, _ in part.named_children()}
    assert expected == {"transform", "backbone", "rpn", "roi_heads", "backbone.body", "backbone.fpn",
                        "rpn.anchor_generator", "rpn.head", "roi_heads.box_roi_pool", "roi_heads.box_head",
                        "roi_heads.box_predictor", "roi_heads.mask_roi_pool", "roi_heads.mask_head",
                        "roi_heads.mask_predictor"}, expected
    assert not expected - drawn, f"{SVG.name} does not draw {sorted(expected - drawn)}"


def test_every_method_and_function_the_diagram_names_exists(svg, model):
    modules = dict(model.named_modules())
    methods = [_text(e) for e in _marked(svg, "method")]
    assert {"rpn.filter_proposals", "roi_heads.postprocess_detections", "transform.postprocess"} <= set(methods)
    for name in methods:
        owner, _, method = name.rpartition(".")
        assert owner in modules, f"{SVG.name}: {name!r}: the model has no module {owner!r}"
        bound = getattr(modules[owner], method, None)
        assert callable(bound) and getattr(bound, "__self__", None) is modules[owner], \
            f"{SVG.name}: {name!r} is not a method of {type(modules[owner]).__name__}"
    functions = _marked(svg, "function")
    assert {_text(e) for e in functions} >= {"maskrcnn_inference", "paste_masks_in_image", "resize_boxes"}
    for element in functions:
        where = f"torchvision.models.detection.{element.get('data-in')}"
        assert callable(getattr(importlib.import_module(where), _text(element), None)), \
            f"{SVG.name}: {where} has no function {_text(element)!r}"


def test_the_class_beside_each_module_is_its_class(svg, model):
    modules = dict(model.named_modules())
    checked = 0
    for box in _boxes(svg):
        names = [e for e in box.iter() if "module" in _classes(e)]
        types = [e for e in box.iter() if "type" in _classes(e)]
        if not names or not types or "method" in {c for e in box.iter() for c in _classes(e)}:
            continue
        name = _module_name(names[0])
        assert name in modules, f"{SVG.name}: the model has no module {name!r}"
        written = re.match(r"\w+", _text(types[0])).group(0)
        actual = type(modules[name]).__name__
        assert written == actual, f"{SVG.name}: {name} is drawn as {written}, but it is a {actual}"
        checked += 1
    assert checked >= 14, f"{SVG.name}: only {checked} boxes name their module's class"


def _numbers(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def test_the_numbers_in_the_diagram_are_the_models(svg, coco_model):
    m = coco_model  # chapter 2's model, with torchvision's defaults
    t = m.transform
    text = _box_text(svg, "transform")
    assert f"mean ({_numbers(t.image_mean)})" in text and f"std ({_numbers(t.image_std)})" in text, text
    assert f"min_size ({t.min_size[-1]} by default)" in text and f"max_size ({t.max_size})" in text, text
    assert f"multiple of {t.size_divisible}" in text, text

    text = _box_text(svg, "backbone.body")
    body = m.backbone.body
    for key, layer in zip("0123", ("layer1", "layer2", "layer3", "layer4"), strict=True):
        channels = getattr(body, layer)[-1].conv3.out_channels
        assert f"'{key}' C{int(key) + 2} [{channels}, H′/{2 ** (int(key) + 2)}," in text, (layer, text)
    text = _box_text(svg, "backbone.fpn")
    assert f"P2–P5 [{m.backbone.out_channels}, H′/s" in text and "s = 4, 8, 16, 32" in text, text
    text = _box_text(svg, "backbone.fpn.extra_blocks")
    assert "max_pool2d(P5, kernel_size=1, stride=2)" in text and f"P6 [{m.backbone.out_channels}, H′/64" in text
    assert "every second row and column of P5" in text and "rounded up" in text, text
    p5 = torch.randn(1, 2, 5, 7)
    p6 = m.backbone.fpn.extra_blocks([p5], [p5], ["3"])[0][-1]
    torch.testing.assert_close(p6, p5[..., ::2, ::2])  # a subsampling, [3, 4] from [5, 7]: rounded up

    anchors = m.rpn.anchor_generator
    per_cell = anchors.num_anchors_per_location()
    assert len(set(per_cell)) == 1
    text = _box_text(svg, "rpn.anchor_generator")
    assert f"{_numbers(s[0] for s in anchors.sizes)} px" in text, text
    assert f"aspect ratios (h/w) {_numbers(anchors.aspect_ratios[0])}: {per_cell[0]} anchors per cell" in text, text
    text = _box_text(svg, "rpn.head")
    head = m.rpn.head
    assert f"cls_logits → {head.cls_logits.out_channels} objectness" in text, text
    assert f"bbox_pred → {head.bbox_pred.out_channels} = {per_cell[0]} × 4" in text, text
    text = _box_text(svg, "rpn.filter_proposals")
    assert f"the {m.rpn._pre_nms_top_n['testing']} best by objectness" in text, text
    assert f"NMS (IoU {m.rpn.nms_thresh:g}) within each level" in text, text
    assert f"the best {m.rpn._post_nms_top_n['testing']} overall" in text, text

    heads = m.roi_heads
    proposals = m.rpn._post_nms_top_n["testing"]
    h, w = heads.box_roi_pool.output_size
    assert f"a {h}×{w} patch" in _box_text(svg, "roi_heads.box_roi_pool")
    assert f"[{proposals}, {m.backbone.out_channels}, {h}, {w}]" in _box_text(svg, "roi_heads.box_roi_pool")
    assert f"[{proposals}, {heads.box_head.fc7.out_features}]" in _box_text(svg, "roi_heads.box_head")
    text = _box_text(svg, "roi_heads.box_predictor")
    assert f"cls_score → [{proposals}, K]" in text and f"bbox_pred → [{proposals}, 4K]" in text, text
    assert heads.box_predictor.bbox_pred.out_features == 4 * heads.box_predictor.cls_score.out_features
    text = _box_text(svg, "roi_heads.postprocess_detections")
    assert f"score > {heads.score_thresh:g}, NMS (IoU {heads.nms_thresh:g}); the best {heads.detections_per_img}" \
        in text, text

    mh, mw = heads.mask_roi_pool.output_size
    assert f"a {mh}×{mw} patch" in _box_text(svg, "roi_heads.mask_roi_pool")
    convs = [c for c in heads.mask_head.modules() if isinstance(c, torch.nn.Conv2d)]
    assert {c.kernel_size for c in convs} == {(3, 3)} and {c.out_channels for c in convs} == {256}
    assert f"{['one', 'two', 'three', 'four', 'five'][len(convs) - 1]} 3×3 convs" in _box_text(
        svg, "roi_heads.mask_head")
    up = heads.mask_predictor.conv5_mask
    text = _box_text(svg, "roi_heads.mask_predictor")
    assert f"{up.kernel_size[0]}×{up.kernel_size[1]} transposed conv, stride {up.stride[0]}" in text, text
    assert f"[N, K, {mh * up.stride[0]}, {mw * up.stride[1]}]" in text, text
    # and the 28x28 maps really come out of the model, one per class
    features = {k: torch.zeros(1, m.backbone.out_channels, 128 // 2 ** (i + 2), 128 // 2 ** (i + 2))
                for i, k in enumerate("0123")}
    with torch.no_grad():
        pooled = heads.mask_roi_pool(features, [torch.tensor([[0.0, 0.0, 40.0, 40.0]])], [(128, 128)])
        logits = heads.mask_predictor(heads.mask_head(pooled))
    assert tuple(logits.shape) == (1, 91, mh * up.stride[0], mw * up.stride[1])


def test_the_badges_number_chapter_2s_sections(svg):
    badges = sorted(int(_text(g)) for g in svg.iter(f"{NS}g") if "badge" in _classes(g))
    markdown = "\n".join(c.source for c in jupytext.read(CHAPTER).cells if c.cell_type == "markdown")
    sections = sorted(int(n) for n in re.findall(r"^## (\d+)\. ", markdown, re.M))
    assert badges == sections == list(range(1, 8)), (badges, sections)


def test_chapter_2_shows_the_diagram_and_each_section_points_into_it():
    cells = jupytext.read(CHAPTER).cells
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    figure = re.search(r"^```\{figure\} (?P<path>\S+)\n(?P<options>(?::.*\n)*)", markdown, re.M)
    assert figure is not None, f"{CHAPTER.name}: no ```{{figure}} directive"
    assert (CHAPTER.parent / figure.group("path")).resolve() == SVG, figure.group("path")
    assert f":name: {FIGURE_LABEL}\n" in figure.group("options"), figure.group("options")
    assert re.search(r"^:alt: \S", figure.group("options"), re.M), "the figure needs alt text"
    first_section = re.search(r"^## 1\. ", markdown, re.M)
    assert first_section and figure.start() < first_section.start(), "show the figure before the first section"
    # every numbered section names its box of the figure
    for number, body in re.findall(r"^## (\d+)\. [^\n]*\n(.*?)(?=^## |\Z)", markdown, re.M | re.S):
        assert re.search(rf"box {number}\b", body) and f"`{FIGURE_LABEL}`" in body, \
            f"{CHAPTER.name}: section {number} does not say which box of the figure it is in"

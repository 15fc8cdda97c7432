"""The library's imports run one way: no import loop, and every module only imports the layers below it.

The layers, from the bottom up (a module may import its own layer and those below it, never above):

================================  =============================================================
errors, _io, notebook             exceptions, atomic file writes, the chapters' glue
config                            the typed run configuration and its presets
distributed                       process groups and the device rule
data (and data.*)                 Penn-Fudan and COCO files: datasets, splits, download, convert, doctor
model, introspect                 building, checking, saving and tracing Mask R-CNN
profiles, evaluation, standin     where data and runs live; COCO metrics; stand-in weights
inference, visualize, video,      running a model on images, videos and ONNX Runtime (runtime imports
runtime, export                   no torch); drawing and plotting; ONNX export
engine                            training: fit, validation, run folders and their splits
cli, __main__                     the ``pedseg`` command
================================  =============================================================

The project guide lists the order as data -> model -> engine -> evaluation -> inference -> cli. Here evaluation
and inference sit below engine: the engine chooses ``best.pt`` and stops early by the validation AP, so it runs
the model over the validation images (``inference.predict_dataset``) and scores them (``evaluation.coco_evaluate``);
neither of them needs the engine. Imports inside functions count like the others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pedseg_lib"

LAYERS = [
    ["pedseg_lib", "pedseg_lib.errors", "pedseg_lib._io", "pedseg_lib.notebook"],
    ["pedseg_lib.config"],
    ["pedseg_lib.distributed"],
    ["pedseg_lib.data", "pedseg_lib.data.*"],
    ["pedseg_lib.model", "pedseg_lib.introspect"],
    ["pedseg_lib.profiles", "pedseg_lib.evaluation", "pedseg_lib.standin"],
    ["pedseg_lib.inference", "pedseg_lib.visualize", "pedseg_lib.video", "pedseg_lib.runtime", "pedseg_lib.export"],
    ["pedseg_lib.engine"],
    ["pedseg_lib.cli", "pedseg_lib.__main__"],
]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: {library modules it imports}}`` for every ``.py`` file of the package at ``root``.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module of the package, else ``pkg``.
    """
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    top = root.name
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files:  # `import pedseg_lib.data.x.y` -> the module part
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] == top and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _layer(module: str) -> int:
    for level, names in enumerate(LAYERS):
        for pattern in names:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return level
    raise AssertionError(f"{module} is in no layer of tests/test_imports.py: add it to LAYERS")


def test_the_library_has_no_import_loop():
    cycles = find_cycles(import_graph(PACKAGE))
    assert not cycles, "import loops in pedseg_lib: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_import_goes_down_the_layers():
    graph = import_graph(PACKAGE)
    upward = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
              for a, targets in sorted(graph.items()) for b in sorted(targets) if _layer(b) > _layer(a)]
    assert not upward, "imports that run upwards: " + "; ".join(upward)


def test_the_whole_command_line_lives_in_cli():
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("cli.py", "standin.py", "__main__.py"):  # standin is a maintainer's script, not pedseg
            text = path.read_text(encoding="utf-8")
            assert "add_parser(" not in text and "add_subparsers(" not in text, \
                f"{path.relative_to(PACKAGE.parent)} defines command-line commands: they belong in pedseg_lib/cli.py"


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_find_cycles(graph, expected):
    assert find_cycles(graph) == expected


def test_a_loop_added_to_a_copy_of_the_library_is_found(tmp_path):
    """Copy the package, make inference import the engine inside a function (the loop this layout removed: the
    engine imports inference), and expect the loop and the upward import to be reported."""
    import shutil

    copy = tmp_path / "pedseg_lib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    module = copy / "inference.py"
    module.write_text(module.read_text() + "\n\ndef _loop():\n    from pedseg_lib.engine import test_split\n\n"
                      "    return test_split\n")
    graph = import_graph(copy)
    assert ["pedseg_lib.engine", "pedseg_lib.inference"] in find_cycles(graph)
    assert _layer("pedseg_lib.engine") > _layer("pedseg_lib.inference")


def test_user_errors_are_raised_as_pedseg_error_subclasses():
    """PedsegError is the base a caller catches; what is raised says which kind of input is at fault."""
    bare = [f"{path.relative_to(PACKAGE.parent)}:{number}"
            for path in sorted(PACKAGE.rglob("*.py"))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if "raise PedsegError(" in line]
    assert not bare, "raise a PedsegError subclass (DatasetError, ConfigError, InputError, ...) at " + ", ".join(bare)

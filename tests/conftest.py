"""Shared fixtures: the real Penn-Fudan data when present, a small synthetic copy always; .ci/colab.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "PennFudanPed"


def _real_data_root() -> Path | None:
    from pedseg_lib.data import find_dataset

    for candidate in (os.environ.get("PEDSEG_DATA"), SHARED_DATA):
        if candidate and (found := find_dataset(candidate)) is not None:
            return found
    return None


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real Penn-Fudan folder; the test is skipped when it is not on this machine."""
    root = _real_data_root()
    if root is None:
        pytest.skip(f"real Penn-Fudan data not found at PEDSEG_DATA or {SHARED_DATA} (optional resource)")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image synthetic dataset in the Penn-Fudan layout, made once per test session."""
    from pedseg_lib.data import make_synthetic_pennfudan

    return make_synthetic_pennfudan(tmp_path_factory.mktemp("synthetic"), n_images=12, seed=0)


@pytest.fixture(scope="session")
def ci_colab():
    """The maintainers' script .ci/colab.py as a module: the owner of the chapters' pin and the Colab-like check."""
    path = PROJECT_ROOT / ".ci" / "colab.py"
    spec = importlib.util.spec_from_file_location("pedseg_ci_colab", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def colab_setup(ci_colab, tmp_path_factory):
    """The Colab-like environment and the freshly built wheel (nothing of pedseg installed yet)."""
    return ci_colab.prepare(tmp_path_factory.mktemp("colab"))


COLAB_RECORDS = PROJECT_ROOT / "_build" / "colab" / "records.json"


@pytest.fixture(scope="session")
def colab_chapters(ci_colab, colab_setup) -> dict[str, dict]:
    """Every chapter executed once, Colab-like, in the smoke profile: ``{name: record}`` (.ci/colab.py's records).

    Each record's ``folder`` holds the executed notebook. tests/test_colab.py checks the runs; tests/test_book.py
    renders the book from these executed notebooks, so no chapter is executed twice in one session. The records
    (per-chapter seconds) are also written to _build/colab/records.json as they come.
    """
    import json

    COLAB_RECORDS.parent.mkdir(parents=True, exist_ok=True)
    records = {}
    for name in ci_colab.chapters():
        records[name] = ci_colab.run_chapter(colab_setup, name, profile="smoke")
        COLAB_RECORDS.write_text(json.dumps(list(records.values()), indent=1) + "\n")
    return records

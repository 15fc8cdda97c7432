"""The chapters as a reader opens them in Colab: each notebook alone, copied into an empty folder outside the
checkout, executed in an environment that holds only what Colab preinstalls (.ci/colab-preinstalled.txt) and what
the notebook's own first cell installs (the wheel built from this tree, found by pip as Colab finds the release).

The work is done by .ci/colab.py (``python .ci/colab.py run`` is the same check from a shell). The smoke profile, on
the data a reader without ``PEDSEG_DATA`` gets: the synthetic stand-in.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
RECORDS = ROOT / "_build" / "colab" / "records.json"

pytestmark = [pytest.mark.colab, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def colab(ci_colab, tmp_path_factory):
    """The Colab-like environment and the freshly built wheel (nothing of pedseg installed yet)."""
    setup = ci_colab.prepare(tmp_path_factory.mktemp("colab"))
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    RECORDS.write_text("[]\n")
    return setup


def _importable(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def test_the_environment_is_colab_s_and_nothing_more(colab, ci_colab):
    assert colab.wheel.name.startswith(f"pedseg-{ci_colab.release(ROOT).version}-")
    for module in ("torch", "torchvision", "pycocotools", "matplotlib", "ipykernel", "nbclient"):
        assert _importable(colab.python, module), f"{module} is on Colab's list but not importable"
    for module in ("myst_nb", "jupyter_book", "nbval", "onnxruntime", "av"):
        assert not _importable(colab.python, module), f"{module} is not on Colab's list, yet it is installed"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_from_an_empty_folder_with_only_its_first_cell_s_install(name, colab, ci_colab):
    record = ci_colab.run_chapter(colab, name, profile="smoke")
    records = json.loads(RECORDS.read_text())
    RECORDS.write_text(json.dumps([*records, record], indent=1) + "\n")
    assert record["error"] is None, f"book/{name}.ipynb failed in the Colab-like check:\n{record['error'][-3000:]}"
    assert record["installed"] == ci_colab.release(ROOT).version, "the chapter's first cell did not install pedseg"
    assert record["first_cell_output"] == "", f"the install cell printed: {record['first_cell_output']!r}"

"""The chapters as a reader opens them in Colab: each notebook alone, copied into an empty folder outside the
checkout, executed in an environment that holds only what Colab preinstalls (.ci/colab-preinstalled.txt) and what
the notebook's own first cell installs (the wheel built from this tree, found by pip as Colab finds the release).

The work is done by .ci/colab.py (``python .ci/colab.py run`` is the same check from a shell) through the session
fixtures ``colab_setup`` and ``colab_chapters`` of conftest.py, which execute each chapter once per session, in a
background thread while the other tests run; the book test renders the same executed notebooks. The smoke profile, on the data a reader without ``PEDSEG_DATA`` gets: the
synthetic stand-in. Per-chapter times: _build/colab/records.json.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

pytestmark = [pytest.mark.colab, pytest.mark.slow, pytest.mark.timeout(1200)]


def _importable(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def test_the_environment_is_colab_s_and_nothing_more(colab_setup, ci_colab):
    colab = colab_setup
    assert colab.wheel.name.startswith(f"pedseg-{ci_colab.release(ROOT).version}-")
    for module in ("torch", "torchvision", "pycocotools", "matplotlib", "ipykernel", "nbclient"):
        assert _importable(colab.python, module), f"{module} is on Colab's list but not importable"
    for module in ("myst_nb", "jupyter_book", "nbval", "onnxruntime", "av"):
        assert not _importable(colab.python, module), f"{module} is not on Colab's list, yet it is installed"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_from_an_empty_folder_with_only_its_first_cell_s_install(name, colab_chapters, ci_colab):
    record = colab_chapters[name]
    assert record["error"] is None, f"book/{name}.ipynb failed in the Colab-like check:\n{record['error'][-3000:]}"
    assert record["installed"] == ci_colab.release(ROOT).version, "the chapter's first cell did not install pedseg"
    assert record["first_cell_output"] == "", f"the install cell printed: {record['first_cell_output']!r}"

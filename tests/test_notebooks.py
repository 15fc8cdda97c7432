"""Static checks of the book's chapters: structure, Colab readiness, jupytext pairing, clean notebooks.

Fast (no execution): nbval and the book build execute the chapters.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTER_RE = re.compile(r"^book/(\d\d_[a-z0-9_]+)$")
ROLE_RE = re.compile(r"\{py:(func|class|mod|meth)\}`~?pedseg_lib[.\w]*`")


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [entry["file"] for entry in part.get("chapters", [])]
    return files


def _toc_chapters() -> list[str]:
    return [m.group(1) for f in _toc_files() if (m := CHAPTER_RE.match(f))]


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _release_tag() -> str:
    # The pinned release lives in one place: the package version.
    # (a regex rather than tomllib, which Python 3.10 lacks).
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    return f"v{version}"


def _colab_cell() -> str:
    url = _config()["repository"]["url"]
    return f'''# Runs only in Google Colab: installs the companion library at the book's pinned release.
import os
import sys

if "google.colab" in sys.modules:
    from IPython import get_ipython

    get_ipython().run_line_magic("pip", "install -q 'pedseg @ git+{url}@{_release_tag()}'")
    import torch

    if torch.cuda.is_available():
        os.environ.setdefault("PEDSEG_PROFILE", "tutorial")'''


def _read_notebook(name: str) -> nbformat.NotebookNode:
    path = BOOK / f"{name}.ipynb"
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} is listed in _toc.yml but missing; create it or remove it from the toc")
    return nbformat.read(path, as_version=4)


def _markdown(nb: nbformat.NotebookNode) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _section(text: str, heading: str) -> str | None:
    match = re.search(rf"^{re.escape(heading)}[ \t]*$(.*?)(?=^#{{1,2}} |\Z)", text, re.M | re.S)
    return match.group(1) if match else None


CHAPTERS = _toc_chapters()


def test_toc_lists_every_chapter_and_every_page_exists():
    on_disk = sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb")) + sorted(
        p.stem for p in BOOK.glob("[0-9][0-9]_*.py"))
    missing_from_toc = sorted(set(on_disk) - set(CHAPTERS))
    assert not missing_from_toc, f"chapters in book/ but not in _toc.yml: {missing_from_toc}"
    assert CHAPTERS == sorted(CHAPTERS), f"_toc.yml chapters are out of order: {CHAPTERS}"
    assert CHAPTERS == ["01_data", "02_mask_rcnn", "03_transfer_learning", "04_training", "05_results"], CHAPTERS
    for page in _toc_files():
        if not CHAPTER_RE.match(page):
            assert (ROOT / f"{page}.md").is_file(), f"_toc.yml lists {page} but {page}.md does not exist"


def test_config_names_the_repository_once_and_launches_colab():
    cfg = _config()
    assert cfg["repository"] == {"url": "https://github.com/pedseg/pedseg", "branch": "main", "path_to_book": "."}
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert cfg["execute"]["allow_errors"] is False
    text = (ROOT / "_config.yml").read_text()
    assert text.count("github.com/pedseg/pedseg") == 1, "the repository URL must appear once in _config.yml"
    assert "book/*.py" in cfg["exclude_patterns"], "paired .py sources must not become pages"


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_has_no_outputs(name):
    nb = _read_notebook(name)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"book/{name}.ipynb: cells {dirty} carry outputs or execution counts; clear them"


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_and_py_are_paired_and_in_sync(name):
    py_path = BOOK / f"{name}.py"
    assert py_path.is_file(), f"{py_path.relative_to(ROOT)} missing: the .py is the chapter's source of truth"
    from_py = jupytext.read(py_path)
    from_nb = _read_notebook(name)
    assert "py:percent" in from_py.metadata.get("jupytext", {}).get("formats", ""), \
        f"book/{name}.py: jupytext formats must be 'ipynb,py:percent'"
    assert from_py.metadata.get("kernelspec", {}).get("name") == "python3"
    got = [(c.cell_type, c.source.strip()) for c in from_nb.cells]
    want = [(c.cell_type, c.source.strip()) for c in from_py.cells]
    assert got == want, f"book/{name}.ipynb differs from its .py; run `jupytext --sync book/{name}.py`"


@pytest.mark.parametrize("name", CHAPTERS)
def test_first_code_cell_installs_the_pinned_release_in_colab(name):
    nb = _read_notebook(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"book/{name}.ipynb has no code cell"
    first = code[0]
    assert "colab" in first.metadata.get("tags", []), f"book/{name}.ipynb: first code cell needs the tag 'colab'"
    assert first.source.strip() == _colab_cell(), \
        f"book/{name}.ipynb: first code cell differs from the shared Colab cell (repository url + @{_release_tag()})"
    assert "get_profile()" in code[1].source and "banner()" in code[1].source, \
        f"book/{name}.ipynb: second code cell must print profile.banner()"


@pytest.mark.parametrize("name", CHAPTERS)
def test_first_markdown_cell_has_title_badge_objectives_and_times(name):
    nb = _read_notebook(name)
    assert nb.cells[0].cell_type == "markdown", f"book/{name}.ipynb must open with a markdown cell"
    head = nb.cells[0].source
    number = int(name[:2])
    assert re.match(rf"# Chapter {number}: \S", head), f"book/{name}.ipynb: title must be '# Chapter {number}: ...'"
    owner_repo = _config()["repository"]["url"].removeprefix("https://github.com/")
    badge = (f"[![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/"
             f"{owner_repo}/blob/main/book/{name}.ipynb)")
    assert badge in head, f"book/{name}.ipynb: first cell lacks the badge line {badge}"
    assert re.search(r"^(#+ *Learning objectives|\*\*Learning objectives\*\*)", head, re.M | re.I), \
        f"book/{name}.ipynb: first cell needs a 'Learning objectives' heading or bold line"
    objectives = _section(head.replace("**Learning objectives**", "## Learning objectives"), "## Learning objectives")
    bullets = re.findall(r"^[-*] ", objectives or "", re.M)
    assert 3 <= len(bullets) <= 5, f"book/{name}.ipynb: {len(bullets)} learning objectives; write 3-5 bullets"
    rows = [line.lower() for line in head.splitlines() if line.lstrip().startswith("|")]
    for profile in ("smoke", "cpu", "tutorial"):
        assert any(profile in row for row in rows), f"book/{name}.ipynb: the time table lacks a '{profile}' row"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_ends_with_summary_and_exercises_and_links_the_library(name):
    text = _markdown(_read_notebook(name))
    assert _section(text, "## Summary") is not None, f"book/{name}.ipynb: add a '## Summary' section"
    exercises = _section(text, "## Exercises")
    assert exercises is not None, f"book/{name}.ipynb: add a '## Exercises' section"
    items = re.findall(r"^(?:[-*]|\d+\.) ", exercises, re.M)
    assert 2 <= len(items) <= 4, f"book/{name}.ipynb: {len(items)} exercises; write 2-4 list items"
    assert text.index("## Summary") < text.index("## Exercises"), f"book/{name}.ipynb: Summary comes before Exercises"
    assert ROLE_RE.search(text), f"book/{name}.ipynb: link the library functions used, e.g. {{py:func}}`pedseg_lib...`"


def test_badge_is_a_local_image():
    svg = BOOK / "images" / "colab-badge.svg"
    assert svg.is_file() and svg.read_text().lstrip().startswith("<svg")

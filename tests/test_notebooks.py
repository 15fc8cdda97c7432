"""Static checks of the book's chapters: structure, Colab readiness, jupytext pairing, clean notebooks, learning aids.

Fast (no execution): tests/test_colab.py (Colab-like, outside the checkout) and the book build execute the chapters.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import typing
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
    assert CHAPTERS == ["01_data", "02_mask_rcnn", "03_transfer_learning", "04_training", "05_results",
                        "06_own_data"], CHAPTERS
    for page in _toc_files():
        if not CHAPTER_RE.match(page):
            assert (ROOT / f"{page}.md").is_file(), f"_toc.yml lists {page} but {page}.md does not exist"


def test_config_names_the_repository_once_and_launches_colab(ci_colab):
    cfg = _config()
    rel = ci_colab.release(ROOT)
    assert cfg["repository"] == {"url": rel.repository, "branch": ci_colab.BRANCH, "path_to_book": "."}
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert cfg["execute"]["allow_errors"] is False
    text = (ROOT / "_config.yml").read_text()
    assert text.count(rel.owner_repo) == 1, "the repository URL must appear once in _config.yml"
    assert "book/*.py" in cfg["exclude_patterns"], "paired .py sources must not become pages"


# --- One owner each for the version and the repository address (pyproject.toml); .ci/colab.py writes the rest ------


def test_pins_badges_and_config_agree_with_pyproject(ci_colab):
    assert ci_colab.problems(ROOT) == [], "run `python .ci/colab.py sync`"
    assert ci_colab.problems(ROOT, tag=ci_colab.release(ROOT).tag) == []


def _copy_of_the_book(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "_config.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    for path in [*BOOK.glob("[0-9][0-9]_*.py"), *BOOK.glob("[0-9][0-9]_*.ipynb")]:
        shutil.copy2(path, tmp_path / "book" / path.name)
    return tmp_path


@pytest.mark.parametrize("suffix", ["py", "ipynb"])
def test_a_pin_changed_by_hand_fails_the_check(tmp_path, ci_colab, suffix):
    root = _copy_of_the_book(tmp_path)
    version = ci_colab.release(root).version
    path = root / "book" / f"{CHAPTERS[2]}.{suffix}"
    text = path.read_text()
    assert text.count(f"pedseg=={version}") == 2, "the install line and its message each name the pin"
    path.write_text(text.replace(f"pedseg=={version}", "pedseg==0.0.9"))
    found = ci_colab.problems(root)
    assert len(found) == 1 and found[0].startswith(f"book/{CHAPTERS[2]}.{suffix}: first code cell"), found
    assert "it pins 0.0.9" in found[0] and "python .ci/colab.py sync" in found[0]


def test_a_badge_or_an_address_changed_by_hand_fails_the_check(tmp_path, ci_colab):
    root = _copy_of_the_book(tmp_path)
    rel = ci_colab.release(root)
    path = root / "book" / f"{CHAPTERS[0]}.py"
    path.write_text(path.read_text().replace(f"/{rel.owner_repo}/blob/", "/someone/fork/blob/", 1))
    config = root / "_config.yml"
    config.write_text(config.read_text().replace(rel.repository, "https://github.com/someone/fork"))
    found = ci_colab.problems(root, tag="v0.0.0")
    assert any(f"tag v0.0.0 != v + pyproject.toml's version {rel.version}" in p for p in found), found
    assert any(p.startswith("_config.yml: repository.url https://github.com/someone/fork") for p in found), found
    assert any(p.startswith(f"book/{CHAPTERS[0]}.py: its first markdown cell lacks the badge") for p in found), found
    assert len(found) == 3, found


def test_sync_writes_the_pin_and_the_badges_from_pyproject(tmp_path, ci_colab):
    root = _copy_of_the_book(tmp_path)
    pyproject = root / "pyproject.toml"
    old = ci_colab.release(root)
    pyproject.write_text(pyproject.read_text().replace(f'version = "{old.version}"', 'version = "7.8.9"', 1)
                         .replace(f'Repository = "{old.repository}"', 'Repository = "https://github.com/a/b"', 1))
    rel = ci_colab.release(root)
    assert (rel.version, rel.owner_repo) == ("7.8.9", "a/b")
    assert ci_colab.sync(root) == CHAPTERS
    found = ci_colab.problems(root)
    assert found == [f"_config.yml: repository.url {old.repository} != pyproject.toml's Repository "
                     "https://github.com/a/b"], "sync rewrites the chapters; _config.yml is edited by hand"
    for name in CHAPTERS:
        nb = nbformat.read(root / "book" / f"{name}.ipynb", as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code.source == ci_colab.colab_cell(rel) and "pedseg==7.8.9" in first_code.source
        assert ci_colab.badge(rel, name) in nb.cells[0].source
    assert ci_colab.sync(root) == [], "a second sync changes nothing"


def _colab_import_names(ci_colab) -> set[str]:
    """Top-level modules that the packages of .ci/colab-preinstalled.txt provide (as installed here)."""
    listed = ci_colab.preinstalled()
    return {top for top, dists in importlib.metadata.packages_distributions().items()
            if any(ci_colab.normalized(d) in listed for d in dists)}


def _python_source(source: str) -> str:
    """A code cell's Python: IPython's `!` and `%` lines left out, with the lines they continue onto (`\\`)."""
    kept, continued = [], False
    for line in source.splitlines():
        if continued or line.lstrip().startswith(("!", "%")):
            continued = line.rstrip().endswith("\\")
        else:
            kept.append(line)
    return "\n".join(kept)


def test_chapters_import_only_what_colab_has_or_pedseg_brings(ci_colab):
    # myst-nb, for one, is not on Colab: the chapters glue through pedseg_lib.notebook (issue: Colab-ready chapters).
    allowed = _colab_import_names(ci_colab) | set(sys.stdlib_module_names) | {"pedseg_lib"}
    assert {"torch", "torchvision", "yaml", "PIL", "pycocotools", "IPython", "matplotlib"} <= allowed
    found = {}
    for path in sorted(BOOK.glob("[0-9][0-9]_*.py")):
        for cell in jupytext.read(path).cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(_python_source(cell.source))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(path.name)
    missing = {name: sorted(where) for name, where in found.items() if name not in allowed}
    assert not missing, (f"chapters import modules that a fresh Colab runtime lacks and `pip install pedseg` does not "
                         f"bring: {missing}; use the library, or add the package to pedseg's dependencies")


def test_pedseg_depends_only_on_what_colab_has(ci_colab):
    # So the Colab cell installs pedseg alone, and the Colab-like check can install it with no package index.
    missing = ci_colab.dependencies(ROOT) - ci_colab.preinstalled()
    assert {"torch", "torchvision", "pycocotools"} <= ci_colab.dependencies(ROOT)
    assert not missing, f"pedseg depends on packages Colab does not preinstall: {sorted(missing)}"


def test_the_colab_cell_says_in_one_line_what_to_do_when_pip_fails(tmp_path, ci_colab):
    # Before the first release (here: a version that exists nowhere), the reader sees one line, not pip's errors.
    rel = dataclasses.replace(ci_colab.release(ROOT), version="999.0.0")
    script = tmp_path / "cell.ipy"
    script.write_text("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                      + ci_colab.colab_cell(rel) + "\n")
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "empty"),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "IPYTHONDIR": str(tmp_path / "ipython")}
    done = subprocess.run([sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=NoColor", str(script)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("pip could not install pedseg==999.0.0 (ERROR: No matching distribution found for "
                               "pedseg==999.0.0): run %pip install 'pedseg @ git+https://github.com/"), lines[0]
    assert lines[0].endswith("@main' in a new cell, then the cells below."), lines[0]


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_has_no_outputs(name):
    nb = _read_notebook(name)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"book/{name}.ipynb: cells {dirty} carry outputs or execution counts; clear them"


# Widest code line, in characters: sphinx-book-theme's content column shows about 80 of them and cuts a longer code
# line off at its edge (a scroll bar, no wrapping; issue 20). Markdown wraps; code must be written to fit.
CODE_WIDTH = 80


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_code_line_fits_the_page(name):
    nb = _read_notebook(name)
    wide = [f"cell {i}, line {j}: {len(line)} characters: {line[:60]!r}..."
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for j, line in enumerate(cell.source.splitlines(), start=1) if len(line) > CODE_WIDTH]
    assert not wide, (f"book/{name}.ipynb: {len(wide)} code lines longer than {CODE_WIDTH} characters (rewrap them "
                      f"in book/{name}.py, then `jupytext --sync`): " + "; ".join(wide))


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
def test_first_code_cell_installs_the_pinned_release_in_colab(name, ci_colab):
    nb = _read_notebook(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"book/{name}.ipynb has no code cell"
    first = code[0]
    assert "colab" in first.metadata.get("tags", []), f"book/{name}.ipynb: first code cell needs the tag 'colab'"
    rel = ci_colab.release(ROOT)
    assert first.source.strip() == ci_colab.colab_cell(rel), \
        f"book/{name}.ipynb: first code cell differs from the Colab cell for pedseg {rel.version}; run " \
        "`python .ci/colab.py sync`"
    assert "get_profile()" in code[1].source and "banner()" in code[1].source, \
        f"book/{name}.ipynb: second code cell must print profile.banner()"


@pytest.mark.parametrize("name", CHAPTERS)
def test_first_markdown_cell_has_title_badge_objectives_and_times(name, ci_colab):
    nb = _read_notebook(name)
    assert nb.cells[0].cell_type == "markdown", f"book/{name}.ipynb must open with a markdown cell"
    head = nb.cells[0].source
    number = int(name[:2])
    assert re.match(rf"# Chapter {number}: \S", head), f"book/{name}.ipynb: title must be '# Chapter {number}: ...'"
    badge = ci_colab.badge(ci_colab.release(ROOT), name)
    assert badge in head.splitlines(), f"book/{name}.ipynb: first cell lacks the badge line {badge}"
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


# --- Learning aids: self-check questions, exercise hints and solutions, the glossary ---------------------------------
#
# The format (issue 11) that every chapter follows, checked statically here and in a browser by tests/test_book.py:
#
#   ## Check yourself                       <- before "## Summary"
#
#   :::{dropdown} Why does ... ?            <- 3-5 top-level dropdowns: the title is the question, the body the answer
#   Because ...
#   :::
#
#   ## Exercises
#
#   1. **Title.** *Needs: CPU, about 10 minutes.* Task ...     <- 2-4 numbered items; "Needs" names CPU or GPU
#
#      :::{dropdown} Hint                   <- indented under the item (3 spaces), a hint first ...
#      ...
#      :::
#
#      :::{dropdown} Solution               <- ... then a worked solution with code in a fenced block (not executed)
#      ```python
#      ...
#      ```
#      :::

# The book's glossary terms: book/glossary.md defines exactly these, and {term} roles may name only these.
GLOSSARY_TERMS = (
    "instance segmentation", "semantic segmentation", "bounding box", "COCO", "Mask R-CNN", "backbone", "ResNet-50",
    "FPN", "anchor", "RPN", "proposal", "RoIAlign", "RoIPool", "NMS", "box head", "mask head", "logit", "soft mask",
    "BatchNorm", "FrozenBatchNorm", "transfer learning", "fine-tuning", "learning rate", "warm-up",
    "learning-rate schedule", "SGD", "momentum", "weight decay", "gradient clipping", "AMP", "DDP",
    "data augmentation", "epoch", "training split", "validation split", "test split", "overfitting", "IoU",
    "precision", "recall", "score threshold", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR", "RLE",
    "early stopping", "category id", "iscrowd", "polygon",
)
CHECK_YOURSELF = "## Check yourself"
QUESTIONS = (3, 5)
DROPDOWN_OPEN_RE = re.compile(r"^(?P<indent>[ \t]*):::\{dropdown\}[ \t]*(?P<title>.*?)[ \t]*$")
COLON_CLOSE_RE = re.compile(r"^(?P<indent>[ \t]*):::[ \t]*$")
CODE_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
ITEM_RE = re.compile(r"^(?P<marker>\d+\.)[ \t]", re.M)
NEEDS_RE = re.compile(r"(?<!\*)\*Needs:\s+(?P<what>[^*]+?)\*(?!\*)")
TERM_ROLE_RE = re.compile(r"\{term\}`(?P<body>[^`]+)`")
# Shelling out and reading library source have no place in a chapter (a command line is shown as a `!` shell cell).
FORBIDDEN_RE = re.compile(r"getsource|\bsubprocess\b|\b(?:import|from)[ \t]+inspect\b|\bos\.(?:system|popen)\b")


class Dropdown(typing.NamedTuple):
    indent: int
    title: str
    body: str | None  # None: never closed
    line: int  # 1-based, within the text checked


def _dropdowns(text: str) -> list[Dropdown]:
    """The ``:::{dropdown}`` blocks of MyST text, in order (code fences are skipped; dropdowns do not nest)."""
    found: list[Dropdown] = []
    lines = text.splitlines()
    open_at: tuple[int, str, int] | None = None  # (indent, title, index of the opening line)
    code_fence: str | None = None
    for i, line in enumerate(lines):
        fence = CODE_FENCE_RE.match(line)
        if code_fence is not None:
            if fence and fence.group(1)[0] == code_fence[0] and len(fence.group(1)) >= len(code_fence) \
                    and not line.strip()[len(fence.group(1)):].strip():
                code_fence = None
            continue
        if fence:
            code_fence = fence.group(1)
            continue
        if open_at is None and (m := DROPDOWN_OPEN_RE.match(line)):
            open_at = (len(m.group("indent").expandtabs(4)), m.group("title"), i)
        elif open_at is not None and (m := COLON_CLOSE_RE.match(line)) \
                and len(m.group("indent").expandtabs(4)) == open_at[0]:
            indent, title, start = open_at
            found.append(Dropdown(indent, title, "\n".join(lines[start + 1:i]).strip(), start + 1))
            open_at = None
    if open_at is not None:
        found.append(Dropdown(open_at[0], open_at[1], None, open_at[2] + 1))
    return found


def check_yourself_problems(text: str) -> list[str]:
    """What the chapter's markdown lacks for the '## Check yourself' format (empty when it is right)."""
    section = _section(text, CHECK_YOURSELF)
    if section is None:
        return [f"add a '{CHECK_YOURSELF}' section before '## Summary' with {QUESTIONS[0]}-{QUESTIONS[1]} "
                "questions, each a top-level ':::{dropdown} <question>?' whose body is the answer"]
    problems = []
    summary = re.search(r"^## Summary[ \t]*$", text, re.M)
    if summary is None or summary.start() < re.search(rf"^{CHECK_YOURSELF}[ \t]*$", text, re.M).start():
        problems.append(f"put '{CHECK_YOURSELF}' before '## Summary'")
    questions = [d for d in _dropdowns(section) if d.indent == 0]
    if not QUESTIONS[0] <= len(questions) <= QUESTIONS[1]:
        problems.append(f"'{CHECK_YOURSELF}' has {len(questions)} top-level ':::{{dropdown}}' questions; "
                        f"write {QUESTIONS[0]}-{QUESTIONS[1]}")
    for q in questions:
        if q.body is None:
            problems.append(f"close the question dropdown {q.title!r} with a ':::' line at the same indentation")
        elif not q.body:
            problems.append(f"question {q.title!r} has no answer in its dropdown body")
        if not q.title.endswith("?"):
            problems.append(f"'{CHECK_YOURSELF}' dropdown titles are the questions: end {q.title!r} with '?'")
    return problems


def _exercise_items(section: str) -> list[tuple[str, str]]:
    """(marker, text) of each top-level numbered item of an '## Exercises' section."""
    starts = list(ITEM_RE.finditer(section))
    return [(m.group("marker"), section[m.start():starts[k + 1].start() if k + 1 < len(starts) else len(section)])
            for k, m in enumerate(starts)]


def exercise_problems(text: str) -> list[str]:
    """What the chapter's '## Exercises' items lack: the *Needs* line, the indented Hint and Solution dropdowns."""
    section = _section(text, "## Exercises")
    if section is None:
        return ["add a '## Exercises' section"]
    items = _exercise_items(section)
    if not items:
        return ["number the exercises ('1. ...'): each is a top-level numbered item"]
    problems = []
    for marker, item in items:
        name = f"exercise {marker}"
        first_paragraph = re.split(r"\n[ \t]*\n", item, maxsplit=1)[0]
        needs = NEEDS_RE.search(first_paragraph)
        if needs is None:
            problems.append(f"{name}: start it with what it needs in italics, e.g. '*Needs: CPU, about 10 minutes.*'")
        elif not re.search(r"\b(CPU|GPU)s?\b", needs.group("what")):
            problems.append(f"{name}: '*Needs: {needs.group('what')}*' must name CPU or GPU")
        body = item.split("\n", 1)[1] if "\n" in item else ""
        dropdowns = _dropdowns(body)
        width = len(marker) + 1
        misplaced = [d.title for d in dropdowns if d.indent != width]
        if misplaced:
            problems.append(f"{name}: indent its dropdowns {misplaced} by {width} spaces, under the item")
        titles = [d.title for d in dropdowns]
        hint = next((k for k, t in enumerate(titles) if t.startswith("Hint")), None)
        solution = next((k for k, t in enumerate(titles) if t.startswith("Solution")), None)
        if hint is None:
            problems.append(f"{name}: add an indented ':::{{dropdown}} Hint' before the solution")
        if solution is None:
            problems.append(f"{name}: add an indented ':::{{dropdown}} Solution' with the worked solution")
        if hint is not None and solution is not None and solution < hint:
            problems.append(f"{name}: put the Hint dropdown before the Solution dropdown")
        for d in dropdowns:
            if d.body is None:
                problems.append(f"{name}: close the dropdown {d.title!r} with a ':::' line at its indentation")
        if solution is not None and dropdowns[solution].body is not None \
                and not re.search(r"^[ \t]*(`{3,}|~{3,})", dropdowns[solution].body, re.M):
            problems.append(f"{name}: show the solution's code in a fenced block (```python ... ```)")
    return problems


def _term_target(body: str) -> str:
    """The glossary term a {term} role points to: 'text <Term>' names Term; whitespace collapses as in Sphinx."""
    m = re.fullmatch(r"(?s).*?<(?P<target>[^<>]+)>\s*", body)
    return " ".join((m.group("target") if m else body).split())


def _glossary_entries(text: str) -> list[tuple[list[str], str]]:
    """(terms, definition) of each entry of the ```{glossary} block in book/glossary.md."""
    block = re.search(r"^(?P<fence>`{3,}|:{3,})\{glossary\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", text, re.M | re.S)
    if block is None:
        return []
    entries: list[tuple[list[str], str]] = []
    terms: list[str] = []
    definition: list[str] = []
    for line in block.group("body").splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            definition.append(line.strip())
            continue
        if line.startswith(":") and not entries and not terms:  # a directive option such as :sorted:
            continue
        if definition:
            entries.append((terms, " ".join(definition)))
            terms, definition = [], []
        terms.append(re.split(r" +: +", line.strip())[0])  # Sphinx: "term : classifier"
    if terms:
        entries.append((terms, " ".join(definition)))
    return entries


def _glossary_terms() -> list[str]:
    return [term for terms, _ in _glossary_entries((BOOK / "glossary.md").read_text()) for term in terms]


def _book_markdown_sources() -> dict[str, str]:
    """The markdown of every page source: book/*.md as written, and the markdown cells of book/*.py."""
    sources = {f"book/{p.name}": p.read_text() for p in sorted(BOOK.glob("*.md"))}
    for path in sorted(BOOK.glob("*.py")):
        nb = jupytext.read(path)
        sources[f"book/{path.name}"] = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return sources


def _one_line(name: str, problems: list[str], shown: int = 3) -> str:
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return f"book/{name}.py: " + "; ".join(problems[:shown]) + more


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_check_yourself_questions_before_the_summary(name):
    problems = check_yourself_problems(_markdown(_read_notebook(name)))
    assert not problems, _one_line(name, problems)


@pytest.mark.parametrize("name", CHAPTERS)
def test_exercises_say_what_they_need_and_fold_a_hint_and_a_solution(name):
    problems = exercise_problems(_markdown(_read_notebook(name)))
    assert not problems, _one_line(name, problems)


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_links_glossary_terms(name):
    text = _markdown(_read_notebook(name))
    assert TERM_ROLE_RE.search(text), \
        f"book/{name}.py: link the first use of each glossary term in the prose, e.g. {{term}}`IoU`"


def test_no_chapter_shells_out_or_reads_library_source():
    hits = [f"book/{path.name}:{n}: {line.strip()}"
            for path in sorted(BOOK.glob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if FORBIDDEN_RE.search(line)]
    assert not hits, ("chapters must not use inspect/getsource, subprocess or os.system (show a command line as a "
                      "`!{sys.executable} -m ...` shell cell or as markdown): " + " | ".join(hits))


def test_glossary_defines_exactly_the_book_terms():
    path = BOOK / "glossary.md"
    assert path.is_file(), "book/glossary.md is missing: write the glossary page ((glossary)= label, ```{glossary})"
    text = path.read_text()
    assert re.search(r"^\(glossary\)=[ \t]*$", text, re.M), "book/glossary.md: add the label line '(glossary)='"
    entries = _glossary_entries(text)
    assert entries, "book/glossary.md: no ```{glossary} block"
    defined = [term for terms, _ in entries for term in terms]
    missing = [t for t in GLOSSARY_TERMS if t not in defined]
    extra = [t for t in defined if t not in GLOSSARY_TERMS]
    duplicated = sorted({t for t in defined if defined.count(t) > 1})
    assert not missing, f"book/glossary.md: define the terms {missing}"
    assert not extra, f"book/glossary.md: terms {extra} are not in the book's list (GLOSSARY_TERMS in this file)"
    assert not duplicated, f"book/glossary.md: terms defined twice: {duplicated}"
    undefined = [terms for terms, definition in entries if len(definition.split()) < 10]
    assert not undefined, f"book/glossary.md: give {undefined} a definition of 2-5 sentences"


def test_every_term_role_names_a_glossary_term():
    # Sphinx resolves {term} exactly, then case-insensitively (StandardDomain._resolve_term_xref); an unknown term
    # is a build warning, which -W turns into a failed build. Checked here so the failure names the page.
    known = {t.lower() for t in _glossary_terms()}
    unknown = [f"{page}: {{term}}`{m.group('body')}`"
               for page, text in _book_markdown_sources().items()
               for m in TERM_ROLE_RE.finditer(text) if _term_target(m.group("body")).lower() not in known]
    assert not unknown, "{term} roles that name no glossary term (see book/glossary.md): " + " | ".join(unknown)


def test_concordance_names_existing_chapter_sections():
    path = BOOK / "concordance.md"
    assert path.is_file(), "book/concordance.md is missing: map the official tutorial's steps to the chapters"
    text = path.read_text()
    assert re.search(r"^\(concordance\)=[ \t]*$", text, re.M), "book/concordance.md: add the label '(concordance)='"
    headings = {" ".join(h.split()) for page, source in _book_markdown_sources().items() if CHAPTER_RE.match(
        page.removesuffix(".py")) for h in re.findall(r"^##[ \t]+(.+?)[ \t]*$", source, re.M)}
    cited = [" ".join(s.split()) for s in re.findall(r"§\s*\*([^*]+)\*", text)]
    stale = sorted({s for s in cited if s not in headings})
    assert cited, "book/concordance.md cites no chapter section ('§ *Section title*')"
    assert not stale, (f"book/concordance.md cites sections no chapter has (renamed?): {stale}; "
                       "update the '§ *...*' names to the chapters' '## ' headings")


# Fixture: a chapter written in the documented format, as a jupytext percent file, including a shell cell.
_GOOD_CHAPTER = '''# %% [markdown]
# # Chapter 9: Fixture
#
# Text that links {term}`IoU` and {term}`a soft mask <Soft Mask>`.

# %%
import sys

# %%
# !{sys.executable} -m pedseg_lib train --help

# %% [markdown]
# ## Check yourself
#
# :::{dropdown} Why is the test split never used for decisions?
# Because a choice tuned on it makes its score optimistic.
# :::
#
# :::{dropdown} What does AP50 measure?
# AP at IoU 0.5.
# :::
#
# :::{dropdown} Which loss trains the mask head?
# Binary cross-entropy.
# :::
#
# ## Summary
#
# - One point.
#
# ## Exercises
#
# 1. **Resume a run.** *Needs: CPU, about 10 minutes.* Stop after one epoch, then resume.
#
#    :::{dropdown} Hint
#    Look at `pedseg resume`.
#    :::
#
#    :::{dropdown} Solution
#    ```python
#    # a comment at column 0 of the code: not a heading
#    from pedseg_lib import engine
#    ```
#    The run continues from `last.pt`.
#    :::
#
# 2. **Longer training.** *Needs: a GPU, about 20
#    minutes.* Train for ten epochs.
#
#    :::{dropdown} Hint
#    Use `--set epochs=10`.
#    :::
#
#    :::{dropdown} Solution
#    ```bash
#    pedseg train --preset tutorial --set epochs=10
#    ```
#    :::
'''


def _fixture_markdown(tmp_path: Path, source: str) -> str:
    """The markdown a chapter written as `source` yields after `jupytext --sync` (the .py -> .ipynb path CI uses)."""
    py = tmp_path / "09_fixture.py"
    py.write_text(source)
    nb = jupytext.read(py)
    jupytext.write(nb, tmp_path / "09_fixture.ipynb")
    return _markdown(nbformat.read(tmp_path / "09_fixture.ipynb", as_version=4))


def test_learning_aid_checks_accept_the_documented_format(tmp_path):
    text = _fixture_markdown(tmp_path, _GOOD_CHAPTER)
    assert check_yourself_problems(text) == []
    assert exercise_problems(text) == []
    assert [_term_target(m.group("body")) for m in TERM_ROLE_RE.finditer(text)] == ["IoU", "Soft Mask"]
    assert {"iou", "soft mask"} <= {t.lower() for t in GLOSSARY_TERMS}
    nb = nbformat.read(tmp_path / "09_fixture.ipynb", as_version=4)
    shell = [c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("!")]
    assert shell == ["!{sys.executable} -m pedseg_lib train --help"], "jupytext must turn '# !cmd' into a shell cell"
    assert not FORBIDDEN_RE.search(_GOOD_CHAPTER)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("# ## Check yourself\n", "# ## Self-check\n", "add a '## Check yourself' section"),
    (("# :::{dropdown} Which loss trains the mask head?\n# Binary cross-entropy.\n# :::\n"), "", "has 2 top-level"),
    ("What does AP50 measure?", "What AP50 measures", "end 'What AP50 measures' with '?'"),
    ("# ## Summary\n#\n# - One point.\n#\n", "", "before '## Summary'"),
    ("*Needs: CPU, about 10 minutes.* ", "", "exercise 1.: start it with what it needs"),
    ("*Needs: a GPU, about 20\n#    minutes.*", "*Needs: about 20 minutes.*", "must name CPU or GPU"),
    ("#    :::{dropdown} Hint\n#    Look at", "# :::{dropdown} Hint\n#    Look at", "indent its dropdowns ['Hint']"),
    ("#    :::{dropdown} Hint\n#    Use `--set epochs=10`.\n#    :::\n#\n", "", "exercise 2.: add an indented"),
    ("#    ```bash\n#    pedseg train --preset tutorial --set epochs=10\n#    ```\n", "#    Train longer.\n",
     "exercise 2.: show the solution's code in a fenced block"),
])
def test_learning_aid_checks_name_what_is_missing(tmp_path, old, new, expected):
    assert _GOOD_CHAPTER.count(old) == 1, old
    text = _fixture_markdown(tmp_path, _GOOD_CHAPTER.replace(old, new))
    problems = check_yourself_problems(text) + exercise_problems(text)
    assert any(expected in p for p in problems), problems


def test_glossary_parser_reads_several_terms_per_entry():
    text = "(glossary)=\n# Glossary\n\n```{glossary}\n:sorted:\n\nAP50\nAP75\n  AP at one IoU.\n\nRLE : format\n" \
           "  COCO's run-length encoding.\n```\n"
    assert _glossary_entries(text) == [(["AP50", "AP75"], "AP at one IoU."), (["RLE"], "COCO's run-length encoding.")]

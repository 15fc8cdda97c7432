"""The chapters as Colab runs them: their pinned install line, and a Colab-like check that executes them.

One owner each: the version is pyproject.toml's ``[project] version`` and the repository address its
``[project.urls] Repository``. Every chapter's first code cell (the Colab cell) and its "Open in Colab" badge are
written from them by ``sync``; ``check`` says where a chapter, ``_config.yml`` or a release tag disagrees.

``run`` is the Colab-like check. It builds pedseg's wheel from the working tree, makes a virtual environment
holding only what Colab preinstalls (``.ci/colab-preinstalled.txt``, with its source and date), and executes each
chapter notebook alone, copied into an empty folder outside the checkout, in that environment's kernel. The
chapter's own first cell does the installing: Colab is imitated by a stub ``google.colab`` module imported at
kernel start, and pip finds the freshly built wheel (``PIP_FIND_LINKS``, no index) as Colab finds the release on
PyPI.
pedseg is uninstalled before each chapter, so every chapter installs it itself.

    python .ci/colab.py sync                  # rewrite the Colab cells and badges from pyproject.toml
    python .ci/colab.py check [--tag v0.1.0]  # exit 1 when anything disagrees with pyproject.toml
    python .ci/colab.py run [CHAPTER ...]     # the Colab-like check (smoke profile), a table and --json

The Colab-like environment lives in ``PEDSEG_COLAB_VENV`` (default ``~/.cache/pedseg/colab-venv``); it is made on
first use (a few minutes: torch) and made again whenever .ci/colab-preinstalled.txt changes.

``run`` needs nothing but the standard library in the calling Python (it runs nbclient inside the environment it
makes). Standard library only in this whole file, so that tests, the release workflow and CI can all use it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PREINSTALLED = ROOT / ".ci" / "colab-preinstalled.txt"
COLAB_URL = "https://colab.research.google.com/github"
BRANCH = "main"  # the branch the badges open (and _config.yml's repository.branch)
INSTALLED_MARK = "pedseg-installed"
DEFAULT_VENV = Path(os.environ.get("PEDSEG_COLAB_VENV")
                    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pedseg" / "colab-venv")
CELL_TIMEOUT_S = 600  # _config.yml execute.timeout, as the book build uses
# Variables of this project or of the calling environment that a Colab runtime does not have.
DROPPED_ENV = ("PEDSEG_DATA", "PEDSEG_RUNS", "PEDSEG_PROFILE", "PEDSEG_CELL_TIMES", "MPLBACKEND", "PYTHONPATH",
               "VIRTUAL_ENV", "IPYTHONDIR", "JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "PYTHONHOME")


# --- the owners: pyproject.toml ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    """What the chapters pin, read from pyproject.toml.

    Attributes:
        version: ``[project] version``, e.g. ``0.1.0``.
        repository: ``[project.urls] Repository``, e.g. ``https://github.com/pedseg/pedseg``.
    """

    version: str
    repository: str

    @property
    def tag(self) -> str:
        """The git tag that releases this version: ``v`` + version."""
        return f"v{self.version}"

    @property
    def owner_repo(self) -> str:
        """``owner/name`` of the GitHub repository."""
        return self.repository.removeprefix("https://github.com/").strip("/")


def release(root: Path = ROOT) -> Release:
    """The version and repository address that pyproject.toml holds."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return Release(version=project["version"], repository=project["urls"]["Repository"])


def colab_cell(rel: Release) -> str:
    """The first code cell of every chapter: in Colab only, install the pinned release; a GPU picks ``tutorial``.

    pip's output is captured: the reader sees nothing when the install works, and one line saying what to do when
    it does not (before the first release, or without network), never pip's own error output.
    """
    return f'''# Runs only in Google Colab: installs the companion library at the release
# this book pins, pedseg {rel.version}.
import os
import sys

if "google.colab" in sys.modules:
    from IPython import get_ipython

    pip_log = get_ipython().getoutput(
        f"{{sys.executable}} -m pip install -q pedseg=={rel.version}"
        " 2>&1 && echo {INSTALLED_MARK}"
    )
    if pip_log[-1:] != ["{INSTALLED_MARK}"]:
        reason = pip_log[-1] if pip_log else "no output"
        print(
            f"pip could not install pedseg=={rel.version} ({{reason}}): run "
            "%pip install 'pedseg @ git+{rel.repository}@{BRANCH}'"
            " in a new cell, then the cells below."
        )
    import torch

    if torch.cuda.is_available():
        os.environ.setdefault("PEDSEG_PROFILE", "tutorial")'''


def badge(rel: Release, name: str) -> str:
    """The "Open in Colab" badge line of chapter ``name`` (e.g. ``01_data``)."""
    return (f"[![Open In Colab](images/colab-badge.svg)]({COLAB_URL}/{rel.owner_repo}/blob/{BRANCH}/book/"
            f"{name}.ipynb)")


BADGE_RE = re.compile(r"^# \[!\[Open In Colab\]\(images/colab-badge\.svg\)\]\([^)]*\)$", re.M)  # in a .py


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def preinstalled() -> set[str]:
    """The (normalized) distribution names of .ci/colab-preinstalled.txt."""
    return {normalized(re.split(r"[=<>!~@ ;\[]", line)[0]) for line in PREINSTALLED.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def dependencies(root: Path = ROOT) -> set[str]:
    """The (normalized) distribution names pedseg depends on, from pyproject.toml."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {normalized(re.split(r"[=<>!~@ ;\[]", dep)[0]) for dep in project["dependencies"]}


def chapters(root: Path = ROOT) -> list[str]:
    """The chapter names (``NN_name``) that have a notebook in book/, in order."""
    return sorted(p.stem for p in (root / "book").glob("[0-9][0-9]_*.ipynb"))


# --- sync and check -----------------------------------------------------------------------------------------------

def _py_cells(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the cells of a jupytext percent file (each from its ``# %%`` line)."""
    starts = [m.start() for m in re.finditer(r"^# %%", text, re.M)]
    return [(s, starts[k + 1] if k + 1 < len(starts) else len(text)) for k, s in enumerate(starts)]


def _py_sources(text: str) -> tuple[str, str]:
    """The first markdown cell's and the first code cell's text (without their ``# %%`` lines) of a percent file."""
    markdown = code = None
    for start, end in _py_cells(text):
        header, _, body = text[start:end].partition("\n")
        if "[markdown]" in header and markdown is None:
            markdown = body
        elif "[markdown]" not in header and code is None:
            code = body
    return markdown or "", (code or "").strip()


def problems(root: Path = ROOT, tag: str | None = None) -> list[str]:
    """Everything that disagrees with pyproject.toml's version and repository (empty when all agree).

    Args:
        root: the checkout.
        tag: a release tag to check as well (``v`` + version), as the release workflow does.
    """
    rel = release(root)
    found = []
    if tag is not None and tag != rel.tag:
        found.append(f"tag {tag} != v + pyproject.toml's version {rel.version}: bump the version or tag {rel.tag}")
    config = (root / "_config.yml").read_text(encoding="utf-8")
    url = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", config, re.M)
    if url is None or url.group(1) != rel.repository:
        found.append(f"_config.yml: repository.url {url.group(1) if url else None} != pyproject.toml's "
                     f"Repository {rel.repository}")
    cell = colab_cell(rel)
    fix = "run `python .ci/colab.py sync`"
    for name in chapters(root):
        py = root / "book" / f"{name}.py"
        markdown, code = _py_sources(py.read_text(encoding="utf-8")) if py.is_file() else ("", "")
        nb = json.loads((root / "book" / f"{name}.ipynb").read_text(encoding="utf-8"))
        cells = nb.get("cells", [])
        nb_code = next(("".join(c["source"]) for c in cells if c["cell_type"] == "code"), "")
        nb_markdown = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")
        for where, source in ((f"book/{name}.py", code), (f"book/{name}.ipynb", nb_code)):
            if source.strip() != cell:
                found.append(f"{where}: first code cell is not the Colab cell for pedseg {rel.version} "
                             f"({_pin(source)}): {fix}")
        for where, lines in ((f"book/{name}.py", [line.removeprefix("# ") for line in markdown.splitlines()]),
                             (f"book/{name}.ipynb", nb_markdown.splitlines())):
            if badge(rel, name) not in lines:
                found.append(f"{where}: its first markdown cell lacks the badge {badge(rel, name)}: {fix}")
    return found


def _pin(source: str) -> str:
    match = re.search(r"pedseg==([\w.+-]+)|pedseg @ \S+@([\w.+-]+)", source)
    return f"it pins {match.group(1) or match.group(2)}" if match else "it pins no version"


def sync(root: Path = ROOT) -> list[str]:
    """Write every chapter's Colab cell and badge from pyproject.toml (the .py, then its .ipynb via jupytext).

    Returns:
        The chapters whose .py changed.
    """
    rel = release(root)
    changed = []
    for name in chapters(root):
        py = root / "book" / f"{name}.py"
        text = py.read_text(encoding="utf-8")
        line = f"# {badge(rel, name)}"
        new = BADGE_RE.sub(lambda _, line=line: line, text, count=1)
        for start, end in _py_cells(new):
            header = new[start:end].partition("\n")[0]
            if "[markdown]" not in header:
                tail = "\n\n" if end < len(new) else "\n"
                new = new[:start] + header + "\n" + colab_cell(rel) + tail + new[end:]
                break
        if new != text:
            py.write_text(new, encoding="utf-8")
            changed.append(name)
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", str(py)], check=True)
    return changed


# --- the Colab-like check -----------------------------------------------------------------------------------------

def build_wheel(python: Path, out: Path, root: Path = ROOT) -> Path:
    """pedseg's wheel, built from the files git knows (tracked, or untracked and not ignored) in a clean copy."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    source = out / "source"
    for name in filter(None, listed):
        if (root / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, source / name)
    dist = out / "dist"
    subprocess.run([str(python), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(source)], check=True)
    wheels = sorted(dist.glob("pedseg-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"colab: expected one pedseg wheel in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def colab_env(venv: Path = DEFAULT_VENV) -> Path:
    """The Colab-like environment's Python: made from .ci/colab-preinstalled.txt, rebuilt when the list changes."""
    stamp = venv / f".colab-{hashlib.sha256(PREINSTALLED.read_bytes()).hexdigest()[:16]}"
    python = venv / "bin" / "python"
    if not stamp.is_file():
        if venv.exists():
            shutil.rmtree(venv)
        print(f"colab: making {venv} from {PREINSTALLED.relative_to(ROOT)} (first run: minutes)", flush=True)
        base = os.environ.get("PYTHON") or getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PREINSTALLED)], check=True)
        stamp.touch()
    return python


STUB_STARTUP = "import google.colab  # what a Colab runtime has imported before the first cell\n"


def _stub(folder: Path) -> tuple[Path, Path]:
    """A ``google.colab`` stub package and an IPython profile that imports it at kernel start."""
    package = folder / "stub" / "google" / "colab"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab: only its presence matters."""\n')
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text(STUB_STARTUP)
    return folder / "stub", folder / "ipython"


# Runs inside the Colab-like environment (nbclient is on Colab's list): executes one notebook in its own kernel,
# in the notebook's folder, and prints one JSON line: per-cell seconds, and the failing cell with its error.
EXECUTOR = r'''
import json, sys, time
from datetime import datetime
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path, timeout = sys.argv[1], int(sys.argv[2])
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}})
tic = time.perf_counter()
error = None
try:
    client.execute()
except CellExecutionError as exc:
    error = str(exc)
except Exception as exc:  # a kernel that died or timed out
    error = f"{type(exc).__name__}: {exc}"
seconds = []
for cell in nb.cells:
    run = cell.get("metadata", {}).get("execution", {})
    if cell.cell_type == "code" and "iopub.execute_input" in run and "shell.execute_reply" in run:
        start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in
                      ("iopub.execute_input", "shell.execute_reply"))
        seconds.append(round((end - start).total_seconds(), 2))
first = next((c for c in nb.cells if c.cell_type == "code"), None)
printed = "".join(o.get("text", "") for o in (first or {}).get("outputs", []) if o.get("output_type") == "stream")
nbformat.write(nb, path)
print(json.dumps({"seconds": round(time.perf_counter() - tic, 1), "cell_seconds": seconds, "error": error,
                  "first_cell_output": printed}))
'''


@dataclass
class Setup:
    """What every chapter of one Colab-like run shares."""

    python: Path  # the Colab-like environment's Python
    dist: Path  # the folder holding the freshly built wheel
    wheel: Path
    work: Path  # the run's temporary folder (outside the checkout)
    stub: Path
    ipython: Path


def prepare(work: Path | None = None, venv: Path = DEFAULT_VENV) -> Setup:
    """Make the Colab-like environment and build the wheel; nothing of pedseg is installed yet."""
    work = Path(work or tempfile.mkdtemp(prefix="pedseg-colab-"))
    python = colab_env(venv)
    wheel = build_wheel(python, work)
    rel = release()
    if not wheel.name.startswith(f"pedseg-{rel.version}-"):
        raise SystemExit(f"colab: built {wheel.name}, but the chapters pin pedseg {rel.version}")
    stub, ipython = _stub(work)
    return Setup(python=python, dist=wheel.parent, wheel=wheel, work=work, stub=stub, ipython=ipython)


def _colab_environ(setup: Setup, folder: Path, profile: str, environ: Mapping[str, str] | None = None
                   ) -> dict[str, str]:
    base = os.environ if environ is None else environ
    env = {k: v for k, v in base.items() if k not in DROPPED_ENV and not k.startswith("PEDSEG_")}
    env.update(PATH=f"{setup.python.parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(setup.stub),
               IPYTHONDIR=str(setup.ipython), XDG_CACHE_HOME=str(folder / ".cache"), PEDSEG_PROFILE=profile,
               PYTHONUNBUFFERED="1",
               # pip sees the built wheel and nothing else: no index, no configuration of this machine. Every
               # dependency of pedseg is on Colab's list (tested), so the cell installs pedseg alone, as in Colab.
               PIP_FIND_LINKS=str(setup.dist), PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull,
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def run_chapter(setup: Setup, name: str, profile: str = "smoke", timeout: int = CELL_TIMEOUT_S,
                environ: Mapping[str, str] | None = None) -> dict:
    """Execute ``book/<name>.ipynb`` alone in an empty folder, Colab-like; returns its record.

    The record holds ``seconds``, ``cell_seconds``, ``error`` (None when every cell ran), ``installed`` (the
    pedseg version the chapter's first cell installed) and ``first_cell_output`` (what that cell printed).
    ``environ`` is the environment the kernel's is derived from (default: this process's, read now).
    """
    subprocess.run([str(setup.python), "-m", "pip", "uninstall", "-q", "-y", "pedseg"], check=False,
                   capture_output=True)
    folder = setup.work / name
    folder.mkdir(parents=True)
    notebook = folder / f"{name}.ipynb"
    shutil.copy2(BOOK / f"{name}.ipynb", notebook)
    env = _colab_environ(setup, folder, profile, environ)
    done = subprocess.run([str(setup.python), "-c", EXECUTOR, str(notebook), str(timeout), str(folder)], cwd=folder,
                          env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    try:
        record = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        record = {"seconds": None, "cell_seconds": [], "first_cell_output": "",
                  "error": f"the executor failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"}
    shown = subprocess.run([str(setup.python), "-m", "pip", "show", "pedseg"], capture_output=True, text=True).stdout
    version = re.search(r"^Version: (\S+)", shown, re.M)
    record.update(name=name, profile=profile, folder=str(folder), installed=version.group(1) if version else None)
    return record


def _table(records: list[dict]) -> str:
    rows = [("chapter", "seconds", "cells", "slowest cell s", "installed", "result")]
    for r in records:
        rows.append((r["name"], f"{r['seconds']:.0f}" if r["seconds"] is not None else "-",
                     str(len(r["cell_seconds"])), f"{max(r['cell_seconds'], default=0):.1f}", str(r["installed"]),
                     "ok" if r["error"] is None else "FAILED: " + _last_error_line(r["error"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _last_error_line(error: str) -> str:
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sync", help="write every chapter's Colab cell and badge from pyproject.toml")
    check = sub.add_parser("check", help="exit 1 when a chapter, _config.yml or --tag disagrees with pyproject.toml")
    check.add_argument("--tag", help="a release tag that must equal v + version (the release workflow passes it)")
    run = sub.add_parser("run", help="execute chapters Colab-like: alone, outside the checkout, only the cell's install")
    run.add_argument("chapters", nargs="*", help="chapter names such as 01_data (default: every chapter)")
    run.add_argument("--profile", default="smoke", help="PEDSEG_PROFILE inside the kernels (default: smoke)")
    run.add_argument("--json", type=Path, help="also write the records to this file")
    run.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the Colab-like environment (default {DEFAULT_VENV})")
    args = parser.parse_args(argv)

    if args.command == "sync":
        changed = sync()
        print(f"colab: {len(changed)} chapter(s) rewritten from pyproject.toml: {', '.join(changed) or 'none'}")
        return 0
    if args.command == "check":
        found = problems(tag=args.tag)
        for line in found:
            print(f"colab: {line}", file=sys.stderr)
        if not found:
            rel = release()
            print(f"colab: every chapter pins pedseg {rel.version} and opens {rel.repository} ({len(chapters())} "
                  "chapters)")
        return 1 if found else 0
    names = args.chapters or chapters()
    unknown = sorted(set(names) - set(chapters()))
    if unknown:
        parser.error(f"no such chapter: {', '.join(unknown)} (chapters: {', '.join(chapters())})")
    setup = prepare(venv=args.venv)
    print(f"colab: wheel {setup.wheel.name}; environment {setup.python.parent.parent}; folders under {setup.work}",
          flush=True)
    records = []
    for name in names:
        records.append(run_chapter(setup, name, args.profile))
        print(f"colab: {name}: {'ok' if records[-1]['error'] is None else 'FAILED'} in {records[-1]['seconds']} s",
              flush=True)
    print(_table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    for record in records:
        if record["error"]:
            print(f"--- {record['name']}\n{record['error'][-3000:]}", file=sys.stderr)
    return 1 if any(r["error"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The book build knows the run profile (_ext/pedseg_book.py), checked on tiny books built in a tmp folder.

Each book is built with the real ``jupyter-book build -W -n --keep-going`` (as .ci/book does) and the execute and
sphinx settings of the real _config.yml. Its notebooks only import pedseg_lib.profiles and print the banner (no
data, no weights: PEDSEG_DATA and TORCH_HOME point at empty tmp folders), and append a line to a counter file so
that a test can tell whether a build executed them or took them from the execution cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 300

pytestmark = pytest.mark.timeout(6 * BUILD_TIMEOUT_S)

CHAPTER = """\
import os
from pedseg_lib.profiles import get_profile

profile = get_profile()
print(profile.banner())
with open(os.environ["PEDSEG_TEST_COUNTER"], "a") as counter:
    counter.write("{name}\\n")
"""
# A chapter that overrides the profile it was given, as the Colab cell does inside Colab.
FORCED = """\
import os
os.environ["PEDSEG_PROFILE"] = "cpu"
from pedseg_lib.profiles import get_profile

print(get_profile().banner())
with open(os.environ["PEDSEG_TEST_COUNTER"], "a") as counter:
    counter.write("{name}\\n")
"""
# A chapter (it imports the profiles module) that never prints the banner.
SILENT = """\
import os
import pedseg_lib.profiles

with open(os.environ["PEDSEG_TEST_COUNTER"], "a") as counter:
    counter.write("{name}\\n")
"""


def _jupyter_book() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    if script.is_file():
        return [str(script)]
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    return [found]


def _make_book(folder: Path, chapters: dict[str, str]) -> Path:
    """A book with a markdown root page and one notebook per ``chapters`` entry (name -> code template)."""
    real = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = real["sphinx"]
    # The real extension list (it names pedseg_book) and the real local_extensions entry, pointed at this checkout.
    sphinx["local_extensions"] = {name: str(ROOT / path) for name, path in sphinx["local_extensions"].items()}
    config = {
        "title": "profile test book",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "counter.txt"],
        "execute": real["execute"],
        "parse": real["parse"],
        "sphinx": sphinx,
    }
    folder.mkdir(parents=True)
    (folder / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "intro", "chapters": [{"file": name} for name in chapters]}, sort_keys=False))
    # Plain markdown is not checked, even when its text looks like a banner of another profile.
    (folder / "intro.md").write_text("# Profile test book\n\nExample: `pedseg profile: best (requested: best)`.\n")
    for name, template in chapters.items():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"),
                                                   nbformat.v4.new_code_cell(template.format(name=name))])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, folder / f"{name}.ipynb")
    return folder


class Book:
    def __init__(self, folder: Path, tmp: Path):
        self.folder = folder
        self.counter = tmp / "counter.txt"
        self.env = dict(os.environ)
        for name in ("PEDSEG_PROFILE", "PEDSEG_DATA", "PEDSEG_RUNS"):
            self.env.pop(name, None)
        # Nothing here may download: no dataset, no cached weights, nothing the banner would need.
        self.env.update(PEDSEG_DATA=str(tmp / "data"), TORCH_HOME=str(tmp / "torch"), PEDSEG_RUNS=str(tmp / "runs"),
                        PEDSEG_TEST_COUNTER=str(self.counter))

    def build(self, profile: str) -> subprocess.CompletedProcess:
        return subprocess.run([*_jupyter_book(), "build", ".", "-W", "-n", "--keep-going"], cwd=self.folder,
                              env={**self.env, "PEDSEG_PROFILE": profile}, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)

    def executions(self) -> list[str]:
        return self.counter.read_text().split() if self.counter.exists() else []

    def html(self, page: str) -> str:
        return (self.folder / "_build" / "html" / f"{page}.html").read_text()


def _log(done: subprocess.CompletedProcess) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def _built(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, "jupyter-book build failed:\n" + _log(done)[-4000:]


def test_real_book_config_loads_the_extension_and_does_not_build_its_folder():
    get_final_config = pytest.importorskip("jupyter_book.config", reason="jupyter-book is not installed").get_final_config
    config, _ = get_final_config(user_yaml=ROOT / "_config.yml", cli_config={"latex_individualpages": False},
                                 sourcedir=ROOT, validate=True,
                                 raise_on_invalid=True)
    assert "pedseg_book" in config["extensions"], "sphinx.config.extensions replaces the list: name it there too"
    assert "myst_nb" in config["extensions"]
    assert "_ext" in config["exclude_patterns"]
    assert (ROOT / "_ext" / "pedseg_book.py").is_file()


def test_switching_profile_reexecutes_and_switching_back_reuses_the_cache(tmp_path: Path):
    book = Book(_make_book(tmp_path / "book", {"chapter": CHAPTER}), tmp_path)
    cache = book.folder / "_build" / ".jupyter_cache"

    _built(book.build("smoke"))
    assert book.executions() == ["chapter"]
    assert "pedseg profile: smoke (requested: smoke)" in book.html("chapter")
    assert (cache / "smoke").is_dir()

    _built(book.build("smoke"))
    assert book.executions() == ["chapter"], "an unchanged chapter in the same profile must come from the cache"

    cpu = book.build("cpu")
    _built(cpu)
    assert book.executions() == ["chapter", "chapter"], "another profile must execute the chapter again"
    page = book.html("chapter")
    assert "pedseg profile: cpu (requested: cpu)" in page and "pedseg profile: smoke" not in page
    assert (cache / "cpu").is_dir()
    assert "config changed" in _log(cpu), "Sphinx must re-read every page when the profile changes"

    _built(book.build("smoke"))
    assert book.executions() == ["chapter", "chapter"], "switching back must reuse the smoke outputs"
    page = book.html("chapter")
    assert "pedseg profile: smoke (requested: smoke)" in page and "pedseg profile: cpu" not in page


def test_a_chapter_run_in_another_profile_fails_the_build_and_writes_no_page(tmp_path: Path):
    book = Book(_make_book(tmp_path / "book", {"forced": FORCED, "silent": SILENT}), tmp_path)

    done = book.build("smoke")
    log = _log(done)
    assert done.returncode != 0, "the build must fail:\n" + log[-4000:]
    lines = [line for line in log.splitlines() if "forced ran in profile cpu" in line]
    assert lines, "no profile-mismatch message:\n" + log[-4000:]
    message = lines[0]
    assert "silent printed no 'pedseg profile:' banner" in message
    assert "asked for profile smoke (PEDSEG_PROFILE=smoke)" in message
    assert "intro" not in message, "a markdown page is not a chapter"
    html = book.folder / "_build" / "html"
    assert not (html / "forced.html").exists() and not (html / "silent.html").exists()
    assert sorted(book.executions()) == ["forced", "silent"]

    # The wrong outputs were dropped from the execution cache: the next build runs the chapters again and fails again.
    again = book.build("smoke")
    assert again.returncode != 0 and "forced ran in profile cpu" in _log(again)
    assert sorted(book.executions()) == ["forced", "forced", "silent", "silent"]


def test_the_plain_glue_lines_of_a_notebook_run_in_colab_are_dropped_before_rendering(tmp_path: Path):
    """_ext/pedseg_book.py's source-read handler: only outputs marked as glue echoes go; notebooks only."""
    import importlib.util
    import json
    import types

    from pedseg_lib.notebook import ECHO, glue_output

    spec = importlib.util.spec_from_file_location("pedseg_book_under_test", ROOT / "_ext" / "pedseg_book.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    record, meta = glue_output("ap", 0.5, display=False)
    outputs = [nbformat.v4.new_output("display_data", data=record, metadata=meta),
               nbformat.v4.new_output("display_data", data={"text/plain": "glued ap = 0.5"}, metadata={ECHO: "ap"}),
               nbformat.v4.new_output("stream", text=f"a line that names {ECHO}\n")]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("glue('ap', 0.5, display=False)",
                                                                         outputs=outputs)])
    text = nbformat.writes(notebook)
    for page, suffix in (("chapter", ".ipynb"), ("notes", ".md")):
        app = types.SimpleNamespace(env=types.SimpleNamespace(doc2path=lambda name, s=suffix: tmp_path / (name + s)))
        source = [text]
        ext._drop_glue_echoes(app, page, source)
        if suffix == ".md":
            assert source == [text], "a markdown page is left alone"
            continue
        kept = json.loads(source[0])["cells"][0]["outputs"]
        assert [o["output_type"] for o in kept] == ["display_data", "stream"]
        assert kept[0]["metadata"] == meta and kept[0]["data"] == record

"""The closing page (book/closing.md, issue 20): where it sits, what it links, where its numbers come from.

Static and fast. The strict book build (-W -n, tests/test_book.py) resolves its {doc} and {ref} links and pastes
its glued numbers; these checks name the page and the broken reference first, and catch what the build cannot:
a section cited by name (§ *Title*) that a chapter renamed, a number typed by hand instead of glued from an
executed chapter, a `pedseg` command line that the command no longer accepts.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import jupytext
import pytest
import yaml

from pedseg_lib.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PAGE = BOOK / "closing.md"
DOC_RE = re.compile(r"\{doc\}`(?:[^`<]*<)?(?P<doc>[\w/]+)>?`")
CITE_RE = re.compile(r"§\s*\*(?P<title>[^*]+)\*")
REF_RE = re.compile(r"\{ref\}`(?:[^`<]*<)?(?P<label>[\w-]+)>?`")
GLUE_RE = re.compile(r"\{glue(?::(?P<kind>\w+))?\}`(?P<body>[^`]+)`")


def _text() -> str:
    assert PAGE.is_file(), "book/closing.md is missing"
    return PAGE.read_text()


def _section(text: str, label: str) -> str:
    match = re.search(rf"^\({re.escape(label)}\)=\n## [^\n]*\n(.*?)(?=^\([\w-]+\)=\n## |^## |\Z)", text, re.M | re.S)
    assert match, f"book/closing.md: no section labelled ({label})="
    return match.group(1)


def _chapter_markdown(name: str) -> str:
    return "\n\n".join(c.source for c in jupytext.read(BOOK / f"{name}.py").cells if c.cell_type == "markdown")


def _headings(name: str) -> set[str]:
    return {" ".join(h.split()) for h in re.findall(r"^##[ \t]+(.+?)[ \t]*$", _chapter_markdown(name), re.M)}


def _glued_keys(name: str) -> set[str]:
    """The keys a chapter's code glues (calls ``glue("key", ...)``)."""
    keys = set()
    for cell in jupytext.read(BOOK / f"{name}.py").cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("!", "%")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glue" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                keys.add(node.args[0].value)
    return keys


def _labels() -> set[str]:
    """Every label a page defines: MyST targets ``(label)=`` and figures' ``:name: label``."""
    sources = [p.read_text() for p in BOOK.glob("*.md")]
    sources += ["\n".join(c.source for c in jupytext.read(p).cells if c.cell_type == "markdown")
                for p in BOOK.glob("[0-9][0-9]_*.py")]
    found = set()
    for text in sources:
        found |= set(re.findall(r"^\(([\w-]+)\)=[ \t]*$", text, re.M))
        found |= set(re.findall(r"^:name: ([\w-]+)[ \t]*$", text, re.M))
    return found


def test_the_closing_page_is_the_last_part_before_the_appendix():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    assert captions[-2:] == ["Closing", "Appendix"], captions
    closing = toc["parts"][-2]["chapters"]
    assert [entry["file"] for entry in closing] == ["book/closing"], closing
    chapters = [entry["file"] for part in toc["parts"][:-2] for entry in part["chapters"]]
    assert all(re.fullmatch(r"book/\d\d_\w+", page) for page in chapters), chapters
    text = _text()
    assert text.startswith("(closing)=\n# "), "book/closing.md: open with the label (closing)= and a # title"
    intro = (BOOK / "intro.md").read_text()
    assert re.search(r"^\| Closing \| \{doc\}`closing` \|", intro, re.M), "book/intro.md's table lacks the page"


def test_every_chapter_and_section_it_cites_exists():
    text = _text()
    docs = {m.group("doc") for m in DOC_RE.finditer(text)}
    chapters = sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.py"))
    assert set(chapters) <= docs, f"book/closing.md does not link the chapters {sorted(set(chapters) - docs)}"
    for doc in docs:
        assert (BOOK / f"{doc}.md").is_file() or (BOOK / f"{doc}.py").is_file(), f"{{doc}}`{doc}`: no such page"
    cited = 0
    for line in text.splitlines():
        # each § *Title* names a '## ' section of the chapter linked last before it on the same line
        events = sorted([(m.start(), "doc", m.group("doc")) for m in DOC_RE.finditer(line)]
                        + [(m.start(), "cite", " ".join(m.group("title").split())) for m in CITE_RE.finditer(line)])
        current = None
        for _, kind, value in events:
            if kind == "doc":
                current = value
                continue
            assert current is not None and (BOOK / f"{current}.py").is_file(), \
                f"book/closing.md: § *{value}* follows no chapter link on its line: {line}"
            assert value in _headings(current), \
                f"book/closing.md cites § *{value}* of {current}, which has no such '## ' section (renamed?)"
            cited += 1
    assert cited >= 15, f"book/closing.md cites only {cited} sections"


def test_every_ref_names_a_label_of_the_book():
    text = _text()
    refs = {m.group("label") for m in REF_RE.finditer(text)}
    assert {"fig-maskrcnn-pipeline", "ch2-transform", "ch2-backbone", "ch2-anchors", "ch2-proposals", "ch2-box-head",
            "ch2-masks", "ch2-output"} <= refs, refs
    missing = sorted(refs - _labels())
    assert not missing, f"book/closing.md refers to labels no page defines: {missing}"


def test_its_numbers_are_glued_from_executed_chapters():
    text = _text()
    roles = list(GLUE_RE.finditer(text))
    assert roles, "book/closing.md pastes no glued value"
    for role in roles:
        kind, body = role.group("kind"), role.group("body")
        doc, sep, rest = body.partition("::")
        assert sep, f"book/closing.md: {role.group(0)} must name its chapter, e.g. 05_results.ipynb::key:.3f"
        name = doc.removesuffix(".ipynb")
        assert doc.endswith(".ipynb") and (BOOK / f"{name}.py").is_file(), f"{role.group(0)}: no chapter {doc}"
        # myst-nb splits {glue:text} at its last ':' first: without a format spec it would cut 'doc::key' apart
        assert kind == "text" and re.fullmatch(r"\w+:[^:`]+", rest), \
            f"book/closing.md: write {role.group(0)} as {{glue:text}}`{doc}::key:format` (e.g. :.3f or :s)"
        key = rest.split(":", 1)[0]
        assert key in _glued_keys(name), f"book/closing.md pastes {key!r}, which book/{name}.py does not glue"
    # the results table: each value is pasted, none is typed
    results = _section(text, "closing-results")
    rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("|---")][1:]
    assert len(rows) >= 3, rows
    for row in rows:
        value = row.split("|")[2].strip()
        assert GLUE_RE.fullmatch(value), f"book/closing.md: {value!r} in the results table is not a glued value"
    assert re.search(r"\bsmoke\b[^.]*mean nothing", results), "say that the smoke profile's numbers mean nothing"


def test_its_pedseg_command_lines_parse():
    text = _text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("pedseg ")]
    assert {c[0] for c in commands} >= {"predict", "export"}, commands
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"book/closing.md: `pedseg {' '.join(argv)}` is not a command line pedseg accepts")
    assert any("--onnx" in c for c in commands if c[0] == "predict"), "show predict with the exported file"

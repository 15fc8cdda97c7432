"""Build the book and look at it in a real browser (headless Chromium driven by Playwright).

The pages are rendered from the chapters as the Colab-like check executed them (smoke profile, synthetic data,
no myst-nb in the kernel): what a reader's own run would show, and proof that those notebooks render as a book.

Needs /usr/bin/chromium (`bash .ci/setup --browser` installs Debian's package) and the `playwright` Python package
(the `dev` extra; its own browser download is never used). Screenshots land in _build/screenshots/ for people to look at.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
BUILD_TIMEOUT_S = 600  # rendering only: the chapters were executed by the Colab-like check

# The first test of the module may wait for every chapter's Colab-like execution (conftest.py's colab_chapters).
pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200 + BUILD_TIMEOUT_S)]


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _is_chapter(page: str) -> bool:
    return re.fullmatch(r"book/\d\d_\w+", page) is not None


PAGES = _toc_pages()


# What the book is rendered from: the pages' sources, with each chapter replaced by its executed copy.
BOOK_SOURCES = ("_config.yml", "_toc.yml", "_ext", "book")


def _rendering_copy(folder: Path, executed: dict[str, Path]) -> Path:
    """A copy of the book's sources in ``folder`` whose chapters are the executed notebooks, execution off."""
    for name in BOOK_SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy2(source, folder / name)
    for name, notebook in executed.items():
        shutil.copy2(notebook, folder / "book" / f"{name}.ipynb")
    config = yaml.safe_load((folder / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (folder / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def built_book(colab_chapters, tmp_path_factory) -> Path:
    """The book built strictly (-W -n) from the chapters as the Colab-like check executed them (smoke profile).

    Every chapter is executed once per session (conftest.py's ``colab_chapters``, checked by test_colab.py);
    the book is rendered from those notebooks with execution off, as from any executed notebook. Executing in
    the book build itself (myst-nb, its per-profile cache, the profile check) is tested in test_book_cache.py.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (run `bash .ci/setup --browser` as root)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")
    failed = sorted(name for name, record in colab_chapters.items() if record["error"] is not None)
    assert not failed, f"chapters {failed} did not execute (see tests/test_colab.py): the book is not built"
    executed = {name: Path(record["folder"]) / f"{name}.ipynb" for name, record in colab_chapters.items()}
    folder = _rendering_copy(tmp_path_factory.mktemp("book"), executed)
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run([jb, "build", ".", "-W", "-n", "--keep-going", "--all"], cwd=folder,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    log = _strip_ansi(proc.stdout + proc.stderr).splitlines()
    warnings = [line for line in log if ("WARNING" in line or "ERROR" in line) and "IPKernelApp" not in line]
    assert proc.returncode == 0, "jupyter-book build failed:\n" + "\n".join(warnings or log[-40:])
    return folder / "_build" / "html"


@pytest.fixture(scope="module")
def server(built_book: Path):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


_WAIT_FOR_IMAGES = """async () => {
  // Scroll through the page so lazily loaded images start, then wait for every image to settle.
  for (let y = 0; y < document.body.scrollHeight; y += window.innerHeight) { window.scrollTo(0, y); }
  window.scrollTo(0, 0);
  await Promise.all(Array.from(document.images).map(img => img.complete ? null :
    new Promise(resolve => { img.addEventListener('load', resolve); img.addEventListener('error', resolve); })));
  return Array.from(document.images).filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => img.getAttribute('src'));
}"""

# Error text in cell outputs: a traceback, or an exception name as the ANSI-coloured error renderer prints it.
_ERROR_RE = re.compile(r"Traceback \(most recent call last\)|\x1b\[[0-9;]*m\s*\w*(Error|Exception)\b")


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_in_chromium(page, server, browser):
    console_errors: list[str] = []
    external: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("console", lambda msg: msg.type == "error" and console_errors.append(msg.text))
    tab.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))

    def only_local(route):
        # The book must render offline: record and refuse any request that leaves this machine.
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    tab.route("**/*", only_local)
    try:
        response = tab.goto(f"{server}/{page}.html", wait_until="load")
        assert response is not None and response.ok, f"{page}.html: HTTP {response and response.status}"
        broken = tab.evaluate(_WAIT_FOR_IMAGES)
        tab.wait_for_load_state("networkidle")
        SHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SHOTS / f"{Path(page).name}.png"), full_page=True)

        assert not external, f"{page}: requests to other hosts (the book must work offline): {external}"
        assert not console_errors, f"{page}: JavaScript console errors: {console_errors}"
        assert not broken, f"{page}: images that did not load: {broken}"
        assert tab.locator("h1").count() >= 1, f"{page}: no title"

        outputs = tab.locator(".cell_output")
        error_blocks = tab.locator(".cell_output .output.traceback, .cell_output .output.error").count()
        assert error_blocks == 0, f"{page}: {error_blocks} cell outputs are errors"
        for text in outputs.all_inner_texts():
            match = _ERROR_RE.search(text)
            assert match is None, f"{page}: a cell output shows an error: ...{text[max(0, match.start() - 200):match.end() + 200]}"

        if _is_chapter(page):
            _check_chapter(page, tab)
    finally:
        context.close()


def _check_chapter(page: str, tab) -> None:
    name = Path(page).name
    nb = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
    h1 = tab.locator("h1").first.inner_text()
    assert title in h1, f"{page}: page title {h1!r} is not the chapter title {title!r}"

    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].removeprefix("https://github.com/")
    expected = f"https://colab.research.google.com/github/{repo}/blob/main/book/{name}.ipynb"
    launch = tab.locator('.dropdown-launch-buttons a[href*="colab.research.google.com"]')
    assert launch.count() == 1, f"{page}: no Colab launch button in the header"
    # The resolved href, as the browser will follow it.
    assert launch.first.evaluate("a => a.href") == expected, f"{page}: Colab launch button does not open {expected}"
    badge = tab.locator(f'article a[href="{expected}"] img')
    assert badge.count() == 1, f"{page}: no Open-in-Colab badge linking to {expected}"
    # The plain glue lines a chapter run without myst-nb shows its reader are not part of the page.
    echoes = [t for t in tab.locator(".cell_output").all_inner_texts() if re.search(r"^glued \S+ = ", t, re.M)]
    assert not echoes, f"{page}: the Colab reader's plain glue lines reached the page: {echoes[:3]}"
    # Every chapter draws figures; none on the page means they were lost (e.g. executed under MPLBACKEND=Agg).
    assert tab.locator(".cell_output img").count() >= 1, f"{page}: no figure in any cell output"


# --- Learning aids: the glossary, the concordance, and folded answers ------------------------------------------------


def _open_tab(browser, server: str, page: str):
    """A fresh tab on `page` that may load only local resources; returns (context, tab)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).hostname in (
        "127.0.0.1", "localhost") or route.request.url.startswith("data:") else route.abort())
    response = tab.goto(f"{server}/{page}.html", wait_until="load")
    assert response is not None and response.ok, f"{page}.html: HTTP {response and response.status}"
    return context, tab


def _glossary_terms() -> list[str]:
    from test_notebooks import GLOSSARY_TERMS  # the one list of the book's terms (tests/ is on sys.path)

    return list(GLOSSARY_TERMS)


def test_glossary_page_lists_every_term(server, browser):
    assert "book/glossary" in PAGES, "_toc.yml must list book/glossary"
    context, tab = _open_tab(browser, server, "book/glossary")
    try:
        shown = [t.strip() for t in tab.locator("article dl.glossary > dt").all_inner_texts()]
        missing = sorted(set(_glossary_terms()) - set(shown))
        assert not missing, f"book/glossary: terms not shown in the glossary list: {missing}"
        definitions = tab.locator("article dl.glossary > dd").all_inner_texts()
        assert definitions and all(d.strip() for d in definitions), "book/glossary: an entry has no definition"
        assert tab.locator("article dl.glossary > dt").first.is_visible(), "book/glossary: the term list is hidden"
    finally:
        context.close()


def test_concordance_page_has_its_table(server, browser):
    assert "book/concordance" in PAGES, "_toc.yml must list book/concordance"
    context, tab = _open_tab(browser, server, "book/concordance")
    try:
        table = tab.locator("article table").first
        assert table.is_visible(), "book/concordance: no table of the official tutorial's steps"
        rows = table.locator("tbody tr")
        assert rows.count() >= 15, f"book/concordance: only {rows.count()} steps in the table"
        chapter_links = table.locator('a[href*="01_data.html"], a[href*="05_results.html"]').count()
        assert chapter_links >= 2, "book/concordance: the table does not link the chapters"
        # The table fits the page: no horizontal scrolling inside the article.
        fits = tab.evaluate("() => { const t = document.querySelector('article table');"
                            " return t.getBoundingClientRect().width <= t.parentElement.getBoundingClientRect().width + 1; }")
        assert fits, "book/concordance: the table is wider than the page (a column is too wide)"
    finally:
        context.close()


def _first_chapter_with(marker: str) -> str | None:
    for page in PAGES:
        if _is_chapter(page):
            nb = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
            if any(c.cell_type == "markdown" and marker in c.source for c in nb.cells):
                return page
    return None


def _check_folded(tab, details, what: str, shot: Path) -> None:
    """`details` (a sphinx-design dropdown) hides its body until its summary is clicked, then shows it."""
    body = details.locator(".sd-summary-content")
    assert details.get_attribute("open") is None, f"{what} is open before any click"
    assert not body.is_visible(), f"{what}: its body is visible before a click"
    details.scroll_into_view_if_needed()
    details.locator("summary").first.click()
    body.wait_for(state="visible", timeout=5000)
    assert details.get_attribute("open") is not None, f"{what} did not open on click"
    assert body.inner_text().strip(), f"{what}: the opened dropdown is empty"
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The exercise (or question) around the dropdown, so the picture shows what the answer belongs to.
    around = details.locator("xpath=ancestor::li[1]")
    (around if around.count() else details).screenshot(path=str(shot))


def test_solutions_and_self_check_answers_stay_folded_until_clicked(server, browser):
    page = _first_chapter_with(":::{dropdown} Solution")
    assert page is not None, "no chapter has a ':::{dropdown} Solution' yet (see the format in test_notebooks.py)"
    name = Path(page).name
    context, tab = _open_tab(browser, server, page)
    try:
        solutions = tab.locator("details.sd-dropdown").filter(
            has=tab.locator("summary", has_text=re.compile(r"^\s*Solution")))
        assert solutions.count() >= 1, f"{page}: the Solution dropdowns are not rendered as <details> elements"
        hints = tab.locator("details.sd-dropdown").filter(has=tab.locator("summary", has_text=re.compile(r"^\s*Hint")))
        assert hints.count() >= 1, f"{page}: the Hint dropdowns are not rendered as <details> elements"
        assert all(h.get_attribute("open") is None for h in hints.all()), f"{page}: a hint is open on arrival"
        _check_folded(tab, solutions.first, f"{page}: the first Solution dropdown", SHOTS / f"{name}-solution-open.png")

        questions = tab.locator("section#check-yourself details.sd-dropdown")
        assert questions.count() >= 3, f"{page}: the 'Check yourself' questions are not rendered as dropdowns"
        _check_folded(tab, questions.first, f"{page}: the first 'Check yourself' question",
                      SHOTS / f"{name}-check-yourself-open.png")
    finally:
        context.close()

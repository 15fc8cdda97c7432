"""pedseg_lib.notebook.glue: myst-nb's stored format written without myst-nb, plus a plain line for Colab readers.

The reference is myst-nb itself: its ``glue`` (what the output must contain) and its ``extract_glue_data_cell``
(what the book build reads back from a notebook and what it hides from the page).
"""

from __future__ import annotations

import sys

import nbformat
import pytest

from pedseg_lib import notebook


def _published(monkeypatch, call) -> list[tuple[dict, dict]]:
    """The (data, metadata) pairs that ``call()`` publishes through IPython.display.display(raw=True)."""
    shown = []

    def display(data, raw=False, metadata=None):
        assert raw, "glue must publish a raw MIME bundle"
        shown.append((data, metadata or {}))

    monkeypatch.setattr("IPython.display.display", display)
    glue_ext = sys.modules.get("myst_nb.ext.glue")
    if glue_ext is not None:  # myst-nb bound IPython's display at its import
        monkeypatch.setattr(glue_ext, "ipy_display", display)
    call()
    return shown


def _cell(outputs: list[tuple[dict, dict]]) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("display_data", data=data, metadata=meta)
                                                  for data, meta in outputs])


@pytest.fixture
def without_myst_nb(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `import myst_nb` raises ImportError, as in Colab


@pytest.mark.parametrize("value", [0.123456, 170, "1,234", {"a": 1}])
@pytest.mark.parametrize("display", [True, False])
def test_the_output_is_myst_nb_s_own(value, display, monkeypatch):
    myst_glue = pytest.importorskip("myst_nb", reason="myst-nb (the book extra) is not installed").glue
    ours = _published(monkeypatch, lambda: notebook.glue("x", value, display=display))
    theirs = _published(monkeypatch, lambda: myst_glue("x", value, display=display))
    assert ours == theirs


def test_without_myst_nb_a_hidden_value_also_shows_one_plain_line(without_myst_nb, monkeypatch):
    published = _published(monkeypatch, lambda: (notebook.glue("ap", 0.123456, display=False),
                                                 notebook.glue("size", "1,234", display=False)))
    records, echoes = published[0::2], published[1::2]
    assert records == [notebook.glue_output("ap", 0.123456, False), notebook.glue_output("size", "1,234", False)]
    # The only MIME type of the echo is text/plain: that is what Colab shows under the cell.
    assert echoes == [({"text/plain": "glued ap = 0.1235"}, {notebook.ECHO: "ap"}),
                      ({"text/plain": "glued size = 1,234"}, {notebook.ECHO: "size"})]


def test_without_myst_nb_a_shown_value_is_only_myst_nb_s_output(without_myst_nb, monkeypatch):
    assert _published(monkeypatch, lambda: notebook.glue("n", 7)) == [notebook.glue_output("n", 7, True)]


def test_myst_nb_reads_the_values_back_and_hides_the_hidden_ones(without_myst_nb, monkeypatch):
    published = _published(monkeypatch, lambda: (notebook.glue("ap", 0.5, display=False), notebook.glue("shown", 7)))
    monkeypatch.delitem(sys.modules, "myst_nb")
    glue_ext = pytest.importorskip("myst_nb.ext.glue", reason="myst-nb (the book extra) is not installed")
    cell = _cell(published)
    data = dict(glue_ext.extract_glue_data_cell(cell))
    assert data["ap"]["data"] == {"text/plain": "0.5"} and data["shown"]["data"] == {"text/plain": "7"}
    # The page keeps the shown value and the echo (which the book's extension drops), not the hidden record.
    kept = [o["metadata"].get("scrapbook", {}).get("name") or o["metadata"][notebook.ECHO] for o in cell.outputs]
    assert kept == ["ap", "shown"] and notebook.ECHO in cell.outputs[0]["metadata"]


def test_plain_text_rounds_floats_only():
    assert [notebook.plain_text(v) for v in (0.123456, 170, "1,234", 12345.678)] == ["0.1235", "170", "1,234",
                                                                                   "1.235e+04"]

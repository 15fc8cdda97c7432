"""pedseg_lib.notebook.glue: myst-nb's glue in the book build, a plain display where myst-nb is absent (Colab)."""

from __future__ import annotations

import sys
import types

import pytest

from pedseg_lib import notebook


@pytest.fixture
def without_myst_nb(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `import myst_nb` raises ImportError, as in Colab


def test_without_myst_nb_a_hidden_value_is_printed_on_one_line(without_myst_nb, capsys):
    notebook.glue("ap", 0.123456, display=False)
    notebook.glue("n_images", 170, display=False)
    notebook.glue("size", "1,234", display=False)
    assert capsys.readouterr().out.splitlines() == ["glued ap = 0.1235", "glued n_images = 170", "glued size = 1,234"]


def test_without_myst_nb_a_shown_value_is_displayed_as_a_result(without_myst_nb, monkeypatch, capsys):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda value: shown.append(value))
    notebook.glue("table", {"a": 1})
    assert shown == [{"a": 1}] and capsys.readouterr().out == ""


def test_with_myst_nb_it_is_myst_nb_s_glue(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    notebook.glue("ap", 0.5, display=False)
    notebook.glue("fig", "figure")
    assert calls == [("ap", 0.5, False), ("fig", "figure", True)] and capsys.readouterr().out == ""


def test_the_real_myst_nb_glue_is_used_when_installed():
    pytest.importorskip("myst_nb", reason="myst-nb (the book extra) is not installed")
    import myst_nb

    assert notebook._myst_glue() is myst_nb.glue

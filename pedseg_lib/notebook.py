"""What the chapters need from their notebook host, whether the book is being built or a reader runs them.

The rendered book quotes numbers computed by the chapters through myst-nb's ``glue``. A reader who opens a chapter
in Colab or a plain Jupyter has no myst-nb (Colab does not ship it, and ``pip install pedseg`` does not add it):
there :func:`glue` shows the value under the cell that computed it instead, so the reader sees the number the
prose refers to (the prose's ``{glue:text}`` roles are only rendered in the built book).
"""

from __future__ import annotations

from typing import Any


def _myst_glue():
    """myst-nb's ``glue``, or None when myst-nb is not installed."""
    try:
        from myst_nb import glue
    except ImportError:
        return None
    return glue


def plain_text(value: Any) -> str:
    """How :func:`glue` writes a value without myst-nb: floats to 4 significant digits, anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def glue(name: str, value: Any, display: bool = True) -> None:
    """Make ``value`` available to the book's prose under ``name``.

    With myst-nb installed (the book build, nbval in the checkout) this is ``myst_nb.glue``. Without it (Colab, a
    plain Jupyter) the value is shown plainly: displayed like a cell's result when ``display`` is True, otherwise as
    one line ``glued name = value`` so the reader can match the number to the text.

    Args:
        name: the key the prose refers to, as in ``{glue:text}`name```.
        value: a number, a string or anything IPython can display (a figure, a table).
        display: also show the value under the cell (myst-nb's meaning).
    """
    myst = _myst_glue()
    if myst is not None:
        myst(name, value, display=display)
        return
    if display:
        from IPython.display import display as show

        show(value)
    else:
        print(f"glued {name} = {plain_text(value)}")


__all__ = ["glue", "plain_text"]

"""What the chapters need from their notebook host, whether the book is being built or a reader runs them.

The rendered book quotes numbers computed by the chapters through myst-nb's ``glue``: a cell stores a value in
its output, and the prose's ``{glue}`name``` roles paste it when the book is built. A reader who opens a chapter
in Colab or a plain Jupyter has no myst-nb (Colab does not ship it, and ``pip install pedseg`` does not add it).

:func:`glue` therefore writes myst-nb's stored output itself, without importing myst-nb, so a notebook executed
anywhere (the book build, Colab, CI's Colab-like check) can be rendered into the book. Where myst-nb is not
installed, a value glued with ``display=False`` is also shown on one plain line, ``glued name = value``, so the
reader can match the number to the prose (which Colab shows with its roles unrendered). That line is an output of
its own, marked with :data:`ECHO` in its metadata; the book's Sphinx extension (``_ext/pedseg_book.py``) drops
it when it renders such a notebook.
"""

from __future__ import annotations

from typing import Any

#: myst-nb's prefix for a hidden glued value's MIME types (``myst_nb.ext.glue.GLUE_PREFIX``, from scrapbook).
GLUE_PREFIX = "application/papermill.record/"
#: Metadata key of the plain ``glued name = value`` output shown where myst-nb is absent; its value is the name.
ECHO = "pedseg_glue_echo"


def _myst_nb_installed() -> bool:
    """Whether myst-nb can be imported (the book build's kernels); Colab does not ship it."""
    import importlib.util

    try:
        return importlib.util.find_spec("myst_nb") is not None
    except ValueError:  # a module object without a spec, e.g. set to None in sys.modules
        return False


def plain_text(value: Any) -> str:
    """How :func:`glue` writes a value in its plain line: floats to 4 significant digits, anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def glue_output(name: str, value: Any, display: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The display data and metadata of myst-nb's glue for ``value``, built without myst-nb.

    Args:
        name: the key the prose refers to.
        value: anything IPython can display.
        display: whether the value is shown under the cell.

    Returns:
        ``(data, metadata)``: the MIME bundle (keys under :data:`GLUE_PREFIX` when hidden) and metadata naming
        the value for myst-nb (``scrapbook``), as ``myst_nb.glue`` publishes them.
    """
    from IPython.core.formatters import format_display_data

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    data = {prefix + mime: content for mime, content in bundle.items()}
    return data, {**metadata, "scrapbook": {"name": name, "mime_prefix": prefix}}


def glue(name: str, value: Any, display: bool = True) -> None:
    """Make ``value`` available to the book's prose under ``name``, as ``myst_nb.glue`` does.

    The output is myst-nb's own, written without myst-nb, so it renders in the book wherever the notebook ran.
    With ``display=False`` the value is hidden from the built page; where myst-nb is not installed (Colab), a
    second output shows it on one line, ``glued name = value``, marked with :data:`ECHO`.

    Args:
        name: the key the prose refers to, as in ``{glue:text}`name```.
        value: a number, a string or anything IPython can display (a figure, a table).
        display: also show the value under the cell (myst-nb's meaning).
    """
    from IPython.display import display as show

    data, metadata = glue_output(name, value, display)
    show(data, raw=True, metadata=metadata)
    if not display and not _myst_nb_installed():
        show({"text/plain": f"glued {name} = {plain_text(value)}"}, raw=True, metadata={ECHO: name})


__all__ = ["ECHO", "GLUE_PREFIX", "glue", "glue_output", "plain_text"]

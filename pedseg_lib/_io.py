"""Atomic file writes: a reader sees either the old file or the complete new one, never a torn file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it over ``path`` only when the block succeeds.

    Args:
        path: the destination file.
        mode: ``"wb"`` or ``"w"``.
        **kwargs: passed to :func:`open` (``encoding``, ``newline``).

    Yields:
        The open temporary file. On an exception it is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def ensure_writable_dir(folder: str | os.PathLike, what: str, advice: str) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it (the probe is removed).

    Args:
        folder: the folder output will go to.
        what: what it is, for the message (e.g. ``"the run folder"``).
        advice: what the user should do instead.

    Returns:
        ``folder`` as a Path.

    Raises:
        OutputError: ``cannot write to <what> <folder> (<reason>): <advice>``.
    """
    from pedseg_lib.errors import OutputError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".pedseg-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {what} {folder} ({exc.strerror or type(exc).__name__}): {advice}") from None
    return folder


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

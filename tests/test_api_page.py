"""book/api.md documents every public module of pedseg_lib, each once, under its own heading."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import pedseg_lib

API_PAGE = Path(__file__).resolve().parents[1] / "book" / "api.md"
AUTOMODULE = re.compile(r"^\.\. automodule:: pedseg_lib\.(\w+)\s*$", re.MULTILINE)


def public_modules() -> list[str]:
    """The modules and packages directly under pedseg_lib whose names do not start with an underscore."""
    return sorted(m.name for m in pkgutil.iter_modules(pedseg_lib.__path__) if not m.name.startswith("_"))


def page_problems(text: str) -> list[str]:
    """What is wrong with an API page's text: modules missing, listed twice, unknown, or without a heading."""
    documented = AUTOMODULE.findall(text)
    modules = public_modules()
    problems = [f"pedseg_lib.{m} is missing" for m in modules if m not in documented]
    problems += [f"pedseg_lib.{m} is listed {documented.count(m)} times" for m in sorted(set(documented))
                 if documented.count(m) > 1]
    problems += [f"pedseg_lib.{m} is not a public module" for m in sorted(set(documented) - set(modules))]
    problems += [f"pedseg_lib.{m} has no '## `pedseg_lib.{m}`: ...' heading" for m in modules
                 if not re.search(rf"^## `pedseg_lib\.{m}`: \S", text, re.MULTILINE)]
    return problems


def test_api_page_lists_every_public_module():
    modules = public_modules()
    assert {"data", "engine", "export", "notebook", "runtime", "standin", "video"} <= set(modules)
    assert page_problems(API_PAGE.read_text(encoding="utf-8")) == []


def test_a_missing_module_is_reported():
    text = API_PAGE.read_text(encoding="utf-8")
    for module in public_modules():
        without = re.sub(rf"^## `pedseg_lib\.{module}`:.*?```\n(?=\n|\Z)", "", text, flags=re.MULTILINE | re.DOTALL)
        assert AUTOMODULE.findall(without).count(module) == 0, module
        assert page_problems(without) == [f"pedseg_lib.{module} is missing",
                                          f"pedseg_lib.{module} has no '## `pedseg_lib.{module}`: ...' heading"]
    assert page_problems(text + "\n```{eval-rst}\n.. automodule:: pedseg_lib.data\n```\n") == [
        "pedseg_lib.data is listed 2 times"]

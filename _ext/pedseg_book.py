"""Sphinx extension of the pedseg book: make the build know the run profile (``PEDSEG_PROFILE``).

Registered in ``_config.yml`` under ``sphinx: local_extensions`` (and listed in ``sphinx.config.extensions``,
which replaces jupyter-book's list). It does three things.

1. On ``config-inited`` it resolves the profile once (:func:`pedseg_lib.profiles.get_profile`) and

   - stores the name in the config value ``pedseg_profile`` (rebuild ``"env"``): Sphinx compares the values
     of every ``"env"`` config value with the ones pickled with the previous build, so a different profile
     re-reads every document instead of serving the pages of the last one;
   - points myst-nb's ``nb_execution_cache_path`` at ``<cache>/<profile>`` (``<cache>`` is the configured
     path, by default ``_build/.jupyter_cache``): jupyter-cache keys on the notebook text alone, so each
     profile gets its own cache. Switching profile re-executes the chapters once; switching back reuses the
     outputs of that profile.

2. It refuses to build a book whose chapters ran in another profile. For every executed notebook
   (``doctree-read``) it reads the ``pedseg profile: NAME`` banner lines from the cell outputs of the page
   (fresh or from the cache). A notebook whose code imports ``pedseg_lib.profiles`` (a chapter) must print
   the banner, and every banner must name the resolved profile. On ``env-updated`` (after all
   documents are read, before the environment is saved and before any page is written) any offence raises
   :class:`ProfileMismatchError`: the build stops with a non-zero status and a one-line message, also
   under ``-W --keep-going``, and nothing is written to ``_build/html`` for that run. The offending
   notebook's jupyter-cache record is removed first, so the next build executes it again rather than
   serving outputs of the wrong profile from the cache. Plain markdown pages are not checked.

3. It renders notebooks that were executed elsewhere. A chapter executed where myst-nb is absent (Colab, CI's
   Colab-like check) stores its glued values as myst-nb does, plus a plain ``glued name = value`` line for its
   reader, marked in its metadata (:data:`pedseg_lib.notebook.ECHO`). On ``source-read`` those lines are dropped,
   so such a notebook renders, with execution off, as the book build would have rendered it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment
from sphinx.errors import ConfigError, SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)

CONFIG_PROFILE = "pedseg_profile"
ENV_KEY = "pedseg_banners"  # BuildEnvironment attribute: docname -> {"profiles": [...], "chapter": bool}
BANNER = re.compile(r"^pedseg profile: (\S+) \(requested: ([^)]*)\)", re.MULTILINE)
# A notebook that imports the profiles module is a chapter: it must print the banner.
USES_PROFILES = re.compile(r"\bpedseg_lib\.profiles\b|\bfrom\s+pedseg_lib\s+import\s[^\n]*\bprofiles\b")


class ProfileMismatchError(SphinxError):
    """A chapter ran in a profile other than the one this build resolved, or printed no banner."""

    category = "pedseg profile mismatch"


def _resolve_profile(app: Sphinx, config: Config) -> None:
    """``config-inited``: resolve the profile once, and give it its own execution cache."""
    if str(config.nb_execution_mode) == "off":
        # Nothing executes, so nothing depends on the profile: skip the resolution (and its network probes).
        config.pedseg_profile = ""
        return
    from pedseg_lib.errors import ConfigError as PedsegConfigError
    from pedseg_lib.profiles import get_profile

    try:
        profile = get_profile()
    except PedsegConfigError as error:
        raise ConfigError(str(error)) from error
    config.pedseg_profile = profile.name
    # The same default as myst-nb (sphinx_ext.create_mystnb_config): <outdir>/../.jupyter_cache.
    base = config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache"
    config.nb_execution_cache_path = str(Path(base) / profile.name)
    logger.info("pedseg: profile %s (requested: %s) - %s; execution cache %s", profile.name,
                profile.requested, profile.reason, config.nb_execution_cache_path)


def _is_chapter(source: Path) -> bool:
    """Whether the notebook's code imports the profiles module (then it must print the banner)."""
    import nbformat

    if source.suffix == ".ipynb":
        notebook = nbformat.read(source, as_version=4)
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    else:  # a text notebook (MyST / jupytext markdown): its code is somewhere in the text
        code = source.read_text(encoding="utf8")
    return USES_PROFILES.search(code) is not None


def _record_banners(app: Sphinx, doctree: nodes.document) -> None:
    """``doctree-read``: note which profile(s) an executed notebook says it ran in.

    The banner is read from the cell outputs in the doctree, i.e. what the page will show. (The copy of the
    notebook that myst-nb writes to ``_build/jupyter_execute`` has no outputs when they come from the cache.)
    """
    env = app.env
    docname = env.docname
    exec_data = getattr(env, "nb_metadata", {}).get(docname, {}).get("exec_data")
    # Markdown pages, notebooks not executed (execution off or excluded) and notebooks whose execution failed
    # (myst-nb reports those itself) are not checked.
    if not exec_data or not exec_data.get("succeeded"):
        return
    outputs = [node.astext() for node in doctree.findall(nodes.container)
               if node.get("nb_element") == "cell_code_output"]
    profiles = [match.group(1) for text in outputs for match in BANNER.finditer(text)]
    banners = getattr(env, ENV_KEY, None)
    if banners is None:
        banners = {}
        setattr(env, ENV_KEY, banners)
    banners[docname] = {"profiles": profiles, "chapter": _is_chapter(Path(env.doc2path(docname)))}


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, ENV_KEY, {}).pop(docname, None)


def _merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    """``env-merge-info``: parallel reads collect into the main environment."""
    theirs = getattr(other, ENV_KEY, {})
    ours = getattr(env, ENV_KEY, None)
    if ours is None:
        ours = {}
        setattr(env, ENV_KEY, ours)
    ours.update({name: theirs[name] for name in docnames if name in theirs})


def _forget_cached_execution(app: Sphinx, docname: str) -> None:
    """Remove the notebook's record from this profile's jupyter-cache (best effort)."""
    try:
        from jupyter_cache import get_cache

        cache_path = app.env.mystnb_config.execution_cache_path
        if not cache_path or not Path(cache_path).is_dir():
            return
        source = Path(app.env.doc2path(docname)).resolve()
        cache = get_cache(cache_path)
        for record in cache.list_cache_records():
            if Path(record.uri).resolve() == source:
                cache.remove_cache(record.pk)
    except Exception as error:  # the build fails anyway; not a warning, which -W would raise instead of our error
        logger.info("pedseg: could not drop the cached execution of %s: %s", docname, error)


def _check_profiles(app: Sphinx, env: BuildEnvironment) -> None:
    """``env-updated``: fail the build if any executed notebook ran in another profile."""
    asked = app.config[CONFIG_PROFILE]
    if not asked:
        return
    requested = os.environ.get("PEDSEG_PROFILE") or "auto"
    problems = []
    for docname, seen in sorted(getattr(env, ENV_KEY, {}).items()):
        if docname not in env.found_docs:
            continue
        wrong = sorted({name for name in seen["profiles"] if name != asked})
        if wrong:
            problems.append((docname, f"{docname} ran in profile {', '.join(wrong)}"))
        elif seen["chapter"] and not seen["profiles"]:
            problems.append((docname, f"{docname} printed no 'pedseg profile:' banner"))
    if problems:
        for docname, _ in problems:
            _forget_cached_execution(app, docname)
        raise ProfileMismatchError(
            "; ".join(text for _, text in problems)
            + f"; this build asked for profile {asked} (PEDSEG_PROFILE={requested}). No page was written."
        )


def _drop_glue_echoes(app: Sphinx, docname: str, source: list[str]) -> None:
    """``source-read``: remove the plain glue lines a notebook executed without myst-nb shows its reader."""
    from pedseg_lib.notebook import ECHO

    if ECHO not in source[0] or not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    notebook = json.loads(source[0])
    for cell in notebook.get("cells", []):
        if "outputs" in cell:
            cell["outputs"] = [out for out in cell["outputs"] if ECHO not in out.get("metadata", {})]
    source[0] = json.dumps(notebook, ensure_ascii=False)


def setup(app: Sphinx) -> dict[str, Any]:
    # The resolved profile: "env" makes Sphinx re-read every document when it differs from the last build's.
    app.add_config_value(CONFIG_PROFILE, "", "env", str)
    # After myst-nb's own config-inited handlers; nb_execution_cache_path is read later, on builder-inited.
    app.connect("config-inited", _resolve_profile, priority=800)
    app.connect("source-read", _drop_glue_echoes)
    app.connect("doctree-read", _record_banners)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-updated", _check_profiles)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}

"""Shared fixtures: the real Penn-Fudan data when present, a small synthetic copy always; .ci/colab.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "PennFudanPed"


def _real_data_root() -> Path | None:
    from pedseg_lib.data import find_dataset

    for candidate in (os.environ.get("PEDSEG_DATA"), SHARED_DATA):
        if candidate and (found := find_dataset(candidate)) is not None:
            return found
    return None


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real Penn-Fudan folder; the test is skipped when it is not on this machine."""
    root = _real_data_root()
    if root is None:
        pytest.skip(f"real Penn-Fudan data not found at PEDSEG_DATA or {SHARED_DATA} (optional resource)")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image synthetic dataset in the Penn-Fudan layout, made once per test session."""
    from pedseg_lib.data import make_synthetic_pennfudan

    return make_synthetic_pennfudan(tmp_path_factory.mktemp("synthetic"), n_images=12, seed=0)


def _load_ci_colab():
    """The maintainers' script .ci/colab.py as a module (loaded once per session)."""
    name = "pedseg_ci_colab"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / ".ci" / "colab.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def ci_colab():
    """The maintainers' script .ci/colab.py as a module: the owner of the chapters' pin and the Colab-like check."""
    return _load_ci_colab()


# --- the Colab-like chapter runs, in the background ------------------------------------------------------------------
#
# Executing every chapter Colab-like takes minutes, almost all of it in subprocesses (pip, the notebooks' kernels).
# When a collected test needs the runs (``colab_chapters``), they start in a thread as soon as collection ends, and
# those tests are moved to the end of the session: every other test runs meanwhile. The kernels use one thread
# each (OMP_NUM_THREADS=1), so that they share the two cores of a small machine with the tests instead of fighting
# over them. Each chapter still runs alone in its own empty folder, one after the other.

COLAB_RECORDS = PROJECT_ROOT / "_build" / "colab" / "records.json"
COLAB_FIXTURES = ("colab_chapters",)


class _ColabRuns:
    """Every chapter executed once, Colab-like, in the smoke profile, in a background thread."""

    def __init__(self) -> None:
        import threading

        self.ci_colab = _load_ci_colab()
        # The kernels' environment as it is now, before any test patches os.environ.
        self.environ = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.setup = None
        self.records: dict[str, dict] = {}
        self.failure: BaseException | None = None
        self.ready = threading.Event()  # the environment and the wheel are there
        self.thread = threading.Thread(target=self._run, name="colab-chapters", daemon=True)

    def _run(self) -> None:
        import json

        try:
            self.setup = self.ci_colab.prepare()
            self.ready.set()
            COLAB_RECORDS.parent.mkdir(parents=True, exist_ok=True)
            for name in self.ci_colab.chapters():
                self.records[name] = self.ci_colab.run_chapter(self.setup, name, profile="smoke",
                                                               environ=self.environ)
                COLAB_RECORDS.write_text(json.dumps(list(self.records.values()), indent=1) + "\n")
        except BaseException as error:  # reported by the fixtures that wait for the runs
            self.failure = error
        finally:
            self.ready.set()

    def wait(self) -> dict[str, dict]:
        self.thread.join()
        if self.failure is not None:
            raise RuntimeError(f"the Colab-like chapter runs failed: {self.failure!r}") from self.failure
        return self.records

    def cleanup(self) -> None:
        if self.setup is not None and not self.thread.is_alive():
            import shutil

            shutil.rmtree(self.setup.work, ignore_errors=True)  # the executed chapters' runs: checkpoints


_colab_runs: _ColabRuns | None = None


def pytest_collection_modifyitems(config, items):
    """Tests that wait for the background chapter runs go last (stable order otherwise)."""
    waiting = [item for item in items if set(COLAB_FIXTURES) & set(getattr(item, "fixturenames", ()))]
    if waiting:
        items[:] = [item for item in items if item not in waiting] + waiting


def pytest_collection_finish(session):
    """Start the Colab-like chapter runs as soon as the collected tests are known to need them."""
    global _colab_runs
    if session.config.option.collectonly:
        return
    if any(set(COLAB_FIXTURES) & set(getattr(item, "fixturenames", ())) for item in session.items):
        _colab_runs = _ColabRuns()
        _colab_runs.thread.start()


def pytest_sessionfinish(session, exitstatus):
    if _colab_runs is not None:
        _colab_runs.cleanup()


@pytest.fixture(scope="session")
def colab_setup(ci_colab, tmp_path_factory):
    """The Colab-like environment and the freshly built wheel (nothing of pedseg installed yet)."""
    if _colab_runs is not None:
        _colab_runs.ready.wait()
        if _colab_runs.setup is not None:
            return _colab_runs.setup
    return ci_colab.prepare(tmp_path_factory.mktemp("colab"))


@pytest.fixture(scope="session")
def colab_chapters() -> dict[str, dict]:
    """Every chapter executed once, Colab-like, in the smoke profile: ``{name: record}`` (.ci/colab.py's records).

    Each record's ``folder`` holds the executed notebook. tests/test_colab.py checks the runs; tests/test_book.py
    renders the book from these executed notebooks, so no chapter is executed twice in one session. The records
    (per-chapter seconds) are also written to _build/colab/records.json as they come.
    """
    if _colab_runs is None:
        pytest.fail("the Colab-like chapter runs were not started (see pytest_collection_finish in conftest.py)")
    return _colab_runs.wait()

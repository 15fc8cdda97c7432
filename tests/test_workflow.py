"""The GitHub Actions workflow that publishes the book: valid against GitHub's workflow schema, and doing
what README promises (a build with warnings as errors: cpu profile for main, smoke for pull requests; then a
Pages deployment from pushes to main only, after a successful build)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))
# `cond && 'a' || 'b'` with cond `github.event_name == 'x'` (or !=): the one expression form the tests evaluate.
EVENT_CHOICE = re.compile(
    r"^\$\{\{\s*github\.event_name\s*(==|!=)\s*'(\w+)'\s*&&\s*'(\w+)'\s*\|\|\s*'(\w+)'\s*\}\}$")


def _book_workflow() -> dict:
    return yaml.safe_load((WORKFLOWS[0].parent / "book.yml").read_text())


def _build_step(build: dict) -> dict:
    steps = [step for step in build["steps"] if "jupyter-book build" in step.get("run", "")]
    assert len(steps) == 1, "expected exactly one `jupyter-book build` step"
    return steps[0]


def _value_for_event(value: str, event: str) -> str:
    """The value a workflow expression of the form above takes for ``event`` (a literal is itself)."""
    if "${{" not in str(value):
        return str(value)
    match = EVENT_CHOICE.match(str(value).strip())
    assert match, f"unexpected expression {value!r}: write `github.event_name == 'x' && 'a' || 'b'`"
    op, name, when_true, when_false = match.groups()
    return when_true if (event == name) == (op == "==") else when_false


def _cache_step(build: dict, path: str) -> dict:
    steps = [s for s in build["steps"] if s.get("uses", "").startswith("actions/cache@")
             and s.get("with", {}).get("path") == path]
    assert len(steps) == 1, f"expected one actions/cache step for {path}"
    return steps[0]


def test_workflows_validate_against_the_github_schema():
    assert WORKFLOWS, ".github/workflows/ has no workflow"
    # check-jsonschema ships the schema (SchemaStore's github-workflow.json), so this runs offline.
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_book_workflow_builds_strictly_and_deploys_main_only():
    workflow = _book_workflow()
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    commands = " ".join(step.get("run", "") for step in build["steps"])
    assert "bash .ci/setup" in commands, "the workflow must install the way README says"
    assert "jupyter-book build . -W" in commands
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact") for step in build["steps"])
    assert deploy["needs"] == "build" and "refs/heads/main" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_pushes_to_main_build_in_cpu_and_pull_requests_in_smoke():
    workflow = _book_workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert "pull_request" in triggers and "workflow_dispatch" in triggers
    build = workflow["jobs"]["build"]
    env = {**workflow.get("env", {}), **build.get("env", {}), **_build_step(build).get("env", {})}
    assert "PEDSEG_PROFILE" in env, "the build step must get PEDSEG_PROFILE"
    assert _value_for_event(env["PEDSEG_PROFILE"], "push") == "cpu"
    assert _value_for_event(env["PEDSEG_PROFILE"], "workflow_dispatch") == "cpu"
    assert _value_for_event(env["PEDSEG_PROFILE"], "pull_request") == "smoke"
    # The cpu profile downloads Penn-Fudan into the workspace, and the COCO weights once (a fixed cache key).
    assert "github.workspace" in env.get("PEDSEG_DATA", "")
    weights = _cache_step(build, "~/.cache/torch/hub/checkpoints")
    assert "${{" not in weights["with"]["key"], "the weights cache key must be fixed"
    # A cpu book takes up to ~30 minutes on 2 cores: the job limit must leave room for it and the setup.
    assert build["timeout-minutes"] >= 90


def test_execution_cache_key_holds_the_profile_and_the_content():
    build = _book_workflow()["jobs"]["build"]
    cache = _cache_step(build, "_build/.jupyter_cache")
    key = cache["with"]["key"]
    assert "env.PEDSEG_PROFILE" in key, "outputs of one profile must never be restored for another"
    for pattern in ("book/*.ipynb", "pedseg_lib/**", "pyproject.toml"):
        assert f"'{pattern}'" in key
    assert "restore-keys" not in cache["with"], "a partial key match would restore outputs of other content"
    steps = build["steps"]
    assert steps.index(cache) < steps.index(_build_step(build))


def test_deploy_runs_only_for_pushes_to_main_after_a_successful_build():
    workflow = _book_workflow()
    deploy = workflow["jobs"]["deploy"]
    needs = deploy["needs"] if isinstance(deploy["needs"], list) else [deploy["needs"]]
    assert needs == ["build"]
    condition = deploy["if"]
    assert "github.event_name == 'push'" in condition, "pull requests (and anything but a push) must not deploy"
    assert "github.ref == 'refs/heads/main'" in condition
    # always() / failure() / cancelled() would deploy after a failed build (e.g. a chapter in the wrong profile).
    assert not re.search(r"\b(always|failure|cancelled)\(\)", condition)
    # The artifact is uploaded after the build step, so a failed build uploads nothing.
    build = workflow["jobs"]["build"]
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert build["steps"].index(upload) > build["steps"].index(_build_step(build))
    assert "if" not in upload

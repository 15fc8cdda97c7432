"""The GitHub Actions workflows, valid against GitHub's workflow schema and doing what README promises.

book.yml: a build with warnings as errors (cpu profile for main, smoke for pull requests), then a Pages deployment
from pushes to main only, after a successful build. release.yml: on a tag v<version>, check tag == version == the
chapters' pin, build the sdist and wheel, run the suite, then publish to PyPI (trusted publishing) and GitHub.
"""

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


# --- The release workflow (README: Releasing) -------------------------------------------------------------------------

def _release_workflow() -> dict:
    return yaml.safe_load((WORKFLOWS[0].parent / "release.yml").read_text())


def _runs(job: dict) -> list[str]:
    return [step.get("run", "") for step in job["steps"]]


def test_release_runs_on_version_tags_only():
    workflow = _release_workflow()
    triggers = workflow.get("on", workflow.get(True))
    assert triggers == {"push": {"tags": ["v*"]}}, "a release is made by pushing a tag v<version>, nothing else"
    assert workflow["permissions"] == {"contents": "read"}, "only the publishing job may write"


def test_release_checks_tag_version_and_pins_before_it_builds():
    build = _release_workflow()["jobs"]["build"]
    runs = _runs(build)
    check = next(i for i, run in enumerate(runs) if "python .ci/colab.py check --tag" in run)
    built = next(i for i, run in enumerate(runs) if "python -m build" in run)
    assert check < built
    assert '"$GITHUB_REF_NAME"' in runs[check], "the pushed tag's name is what must equal v + version"
    assert any("pedseg-${version}-py3-none-any.whl" in run and "pedseg-${version}.tar.gz" in run for run in runs)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "dist/" and upload["with"]["if-no-files-found"] == "error"


def test_release_runs_the_suite_and_publishes_only_after_it_with_trusted_publishing():
    jobs = _release_workflow()["jobs"]
    assert any(run.strip() == "bash .ci/run" for run in _runs(jobs["test"])), "the suite, as CI runs it"
    publish = jobs["publish"]
    assert sorted(publish["needs"]) == ["build", "test"]
    assert "if" not in publish, "publishing must not run after a failed build or test"
    assert publish["permissions"] == {"id-token": "write", "contents": "write"}
    assert publish["environment"]["name"] == "pypi"
    pypi = [s for s in publish["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish@")]
    assert len(pypi) == 1 and not pypi[0].get("with", {}).get("password"), "trusted publishing: no stored token"
    assert any("gh release create" in run and "dist/*" in run for run in _runs(publish))
    steps = publish["steps"]
    release = next(i for i, s in enumerate(steps) if "gh release create" in s.get("run", ""))
    assert steps.index(pypi[0]) < release, "the GitHub release names files that are on PyPI already"


def test_the_release_check_passes_for_the_version_s_tag_and_fails_for_another():
    root = WORKFLOWS[0].parents[2]
    version = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M).group(1)
    ok = subprocess.run([sys.executable, ".ci/colab.py", "check", "--tag", f"v{version}"], cwd=root,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, ".ci/colab.py", "check", "--tag", "v999.0.0"], cwd=root,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and f"tag v999.0.0 != v + pyproject.toml's version {version}" in bad.stderr

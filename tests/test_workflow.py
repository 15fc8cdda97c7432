"""The GitHub Actions workflow that publishes the book: valid against GitHub's workflow schema, and doing
what README promises (smoke build with warnings as errors, then a Pages deployment from main only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))


def test_workflows_validate_against_the_github_schema():
    assert WORKFLOWS, ".github/workflows/ has no workflow"
    # check-jsonschema ships the schema (SchemaStore's github-workflow.json), so this runs offline.
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_book_workflow_builds_strictly_and_deploys_main_only():
    workflow = yaml.safe_load((WORKFLOWS[0].parent / "book.yml").read_text())
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    commands = " ".join(step.get("run", "") for step in build["steps"])
    assert "bash .ci/setup" in commands, "the workflow must install the way README says"
    assert "jupyter-book build . -W" in commands
    assert any(step.get("env", {}).get("PEDSEG_PROFILE") == "smoke" for step in build["steps"])
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact") for step in build["steps"])
    assert deploy["needs"] == "build" and "refs/heads/main" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}

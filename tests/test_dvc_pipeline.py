"""`dvc repro` end to end on the tiny profile, in a temporary git + DVC project.

Checks the behaviour users rely on: the whole chain runs from a fresh project, a second
`dvc repro` does nothing, and changing a tokenizer param re-runs only the tokenizer and what
depends on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, timeout: int = 900) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def _stages_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory, sample_path, repo_root) -> Path:
    """A scratch project: the repository's dvc.yaml, hrm/ sources, params.yaml on `tiny`."""
    proj = tmp_path_factory.mktemp("dvc-project")
    shutil.copy2(repo_root / "dvc.yaml", proj / "dvc.yaml")
    shutil.copytree(repo_root / "hrm", proj / "hrm", ignore=shutil.ignore_patterns("__pycache__"))
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "tiny"
    # Reuse the environment cache the rest of the suite builds, instead of a second build.
    raw["envs"]["cache_dir"] = str(repo_root / ".cache" / "hrm-envs")
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _run(["git", "init", "-q"], proj)
    _run(["git", "config", "user.email", "ci@example.com"], proj)
    _run(["git", "config", "user.name", "ci"], proj)
    _run(["dvc", "init", "-q"], proj)
    _run(["hrm", "data", "pull", str(sample_path), "--params", "params.yaml"], proj)
    _run(["dvc", "add", "data"], proj)
    return proj


def test_repro_runs_every_stage_then_nothing(dvc_project: Path):
    first = _run(["dvc", "repro"], dvc_project)
    expected = set(
        yaml.safe_load((dvc_project / "dvc.yaml").read_text())["stages"]
    ) - {"evaluate"} | {"evaluate@val", "evaluate@train"}
    assert _stages_ran(first) == expected

    gate = json.loads((dvc_project / "artifacts/gate/gate.json").read_text())
    assert gate["verdict"] in {"PROMOTE", "FLAG"}
    assert (dvc_project / "artifacts/gate/report.md").stat().st_size > 0
    shown = _run(["dvc", "metrics", "show", "--json"], dvc_project)
    assert "artifacts/eval/val/metrics.json" in shown

    second = _run(["dvc", "repro"], dvc_project)
    assert _stages_ran(second) == set(), second


def test_tokenizer_param_change_reruns_only_downstream(dvc_project: Path):
    params_path = dvc_project / "params.yaml"
    raw = yaml.safe_load(params_path.read_text())
    raw["tokenizer"]["min_frequency"] += 1
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    ran = _stages_ran(_run(["dvc", "repro"], dvc_project))
    assert {"tokenizer", "sequences", "train_foundation", "gate"} <= ran, ran
    assert not ran & {"validate", "split"}, ran

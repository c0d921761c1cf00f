"""What `make run` does, end to end on the tiny profile, in a temporary git + DVC project.

1. `hrm data materialise` with no source configured uses the offline generator on the real
   sdists of every `synth.envs` repository (tenacity, funcy, schema) and `dvc add`s the result
   (the default data of a fresh clone).
2. The generated instances are real bugs: checked here independently of the generator's own
   bookkeeping (the bug patch applies to the pristine tree, FAIL_TO_PASS fails with it and passes
   after reverting it) and by the Great Expectations suite.
3. `dvc repro` runs every stage; a second `dvc repro` does nothing; changing a tokenizer param
   re-runs only the tokenizer and what depends on it.
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

from hrm.config import load_params
from hrm.data.instance import read_instances

BIN = Path(sys.executable).parent
PER_ENV = 6
MIN_GENERATED = 12


def _run(args: list[str], cwd: Path, timeout: int = 900) -> str:
    # the project's own sqlite MLflow and pipeline key: nothing inherited from other tests
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HRM_PIPELINE_RUN")}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def _stages_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory, repo_root) -> Path:
    """A scratch project with the repository's dvc.yaml and hrm/ sources, on the tiny profile,
    whose data/ was materialised by the generator."""
    proj = tmp_path_factory.mktemp("dvc-project")
    shutil.copy2(repo_root / "dvc.yaml", proj / "dvc.yaml")
    shutil.copytree(repo_root / "hrm", proj / "hrm", ignore=shutil.ignore_patterns("__pycache__"))
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "tiny"
    raw["profiles"]["tiny"]["synth"] = {"max_instances": PER_ENV, "time_budget_s": 120}
    # Reuse the environment and corpus caches the rest of the suite builds.
    raw["envs"]["cache_dir"] = str(repo_root / ".cache" / "hrm-envs")
    raw["corpus"]["cache_dir"] = str(repo_root / ".cache" / "hrm-corpus")
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _run(["git", "init", "-q"], proj)
    _run(["dvc", "init", "-q"], proj)
    out = _run(["hrm", "data", "materialise", "--params", "params.yaml"], proj)
    assert "synth:" in out and "data.dvc" in out, out
    return proj


def test_generator_makes_real_bugs(project: Path):
    from hrm.envs.check import check_instances

    assert (project / "data.dvc").exists()
    instances = read_instances(project / "data" / "instances.jsonl")
    assert len(instances) >= MIN_GENERATED
    params = load_params(project / "params.yaml")
    assert {i.repo for i in instances} == set(params.synth.envs)  # every environment contributes
    report = check_instances(instances, params.envs, workers=2)
    counts = report.counts()
    assert counts.get("valid", 0) == len(instances), counts


def test_repro_runs_every_stage_then_nothing(step_runs, project: Path):
    first = _run(["dvc", "repro"], project)
    expected = set(
        yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    ) - {"evaluate"} | {"evaluate@val", "evaluate@test"}
    assert _stages_ran(first) == expected

    # The held-out repository never trains; the others do.
    splits = json.loads((project / "artifacts/splits/splits.json").read_text())["splits"]
    params = load_params(project / "params.yaml")
    repo_of = {i.instance_id: i.repo for i in read_instances(project / "data" / "instances.jsonl")}
    held = set(params.sequences.held_out_repos)
    assert held and all(s != "train" for i, s in splits.items() if repo_of[i] in held)
    assert any(s == "train" for i, s in splits.items() if repo_of[i] not in held)
    summary = json.loads((project / "artifacts/validated/summary.json").read_text())
    assert summary["quarantined"] == 0 and summary["valid"] >= MIN_GENERATED
    gate = json.loads((project / "artifacts/gate/gate.json").read_text())
    # The verdict follows from the per-criterion table (the tiny model cannot meet the plan).
    assert gate["verdict"] == "FLAG", gate
    assert len(gate["criteria"]) == 6 and gate["failing"]
    assert any(not row["passed"] for row in gate["criteria"])
    assert (project / "artifacts/gate/report.md").stat().st_size > 0
    assert any((project / "artifacts/gate/plots").glob("*.png"))
    shown = _run(["dvc", "metrics", "show", "--json"], project)
    assert "artifacts/eval/val/metrics.json" in shown and "artifacts/gate/gate.json" in shown

    # One MLflow run per step under one parent: the set `hrm pipeline run-local` leaves too
    # (tests/pipeline/test_run_local.py).
    assert list(step_runs(f"sqlite:///{project / 'mlflow.db'}").values()) == [step_runs.expected]

    second = _run(["dvc", "repro"], project)
    assert _stages_ran(second) == set(), second


def test_tokenizer_param_change_reruns_only_downstream(project: Path):
    """Checked with `dvc status` (which stages are stale) rather than a second full run."""
    params_path = project / "params.yaml"
    raw = yaml.safe_load(params_path.read_text())
    raw["profiles"]["tiny"]["tokenizer"]["vocab_size"] -= 64  # the active profile's override
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    def stale() -> set[str]:
        return set(json.loads(_run(["dvc", "status", "--json"], project)))

    assert stale() == {"tokenizer"}
    assert _stages_ran(_run(["dvc", "repro", "--single-item", "tokenizer"], project)) == {"tokenizer"}
    # The new tokenizer makes its consumers stale; the upstream stages stay clean.
    after = stale()
    assert "sequences" in after and not after & {"validate", "split", "tokenizer"}, after


def test_one_phase_change_makes_only_that_phase_stale(project: Path):
    """Each training stage tracks its own phase (`train.phases.N`, the profile's
    `phases.<name>`) and the shared train fields, so changing refinement's epochs leaves
    foundation and optimisation (19 of 26 minutes of a cpu run) alone."""
    params_path = project / "params.yaml"
    original = params_path.read_text()

    def params_changed() -> set[str]:
        """Stages whose tracked params differ from dvc.lock (earlier tests may have left
        stages stale for other reasons, e.g. a changed tokenizer)."""
        status = json.loads(_run(["dvc", "status", "--json"], project))
        # a params change is listed as {"changed deps": {"params.yaml": {"key": "modified"}}}
        return {stage for stage, changes in status.items()
                if any(isinstance(c, dict) and "params.yaml" in (c.get("changed deps") or {})
                       for c in changes)}

    before = params_changed()
    try:
        for edit, stage in ((lambda raw: raw["profiles"]["tiny"]["phases"]["refinement"].update(epochs=2),
                             "train_refinement"),
                            (lambda raw: raw["train"]["phases"][1].update(lr=1.0e-3),
                             "train_optimisation"),
                            (lambda raw: raw["train"].update(grad_clip=0.5),
                             "train_foundation")):
            raw = yaml.safe_load(original)
            edit(raw)
            params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
            # training stages only: the gate reads every phase (epoch counts) and reruns anyway
            changed = {s for s in params_changed() - before if s.startswith("train_")}
            if stage == "train_foundation":  # a shared field: every phase reruns
                assert {"train_foundation", "train_optimisation", "train_refinement"} <= changed
            else:
                assert changed == {stage}, (stage, changed)
    finally:
        params_path.write_text(original)


def test_training_stages_track_every_shared_train_field(repo_root: Path):
    """dvc.yaml lists the train fields one by one (so `phases` can be split per stage): a field
    added to params.yaml's train section must be tracked by every training stage."""
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    shared = {f"train.{k}" for k in raw["train"] if k != "phases"}
    for idx, phase in enumerate(raw["train"]["phases"]):
        tracked = set(stages[f"train_{phase['name']}"]["params"])
        assert shared <= tracked, sorted(shared - tracked)
        assert f"train.phases.{idx}" in tracked and "profiles.${profile}.phases." + phase["name"] in tracked
        assert "train" not in tracked and "train.phases" not in tracked

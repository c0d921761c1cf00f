"""What `make run` does, end to end on the tiny profile, in a temporary git + DVC project.

1. `hrm data materialise` with no source configured uses the offline generator on the real
   sdists of every `synth.envs` repository (tenacity, funcy, schema) and `dvc add`s the result
   (the default data of a fresh clone).
2. The generated instances are real bugs: checked here independently of the generator's own
   bookkeeping (the bug patch applies to the pristine tree, FAIL_TO_PASS fails with it and passes
   after reverting it) and by the Great Expectations suite.
3. `dvc repro` runs every stage; a second `dvc repro` does nothing; changing a tokenizer param
   re-runs only the tokenizer and what depends on it.
4. Every `hrm` module a stage's command imports (recorded by Python's `-X importtime` during that
   repro, lazy imports included) is covered by the stage's code deps in dvc.yaml, unless
   `NOT_OUTPUT_CODE` names it with the reason it cannot change the stage's outputs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
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


NOT_OUTPUT_CODE = {
    "hrm": "the empty package marker",
    "hrm.cli.*": "argument parsing; what a stage is run with is its `cmd`, which DVC tracks",
    "hrm.config": "the values a stage reads are tracked one by one under its `params`",
    "hrm.errors": "exception types only",
    "hrm.tracking": "MLflow logging: a record beside the outputs, not part of them",
    "hrm.artifact_store": "where MLflow keeps what a step logs (hrm-project: locations)",
    "hrm.sqlite_uri": "which file a sqlite tracking URI names (the registry's lock beside it)",
    "hrm.step_tracking": "MLflow logging of the data steps",
}
"""Modules a stage may import without listing them in its deps, and why (`pkg.*`: the package and
everything under it). What they import for themselves is excused with them (the config's
validators, the tracking's data-version lookup); what the stage's own code imports is not."""

IMPORT_RECORDER = """
import atexit, builtins, json, os, sys

_edges = set()
_import = builtins.__import__


def _recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    module = _import(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__", "?")
    if level:
        base = ((globals or {}).get("__package__") or "").rsplit(".", level - 1)[0]
        name = f"{base}.{name}" if name else base
    if name.split(".")[0] == "hrm":
        _edges.add((importer, name))
        for item in fromlist or ():
            if f"{name}.{item}" in sys.modules:
                _edges.add((importer, f"{name}.{item}"))
    return module


builtins.__import__ = _recording_import


@atexit.register
def _dump():
    # Written whole or not at all: a worker killed while it exits (a pool's terminate) once
    # left an empty log that failed the read.
    path = os.path.join(os.environ["HRM_IMPORT_LOG"], f"{os.getpid()}.json")
    with open(path + ".part", "w") as fh:
        json.dump({"argv": sys.argv[1:], "edges": sorted(_edges)}, fh)
    os.replace(path + ".part", path)
"""
"""A sitecustomize.py: every `import` of an `hrm` module, as (importing module, imported module),
written per process at exit (the lazy imports inside functions included)."""


def _excused(module: str) -> bool:
    return any(module == m.removesuffix(".*") or (m.endswith(".*") and module.startswith(m[:-1]))
               for m in NOT_OUTPUT_CODE)


def _trivial_package(root: Path, module: str) -> bool:
    """A package whose __init__ holds only a docstring, `__all__` and `from __future__`."""
    init = root.joinpath(*module.split("."), "__init__.py")
    if not init.is_file():
        return False
    body = ast.parse(init.read_text()).body
    return all((isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               or (isinstance(n, ast.ImportFrom) and n.module == "__future__")
               or (isinstance(n, ast.Assign) and [getattr(t, "id", "") for t in n.targets] == ["__all__"])
               for n in body)


def stage_imports(edges: list[tuple[str, str]], root: Path) -> set[str]:
    """The modules a stage's own code needs: reached from the command line (`hrm.cli`, the
    entry script) through importers that are not excused, with their parent packages (an
    import runs each parent's __init__) unless those are trivial."""
    needed: set[str] = set()
    frontier = {m for i, m in edges if i == "__main__" or i.startswith("hrm.cli") or not i.startswith("hrm")}
    while frontier:
        needed |= frontier
        frontier = {m for i, m in edges if i in needed and not _excused(i)} - needed
    for module in list(needed):
        parts = module.split(".")
        needed |= {".".join(parts[:k]) for k in range(1, len(parts))}
    return {m for m in needed if not _excused(m) and not _trivial_package(root, m)}


def imports_by_stage(log_dir: Path, stages: dict) -> dict[str, set[str]]:
    """Stage -> the `hrm` modules its command needed, from the recorder's logs of one repro (a
    process belongs to the stage whose `cmd` it ran; worker processes share their parent's)."""
    patterns = []
    for name, spec in stages.items():
        line = " ".join(shlex.split((spec.get("do") or spec)["cmd"])[1:])
        patterns.append((name, "foreach" in spec,
                         re.compile(re.escape(line).replace(re.escape("${item}"), r"(\S+)"))))
    out: dict[str, set[str]] = {}
    for path in log_dir.glob("*.json"):
        log = json.loads(path.read_text())
        for name, foreach, pattern in patterns:
            got = pattern.fullmatch(" ".join(log["argv"]))
            if got:
                stage = f"{name}@{got.group(1)}" if foreach else name
                out.setdefault(stage, set()).update(
                    stage_imports([tuple(e) for e in log["edges"]], log_dir.parent))
    return out


def uncovered_imports(imported: dict[str, set[str]], stages: dict, root: Path) -> dict[str, list[str]]:
    """Stage -> the source files of needed modules that none of its deps covers (a dep covers a
    file equal to it or under it)."""
    missing: dict[str, list[str]] = {}
    for stage, modules in imported.items():
        spec = stages[stage.split("@")[0]]
        deps = [str(d).rstrip("/") for d in (spec.get("do") or spec).get("deps", [])]
        for module in sorted(modules):
            path = Path(*module.split("."))
            rel = str((path / "__init__.py") if (root / path).is_dir() else path.with_suffix(".py"))
            if not any(rel == d or rel.startswith(d + "/") for d in deps):
                missing.setdefault(stage, []).append(rel)
    return missing


def _run(args: list[str], cwd: Path, timeout: int = 900, env_extra: dict[str, str] | None = None) -> str:
    # the project's own sqlite MLflow and pipeline key: nothing inherited from other tests
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HRM_PIPELINE_RUN")}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env.update(env_extra or {})
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
    recorder, logs = project / ".import-recorder", project / ".import-logs"
    recorder.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    (recorder / "sitecustomize.py").write_text(IMPORT_RECORDER)
    first = _run(["dvc", "repro"], project,
                 env_extra={"PYTHONPATH": str(recorder), "HRM_IMPORT_LOG": str(logs)})
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    expected = set(stages) - {"evaluate"} | {"evaluate@val", "evaluate@test"}
    assert _stages_ran(first) == expected

    # dvc.yaml's code deps hold every module each command needed (lazy imports included).
    imported = imports_by_stage(logs, stages)
    assert set(imported) == expected
    assert "hrm.sequences" in imported["sequences"] and "hrm.model.losses" in imported["train_foundation"]
    missing = uncovered_imports(imported, stages, project)
    assert not missing, "modules imported but not in the stage's deps:\n" + json.dumps(missing, indent=1)

    # The held-out repository never trains; the others do.
    splits = json.loads((project / "artifacts/splits/splits.json").read_text())["splits"]
    params = load_params(project / "params.yaml")
    repo_of = {i.instance_id: i.repo for i in read_instances(project / "data" / "instances.jsonl")}
    held = set(params.sequences.held_out_repos)
    assert held and all(s != "train" for i, s in splits.items() if repo_of[i] in held)
    assert any(s == "train" for i, s in splits.items() if repo_of[i] not in held)
    summary = json.loads((project / "artifacts/validated/summary.json").read_text())
    assert summary["quarantined"] == 0 and summary["valid"] >= MIN_GENERATED
    # The paired reverse-learning ablation: the control ran the model's phases and epochs, and
    # val pairs every row's losses.
    control = json.loads((project / "artifacts/train/control/control.json").read_text())
    assert control["trained"] and set(control["steps"]) == {"foundation", "optimisation", "refinement"}
    val = json.loads((project / "artifacts/eval/val/metrics.json").read_text())
    refinement = json.loads((project / "artifacts/train/refinement/summary.json").read_text())
    assert val["reverse_learning_control"]["global_epoch"] == refinement["epoch"]
    lower, higher = val["reverse_learning_rows_lower"], val["reverse_learning_rows_higher"]
    assert lower + higher <= val["rows"] and 0 < val["reverse_learning_p_value"] <= 1
    assert val["reverse_learning_integration"] == pytest.approx(
        (lower + (val["rows"] - lower - higher) / 2) / val["rows"])
    assert "not_measured" not in val
    gate = json.loads((project / "artifacts/gate/gate.json").read_text())
    ablation = next(r for r in gate["criteria"] if r["metric"] == "reverse_learning_integration")
    assert f"sign test p = {val['reverse_learning_p_value']:.3g}" in ablation["note"]
    assert "## Reverse-learning ablation (`val`)" in (project / "artifacts/gate/report.md").read_text()
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


# Runs the page's first inline script with no DOM and no network; it must define vegaEmbed.
BUNDLE_CHECK_JS = r"""
const html = require("fs").readFileSync(process.argv[1], "utf8");
const inline = [...html.matchAll(/<script type\s*=\s*"text\/javascript">([\s\S]*?)<\/script>/g)];
globalThis.window = globalThis;
(0, eval)(inline[0][1]);
console.log(typeof window.vegaEmbed);
"""


def test_plots_show_renders_offline_with_train_and_val_together(project: Path):
    """`dvc plots show` after `hrm plots offline` (what `make run` does): a page that loads
    nothing from elsewhere, whose plots hold train and val of every phase and draw with the
    Vega-Lite version inlined."""
    import vl_convert

    from hrm.offline_plots import VEGA_LITE_VERSION

    _run(["dvc", "repro"], project)  # nothing to do after the test above; the whole run alone
    assert "dvc-offline.html" in _run(["hrm", "plots", "offline"], project)
    assert "html_template" in (project / ".dvc" / "config.local").read_text()
    _run(["dvc", "plots", "show", "--out", "plots-page"], project)
    page = project / "plots-page" / "index.html"
    html = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", html) and "cdn.jsdelivr" not in html
    specs = {name: json.loads(spec) for spec, name in
             re.findall(r"var spec = (.*?);\s*vegaEmbed\('#([^']+)', spec\);", html, re.S)}
    series = {"loss": "lm_loss", "token_accuracy": "token_accuracy", "edit_accuracy": "edit_accuracy"}
    assert set(specs) == set(series)  # no train-only plot beside them
    for name, field in series.items():
        drawn = specs[name]["encoding"]["strokeDash"]["scale"]["domain"]
        assert drawn == [f"{phase}/history.csv::{f}" for phase in ("foundation", "optimisation", "refinement")
                         for f in (field, f"val_{field}")], drawn
        svg = vl_convert.vegalite_to_svg(specs[name], vl_version=VEGA_LITE_VERSION)
        assert svg.count('aria-roledescription="line mark"') >= len(drawn)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the inline bundle's execution is not checked")
    ran = subprocess.run([node, "-e", BUNDLE_CHECK_JS, str(page)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip() == "function", ran.stderr[-2000:]


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
            # the reverse-learning control trains every phase: any change reruns it
            assert "train_control" in changed, (stage, changed)
            changed.discard("train_control")
            if stage == "train_foundation":  # a shared field: every phase reruns
                assert {"train_foundation", "train_optimisation", "train_refinement"} <= changed
            else:
                assert changed == {stage}, (stage, changed)
    finally:
        params_path.write_text(original)


def test_dvc_exp_run_sets_a_phase_by_name(project: Path):
    """README's `dvc exp run -S 'profiles.<profile>.phases.<name>.epochs=N'`: the experiment
    reruns that phase and what follows it, and `dvc exp show` records the value. Last of the
    tests on `project`: the workspace keeps the experiment's params and outputs."""
    identity = {"GIT_AUTHOR_NAME": "hrm-test", "GIT_AUTHOR_EMAIL": "hrm-test@example.invalid",
                "GIT_COMMITTER_NAME": "hrm-test", "GIT_COMMITTER_EMAIL": "hrm-test@example.invalid"}
    _run(["dvc", "repro", "train_refinement"], project)  # earlier tests left a tokenizer change
    _run(["git", "add", "-A"], project, env_extra=identity)
    _run(["git", "commit", "-qm", "baseline run"], project, env_extra=identity)  # exps branch from it
    raw = yaml.safe_load((project / "params.yaml").read_text())
    epochs = raw["profiles"]["tiny"]["phases"]["refinement"]["epochs"] + 1
    out = _run(["dvc", "exp", "run", "-S", f"profiles.tiny.phases.refinement.epochs={epochs}",
                "train_refinement"], project, env_extra=identity)
    assert _stages_ran(out) == {"train_refinement"}, out[-3000:]
    summary = json.loads((project / "artifacts/train/refinement/summary.json").read_text())
    optimisation = json.loads((project / "artifacts/train/optimisation/summary.json").read_text())
    assert summary["epoch"] == optimisation["epoch"] + epochs  # global epochs across phases
    # `dvc exp show`: the commit's value, and the experiment's beside it
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project, env_extra=identity))

    def refinement(rev: dict) -> dict:
        return rev["data"]["params"]["params.yaml"]["data"]["profiles"]["tiny"]["phases"]["refinement"]

    baseline = next(rev for rev in shown if rev.get("experiments"))
    assert refinement(baseline)["epochs"] == epochs - 1
    assert [refinement(r)["epochs"] for e in baseline["experiments"] for r in e["revs"]] == [epochs]


def test_deps_check_names_each_missing_module(repo_root: Path):
    """The deps check fails where it should: a module the stage's code imports (directly, lazily
    or through another) and no dep covers; not for the config's or the CLI's own imports."""
    edges = [("__main__", "hrm.cli"), ("hrm.cli.train", "hrm.train.run"),
             ("hrm.train.run", "hrm.tokenizer"), ("hrm.tokenizer", "hrm.model.losses"),
             ("hrm.cli.train", "hrm.config"), ("hrm.config", "hrm.synth.mutations"),
             ("hrm.train.run", "hrm.tracking"), ("hrm.tracking", "hrm.data.materialise")]
    needed = stage_imports(edges, repo_root)
    # hrm.model's __init__ runs with hrm.model.losses and is not trivial; hrm.train's too
    assert needed == {"hrm.train", "hrm.train.run", "hrm.tokenizer", "hrm.model", "hrm.model.losses"}
    stages = {"tok": {"deps": ["hrm/model", "hrm/train/", "data.jsonl"]},
              "evaluate": {"foreach": ["val"], "do": {"deps": ["hrm/eval"]}}}
    imported = {"tok": needed, "evaluate@val": {"hrm.eval.proposals", "hrm.rewrites"}}
    assert uncovered_imports(imported, stages, repo_root) == {
        "tok": ["hrm/tokenizer.py"], "evaluate@val": ["hrm/rewrites.py"]}


def test_training_stages_track_every_shared_train_field(repo_root: Path):
    """dvc.yaml lists the train fields one by one (so `phases` can be split per stage): a field
    added to params.yaml's train section must be tracked by every training stage."""
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    # reverse_control only says whether the control stage trains (it tracks all of `train`)
    shared = {f"train.{k}" for k in raw["train"] if k not in ("phases", "reverse_control")}
    assert "train" in stages["train_control"]["params"]
    assert all("train.reverse_control" not in stages[f"train_{p['name']}"]["params"]
               for p in raw["train"]["phases"])
    for idx, phase in enumerate(raw["train"]["phases"]):
        tracked = set(stages[f"train_{phase['name']}"]["params"])
        assert shared <= tracked, sorted(shared - tracked)
        assert f"train.phases.{idx}" in tracked and "profiles.${profile}.phases." + phase["name"] in tracked
        assert "train" not in tracked and "train.phases" not in tracked

"""DAG parity: the KFP tasks and the dvc.yaml stages are the same steps in the same order."""

from __future__ import annotations

from pathlib import Path

from pipelines.hrm_pipeline import STAGE_OF_TASK
from pipelines.spec import ancestors, dvc_stage_graph, task_graph


def _kfp_stage_graph(spec: dict) -> dict[str, set[str]]:
    """The KFP graph projected onto DVC stages through STAGE_OF_TASK (unmapped tasks dropped)."""
    graph = task_graph(spec)
    projected: dict[str, set[str]] = {}
    for task in graph:
        stage = STAGE_OF_TASK[task]
        if stage is None:
            continue
        deps = {STAGE_OF_TASK[a] for a in ancestors(graph, task)} - {None, stage}
        projected.setdefault(stage, set()).update(deps)
    return projected


def test_every_task_is_mapped_and_every_stage_is_run(spec: dict, repo_root: Path) -> None:
    graph = task_graph(spec)
    assert set(graph) == set(STAGE_OF_TASK), "a task without a documented stage mapping"
    dvc = dvc_stage_graph(repo_root / "dvc.yaml", repo_root / "params.yaml")
    mapped = {s for s in STAGE_OF_TASK.values() if s is not None}
    assert mapped == set(dvc)


def test_same_order(spec: dict, repo_root: Path) -> None:
    dvc = dvc_stage_graph(repo_root / "dvc.yaml", repo_root / "params.yaml")
    dvc_closure = {stage: ancestors(dvc, stage) for stage in dvc}
    kfp_closure = _kfp_stage_graph(spec)
    # Same "runs after" relation both ways: nothing DVC orders is unordered (or reversed) in
    # KFP, and KFP adds no ordering DVC lacks.
    assert kfp_closure == dvc_closure


def test_ingest_feeds_validate_only(spec: dict) -> None:
    graph = task_graph(spec)
    assert graph["params"] == set()
    assert graph["ingest"] == {"params"}
    assert {t for t, deps in graph.items() if "ingest" in deps} == {"validate"}


def test_every_task_reads_the_resolved_params(spec: dict) -> None:
    """`params` (profile + the run's overrides) runs first and everything runs after it."""
    graph = task_graph(spec)
    assert all("params" in ancestors(graph, t) for t in graph if t != "params")


def test_parity_check_catches_a_reordered_dag(spec: dict, repo_root: Path) -> None:
    """Guard against a vacuous comparison: swapping two DVC stages' edges must break it."""
    dvc = dvc_stage_graph(repo_root / "dvc.yaml", repo_root / "params.yaml")
    dvc["tokenizer"] = {"validate"}  # tokenizer no longer after split
    closure = {stage: ancestors(dvc, stage) for stage in dvc}
    assert _kfp_stage_graph(spec) != closure

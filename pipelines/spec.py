"""Read the step graph back out of a compiled pipeline and out of dvc.yaml.

Used to check that the KFP DAG and the DVC stages are the same steps in the same order
(`STAGE_OF_TASK` maps one onto the other), and handy to inspect a compiled package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_spec(path: str | Path) -> dict[str, Any]:
    """The pipeline spec document of a compiled IR YAML (the first YAML document)."""
    docs = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0]:
        raise ValueError(f"{path}: not a compiled KFP pipeline (no 'root')")
    return docs[0]


def _walk(spec: dict[str, Any], dag: dict[str, Any], inherited: set[str],
          graph: dict[str, set[str]], components: dict[str, str]) -> None:
    tasks = dag.get("tasks", {})
    for key, task in tasks.items():
        deps = set(inherited)
        for dep in task.get("dependentTasks", []):
            deps |= _leaves(spec, tasks, dep)
        comp_name = task["componentRef"]["name"]
        comp = spec["components"][comp_name]
        if "dag" in comp:  # a control-flow group (dsl.If / dsl.Else): its tasks inherit deps
            _walk(spec, comp["dag"], deps, graph, components)
        else:
            name = task.get("taskInfo", {}).get("name", key)
            graph[name] = deps
            components[name] = comp_name


def _leaves(spec: dict[str, Any], tasks: dict[str, Any], key: str) -> set[str]:
    """Display names of the executable tasks a (possibly group) task stands for."""
    task = tasks[key]
    comp = spec["components"][task["componentRef"]["name"]]
    if "dag" not in comp:
        return {task.get("taskInfo", {}).get("name", key)}
    inner = comp["dag"].get("tasks", {})
    return set().union(*(_leaves(spec, inner, k) for k in inner)) if inner else set()


def task_graph(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Executable task display name -> display names of the tasks it directly depends on."""
    graph: dict[str, set[str]] = {}
    _walk(spec, spec["root"]["dag"], set(), graph, {})
    return graph


def task_components(spec: dict[str, Any]) -> dict[str, str]:
    """Executable task display name -> its component key in the spec (`comp-train-phase-2`)."""
    components: dict[str, str] = {}
    _walk(spec, spec["root"]["dag"], set(), {}, components)
    return components


def _under(path: str, root: str) -> bool:
    path, root = path.rstrip("/"), root.rstrip("/")
    return path == root or path.startswith(root + "/")


def dvc_stage_graph(dvc_yaml: str | Path, params_yaml: str | Path) -> dict[str, set[str]]:
    """dvc.yaml stage (foreach entries as `stage@item`) -> the stages whose outs it reads."""
    doc = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))
    params = yaml.safe_load(Path(params_yaml).read_text(encoding="utf-8"))
    stages: dict[str, tuple[list[str], list[str]]] = {}
    for name, stage in doc["stages"].items():
        if "foreach" in stage:
            ref = stage["foreach"].strip("${} ")
            items: Any = params
            for part in ref.split("."):
                items = items[part]
            for item in items:
                body = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
                stages[f"{name}@{item}"] = _paths(yaml.safe_load(body))
        else:
            stages[name] = _paths(stage)
    graph: dict[str, set[str]] = {}
    for name, (deps, _) in stages.items():
        graph[name] = {
            other for other, (_, outs) in stages.items() if other != name
            and any(_under(d, o) or _under(o, d) for d in deps for o in outs)
        }
    return graph


def _paths(stage: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(deps, outs + metrics + plots) of one stage, as plain paths."""
    def names(entries: list[Any]) -> list[str]:
        return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]

    outs = names(stage.get("outs")) + names(stage.get("metrics")) + names(stage.get("plots"))
    return names(stage.get("deps")), outs


def ancestors(graph: dict[str, set[str]], node: str) -> set[str]:
    """Every node `node` depends on, directly or not."""
    seen: set[str] = set()
    stack = list(graph.get(node, ()))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(graph.get(current, ()))
    return seen

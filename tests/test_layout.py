"""The code's shape: no import cycle among the project's modules, lazy imports included.

A cycle hidden in a function-level or TYPE_CHECKING import still ties two modules together
(neither can be read, tested or moved alone), so every `import` statement counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("hrm", "components", "pipelines")


def module_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body."""
    files = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                # Importing one's own package (its __init__) is not a dependency on a sibling.
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(repo_root):
    graph = module_graph(repo_root)
    assert "hrm.envs.sandbox" in graph["hrm.envs.environment"]  # the walk sees real imports
    assert cycles(graph) == []


def test_functions_stay_short(repo_root):
    """No function in hrm/ over 100 lines; `train_phase` under 80 (it reads like torchtitan's
    `train()`: set up, resume, step, end of epoch, summary)."""
    long = []
    lengths = {}
    for path in sorted((repo_root / "hrm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                lengths[f"{path.relative_to(repo_root)}::{node.name}"] = n
                if n > 100:
                    long.append((n, f"{path.relative_to(repo_root)}:{node.lineno} {node.name}"))
    assert long == []
    assert lengths["hrm/train/loop.py::train_phase"] < 80

"""The HRM's rewrites re-ranked by how natural the fixed code reads, and abstention.

The HRM scores each rewrite of the buggy code by its *gain* (log-odds of the rewrite's outputs
against keeping those positions, `hrm.eval.proposals`). It knows where bugs tend to be put, not
whether this function has one: it proposes a change to a correct function as surely as to a
buggy one. An n-gram model of the user's repository (`hrm.naturalness`) scores each rewrite's
*naturalness*: log p(code after the rewrite) - log p(buggy code), both under the base model
(`hrm.naturalness.base_model`: the clean training code the tokenizer directory carries)
interpolated with a cache of the row's repository
without the row's own functions. Fused score (`eval.naturalness.weight`, w):

    score(rewrite) = gain + w * naturalness

The greedy fix is the best-scored rewrite, applied only if the n-gram model prefers it to the
buggy code (naturalness > 0, `eval.naturalness.abstain`); otherwise the prediction is the
buggy code unchanged (`RowProposal.abstain`). The search (which has the tests to decide) still
starts from the best-scored rewrite. Why and what it measured: docs/metrics.md "Naturalness".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from hrm.eval.proposals import Outputs, RowProposal
from hrm.naturalness import Interpolated, NgramModel, logprob_delta, python_tokens

_DIFF_GIT = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


def _is_test_path(rel: str) -> bool:
    parts = rel.split("/")
    return any(p.startswith("test") for p in parts[:-1]) or parts[-1].startswith("test") \
        or parts[-1] == "conftest.py"


def repository_sources(tree: Path, buggy_files: dict[str, str], regions: Sequence[tuple[str, int, str]],
                       patched: set[str], max_tokens: int) -> list[list[str]]:
    """Token sequences of the buggy repository's Python sources, tests excluded, with the row's
    own regions (file, 1-based first line, buggy text) blanked out: the cache must not vote for
    the code being judged. Files the bug patch touches are read in their buggy state
    (`buggy_files`), or left out when that state is not known. The row's own files come first,
    then the files of their directories, then the rest by path, up to `max_tokens`."""
    own = {file: [] for file, _, _ in regions}
    for file, start, text in regions:
        own[file].append((start, start + len(text.splitlines())))
    dirs = {str(Path(f).parent) for f in own}
    rels = sorted(str(p.relative_to(tree)) for p in tree.rglob("*.py") if p.is_file())
    rels = [r for r in rels if not _is_test_path(r) and not r.startswith((".", "venv/"))]
    rels.sort(key=lambda r: (r not in own, str(Path(r).parent) not in dirs, r))
    out, total = [], 0
    for rel in rels:
        if rel in buggy_files:
            text = buggy_files[rel]
        elif rel in patched:
            continue
        else:
            text = (tree / rel).read_text(encoding="utf-8", errors="replace")
        tokens = python_tokens(blank_regions(text, own.get(rel, [])))
        out.append(tokens[:max(0, max_tokens - total)])
        total += len(out[-1])
        if total >= max_tokens:
            break
    return out


def blank_regions(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with the lines [start, end) of each span (1-based) emptied, the line count kept."""
    lines = text.splitlines(keepends=True)
    for start, end in spans:
        lines[start - 1:end - 1] = ["\n"] * len(lines[start - 1:end - 1])
    return "".join(lines)


def file_cache(source: str, regions: Sequence[tuple[int, str]]) -> list[list[str]]:
    """The cache of a lone file (`hrm repair`, the MLflow model): its code without the regions
    (1-based first line, text) being judged."""
    return [python_tokens(blank_regions(source, [(a, a + len(t.splitlines())) for a, t in regions]))]


def patched_paths(patch: str) -> set[str]:
    """Every path a unified diff's `diff --git` lines name."""
    return {p for m in _DIFF_GIT.finditer(patch) for p in m.groups()}


def reranks(eval_cfg) -> bool:
    """Whether decoding re-ranks the rewrites (`eval.naturalness` on, with rewrites to rank)."""
    return eval_cfg.naturalness.enabled and eval_cfg.fix_space == "rewrites"


def repository_cache(tree: Path, buggy_files: dict[str, str], regions: Sequence[tuple[str, int, str]],
                     patch: str, max_tokens: int) -> list[list[str]]:
    """`repository_sources` of a bug: the files its patch touches are known only in `buggy_files`."""
    return repository_sources(tree, buggy_files, regions, patched_paths(patch), max_tokens)


def cached_model(base: NgramModel, cache: list[list[str]] | None, cache_weight: float) -> Interpolated:
    """The base model interpolated with a cache model fitted on `cache` (none when it holds no
    token: an empty model would give every token probability 1)."""
    fitted = NgramModel(base.order).fit(cache) if cache and any(cache) else None
    return Interpolated(base, fitted, cache_weight)


def row_model(base: NgramModel, ctx, cfg) -> Interpolated:
    """The base model interpolated with the row's repository cache; `ctx` is the row's
    `hrm.eval.execution.RowContext`, or a string (no environment: the base model alone)."""
    if isinstance(ctx, str):
        return cached_model(base, None, cfg.cache_weight)
    regions = [(h.file, h.buggy_start, h.buggy_text) for h in ctx.hunks]
    return cached_model(base, repository_cache(Path(ctx.env.pristine), ctx.buggy_files, regions,
                                               ctx.instance.patch, cfg.cache_max_tokens), cfg.cache_weight)


def naturalness_scorer(texts_of: Callable[[Outputs], Sequence[str]], model) -> Callable[[Outputs], float]:
    """`naturalness(outputs)`: log p(code after outputs) - log p(buggy code) under `model`,
    summed over the row's regions; remembered per outputs, so the systems that rank the same
    rewrites (the model, the untrained model, the n-gram model alone) score each once."""
    buggy = [python_tokens(t) for t in texts_of({})]
    seen: dict[tuple, float] = {}

    def naturalness(outputs: Outputs) -> float:
        key = tuple(sorted(outputs.items()))
        if key not in seen:
            seen[key] = sum(logprob_delta(model, old, python_tokens(t))
                            for old, t in zip(buggy, texts_of(outputs), strict=True))
        return seen[key]

    return naturalness


def fuse(prop: RowProposal, naturalness: Callable[[Outputs], float], *, weight: float,
         abstain: bool, hrm_weight: float = 1.0) -> RowProposal:
    """`prop` with its rewrites re-ranked by hrm_weight x gain + weight x naturalness (stable:
    ties keep the proposal's order) and `abstain` set where the best one is not more natural
    than the buggy code. `hrm_weight` 0: the n-gram model alone (a baseline). A row without
    rewrites is returned as it is."""
    if not prop.rewrites:
        return prop
    natural = [naturalness(outputs) for _, _, outputs in prop.rewrites]
    order = sorted(range(len(natural)), key=lambda j: -(hrm_weight * prop.rewrites[j][0] + weight * natural[j]))
    return replace(prop, rewrites=[prop.rewrites[j] for j in order],
                   naturalness=[natural[j] for j in order], abstain=abstain and natural[order[0]] <= 0)

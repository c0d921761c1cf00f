"""`hrm corpus build`: mutate the functions of pinned packages into (buggy, fixed) rows.

Per package (`corpus.packages`, each `NAME==VERSION`): its sdist is fetched once
(`hrm.corpus.fetch`), every module outside tests/docs is cut into units (`hrm.regions.units_of`),
and each function of at most `corpus.max_function_lines` lines is mutated on its own
(`hrm.synth.mutations.function_mutations`). Of a function's mutations at most
`corpus.max_per_function` are kept, taking kinds in turn (a seeded order per function), so no
kind crowds out the others. Rows with the same (buggy, fixed) text are kept once. When more rows
exist than `corpus.max_rows`, a seeded sample taking kinds in turn is kept (`balanced_sample`). The output is deterministic for a
config (sorted by id).

Each row is one function: no file context is needed (the bug never leaves the function), and no
test runs. Its problem statement is the first line a generated issue has
(`` `name` in `module` misbehaves ``): the model always reads which function is named.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from hrm.config import CorpusConfig, Params
from hrm.corpus.fetch import package_marker, package_tree, parse_pin, source_files
from hrm.corpus.rows import CorpusRow, write_rows
from hrm.regions import RegionError, split_lines, units_of
from hrm.synth.mutations import KINDS, NON_INFERABLE, function_mutations

CORPUS_FILE = "corpus.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class CorpusSummary:
    rows: int
    """Rows written."""
    candidates: int
    """Rows available before the `max_rows` sample (after per-function caps and dedup)."""
    functions: int
    """Functions that gave at least one mutation."""
    by_package: dict[str, int]
    by_kind: dict[str, int]
    non_inferable: int
    """Rows of `NON_INFERABLE` kinds (the fix re-adds code the buggy function no longer shows)."""
    packages: dict[str, dict]
    """Per package: archive name and sha256 of the sdist mutated."""
    elapsed_s: float
    rows_per_minute: float


def statement_for(function: str, module: str) -> str:
    """The problem statement of a corpus row: which function misbehaves, nothing more."""
    short = function.split(".<locals>.")[0]
    return f"`{short}` in `{module}` misbehaves\n"


def _module_of(rel: str) -> str:
    stem = rel[:-3] if rel.endswith(".py") else rel
    parts = [p for p in stem.split("/") if p not in ("src", "lib")]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def file_rows(requirement: str, tree: str, rel: str, cfg_json: str) -> list[dict]:
    """Every kept mutation row of one module (worker function; plain arguments for spawn)."""
    cfg = CorpusConfig.model_validate_json(cfg_json)
    path = Path(tree) / rel
    try:
        source = path.read_text(encoding="utf-8")
        units = units_of(source)
    except (UnicodeDecodeError, RegionError, RecursionError):
        return []
    lines = split_lines(source)  # `\n` only, as the AST counts lines (not `\f`, `\x1c`, ...)
    name, version = parse_pin(requirement)
    kinds = tuple(k for k in KINDS if k in cfg.kinds)
    out: list[dict] = []
    for unit in units:
        text = "".join(lines[unit.start: unit.end])
        stripped = text.lstrip()
        if not stripped.startswith(("def ", "async def ", "@")) or "def " not in text:
            continue
        if unit.end - unit.start > cfg.max_function_lines:
            continue
        try:
            mutations = function_mutations(text, kinds)
        except RecursionError:
            continue
        if not mutations:
            continue
        rng = random.Random(f"{cfg.seed}:{requirement}:{rel}:{unit.name}")
        by_kind: dict[str, list[tuple[int, str]]] = {}
        for kind, index, mutated in mutations:
            by_kind.setdefault(kind, []).append((index, mutated))
        order = sorted(by_kind)
        rng.shuffle(order)
        for kind in order:
            rng.shuffle(by_kind[kind])
        chosen: list[tuple[str, int, str]] = []
        while len(chosen) < cfg.max_per_function and any(by_kind.values()):
            for kind in order:
                if by_kind[kind] and len(chosen) < cfg.max_per_function:
                    index, mutated = by_kind[kind].pop()
                    chosen.append((kind, index, mutated))
        module = _module_of(rel)
        for kind, index, mutated in chosen:
            row = CorpusRow(
                id=f"{name.lower()}-{version}:{rel}:{unit.name}@{unit.start + 1}:{kind}:{index}",
                package=requirement,
                file=rel,
                function=unit.name,
                kind=kind,
                start_line=unit.start + 1,
                buggy=mutated,
                fixed=text,
                problem_statement=statement_for(unit.name, module),
            )
            out.append(asdict(row))
    return out


def build_corpus(cfg: CorpusConfig, out_dir: str | Path, *, progress: bool = True) -> CorpusSummary:
    """Step: write `corpus.jsonl` and `summary.json` into `out_dir`; returns the summary."""
    from tqdm import tqdm

    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, str, str]] = []
    packages: dict[str, dict] = {}
    # Fetched side by side: each `pip download` is mostly its own start-up and the network
    # (12 sdists: 21 s one after another, 11 s with pip's cache warm; 51 s, 42 s cold). The
    # config rejects a package listed twice, so no two threads fill the same cache directory.
    with ThreadPoolExecutor(max_workers=min(6, max(1, len(cfg.packages)))) as pool:
        trees = list(pool.map(lambda spec: package_tree(spec.package, cfg.cache_dir), cfg.packages))
    for spec, tree in zip(cfg.packages, trees, strict=True):
        marker = package_marker(tree)
        packages[spec.package] = {"archive": marker["archive"], "sha256": marker["sha256"]}
        for path in source_files(tree, spec.source_dirs or None):
            jobs.append((spec.package, str(tree), path.relative_to(tree).as_posix()))
    cfg_json = cfg.model_dump_json()
    rows: list[dict] = []
    workers = max(1, min(cfg.workers, os.cpu_count() or 1))
    bar = tqdm(total=len(jobs), desc="corpus", unit="file", disable=not progress)
    if workers == 1:
        for job in jobs:
            rows.extend(file_rows(*job, cfg_json))
            bar.update(1)
    else:
        with get_context("spawn").Pool(workers) as pool:
            for got in pool.imap(_file_rows_star, [(*job, cfg_json) for job in jobs], chunksize=4):
                rows.extend(got)
                bar.update(1)
    bar.close()
    seen: set[str] = set()
    unique: list[dict] = []
    for row in rows:
        key = hashlib.sha256((row["buggy"] + "\0" + row["fixed"]).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append(row)
    candidates = len(unique)
    if cfg.max_rows is not None and len(unique) > cfg.max_rows:
        unique = balanced_sample(unique, cfg.max_rows, cfg.seed)
    unique.sort(key=lambda r: r["id"])
    write_rows(out_dir / CORPUS_FILE, [CorpusRow(**r) for r in unique])
    elapsed = time.monotonic() - started
    summary = CorpusSummary(
        rows=len(unique),
        candidates=candidates,
        functions=len({(r["package"], r["file"], r["function"]) for r in unique}),
        by_package=dict(sorted(Counter(r["package"] for r in unique).items())),
        by_kind=dict(sorted(Counter(r["kind"] for r in unique).items())),
        non_inferable=sum(r["kind"] in NON_INFERABLE for r in unique),
        packages=packages,
        elapsed_s=round(elapsed, 1),
        rows_per_minute=round(60.0 * candidates / max(elapsed, 1e-9), 1),
    )
    (out_dir / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=1) + "\n")
    return summary


def corpus_step(params: Params, out_dir: str | Path, *, progress: bool = True,
                tracking: bool = True) -> tuple[CorpusSummary, dict]:
    """The `corpus` stage: build corpus.jsonl from `params.corpus`, validate it (bad rows go to
    quarantine.jsonl with the reason; summary.json), and with `tracking` log both
    (`hrm.step_tracking`). Returns the build summary and the validation report."""
    from hrm.corpus.validate import validate_corpus

    started = time.time()
    summary = build_corpus(params.corpus, out_dir, progress=progress)
    report = validate_corpus(out_dir)
    if tracking:
        from hrm.step_tracking import log_corpus

        log_corpus(params, summary, report, started)
    return summary, report


def balanced_sample(rows: list[dict], limit: int, seed: int) -> list[dict]:
    """At most `limit` rows, kinds taken in turn (each kind's rows in a seeded order): a kind
    that fits nearly every function (a variable misuse) does not crowd out rarer ones."""
    rng = random.Random(seed)
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    queues = []
    for kind in sorted(by_kind):
        queue = by_kind[kind]
        rng.shuffle(queue)
        queues.append(queue)
    out: list[dict] = []
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop())
    return out


def _file_rows_star(args: tuple) -> list[dict]:
    return file_rows(*args)

"""`hrm data synth`: search for mutations that some of the package's own tests catch.

Flow: build (or reuse) the environment; run its whole suite once on the pristine tree (the
baseline: which tests pass); enumerate mutation sites in `source_dirs`, order them for the
seed (shuffled per kind, then round-robin over kinds so no kind dominates); evaluate them in
`synth.workers` processes. Each evaluation mutates a working copy, takes `git diff` as the
bug-introducing patch, runs the suite in the sandbox and keeps the mutation only if

- nothing failed to collect (no broken import) and the run did not time out,
- at least one baseline-passing test now fails: FAIL_TO_PASS,
- PASS_TO_PASS: a seeded sample of at most `synth.max_pass_to_pass` tests passing either way,
- both confirmed by two more runs of exactly those tests: with the bug (FAIL_TO_PASS keeps only
  the tests that fail again, PASS_TO_PASS only those that pass again) and after reverting the
  patch with `git apply -R` (all must pass). This drops tests that failed once by chance.

Results are committed strictly in candidate order, so the output is deterministic for a seed
and environment (up to flaky tests). Progress is saved in `<out>.state.json` after every
candidate; re-running with the same seed and environment continues where it stopped.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from hrm.config import Params
from hrm.data.instance import Instance, parse_instance_id
from hrm.envs import RepoEnvironment, get_environment
from hrm.envs.providers import GIT_IDENTITY
from hrm.envs.results import TestResult
from hrm.errors import InputError
from hrm.synth.mutations import KINDS, Site, apply_site, enumerate_sites
from hrm.synth.statement import write_statement

STATE_VERSION = 1


@dataclass
class SynthResult:
    out_path: str
    kept: int
    tried: int
    candidates: int
    """Mutation sites available in total."""
    dropped: dict[str, int]
    """Why tried candidates were not kept (no_failure, import_error, timeout, ...)."""
    kept_by_kind: dict[str, int]
    elapsed_s: float
    stopped_by: str
    """`max_instances`, `time_budget` or `exhausted`."""
    baseline_passed: int
    isolation: str

    @property
    def keep_rate(self) -> float | None:
        return self.kept / self.tried if self.tried else None


@dataclass
class _State:
    seed: int
    env: str
    fingerprint: str
    tried: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    version: int = STATE_VERSION


def ordered_sites(env: RepoEnvironment, seed: int) -> list[Site]:
    """All mutation sites of the env's source dirs in the seed's deterministic order."""
    by_kind: dict[str, list[Site]] = {k: [] for k in KINDS}
    for src_dir in env.spec.source_dirs:
        for path in sorted((env.pristine / src_dir).rglob("*.py")):
            rel = path.relative_to(env.pristine).as_posix()
            for site in enumerate_sites(path.read_text(encoding="utf-8"), rel):
                by_kind[site.kind].append(site)
    rng = random.Random(seed)
    queues = []
    for kind in KINDS:
        sites = by_kind[kind]
        rng.shuffle(sites)
        queues.append(deque(sites))
    out: list[Site] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.popleft())
    return out


# ---------------------------------------------------------------- worker side -----------
_W: dict = {}


def _init_worker(repo_id: str, envs_cfg_json: str, baseline: list[str], timeout_s: float,
                 max_p2p: int) -> None:
    from hrm.config import EnvsConfig

    _W.update(env=get_environment(repo_id, EnvsConfig.model_validate_json(envs_cfg_json)),
              baseline=baseline, timeout_s=timeout_s, max_p2p=max_p2p)


def _worker_tree(env: RepoEnvironment) -> Path:
    """This worker's one working copy of the pristine tree, reused across candidates.

    Copying the tree per candidate cost ~0.2 s; instead the mutated file is restored after
    each candidate and the copy is checked clean (`_release_tree`) or thrown away.
    """
    tree = _W.get("tree")
    if tree is None:
        tmp = Path(tempfile.mkdtemp(prefix="hrm-synth-wc-"))
        os.chmod(tmp, 0o755)  # the sandbox user must reach the tree inside
        tree = tmp / "tree"
        shutil.copytree(env.pristine, tree, symlinks=True)
        atexit.register(shutil.rmtree, tmp, True)
        _W["tree"] = tree
    return tree


def _release_tree(env: RepoEnvironment, tree: Path, site: Site, source: str) -> None:
    """Put the pristine source back; if anything else changed, drop the copy (fresh next)."""
    (tree / site.file).write_text(source, encoding="utf-8")
    status = subprocess.run(
        ["git", *GIT_IDENTITY, "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=tree, capture_output=True, text=True)
    if status.returncode != 0 or status.stdout.strip():
        shutil.rmtree(tree.parent, ignore_errors=True)
        _W.pop("tree", None)


def evaluate_site(site: Site) -> dict:
    """Try one site; returns {"status": ..., "row": instance row or None}."""
    env: RepoEnvironment = _W["env"]
    source = (env.pristine / site.file).read_text(encoding="utf-8")
    mutated = apply_site(source, site)
    if mutated is None:
        return {"status": "no_compile"}
    tree = _worker_tree(env)
    try:
        return _evaluate_in(env, tree, site, mutated)
    finally:
        _release_tree(env, tree, site, source)


def _evaluate_in(env: RepoEnvironment, tree: Path, site: Site, mutated: str) -> dict:
    baseline: list[str] = _W["baseline"]
    (tree / site.file).write_text(mutated, encoding="utf-8")
    patch = env.diff(tree)
    if not patch:
        return {"status": "unchanged"}
    run = env.run_tests(tree, list(env.spec.test_dirs), timeout_s=_W["timeout_s"])
    if run.sandbox_error:
        return {"status": "sandbox_error"}
    if run.timed_out or run.killed_reason:
        return {"status": "timeout"}
    if run.collection_errors or run.exit_code not in (0, 1):
        return {"status": "import_error"}
    now = run.all_tests
    failing = [n for n in baseline if n not in now or now[n].outcome != "passed"]
    if not failing:
        return {"status": "no_failure"}
    if len(failing) == len(baseline):
        return {"status": "import_error"}  # everything broke: not a targeted bug
    still = sorted(set(baseline) - set(failing))
    hash8 = hashlib.sha256(patch.encode()).hexdigest()[:8]
    rng = random.Random(hash8)
    p2p = sorted(rng.sample(still, min(_W["max_p2p"], len(still))))
    # Confirmation, the instance's own check run twice more: with the bug FAIL_TO_PASS must
    # fail again and PASS_TO_PASS pass; with the bug reverted all of them must pass. A test
    # that failed once by chance (timing tests on a loaded machine) does not survive this.
    again = env.run_tests(tree, failing + p2p, timeout_s=_W["timeout_s"])
    if again.sandbox_error:
        return {"status": "sandbox_error"}
    if again.timed_out or again.killed_reason:
        return {"status": "timeout"}
    redo = again.all_tests
    failing = [n for n in failing if n not in redo or redo[n].outcome != "passed"]
    if not failing:
        return {"status": "flaky"}
    p2p = [n for n in p2p if n in redo and redo[n].outcome == "passed"]
    env.apply_patch(tree, patch, reverse=True)
    check = env.run_tests(tree, failing + p2p, timeout_s=_W["timeout_s"])
    if check.sandbox_error:
        return {"status": "sandbox_error"}
    if not check.passed:
        return {"status": "flaky"}
    base = env.repo_id.split("/", 1)[-1]
    instance_id = f"{base}.func_pm_{site.kind}__{hash8}"
    parse_instance_id(instance_id)  # the id must be a valid SWE-smith id
    module = site.file[:-3].replace("/", ".") if site.file.endswith(".py") else site.file
    failed_results: list[TestResult] = [now.get(n) or TestResult(n, "missing") for n in failing]
    try:
        statement = write_statement(function=site.function, module=module,
                                    failing=failed_results, n_passing=len(still), patch=patch)
    except ValueError:
        return {"status": "statement_leak"}
    inst = Instance(instance_id=instance_id, repo=env.repo_id, patch=patch,
                    problem_statement=statement, FAIL_TO_PASS=failing, PASS_TO_PASS=p2p,
                    image_name="")
    return {"status": "kept", "row": inst.to_row(), "kind": site.kind}


# ---------------------------------------------------------------- driver side -----------
def _state_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".state.json")


def _load_rows(out_path: Path) -> list[dict]:
    """Rows already written; a torn last line (killed mid-write) is cut off."""
    if not out_path.exists():
        return []
    rows, good = [], 0
    with out_path.open("rb") as fh:
        for raw in fh:
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError:
                break
            good += len(raw)
    if good != out_path.stat().st_size:
        with out_path.open("r+b") as fh:
            fh.truncate(good)
    return rows


def _resume_state(out_path: Path, seed: int, env: RepoEnvironment) -> _State:
    sp = _state_path(out_path)
    fresh = _State(seed=seed, env=env.repo_id, fingerprint=env.fingerprint)
    if not sp.exists():
        if out_path.exists() and out_path.stat().st_size:
            raise InputError(f"exists but has no {sp.name}: not a synth output to resume; "
                             "move it away to generate afresh", path=str(out_path))
        return fresh
    try:
        state = _State(**json.loads(sp.read_text()))
    except (ValueError, TypeError) as err:
        raise InputError(f"unreadable synth state: {err}", path=str(sp)) from None
    if (state.seed, state.env, state.fingerprint) != (seed, env.repo_id, env.fingerprint):
        raise InputError(
            f"was generated with seed={state.seed}, env={state.env} ({state.fingerprint}); "
            f"now seed={seed}, env={env.repo_id} ({env.fingerprint}): delete it and its "
            "output to regenerate", path=str(sp))
    return state


def _save_state(out_path: Path, state: _State) -> None:
    sp = _state_path(out_path)
    tmp = sp.with_name(sp.name + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2, sort_keys=True))
    os.replace(tmp, sp)


def baseline_passing(env: RepoEnvironment) -> tuple[list[str], float]:
    """Node ids passing on the pristine tree, and how long the suite took."""
    with env.working_copy() as tree:
        run = env.run_tests(tree, list(env.spec.test_dirs))
    passed = sorted(n for n, r in run.all_tests.items() if r.outcome == "passed")
    if run.timed_out or not passed:
        raise InputError(f"baseline suite of {env.repo_id} is unusable (timed out: "
                         f"{run.timed_out}, passing tests: {len(passed)}):\n{run.output[-2000:]}")
    return passed, run.duration_s


def synthesize(params: Params, out_path: str | Path) -> SynthResult:
    """Generate up to `synth.max_instances` SWE-smith instances into `out_path` (JSONL)."""
    from tqdm import tqdm

    cfg = params.synth
    out_path = Path(out_path)
    started = time.monotonic()
    env = get_environment(cfg.env, params.envs)
    state = _resume_state(out_path, cfg.seed, env)
    rows = _load_rows(out_path)
    kept_ids = {r["instance_id"] for r in rows}
    kept_by_kind = Counter(parse_instance_id(r["instance_id"]).bug_type.removeprefix("func_pm_")
                           for r in rows)
    sites = ordered_sites(env, cfg.seed)
    baseline, base_s = baseline_passing(env)
    # A mutation that makes the suite run 4x longer is most likely looping: drop it.
    timeout_s = min(params.envs.timeout_s, max(10.0, 4 * base_s))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stopped_by = "exhausted"
    todo = deque(sites[state.tried:])
    bar = tqdm(total=cfg.max_instances, initial=min(len(rows), cfg.max_instances),
               desc="synth kept", unit="inst")
    bar.set_postfix(tried=state.tried)
    ctx = get_context("spawn")  # the driver has threads (tqdm); never fork it
    with ProcessPoolExecutor(
        max_workers=cfg.workers, mp_context=ctx, initializer=_init_worker,
        initargs=(env.repo_id, params.envs.model_dump_json(), baseline, timeout_s,
                  cfg.max_pass_to_pass),
    ) as pool, out_path.open("a", encoding="utf-8") as out:
        inflight: deque[tuple[Site, Future]] = deque()
        while True:
            if len(rows) >= cfg.max_instances:
                stopped_by = "max_instances"
                break
            if time.monotonic() - started > cfg.time_budget_s:
                stopped_by = "time_budget"
                break
            # Keep more in flight than workers: results are committed in order, and a slow
            # candidate at the head must not leave the other workers idle meanwhile.
            while todo and len(inflight) < 3 * cfg.workers:
                site = todo.popleft()
                inflight.append((site, pool.submit(evaluate_site, site)))
            if not inflight:
                break
            site, fut = inflight.popleft()
            result = fut.result()
            state.tried += 1
            if result["status"] == "kept" and result["row"]["instance_id"] not in kept_ids:
                out.write(json.dumps(result["row"], ensure_ascii=False) + "\n")
                out.flush()
                rows.append(result["row"])
                kept_ids.add(result["row"]["instance_id"])
                kept_by_kind[result["kind"]] += 1
                bar.update(1)
            elif result["status"] != "kept":
                state.dropped[result["status"]] = state.dropped.get(result["status"], 0) + 1
            _save_state(out_path, state)
            bar.set_postfix(tried=state.tried)
        # Results still in flight are discarded (not counted as tried): a resume redoes them.
        for _, fut in inflight:
            fut.cancel()
    bar.close()
    from hrm.envs.environment import limits_from
    from hrm.envs.sandbox import isolation_for

    iso = isolation_for(limits_from(params.envs)).label
    return SynthResult(
        out_path=str(out_path), kept=len(rows), tried=state.tried, candidates=len(sites),
        dropped=dict(sorted(state.dropped.items())), kept_by_kind=dict(sorted(kept_by_kind.items())),
        elapsed_s=round(time.monotonic() - started, 1), stopped_by=stopped_by,
        baseline_passed=len(baseline), isolation=iso,
    )

"""`hrm data synth`: search for mutations that some of the package's own tests catch.

Every environment of `synth.envs` is searched in turn, each with its own budget
(`synth.max_instances` kept, `synth.time_budget_s` seconds), into one JSONL: the rows of the
first environment, then those of the second, and so on.

Per environment: build (or reuse) it; run its whole suite once on the pristine tree with the
per-test call recorder on (`hrm.synth.coverage`): the baseline (which tests pass) and, per test,
which source functions it entered. Enumerate mutation sites of the `synth.kinds` in
`source_dirs` (test files excluded, `source_files`), order them for the seed (shuffled per kind,
then round-robin over kinds so no kind dominates) and evaluate them in `synth.workers`
processes. A site runs only the baseline-passing tests that entered its function (the whole
suite when the function also ran at import time; a site no test reaches is `not_covered` and
never runs). Each evaluation mutates a working copy, takes `git diff` as the bug-introducing
patch, runs those tests in the sandbox and keeps the mutation only if

- nothing failed to collect (no broken import) and the run did not time out,
- at least one baseline-passing test now fails: FAIL_TO_PASS,
- PASS_TO_PASS: a seeded sample of at most `synth.max_pass_to_pass` tests passing either way
  (drawn from the baseline minus FAIL_TO_PASS; tests that did not run are checked below),
- both confirmed by two more runs of exactly those tests: with the bug (FAIL_TO_PASS keeps only
  the tests that fail again, PASS_TO_PASS only those that pass again) and after reverting the
  patch with `git apply -R` (all must pass). This drops tests that failed once by chance.

Results are committed strictly in candidate order, so the output is deterministic for a seed,
environment list and kinds (up to flaky tests). Progress is saved per environment in
`<out>.state.json` after every candidate and the baselines in `<out>.baseline.json`;
re-running with the same seed, environments and kinds continues where it stopped (finished
environments are not redone).
"""

from __future__ import annotations

import ast
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
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from hrm.config import EnvSpec, Params
from hrm.data.instance import Instance, parse_instance_id
from hrm.envs import RepoEnvironment, get_environment
from hrm.envs.providers import GIT_IDENTITY
from hrm.envs.results import TestResult
from hrm.errors import InputError
from hrm.synth.coverage import Baseline, RunTiming, baseline_for, load_baselines
from hrm.synth.mutations import (
    KINDS,
    Site,
    _candidates,
    _functions,
    _line_of,
    _Src,
    apply_site,
    enumerate_sites,
)
from hrm.synth.statement import UNSTABLE_MARKS, normalise_message, write_statement

STATE_VERSION = 2


@dataclass
class EnvSynthResult:
    """What the search did in one environment (over all runs of this output)."""

    env: str
    kept: int
    tried: int
    """Sites taken in order so far (not_covered and no_compile ones included)."""
    candidates: int
    """Mutation sites of `synth.kinds` in the environment's source files."""
    dropped: dict[str, int]
    """Why tried sites were not kept (not_covered, no_failure, import_error, timeout, ...)."""
    kept_by_kind: dict[str, int]
    elapsed_s: float
    """Search time spent on this environment (baseline included), summed over resumed runs."""
    stopped_by: str
    """`max_instances`, `time_budget` or `exhausted`."""
    baseline_passed: int | None
    """Tests passing on the pristine tree (None: finished before this output stored a baseline)."""

    @property
    def keep_rate(self) -> float | None:
        return self.kept / self.tried if self.tried else None


@dataclass
class SynthResult:
    """Totals over `envs` (one `EnvSynthResult` per environment of `synth.envs`, in order)."""

    out_path: str
    kept: int
    tried: int
    candidates: int
    dropped: dict[str, int]
    kept_by_kind: dict[str, int]
    elapsed_s: float
    """Wall time of this call."""
    isolation: str
    envs: list[EnvSynthResult]

    @property
    def keep_rate(self) -> float | None:
        return self.kept / self.tried if self.tried else None


@dataclass
class _EnvProgress:
    tried: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0


@dataclass
class _State:
    seed: int
    envs: list[str]
    kinds: list[str]
    fingerprints: dict[str, str]
    progress: dict[str, _EnvProgress]
    version: int = STATE_VERSION


# ---------------------------------------------------------------- sites -----------------
_TEST_DIR_NAMES = frozenset({"test", "tests", "testing"})


def is_test_file(rel: str, spec: EnvSpec) -> bool:
    """True for a file of the tree (posix path relative to it) that belongs to the tests.

    A test file is named `test_*.py`, `*_test.py` or `conftest.py`, lies in a directory named
    `test`/`tests`/`testing`, or lies under one of `spec.test_dirs`, unless that test dir is a
    source dir or above one (schema's test dir is `.`): then only the names count.
    """
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
        return True
    if any(p in _TEST_DIR_NAMES for p in parts[:-1]):
        return True
    sources = [s.strip("/") for s in spec.source_dirs]
    for test_dir in (t.strip("/") for t in spec.test_dirs):
        if test_dir in ("", "."):
            continue
        holds_sources = any(s == test_dir or s.startswith(test_dir + "/") for s in sources)
        if not holds_sources and (rel == test_dir or rel.startswith(test_dir + "/")):
            return True
    return False


def source_files(tree: Path, spec: EnvSpec) -> list[str]:
    """The `.py` files of `spec.source_dirs` mutations may touch (posix, relative, sorted)."""
    found: set[str] = set()
    for src_dir in spec.source_dirs:
        for path in (tree / src_dir).rglob("*.py"):
            rel = path.relative_to(tree).as_posix()
            if not is_test_file(rel, spec):
                found.add(rel)
    return sorted(found)


def module_sites(source: str, file: str, kinds: list[str]) -> list[Site]:
    """`enumerate_sites(source, file)` restricted to `kinds`, without looking for the others
    (finding some kinds' sites costs seconds per large module, e.g. `wrong_attr`)."""
    if set(kinds) >= set(KINDS):
        return enumerate_sites(source, file)
    tree = ast.parse(source)
    src = _Src(source)
    return [Site(file, qualname, kind, i, _line_of(target))
            for qualname, func in _functions(tree) for kind in KINDS if kind in kinds
            for i, target in enumerate(_candidates(func, src, kind))]


def ordered_sites(env: RepoEnvironment, seed: int, kinds: list[str] | tuple[str, ...] = KINDS
                  ) -> list[Site]:
    """All mutation sites of `kinds` in the env's source files, in the seed's order.

    Kinds are taken in `KINDS` order whatever order `kinds` lists them in.
    """
    wanted = [k for k in KINDS if k in set(kinds)]
    by_kind: dict[str, list[Site]] = {k: [] for k in wanted}
    for rel in source_files(env.pristine, env.spec):
        text = (env.pristine / rel).read_text(encoding="utf-8")
        try:
            sites = module_sites(text, rel, wanted)
        except SyntaxError as err:
            raise InputError(f"{env.repo_id}: source file does not parse ({err.msg}, line "
                             f"{err.lineno}); exclude it from source_dirs",
                             path=str(env.pristine / rel)) from None
        for site in sites:
            by_kind[site.kind].append(site)
    rng = random.Random(seed)
    queues = []
    for kind in wanted:
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
@dataclass(frozen=True)
class Job:
    """One candidate: a site of `repo_id` and the tests to run for it."""

    repo_id: str
    site: Site
    tests: tuple[str, ...] | None
    """The selected tests; None: the whole suite (`test_dirs`)."""
    baseline: tuple[str, ...]
    timing: RunTiming
    epoch: int = 0
    """The driver's epoch when submitted; once it moves on (the environment is finished), the
    job is `stale` and a worker skips it, or stops it between its test runs."""


_W: dict = {}


def _init_worker(envs_cfg_json: str, max_p2p: int, epoch=None) -> None:
    """Set up a worker process; `epoch` is the driver's shared counter (None: never stale)."""
    from hrm.config import EnvsConfig

    _W.update(envs_cfg=EnvsConfig.model_validate_json(envs_cfg_json), max_p2p=max_p2p,
              envs={}, trees={}, epoch=epoch)


def _stale(job: Job) -> bool:
    epoch = _W.get("epoch")
    return epoch is not None and epoch.value != job.epoch


def _worker_env(repo_id: str) -> RepoEnvironment:
    env = _W["envs"].get(repo_id)
    if env is None:
        env = get_environment(repo_id, _W["envs_cfg"])
        _W["envs"][repo_id] = env
    return env


def _worker_tree(env: RepoEnvironment) -> Path:
    """This worker's one working copy of the env's pristine tree, reused across candidates.

    Copying the tree per candidate cost ~0.2 s; instead the mutated file is restored after
    each candidate and the copy is checked clean (`_release_tree`) or thrown away.
    """
    tree = _W["trees"].get(env.repo_id)
    if tree is None:
        tmp = Path(tempfile.mkdtemp(prefix="hrm-synth-wc-"))
        os.chmod(tmp, 0o755)  # the sandbox user must reach the tree inside
        tree = tmp / "tree"
        shutil.copytree(env.pristine, tree, symlinks=True)
        atexit.register(shutil.rmtree, tmp, True)
        _W["trees"][env.repo_id] = tree
    return tree


def _release_tree(env: RepoEnvironment, tree: Path, site: Site, source: str) -> None:
    """Put the pristine source back; if anything else changed, drop the copy (fresh next)."""
    (tree / site.file).write_text(source, encoding="utf-8")
    status = subprocess.run(
        ["git", *GIT_IDENTITY, "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=tree, capture_output=True, text=True)
    if status.returncode != 0 or status.stdout.strip():
        shutil.rmtree(tree.parent, ignore_errors=True)
        _W["trees"].pop(env.repo_id, None)


def evaluate_site(job: Job) -> dict:
    """Try one site; returns {"status": ..., "row": instance row, "kind": ...} (row if kept)."""
    if _stale(job):
        return {"status": "stale"}
    env = _worker_env(job.repo_id)
    source = (env.pristine / job.site.file).read_text(encoding="utf-8")
    mutated = apply_site(source, job.site)
    if mutated is None:
        return {"status": "no_compile"}
    tree = _worker_tree(env)
    try:
        return _evaluate_in(env, tree, job, mutated)
    finally:
        _release_tree(env, tree, job.site, source)


def _stable_message(first: TestResult | None, second: TestResult | None, roots: tuple[str, ...]
                    ) -> str:
    """The normalised failure message if both bug-side runs agree on it, else "".

    A message holding a measured or random value (normalised to `<time>` / `<float>`) is left
    out too: the rest of it tends to vary with that value (e.g. which of a test's assertions
    failed first), so agreeing twice would still not make it reproducible.
    """
    a = normalise_message(first.message if first else "", roots)
    b = normalise_message(second.message if second else "", roots)
    if a != b or any(mark in a for mark in UNSTABLE_MARKS):
        return ""
    return a


def pass_to_pass_order(baseline: list[str], seed: str) -> list[str]:
    """The baseline's passing tests in an order fixed by `seed` (the patch's hash): PASS_TO_PASS
    is its first tests that do not fail, so it never depends on which ones failed once."""
    return random.Random(seed).sample(sorted(baseline), len(baseline))


def pass_to_pass(order: list[str], failing: list[str], count: int) -> list[str]:
    """The first `count` tests of `order` not in `failing`, sorted."""
    failed = set(failing)
    return sorted([n for n in order if n not in failed][:count])


def _evaluate_in(env: RepoEnvironment, tree: Path, job: Job, mutated: str) -> dict:
    site, baseline, timing = job.site, list(job.baseline), job.timing
    (tree / site.file).write_text(mutated, encoding="utf-8")
    patch = env.diff(tree)
    if not patch:
        return {"status": "unchanged"}
    tests = None if job.tests is None else list(job.tests)
    targets = tests if tests is not None else list(env.spec.test_dirs)
    run = env.run_tests(tree, targets, timeout_s=timing.timeout_s(tests))
    if run.sandbox_error:
        return {"status": "sandbox_error"}
    if run.timed_out or run.killed_reason:
        return {"status": "timeout"}
    if run.collection_errors or run.exit_code not in (0, 1):
        return {"status": "import_error"}
    now = run.all_tests
    considered = tests if tests is not None else baseline
    failing = [n for n in considered if n not in now or now[n].outcome != "passed"]
    if not failing:
        return {"status": "no_failure"}
    if len(failing) == len(baseline):
        return {"status": "import_error"}  # everything broke: not a targeted bug
    if _stale(job):
        return {"status": "stale"}
    hash8 = hashlib.sha256(patch.encode()).hexdigest()[:8]
    order = pass_to_pass_order(baseline, hash8)
    p2p = pass_to_pass(order, failing, _W["max_p2p"])
    # Confirmation, the instance's own check run twice more: with the bug FAIL_TO_PASS must
    # fail again and PASS_TO_PASS pass (this is also the first bug-side run of PASS_TO_PASS
    # tests the selection did not run); with the bug reverted all of them must pass. A test
    # that failed once by chance (timing tests on a loaded machine) does not survive this.
    again = env.run_tests(tree, failing + p2p, timeout_s=timing.timeout_s(failing + p2p))
    if again.sandbox_error:
        return {"status": "sandbox_error"}
    if again.timed_out or again.killed_reason:
        return {"status": "timeout"}
    redo = again.all_tests
    failing = [n for n in failing if n not in redo or redo[n].outcome != "passed"]
    if not failing:
        return {"status": "flaky"}
    # Drawn again with the confirmed failures: a test that failed once by chance in the first
    # run is back among the candidates, so the draw (and the count of passing tests in the
    # statement) does not depend on it. Every test drawn ran in `again` (as a first-run failure
    # or in the first draw).
    p2p = [n for n in pass_to_pass(order, failing, _W["max_p2p"])
           if n in redo and redo[n].outcome == "passed"]
    still = sorted(set(baseline) - set(failing))
    if _stale(job):
        return {"status": "stale"}
    env.apply_patch(tree, patch, reverse=True)
    check = env.run_tests(tree, failing + p2p, timeout_s=timing.timeout_s(failing + p2p))
    if check.sandbox_error:
        return {"status": "sandbox_error"}
    if not check.passed:
        return {"status": "flaky"}
    base = env.repo_id.split("/", 1)[-1]
    instance_id = f"{base}.func_pm_{site.kind}__{hash8}"
    parse_instance_id(instance_id)  # the id must be a valid SWE-smith id
    module = site.file[:-3].replace("/", ".") if site.file.endswith(".py") else site.file
    roots = (str(tree), str(tree.resolve()))
    failed_results = [
        TestResult(n, (now.get(n) or TestResult(n, "missing")).outcome, 0.0,
                   _stable_message(now.get(n), redo.get(n), roots))
        for n in failing]
    try:
        statement = write_statement(function=site.function, module=module,
                                    failing=failed_results, n_passing=len(still), patch=patch,
                                    roots=roots)
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


def _resume_state(out_path: Path, seed: int, envs: list[RepoEnvironment], kinds: list[str]
                  ) -> _State:
    sp = _state_path(out_path)
    ids = [e.repo_id for e in envs]
    fingerprints = {e.repo_id: e.fingerprint for e in envs}
    fresh = _State(seed=seed, envs=ids, kinds=kinds, fingerprints=fingerprints,
                   progress={r: _EnvProgress() for r in ids})
    if not sp.exists():
        if out_path.exists() and out_path.stat().st_size:
            raise InputError(f"exists but has no {sp.name}: not a synth output to resume; "
                             "move it away to generate afresh", path=str(out_path))
        return fresh
    try:
        raw = json.loads(sp.read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"state version {raw.get('version')}, this generator writes "
                             f"{STATE_VERSION}")
        raw["progress"] = {r: _EnvProgress(**p) for r, p in raw["progress"].items()}
        state = _State(**raw)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise InputError(f"unreadable synth state ({err}); delete it and its output to "
                         "regenerate", path=str(sp)) from None
    changed = [f"{name}: was {old}, now {new}" for name, old, new in (
        ("seed", state.seed, seed), ("synth.envs", state.envs, ids),
        ("synth.kinds", state.kinds, kinds))
        if old != new]
    changed += [f"fingerprint of {r}: was {state.fingerprints.get(r)}, now {fp}"
                for r, fp in fingerprints.items() if state.fingerprints.get(r) != fp]
    if changed or set(state.progress) != set(ids):
        raise InputError("cannot resume: generated with other settings (" + "; ".join(
            changed or ["per-environment progress does not match synth.envs"]) +
            "): delete it and its output to regenerate", path=str(sp))
    return state


def _save_state(out_path: Path, state: _State) -> None:
    sp = _state_path(out_path)
    tmp = sp.with_name(sp.name + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2, sort_keys=True))
    os.replace(tmp, sp)


def _local_env(repo_id: str, params: Params) -> RepoEnvironment:
    env = get_environment(repo_id, params.envs)
    if not isinstance(env, RepoEnvironment):
        provider = params.envs.repos[repo_id].provider
        raise InputError(f"synth.envs: {repo_id!r} uses provider {provider!r}; the generator "
                         "mutates a local tree (provider sdist or git)")
    return env


def _kind_of(row: dict) -> str:
    return parse_instance_id(row["instance_id"]).bug_type.removeprefix("func_pm_")


def _group_rows(out_path: Path, rows: list[dict], env_order: list[str]) -> list[dict]:
    """Rows grouped by environment in `synth.envs` order (candidate order within each).

    Only a resume with a larger budget for an earlier environment appends out of order;
    the file is then rewritten (atomically) so it equals an uninterrupted run's.
    """
    rank = {r: i for i, r in enumerate(env_order)}
    grouped = sorted(rows, key=lambda r: rank[r["repo"]])  # stable within an environment
    if grouped != rows:
        tmp = out_path.with_name(out_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for row in grouped:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, out_path)
    return grouped


class _Run:
    """The driver's state for one `synthesize` call."""

    def __init__(self, params: Params, out_path: Path, state: _State, rows: list[dict]):
        self.params, self.cfg, self.out_path = params, params.synth, out_path
        self.state, self.rows = state, rows
        self.kept_ids = {r["instance_id"] for r in rows}
        self.pool: ProcessPoolExecutor | None = None
        ctx = get_context("spawn")  # the driver has threads (tqdm); never fork it
        self.ctx = ctx
        self.epoch = ctx.Value("i", 0)

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:  # worker processes start at the first submit
            self.pool = ProcessPoolExecutor(
                max_workers=self.cfg.workers, mp_context=self.ctx, initializer=_init_worker,
                initargs=(self.params.envs.model_dump_json(), self.cfg.max_pass_to_pass,
                          self.epoch))
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def env_rows(self, repo_id: str) -> list[dict]:
        return [r for r in self.rows if r["repo"] == repo_id]

    def _stop_reason(self, repo_id: str, n_sites: int, elapsed_s: float) -> str | None:
        prog = self.state.progress[repo_id]
        if len(self.env_rows(repo_id)) >= self.cfg.max_instances:
            return "max_instances"
        if elapsed_s > self.cfg.time_budget_s:
            return "time_budget"
        if prog.tried >= n_sites:
            return "exhausted"
        return None

    def search(self, env: RepoEnvironment, kinds: list[str], out) -> EnvSynthResult:
        from tqdm import tqdm

        cfg, repo_id = self.cfg, env.repo_id
        prog = self.state.progress[repo_id]
        started, spent = time.monotonic(), prog.elapsed_s

        def elapsed() -> float:
            return spent + time.monotonic() - started

        sites = ordered_sites(env, cfg.seed, kinds)
        stopped_by = self._stop_reason(repo_id, len(sites), elapsed())
        if stopped_by is None:
            baseline: Baseline | None = baseline_for(env, self.out_path)
            stopped_by = self._search(env, sites, baseline, elapsed, out, tqdm)
            prog.elapsed_s = round(elapsed(), 3)
            _save_state(self.out_path, self.state)
        else:  # finished earlier: nothing to run, not even the baseline
            baseline = load_baselines(self.out_path).get(repo_id)
        rows = self.env_rows(repo_id)
        return EnvSynthResult(
            env=repo_id, kept=len(rows), tried=prog.tried, candidates=len(sites),
            dropped=dict(sorted(prog.dropped.items())),
            kept_by_kind=dict(sorted(Counter(_kind_of(r) for r in rows).items())),
            elapsed_s=round(prog.elapsed_s, 1), stopped_by=stopped_by,
            baseline_passed=len(baseline.passed) if baseline is not None else None)

    def _search(self, env: RepoEnvironment, sites: list[Site], baseline: Baseline, elapsed,
                out, tqdm) -> str:
        cfg, repo_id = self.cfg, env.repo_id
        prog = self.state.progress[repo_id]
        timing = baseline.timing(self.params.envs.timeout_s)
        passed = tuple(baseline.passed)
        todo = deque(sites[prog.tried:])
        n_rows = len(self.env_rows(repo_id))
        short = repo_id.rsplit("/", 1)[-1]
        bar = tqdm(total=cfg.max_instances, initial=min(n_rows, cfg.max_instances),
                   desc=f"synth {short}", unit="inst")
        bar.set_postfix(tried=prog.tried)
        inflight: deque[Future] = deque()
        stopped_by = "exhausted"
        try:
            while True:
                if n_rows >= cfg.max_instances:
                    stopped_by = "max_instances"
                    break
                if elapsed() > cfg.time_budget_s:
                    stopped_by = "time_budget"
                    break
                # Keep more in flight than workers: results are committed in order, and a slow
                # candidate at the head must not leave the other workers idle meanwhile.
                while todo and len(inflight) < 3 * cfg.workers:
                    site = todo.popleft()
                    tests = baseline.tests_for(env.pristine, site)
                    if tests == []:  # no test reaches the function: nothing to run
                        done: Future = Future()
                        done.set_result({"status": "not_covered"})
                        inflight.append(done)
                        continue
                    job = Job(repo_id, site, None if tests is None else tuple(tests), passed,
                              timing, self.epoch.value)
                    inflight.append(self._pool().submit(evaluate_site, job))
                if not inflight:
                    break
                result = inflight.popleft().result()
                prog.tried += 1
                status = result["status"]
                if status == "kept" and result["row"]["instance_id"] in self.kept_ids:
                    status = "duplicate"  # another site gave the same patch
                if status == "kept":
                    out.write(json.dumps(result["row"], ensure_ascii=False) + "\n")
                    out.flush()
                    self.rows.append(result["row"])
                    self.kept_ids.add(result["row"]["instance_id"])
                    n_rows += 1
                    bar.update(1)
                else:
                    prog.dropped[status] = prog.dropped.get(status, 0) + 1
                prog.elapsed_s = round(elapsed(), 3)
                _save_state(self.out_path, self.state)
                bar.set_postfix(tried=prog.tried)
        finally:
            # Results still in flight are discarded (not counted as tried): a resume redoes them.
            # Moving the epoch on makes workers skip (or stop) the ones already handed out.
            with self.epoch.get_lock():
                self.epoch.value += 1
            for fut in inflight:
                fut.cancel()
            bar.close()
        return stopped_by


def synthesize(params: Params, out_path: str | Path) -> SynthResult:
    """Generate up to `synth.max_instances` SWE-smith instances per environment of
    `synth.envs` into `out_path` (JSONL, environments in order); resumable (module doc)."""
    from hrm.envs.sandbox import isolation_for, limits_from

    cfg = params.synth
    out_path = Path(out_path)
    started = time.monotonic()
    kinds = [k for k in KINDS if k in set(cfg.kinds)]
    # Built (or found in the cache) side by side: a build is mostly pip and the network.
    with ThreadPoolExecutor(max_workers=max(1, len(cfg.envs))) as pool:
        envs = list(pool.map(lambda repo_id: _local_env(repo_id, params), cfg.envs))
    state = _resume_state(out_path, cfg.seed, envs, kinds)
    rows = _load_rows(out_path)
    foreign = sorted({r.get("repo") for r in rows} - set(cfg.envs), key=str)
    if foreign:
        raise InputError(f"holds rows of {foreign}, not in synth.envs {cfg.envs}: not this "
                         "generator's output; move it away", path=str(out_path))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _save_state(out_path, state)
    run = _Run(params, out_path, state, rows)
    per_env: list[EnvSynthResult] = []
    try:
        with out_path.open("a", encoding="utf-8") as out:
            for env in envs:
                per_env.append(run.search(env, kinds, out))
    finally:
        run.close()
    _group_rows(out_path, run.rows, cfg.envs)
    dropped: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    for e in per_env:
        dropped.update(e.dropped)
        by_kind.update(e.kept_by_kind)
    return SynthResult(
        out_path=str(out_path), kept=sum(e.kept for e in per_env),
        tried=sum(e.tried for e in per_env), candidates=sum(e.candidates for e in per_env),
        dropped=dict(sorted(dropped.items())), kept_by_kind=dict(sorted(by_kind.items())),
        elapsed_s=round(time.monotonic() - started, 1),
        isolation=isolation_for(limits_from(params.envs)).label, envs=per_env)

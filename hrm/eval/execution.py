"""The execution tier: splice predicted hunks into the buggy tree and run the instance's tests.

The buggy tree is the environment's pristine tree with the instance's bug patch applied
(SWE-smith patches introduce the bug). FAIL_TO_PASS and a bounded, seeded sample of
PASS_TO_PASS run in the ENVS sandbox (`env.run_tests`); a row is resolved when every one of
them passes. Predictions are untrusted: they are only written into a throw-away working copy
and run through the sandbox, never imported or executed here.

Where the sandbox cannot confine the filesystem (its isolation label contains `unconfined`: no
user namespaces and the caller is not root, see `hrm.envs.sandbox`), nothing is run unless
`eval.allow_unconfined_execution` is true: each such row is "not run: unconfined sandbox ..."
and counts as not resolved (the fallback is a failure, never a pass).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hrm.config import EnvsConfig
from hrm.data.instance import Instance
from hrm.envs.sandbox import isolation_for
from hrm.eval.code_checks import splice_files
from hrm.hunks import Hunk


@dataclass(frozen=True)
class TestOutcome:
    """Result of the test tier for one prediction."""

    __test__ = False  # not a pytest class

    resolved: bool
    reason: str
    """Empty when resolved; else which tests failed or why the run stopped."""
    outcomes: dict[str, str] = field(default_factory=dict)
    """node id -> passed / failed / error / timeout / missing / skipped."""
    duration_s: float = 0.0
    limits_hit: tuple[str, ...] = ()
    """Sandbox limits the run ran into (`limit_notes`): such a run is never excused."""


_PROCESS_START = re.compile(r"\bfork\(|\bforkpty\(|Popen\(|\bspawn\w*\(|_fork_exec|\.start\(\)")


def limit_notes(run, cfg: EnvsConfig, timeout_s: float | None = None) -> tuple[str, ...]:
    """The sandbox limits a test run ran into, each a reason fragment (none: empty);
    `timeout_s`: the run's own wall-clock limit when it was not `envs.timeout_s`.

    A kill (timeout, rlimit signal) is the run's `killed_reason`; the limits below do not kill
    the run, they make a call in it fail, which pytest reports as an ordinary error unless said.
    """
    notes = []
    if run.timed_out:
        notes.append(f"wall-clock timeout ({cfg.timeout_s:g} s, envs.timeout_s)" if timeout_s is None else
                     f"wall-clock timeout ({timeout_s:.3g} s: eval.timeout_factor x the original "
                     "repository's run of these tests)")
    out = run.output
    # EAGAIN alone may be a non-blocking socket; with a process or thread start it is NPROC.
    if ("can't start new thread" in out or "Resource temporarily unavailable" in out
            and _PROCESS_START.search(out)):
        notes.append(f"process limit reached: fork failed with EAGAIN "
                     f"(envs.max_processes={cfg.max_processes})")
    if "File too large" in out:
        notes.append(f"file-size limit reached (envs.max_file_mb={cfg.max_file_mb})")
    if run.output_truncated:
        notes.append(f"output capped at envs.max_output_kb={cfg.max_output_kb} KB (truncated)")
    return tuple(notes)


@dataclass
class RowContext:
    """What the execution tier needs for one instance, built once and reused."""

    instance: Instance
    env: object
    hunks: list[Hunk]
    buggy_files: dict[str, str]
    node_ids: list[str]


def to_hunks(record_hunks: Sequence[object]) -> list[Hunk]:
    """`SequenceHunk`s (or dicts with the same keys) as `hrm.hunks.Hunk` for splicing."""
    out = []
    for h in record_hunks:
        get = h.get if isinstance(h, Mapping) else lambda k, _h=h: getattr(_h, k)
        out.append(Hunk(get("file"), int(get("buggy_start")), get("buggy_text"),
                        get("fixed_text"), get("function")))
    return out


def runner_refusal(instance: Instance) -> str:
    """Why this sandbox cannot run the instance's tests ('' when it can): it runs pytest, and
    rows converted from SWE-bench may name Django or sympy tests (`hrm.data.test_ids`)."""
    runner = instance.extra.get("test_runner", "pytest")
    if runner == "pytest":
        return ""
    return f"its tests need the {runner} runner; this sandbox runs pytest only"


def sample_pass_to_pass(instance: Instance, limit: int) -> list[str]:
    """At most `limit` PASS_TO_PASS ids, a sample seeded by the instance id (reproducible)."""
    tests = sorted(instance.PASS_TO_PASS)
    if len(tests) <= limit:
        return tests
    seed = int(hashlib.sha256(instance.instance_id.encode()).hexdigest()[:16], 16)
    return sorted(random.Random(seed).sample(tests, limit))


def _inside(tree: Path, rel: str) -> Path:
    """`tree / rel`, refusing paths that leave the tree (dataset paths are input too)."""
    target = (tree / rel).resolve()
    if not target.is_relative_to(tree.resolve()):
        raise ValueError(f"hunk path {rel!r} leaves the working tree")
    return target


UNCONFINED = "not run: unconfined sandbox"
NO_ENVIRONMENT = "no environment"
"""Start of the reason of a row refused because the sandbox cannot confine the filesystem."""


def sandbox_isolation(env: object, envs_cfg: EnvsConfig) -> str:
    """The isolation label the runs of `env` get, known before anything runs: a container
    (`image` provider) confines by itself; local environments get the ENVS sandbox's probed
    isolation for their limits (`hrm.envs.sandbox.isolation_for`)."""
    spec = getattr(env, "spec", None)
    if getattr(spec, "provider", None) == "image":
        return "container"
    from hrm.envs.sandbox import limits_from

    return isolation_for(limits_from(getattr(env, "cfg", envs_cfg))).label


class ExecutionTier:
    """Per-instance environments, buggy files and test runs, with the reasons rows lack them.

    `allow_unconfined`: run predictions even where the sandbox's isolation label contains
    `unconfined` (`eval.allow_unconfined_execution`); off, such runs are refused (`run`).
    """

    def __init__(self, envs_cfg: EnvsConfig, instances: Mapping[str, Instance],
                 max_pass_to_pass: int, *, allow_unconfined: bool = False,
                 timeout_factor: float = 0.0, timeout_min_s: float = 10.0):
        self.envs_cfg = envs_cfg
        self.instances = instances
        self.max_pass_to_pass = max_pass_to_pass
        self.allow_unconfined = allow_unconfined
        self.timeout_factor = timeout_factor
        self.timeout_min_s = timeout_min_s
        self._refusals: dict[int, str] = {}
        self._contexts: dict[str, RowContext | str] = {}
        self._envs: dict[str, object] = {}
        self._runs: dict[tuple[str, tuple[str, ...], str], TestOutcome] = {}
        self._raw_runs: dict[tuple[str, tuple[str, ...]], TestOutcome] = {}

    def _environment(self, repo: str) -> object | str:
        from hrm.envs import get_environment
        from hrm.envs.errors import EnvironmentUnavailable

        if repo not in self._envs:
            try:
                self._envs[repo] = get_environment(repo, self.envs_cfg)
            except EnvironmentUnavailable as err:
                self._envs[repo] = f"no environment: {err.reason}"
        return self._envs[repo]

    def context(self, instance_id: str, repo: str, record_hunks: Sequence[object]) -> RowContext | str:
        """The row's context, or a string saying why there is none (reported per row)."""
        if instance_id in self._contexts:
            return self._contexts[instance_id]
        self._contexts[instance_id] = self._build(instance_id, repo, record_hunks)
        return self._contexts[instance_id]

    def _build(self, instance_id: str, repo: str, record_hunks: Sequence[object]) -> RowContext | str:
        from hrm.envs.errors import PatchError

        instance = self.instances.get(instance_id)
        if instance is None:
            return "instance not in the instances file"
        if runner_refusal(instance):
            return runner_refusal(instance)
        env = self._environment(repo)
        if isinstance(env, str):
            return env
        hunks = to_hunks(record_hunks)
        files: dict[str, str] = {}
        with env.working_copy(git=False) as tree:
            try:
                env.apply_patch(tree, instance.patch)
            except PatchError as err:
                return f"bug patch does not apply: {err.git_message[:200]}"
            for path in dict.fromkeys(h.file for h in hunks):
                try:
                    target = _inside(Path(tree), path)
                except ValueError as err:  # a hunk path escaping the tree: this row only
                    return f"unsafe hunk path: {err}"
                if not target.is_file():
                    return f"{path} not in the buggy tree"
                # Bytes decoded as-is: text mode would turn CRLF into LF and no hunk would match.
                files[path] = target.read_bytes().decode("utf-8")
        try:
            splice_files(hunks, [h.fixed_text for h in hunks], files)
        except ValueError as err:
            return f"hunk does not match the buggy file: {err}"
        node_ids = list(dict.fromkeys(
            instance.FAIL_TO_PASS + sample_pass_to_pass(instance, self.max_pass_to_pass)))
        return RowContext(instance, env, hunks, files, node_ids)

    def _raw(self, ctx: RowContext, hunks: Sequence[str]) -> TestOutcome:
        """Splice `hunks` into a fresh buggy tree and run the row's tests in the sandbox."""
        key = (ctx.instance.instance_id, tuple(hunks))
        if key in self._raw_runs:
            return self._raw_runs[key]
        timeout = self.timeout(ctx)
        spliced = splice_files(ctx.hunks, list(hunks), ctx.buggy_files)
        env = ctx.env
        with env.working_copy(git=False) as tree:
            env.apply_patch(tree, ctx.instance.patch)
            for path, text in spliced.items():
                _inside(Path(tree), path).write_text(text, encoding="utf-8", newline="")
            run = env.run_tests(tree, ctx.node_ids, timeout_s=timeout)
        self._raw_runs[key] = self._interpret(run, env, timeout)
        return self._raw_runs[key]

    def timeout(self, ctx: RowContext) -> float | None:
        """A prediction's wall-clock limit (`eval.timeout_factor`): None for `envs.timeout_s`
        (the factor is 0, or the original repository's run was killed itself)."""
        if not self.timeout_factor:
            return None
        original = self._original(ctx)
        if original.reason or original.duration_s is None:
            return None
        limit = max(self.timeout_min_s, self.timeout_factor * original.duration_s)
        return limit if limit < self.envs_cfg.timeout_s else None

    def _interpret(self, run, env, timeout_s: float | None = None) -> TestOutcome:
        """A sandboxed test run as an outcome: resolved when every selected test passed, else
        the reason (failing tests, kill, sandbox error, limits reached)."""
        outcomes = {n: r.outcome for n, r in run.results.items()}
        if run.passed:
            return TestOutcome(True, "", outcomes, run.duration_s)
        bad = run.failing
        why = run.killed_reason or (f"{len(bad)} of {len(outcomes)} tests not passing: "
                                    + ", ".join(f"{n} ({outcomes[n]})" for n in bad[:3]))
        if not bad and not run.killed_reason:
            why = f"pytest exit code {run.exit_code}"
        if run.sandbox_error:
            why = f"{run.sandbox_error}; {why}"
        limits = limit_notes(run, env.cfg if hasattr(env, "cfg") else self.envs_cfg, timeout_s)
        extra = [n for n in limits if not n.startswith("wall-clock") or timeout_s is not None]
        if extra:
            why += "; " + "; ".join(extra)
        return TestOutcome(False, why, outcomes, run.duration_s, limits)

    def run_patch(self, instance_id: str, model_patch: str) -> TestOutcome:
        """Apply a prediction's `model_patch` (a unified diff against the buggy tree, as in
        SWE-bench predictions) with `git apply` and run the instance's tests, judged as `run`
        judges spliced regions (the reference baseline is the original repository, which is
        what the reference fix of every region gives), under the same wall-clock limit
        (`timeout`). `NO_ENVIRONMENT` starts the reason when the instance has no environment."""
        instance = self.instances.get(instance_id)
        if instance is None:
            return TestOutcome(False, f"{NO_ENVIRONMENT}: instance not in the instances file")
        if runner_refusal(instance):
            return TestOutcome(False, f"{NO_ENVIRONMENT}: {runner_refusal(instance)}")
        env = self._environment(instance.repo)
        if isinstance(env, str):
            return TestOutcome(False, f"{NO_ENVIRONMENT}: {env}")
        node_ids = list(dict.fromkeys(
            instance.FAIL_TO_PASS + sample_pass_to_pass(instance, self.max_pass_to_pass)))
        ctx = RowContext(instance, env, [], {}, node_ids)
        refused = self.refusal(ctx)
        if refused:
            return TestOutcome(False, refused)
        from hrm.envs.errors import PatchError

        with env.working_copy(git=False) as tree:
            try:
                env.apply_patch(tree, instance.patch)
            except PatchError as err:
                return TestOutcome(False, f"bug patch does not apply: {err.git_message[:200]}")
            try:
                env.apply_patch(tree, model_patch)
            except PatchError as err:
                return TestOutcome(False, f"model_patch does not apply: {err.git_message[:200]}")
            timeout = self.timeout(ctx)
            run = env.run_tests(tree, node_ids, timeout_s=timeout)
        outcome = self._interpret(run, env, timeout)
        if self._only_pass_to_pass(ctx, outcome):
            outcome = self._tolerate(ctx, outcome, self._original(ctx), "the original repository")
        return outcome

    @staticmethod
    def _only_pass_to_pass(ctx: RowContext, outcome: TestOutcome) -> bool:
        """The run failed on PASS_TO_PASS tests only (no kill, no limit): worth a baseline run."""
        bad = [n for n, o in outcome.outcomes.items() if o != "passed"]
        f2p = set(ctx.instance.FAIL_TO_PASS)
        return (not outcome.resolved and bool(bad) and not any(n in f2p for n in bad)
                and "not passing" in outcome.reason and not outcome.limits_hit)

    def _tolerate(self, ctx: RowContext, outcome: TestOutcome, base: TestOutcome, label: str
                  ) -> TestOutcome:
        """`outcome` resolved after all when only PASS_TO_PASS tests failed and they fail in
        `base` too (with every FAIL_TO_PASS passing there): they say nothing about the fix."""
        bad = [n for n, o in outcome.outcomes.items() if o != "passed"]
        f2p = set(ctx.instance.FAIL_TO_PASS)
        if not self._only_pass_to_pass(ctx, outcome):
            return outcome
        broken = {n for n, o in base.outcomes.items() if o != "passed"}
        if all(base.outcomes.get(n) == "passed" for n in f2p) and set(bad) <= broken:
            return TestOutcome(
                True, f"resolved; ignored {len(bad)} PASS_TO_PASS test(s) failing with "
                f"{label} too in this selection: {', '.join(sorted(bad)[:3])}",
                outcome.outcomes, outcome.duration_s)
        return outcome

    def _original(self, ctx: RowContext) -> TestOutcome:
        """The row's test selection on the ORIGINAL repository (pristine tree, no bug patch)."""
        key = (ctx.instance.instance_id, ("<original repository>",))
        if key not in self._raw_runs:
            env = ctx.env
            with env.working_copy(git=False) as tree:
                run = env.run_tests(tree, ctx.node_ids)
            outcomes = {n: r.outcome for n, r in run.results.items()}
            self._raw_runs[key] = TestOutcome(run.passed, run.killed_reason or "", outcomes,
                                              run.duration_s)
        return self._raw_runs[key]

    def refusal(self, ctx: RowContext) -> str:
        """Why predictions of this row's environment must not run (empty: they may)."""
        key = id(ctx.env)
        if key not in self._refusals:
            label = sandbox_isolation(ctx.env, self.envs_cfg)
            self._refusals[key] = "" if ("unconfined" not in label or self.allow_unconfined) \
                else (f"{UNCONFINED} (isolation {label}: the filesystem is not confined; "
                      "eval.allow_unconfined_execution: true runs it anyway)")
        return self._refusals[key]

    def run(self, ctx: RowContext, pred_hunks: Sequence[str], *,
            baseline: str = "reference") -> TestOutcome:
        """Run the row's tests on `pred_hunks` (cached per instance, prediction and baseline).

        A run that fails only on PASS_TO_PASS tests is checked against a baseline run of the
        same selection: tests that fail there too (order-dependent tests, e.g. one test closing
        the event loop another needs) say nothing about the prediction and are ignored, named in
        the reason. FAIL_TO_PASS failures, kills and timeouts never are. `baseline`:
        `reference` (the metrics: the reference fix spliced into the buggy tree) or `original`
        (the search verifier, which must not use the reference: the original repository, i.e.
        the pristine tree without the bug patch).
        """
        if baseline not in ("reference", "original"):
            raise ValueError(f"unknown baseline {baseline!r}")
        refused = self.refusal(ctx)
        if refused:
            return TestOutcome(False, refused)
        key = (ctx.instance.instance_id, tuple(pred_hunks), baseline)
        if key in self._runs:
            return self._runs[key]
        outcome = self._raw(ctx, pred_hunks)
        if self._only_pass_to_pass(ctx, outcome):
            if baseline == "reference":
                base, label = self._raw(ctx, [h.fixed_text for h in ctx.hunks]), "the reference fix"
            else:
                base, label = self._original(ctx), "the original repository"
            outcome = self._tolerate(ctx, outcome, base, label)
        self._runs[key] = outcome
        return outcome

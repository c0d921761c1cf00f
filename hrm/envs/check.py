"""Check instances against their environments: the bug patch applies, FAIL_TO_PASS fails with
it and passes after reverting it (SWE-smith's own validity criterion)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hrm.config import EnvsConfig
from hrm.data.instance import Instance
from hrm.envs.environment import RepoEnvironment, get_environment
from hrm.envs.errors import EnvironmentUnavailable, PatchError


@dataclass(frozen=True)
class InstanceCheck:
    instance_id: str
    status: str
    """`valid`, `patch_does_not_apply`, `passes_with_bug`, `fails_after_revert`,
    `unavailable` (no environment for its repo here), `sandbox_error` (pytest never started:
    the run is no evidence either way, so it is neither valid nor a failed check)."""
    detail: str = ""
    bug_seconds: float = 0.0
    fixed_seconds: float = 0.0


@dataclass
class CheckReport:
    checks: list[InstanceCheck] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(c.status for c in self.checks).items()))

    @property
    def applied(self) -> int:
        return sum(c.status not in ("patch_does_not_apply", "unavailable") for c in self.checks)


def check_instance(env: RepoEnvironment, inst: Instance) -> InstanceCheck:
    """Apply the bug, run FAIL_TO_PASS (must fail), revert, run again (must pass)."""
    with env.working_copy() as tree:
        try:
            env.apply_patch(tree, inst.patch)
        except PatchError as err:
            return InstanceCheck(inst.instance_id, "patch_does_not_apply", err.git_message[:300])
        bug = env.run_tests(tree, inst.FAIL_TO_PASS)
        if bug.sandbox_error:
            return InstanceCheck(inst.instance_id, "sandbox_error", "with bug: "
                                 + bug.sandbox_error, bug.duration_s)
        if bug.passed:
            return InstanceCheck(inst.instance_id, "passes_with_bug", "", bug.duration_s)
        env.apply_patch(tree, inst.patch, reverse=True)
        fixed = env.run_tests(tree, inst.FAIL_TO_PASS)
        if fixed.sandbox_error:
            return InstanceCheck(inst.instance_id, "sandbox_error", "after revert: "
                                 + fixed.sandbox_error, bug.duration_s, fixed.duration_s)
        if not fixed.passed:
            detail = "; ".join(f"{n}: {r.outcome}" for n, r in fixed.results.items()
                               if r.outcome != "passed")[:300]
            return InstanceCheck(inst.instance_id, "fails_after_revert", detail,
                                 bug.duration_s, fixed.duration_s)
        return InstanceCheck(inst.instance_id, "valid", "", bug.duration_s, fixed.duration_s)


def check_instances(instances: list[Instance], cfg: EnvsConfig, workers: int = 1,
                    progress: bool = True) -> CheckReport:
    """Check every instance whose repo has an environment here (others: `unavailable`).

    `workers` instances are checked at once (threads: each check is sandboxed
    subprocesses, and every run leases its own uid, so concurrent runs do not share a
    process budget). Results keep the input order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    envs: dict[str, RepoEnvironment | str] = {}
    for repo in dict.fromkeys(inst.repo for inst in instances):
        try:
            envs[repo] = get_environment(repo, cfg)
        except EnvironmentUnavailable as err:
            envs[repo] = err.reason

    def one(inst: Instance) -> InstanceCheck:
        env = envs[inst.repo]
        if isinstance(env, str):
            return InstanceCheck(inst.instance_id, "unavailable", env[:300])
        return check_instance(env, inst)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        checks = list(tqdm(pool.map(one, instances), total=len(instances), desc="envs check",
                           unit="inst", disable=not progress))
    return CheckReport(checks=checks)

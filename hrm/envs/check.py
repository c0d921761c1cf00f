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
    `unavailable` (no environment for its repo here)."""
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
        if bug.passed:
            return InstanceCheck(inst.instance_id, "passes_with_bug", "", bug.duration_s)
        env.apply_patch(tree, inst.patch, reverse=True)
        fixed = env.run_tests(tree, inst.FAIL_TO_PASS)
        if not fixed.passed:
            detail = "; ".join(f"{n}: {r.outcome}" for n, r in fixed.results.items()
                               if r.outcome != "passed")[:300]
            return InstanceCheck(inst.instance_id, "fails_after_revert", detail,
                                 bug.duration_s, fixed.duration_s)
        return InstanceCheck(inst.instance_id, "valid", "", bug.duration_s, fixed.duration_s)


def check_instances(instances: list[Instance], cfg: EnvsConfig) -> CheckReport:
    """Check every instance whose repo has an environment here (others: `unavailable`)."""
    from tqdm import tqdm

    envs: dict[str, RepoEnvironment | str] = {}
    report = CheckReport()
    for inst in tqdm(instances, desc="envs check", unit="inst"):
        if inst.repo not in envs:
            try:
                envs[inst.repo] = get_environment(inst.repo, cfg)
            except EnvironmentUnavailable as err:
                envs[inst.repo] = err.reason
        env = envs[inst.repo]
        if isinstance(env, str):
            report.checks.append(InstanceCheck(inst.instance_id, "unavailable", env[:300]))
            continue
        report.checks.append(check_instance(env, inst))
    return report

"""Environment benchmark (not run by the suite): build time, per-run test time, and the
all-rows check of the real sample (README: 54 of 56 tenacity rows apply and are valid).
`--quota-ab N`: instead, N alternated runs of two tests with the disk quota's overlay and
without it (`keep_writes`), their median and fastest times side by side.

    .venv/bin/python benchmarks/envs_bench.py [--rebuild] [--sample ../shared/data/swe-smith/sample.jsonl]
    .venv/bin/python benchmarks/envs_bench.py --quota-ab 16
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from hrm.config import load_params
from hrm.data.instance import read_instances
from hrm.envs import get_environment
from hrm.envs.check import check_instances
from hrm.envs.environment import slug

REPO = "swesmith/jd__tenacity.0d40e76f"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rebuild", action="store_true", help="delete the cached env first")
    ap.add_argument("--sample", default="../shared/data/swe-smith/sample.jsonl")
    ap.add_argument("--quota-ab", type=int, default=0, metavar="N")
    args = ap.parse_args()
    cfg = load_params().envs
    if args.quota_ab:
        print(json.dumps(quota_ab(get_environment(REPO, cfg), args.quota_ab), indent=2))
        return
    if args.rebuild:
        shutil.rmtree(Path(cfg.cache_dir) / slug(REPO), ignore_errors=True)
    t = time.monotonic()
    env = get_environment(REPO, cfg)
    build_s = time.monotonic() - t
    with env.working_copy() as tree:
        t = time.monotonic()
        full = env.run_tests(tree, list(env.spec.test_dirs))
        full_s = time.monotonic() - t
    rows = [r for r in read_instances(args.sample) if r.repo == REPO]
    t = time.monotonic()
    report = check_instances(rows, cfg)
    check_s = time.monotonic() - t
    runs = [c.bug_seconds for c in report.checks if c.bug_seconds] + [
        c.fixed_seconds for c in report.checks if c.fixed_seconds]
    print(json.dumps({
        "build_or_reuse_s": round(build_s, 1), "full_suite_s": round(full_s, 2),
        "full_suite_tests": len(full.all_tests), "isolation": full.isolation,
        "rows": len(rows), "applied": report.applied, "counts": report.counts(),
        "check_all_rows_s": round(check_s, 1),
        "per_run_median_s": round(statistics.median(runs), 2) if runs else None,
        "per_run_max_s": round(max(runs), 2) if runs else None,
        "not_valid": [(c.instance_id, c.status) for c in report.checks if c.status != "valid"],
    }, indent=2))


def quota_ab(env, n: int) -> dict:
    """Seconds per run of two quick tests, alternating the quota's overlay and none."""
    ids = ["tests/test_tenacity.py::TestWaitConditions::test_incrementing_sleep",
           "tests/test_tenacity.py::TestStopConditions::test_stop_after_attempt"]
    times: dict[str, list[float]] = {"quota": [], "no quota (keep_writes)": []}
    labels = {}
    with env.working_copy() as tree:
        for k in range(n):
            keep = bool(k % 2)
            t = time.monotonic()
            run = env.run_tests(tree, ids, keep_writes=keep)
            name = "no quota (keep_writes)" if keep else "quota"
            times[name].append(time.monotonic() - t)
            labels[name] = run.isolation
            if not run.passed:
                raise SystemExit(f"the two tests did not pass: {run.output[-500:]}")
    return {name: {"median_s": round(statistics.median(ts), 3), "min_s": round(min(ts), 3),
                   "runs": len(ts), "isolation": labels[name]} for name, ts in times.items()}


if __name__ == "__main__":
    main()

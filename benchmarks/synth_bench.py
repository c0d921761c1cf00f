"""Generator benchmark (not run by the suite): instances kept and candidates tried per minute.

    .venv/bin/python benchmarks/synth_bench.py --profile tiny   # up to 4 per env, 120 s each
    .venv/bin/python benchmarks/synth_bench.py --profile cpu    # up to 40 per env, 240 s each
    .venv/bin/python benchmarks/synth_bench.py --profile cpu --time-budget-s 120 --env schema

Every environment of `synth.envs` is searched in turn with the profile's `synth.kinds`,
`synth.max_instances` and `synth.time_budget_s` (both per environment); `--max-instances`,
`--time-budget-s`, `--workers` override them for one run and `--env NAME` (repeatable; a repo
id or short name, as in `synth:NAME`) restricts the environments. The report lists, per
environment and in total, kept, tried, kept_per_minute and tried_per_minute (over the
environment's own search time, baseline included) and why candidates were dropped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from hrm.config import load_params
from hrm.data.materialise import synth_env
from hrm.synth import synthesize


def _per_minute(count: int, seconds: float) -> float | None:
    return round(60 * count / seconds, 2) if seconds > 0 else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--max-instances", type=int, default=None)
    ap.add_argument("--time-budget-s", type=float, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--env", action="append", default=[],
                    help="only this environment (repo id or short name); repeatable")
    args = ap.parse_args()
    params = load_params(profile=args.profile)
    if args.max_instances:
        params.synth.max_instances = args.max_instances
    if args.time_budget_s:
        params.synth.time_budget_s = args.time_budget_s
    if args.workers:
        params.synth.workers = args.workers
    if args.env:
        params.synth.envs = [synth_env(params, f"synth:{name}") for name in args.env]
    tmp = Path(tempfile.mkdtemp(prefix="hrm-synth-bench-"))
    try:
        result = synthesize(params, tmp / "instances.jsonl")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    envs = []
    for e in result.envs:
        row = asdict(e)
        row["keep_rate"] = e.keep_rate
        row["kept_per_minute"] = _per_minute(e.kept, e.elapsed_s)
        row["tried_per_minute"] = _per_minute(e.tried, e.elapsed_s)
        envs.append(row)
    report = {"profile": args.profile, "workers": params.synth.workers,
              "kinds": params.synth.kinds, "kept": result.kept, "tried": result.tried,
              "elapsed_s": result.elapsed_s, "keep_rate": result.keep_rate,
              "kept_per_minute": _per_minute(result.kept, result.elapsed_s),
              "tried_per_minute": _per_minute(result.tried, result.elapsed_s),
              "dropped": result.dropped, "isolation": result.isolation, "envs": envs}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

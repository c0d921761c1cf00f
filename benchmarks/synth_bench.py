"""Generator benchmark (not run by the suite): instances kept per minute and keep rate.

    .venv/bin/python benchmarks/synth_bench.py --profile tiny   # up to 8 instances, 180 s budget
    .venv/bin/python benchmarks/synth_bench.py --profile cpu    # up to 48 instances, 600 s budget

The counts and budgets are `synth.max_instances` / `synth.time_budget_s` of the profile in
params.yaml (the base `synth` section is the cpu profile; `profiles.tiny.synth` overrides it);
`--max-instances` / `--time-budget-s` override them for one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from hrm.config import load_params
from hrm.synth import synthesize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--max-instances", type=int, default=None)
    ap.add_argument("--time-budget-s", type=float, default=None)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    params = load_params(profile=args.profile)
    if args.max_instances:
        params.synth.max_instances = args.max_instances
    if args.time_budget_s:
        params.synth.time_budget_s = args.time_budget_s
    if args.workers:
        params.synth.workers = args.workers
    tmp = Path(tempfile.mkdtemp(prefix="hrm-synth-bench-"))
    try:
        result = synthesize(params, tmp / "instances.jsonl")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = asdict(result)
    report["keep_rate"] = result.keep_rate
    report["kept_per_minute"] = round(60 * result.kept / result.elapsed_s, 2)
    report["profile"] = args.profile
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

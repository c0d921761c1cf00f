"""Set-up costs of `make run` that do not depend on the model (not run by the suite).

Three comparisons, each side by side in one run:

  tracebacks  CPU of one sandboxed-style pytest run (the environment's interpreter, the row's
              FAIL_TO_PASS and 10 PASS_TO_PASS tests, the bug applied, so the FAIL_TO_PASS tests
              fail) with pytest's default long tracebacks against `--tb=native`, which
              `RepoEnvironment.run_tests` passes (docs/envs.md "API"), over the first `--rows`
              instances of each environment in `--instances` (the two styles alternate which
              runs first), and the bytes each prints; the recorded failure messages must be
              equal (object addresses masked);
  envs        the generator's environments (`synth.envs`) built one after another against side
              by side, each into a fresh temporary cache with a fresh pip cache;
  sdists      the corpus's pinned sdists (`corpus.packages`) fetched one after another against
              side by side, likewise (needs the package index).

    .venv/bin/python benchmarks/setup_bench.py --instances data/instances.jsonl
    .venv/bin/python benchmarks/setup_bench.py --only tracebacks --rows 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hrm.config import load_params


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _messages(report: Path) -> dict[str, str]:
    """Node id -> failure message, object addresses masked (they differ between processes)."""
    out = {}
    for line in report.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("message"):
            out[rec["nodeid"]] = re.sub(r"0x[0-9a-f]+", "0x?", rec["message"])
    return out


def tracebacks(params, instances: Path, rows: int) -> None:
    from hrm.envs import get_environment

    by_repo: dict[str, list[dict]] = {}
    for line in instances.read_text().splitlines():
        row = json.loads(line)
        if row["repo"] in params.synth.envs:
            by_repo.setdefault(row["repo"], []).append(row)
    plugin = tempfile.mkdtemp()
    (Path(plugin) / "record_messages.py").write_text(
        "import json, os\n"
        "def pytest_runtest_logreport(report):\n"
        "    if report.failed:\n"
        "        with open(os.environ['BENCH_REPORT'], 'a') as f:\n"
        "            crash = getattr(report.longrepr, 'reprcrash', None)\n"
        "            f.write(json.dumps({'nodeid': report.nodeid, 'message': crash.message if crash\n"
        "                                else str(report.longrepr)[-200:]}) + '\\n')\n")
    for repo, repo_rows in by_repo.items():
        env = get_environment(repo, params.envs)
        cpu = {"long": 0.0, "native": 0.0}
        size = {"long": 0, "native": 0}
        for k, row in enumerate(repo_rows[:rows]):
            nodes = row["FAIL_TO_PASS"] + row["PASS_TO_PASS"][:10]
            seen = {}
            with env.working_copy(git=False) as tree:
                env.apply_patch(tree, row["patch"])
                for style in ("long", "native") if k % 2 == 0 else ("native", "long"):
                    report = Path(plugin) / f"{style}.jsonl"
                    report.unlink(missing_ok=True)
                    before = _child_cpu()
                    proc = subprocess.run([str(env.python), "-m", "pytest", "-q", "-rN", "-p", "no:cacheprovider",
                                    "-p", "record_messages", f"--tb={style}", *nodes], cwd=tree,
                                   capture_output=True, env={**os.environ, "PYTHONPATH": plugin,
                                                             "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
                                                             "BENCH_REPORT": str(report)})
                    cpu[style] += _child_cpu() - before
                    size[style] += len(proc.stdout)
                    seen[style] = _messages(report) if report.exists() else {}
            if seen["long"] != seen["native"]:
                raise SystemExit(f"{row['instance_id']}: the failure messages differ between styles")
        n = min(rows, len(repo_rows))
        print(f"tracebacks {repo}: {n} rows, CPU per run long {cpu['long'] / n:.3f} s, native "
              f"{cpu['native'] / n:.3f} s ({cpu['long'] / max(cpu['native'], 1e-9):.2f}x); output per "
              f"run long {size['long'] / n / 1024:.1f} KB, native {size['native'] / n / 1024:.1f} KB "
              "(envs.max_output_kb caps it); messages equal")
    shutil.rmtree(plugin, ignore_errors=True)


def _timed(label: str, work, items: list, parallel: int) -> None:
    """Both modes from cold: a fresh cache and a fresh pip cache each; side by side first, so
    anything left warm (the OS's file cache) favours the other."""
    times = {}
    saved = os.environ.get("PIP_CACHE_DIR")
    for mode in ("side by side", "one after another"):
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as pip_cache:
            os.chmod(cache, 0o755)  # the sandbox user must reach an environment's cache
            os.environ["PIP_CACHE_DIR"] = pip_cache
            if mode == "one after another":
                for item in items:
                    work(item, cache)
            else:
                with ThreadPoolExecutor(max_workers=parallel) as pool:
                    list(pool.map(lambda item, cache=cache: work(item, cache), items))
        times[mode] = time.monotonic() - start
    if saved is None:
        os.environ.pop("PIP_CACHE_DIR", None)
    else:
        os.environ["PIP_CACHE_DIR"] = saved
    a, b = times["one after another"], times["side by side"]
    print(f"{label}: {len(items)} one after another {a:.1f} s, side by side {b:.1f} s ({a / b:.2f}x)")


def envs(params) -> None:
    from hrm.synth.generator import _local_env

    def build(repo_id: str, cache: str) -> None:
        _local_env(repo_id, params.model_copy(update={"envs": params.envs.model_copy(
            update={"cache_dir": cache})}))

    _timed("envs", build, list(params.synth.envs), len(params.synth.envs))


def sdists(params) -> None:
    from hrm.corpus.fetch import package_tree

    _timed("sdists", lambda pin, cache: package_tree(pin, cache),
           [p.package for p in params.corpus.packages], 6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--instances", type=Path, default=Path("data/instances.jsonl"))
    ap.add_argument("--rows", type=int, default=5, help="rows per environment (tracebacks)")
    ap.add_argument("--only", choices=["tracebacks", "envs", "sdists"], action="append")
    args = ap.parse_args()
    params = load_params("params.yaml", args.profile)
    only = args.only or ["tracebacks", "envs", "sdists"]
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    if "tracebacks" in only:
        tracebacks(params, args.instances, args.rows)
    if "envs" in only:
        envs(params)
    if "sdists" in only:
        sdists(params)


if __name__ == "__main__":
    main()

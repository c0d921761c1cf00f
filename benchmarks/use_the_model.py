"""The "use the model" acceptance on a run directory after `make run`, end to end and timed.

What it does, in the run directory given (it changes that directory's registry: run it on a
fresh clone, not on a project you care about):

1. `hrm gate --params <lenient>`: the run's own params with criteria that the run's model meets
   (loss and ACT steps, as tests/gate/lenient_gate.yaml) and the primary repair rule off (the
   committed cpu run's val resolved interval does not clear the untrained model re-ranked by
   the same n-gram model: docs/gate.md; this checks the use path, not the verdict), so a
   version is promoted and `models:/<name>@<alias>` exists;
2. `hrm predict` from the registry on the val split's instances and on the real sample
   (`--sample`), and every non-empty `model_patch` applied with `git apply` to the instance's
   buggy tree (the environment's pristine copy + the instance's bug patch); instances whose bug
   patch does not apply to the environment are counted apart;
3. `hrm repair` on a tenacity function with a bug put in: it must print a unified diff;
4. `mlflow.pyfunc.load_model('models:/<name>@<alias>').predict(df)` in a fresh process;
5. `mlflow models serve --env-manager local` on loopback: one POST to /invocations, then stop.

Prints one line per step with its time, and a JSON summary (`--json`). Exit 1 when a step
fails. Usage (from the repository root of a fresh clone after `make run`):

    .venv/bin/python benchmarks/use_the_model.py --run-dir . --sample ../shared/data/swe-smith/sample.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

LENIENT = [
    {"metric": "loss", "op": "<", "threshold": 1000000.0, "split": "val"},
    {"metric": "act_mean_steps", "op": ">=", "threshold": 1, "split": "val"},
]
BUG = ("tenacity/wait.py", "wait_random.__call__", "return self.wait_random_min + (",
       "return self.wait_random_min - (")
"""A bug put into a tenacity function for `hrm repair`: (file, function, fixed text, buggy text)."""


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def _lenient_params(run_dir: Path, out: Path) -> Path:
    raw = yaml.safe_load((run_dir / "params.yaml").read_text())
    raw["gate"]["criteria"] = LENIENT
    raw["gate"]["primary_metric"] = None
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _val_instances(run_dir: Path, out: Path) -> Path:
    splits = json.loads((run_dir / "artifacts/splits/splits.json").read_text())["splits"]
    with (run_dir / "artifacts/validated/instances.jsonl").open(encoding="utf-8") as src, \
            out.open("w", encoding="utf-8") as dst:
        for line in src:
            if line.strip() and splits.get(json.loads(line)["instance_id"]) == "val":
                dst.write(line)
    return out


def check_patches(run_dir: Path, instances: Path, preds: Path) -> dict:
    """Apply every non-empty model_patch to its buggy tree; counts."""
    sys.path.insert(0, str(run_dir))
    from hrm.config import load_params
    from hrm.data.instance import read_instances
    from hrm.envs import get_environment
    from hrm.envs.providers import git_apply

    params = load_params(run_dir / "params.yaml")
    envs_cfg = params.envs.model_copy(update={"cache_dir": str(run_dir / params.envs.cache_dir)})
    by_id = {i.instance_id: i for i in read_instances(instances)}
    counts = {"predictions": 0, "empty": 0, "applied": 0, "not_applied": 0, "bug_does_not_apply": 0,
              "no_environment": 0}
    envs: dict[str, object] = {}
    for line in preds.read_text(encoding="utf-8").splitlines():
        pred = json.loads(line)
        counts["predictions"] += 1
        if not pred["model_patch"]:
            counts["empty"] += 1
            continue
        inst = by_id[pred["instance_id"]]
        if inst.repo not in params.envs.repos:
            counts["no_environment"] += 1
            continue
        env = envs.setdefault(inst.repo, get_environment(inst.repo, envs_cfg))
        with env.working_copy(git=False) as tree:
            try:
                env.apply_patch(tree, inst.patch)
            except Exception:  # the sample's bug patch is against its own snapshot
                counts["bug_does_not_apply"] += 1
                continue
            try:
                git_apply(tree, pred["model_patch"])
                counts["applied"] += 1
            except Exception:
                counts["not_applied"] += 1
    return counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_once(run_dir: Path, env: dict, model_uri: str, record: dict) -> dict:
    port = _free_port()
    bin_dir = run_dir / ".venv/bin"
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own group: the server's workers go with it
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited {proc.returncode}: "
                                   f"{proc.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("mlflow models serve did not answer /ping in 180 s") from None
                time.sleep(1)
        body = json.dumps({"dataframe_records": [record]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("."))
    ap.add_argument("--sample", type=Path, default=None, help="the real SWE-smith sample (JSONL)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args()
    run_dir = args.run_dir.resolve()
    bin_dir = run_dir / ".venv/bin"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_TRACKING_URI": f"sqlite:///{run_dir / 'mlflow.db'}"}
    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    model_uri = f"models:/{params['gate']['model_name']}@{params['gate']['alias']}"
    summary: dict = {"run_dir": str(run_dir), "model": model_uri}
    work = Path(tempfile.mkdtemp(prefix="hrm-use-"))

    def step(name: str, fn):
        started = time.perf_counter()
        result = fn()
        summary[name] = {"seconds": round(time.perf_counter() - started, 1), **(result or {})}
        print(f"{name}: {json.dumps(summary[name])}", flush=True)

    lenient = _lenient_params(run_dir, work / "lenient.yaml")
    step("promote", lambda: {"output": _run([str(bin_dir / "hrm"), "gate", "--params", str(lenient),
                                             "--out", str(work / "gate")], run_dir, env).stdout.strip()[-300:]})
    registry = json.loads((work / "gate" / "registry.json").read_text())
    if registry.get("action") not in ("promoted", "already_champion"):
        print(f"the lenient gate did not promote: {registry}", file=sys.stderr)
        return 1
    sets = [("val", _val_instances(run_dir, work / "val.jsonl"))]
    if args.sample is not None:
        sets.append(("sample", args.sample.resolve()))
    for name, instances in sets:
        preds = work / f"preds_{name}.jsonl"
        step(f"predict_{name}", lambda i=instances, p=preds: (
            _run([str(bin_dir / "hrm"), "predict", "--instances", str(i), "--out", str(p)], run_dir, env)
            and None))
        step(f"apply_{name}", lambda i=instances, p=preds: check_patches(run_dir, i, p))

    def repair():
        sys.path.insert(0, str(run_dir))
        from hrm.config import load_params
        from hrm.envs import get_environment

        p = load_params(run_dir / "params.yaml")
        envs_cfg = p.envs.model_copy(update={"cache_dir": str(run_dir / p.envs.cache_dir)})
        tenacity = get_environment("swesmith/jd__tenacity.0d40e76f", envs_cfg)
        rel, function, fixed, buggy = BUG
        source = (tenacity.pristine / rel).read_text(encoding="utf-8")
        if fixed not in source:
            raise RuntimeError(f"{rel}: the text to break is not there")
        # as a user's checkout of tenacity: `hrm repair` names the file from the git root
        # (tenacity/wait.py), as the model read paths in training
        checkout = work / "user-checkout"
        target = checkout / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.replace(fixed, buggy, 1), encoding="utf-8")
        subprocess.run(["git", "init", "-q", str(checkout)], check=True)
        done = subprocess.run([str(bin_dir / "hrm"), "repair", str(target), "--function", function,
                               "--issue", "wait_random returns waits below the minimum"],
                              cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
        diff = done.stdout
        added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
        return {"exit": done.returncode, "prints_a_diff": "\n@@ " in f"\n{diff}",
                "restores_the_fix": any(fixed in line for line in added), "diff": diff[-600:]}

    step("repair", repair)
    record = {"file_path": BUG[0], "source": (work / "user-checkout" / BUG[0]).read_text(encoding="utf-8"),
              "function": BUG[1], "problem_statement": "wait_random returns waits below the minimum"}
    (work / "record.json").write_text(json.dumps(record))
    load = (f"import json, mlflow, pandas as pd; m = mlflow.pyfunc.load_model({model_uri!r}); "
            f"out = m.predict(pd.DataFrame([json.load(open({str(work / 'record.json')!r}))])); "
            "print(json.dumps(out.to_dict('records'))[:400])")
    step("pyfunc_fresh_process", lambda: {"output": _run([str(bin_dir / "python"), "-c", load], run_dir, env)
                                          .stdout.strip()[-400:]})
    step("serve", lambda: {"answer": json.dumps(serve_once(run_dir, env, model_uri, record))[:400]})
    failed = [k for k in ("apply_val", "apply_sample") if k in summary and summary[k]["not_applied"]]
    if not summary["repair"]["prints_a_diff"]:
        failed.append("repair")
    summary["failed"] = failed
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    print(f"predictions, gate report and inputs in {work}")
    print("failed: " + (", ".join(failed) if failed else "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic gate inputs (eval metrics, per-phase histories, a checkpoint, a tokenizer) and a real
sqlite-backed MLflow registry per test (copied from one migrated template to save the ~3 s of
schema migrations per test)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from hrm.config import Params, parse_params

HISTORY_COLUMNS = ["phase", "epoch", "step", "loss", "lm_loss", "q_halt_loss", "q_continue_loss",
                   "token_accuracy", "exact_accuracy", "q_halt_accuracy", "act_steps", "lr",
                   "tokens_per_s", "wall_time_s", "code_tiered_accuracy"]

LENIENT = [
    {"metric": "loss", "op": "<", "threshold": 5.0, "split": "val"},
    {"metric": "token_accuracy_all", "op": ">", "threshold": 0.1, "split": "val"},
]

# A plausible mid-training model: fails most of the plan's default criteria.
MID_TRAINING_VAL = {
    "loss": 0.62, "token_accuracy_all": 0.71, "exact_accuracy": 0.05, "code_compilation_success": 0.55,
    "code_tiered_accuracy": 0.31, "swe_search_convergence_rate": 0.12, "reverse_learning_integration": 0.4,
    "resolved_rate": 0.2, "resolved_rate_ci95": [0.08, 0.32], "exact_accuracy_ci95": [0.0, 0.1],
    # As `hrm evaluate` writes them: copying scores 0 on every repair metric and high on tokens.
    "baselines": {
        "copy": {"token_accuracy_all": 0.9, "exact_accuracy": 0.0, "resolved_rate": 0.0,
                 "code_compilation_success": 0.0, "code_tiered_accuracy": 0.0},
        "unigram": {"token_accuracy_all": 0.6, "exact_accuracy": 0.02, "resolved_rate": 0.04,
                    "code_compilation_success": 0.3, "code_tiered_accuracy": 0.1},
    },
}


def write_metrics(eval_dir: Path, split: str, metrics: dict) -> Path:
    path = eval_dir / split / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return path


def write_history(train_dir: Path, phases: list[tuple[str, int]], *, loss_fn=None, acc_fn=None,
                  tiered_fn=None, rows_per_epoch: int = 2, seed: int = 0, tiered: bool = True,
                  val_loss_fn=None, val_acc_fn=None) -> None:
    """Histories with global epochs (1-based) across phases, `rows_per_epoch` logged steps each.

    With `val_loss_fn`/`val_acc_fn`, the last row of each epoch also carries `val_lm_loss` /
    `val_token_accuracy` (empty in the other rows), as training logs its per-epoch val pass.
    """
    with_val = val_loss_fn is not None
    rng = np.random.default_rng(seed)
    loss_fn = loss_fn or (lambda t: 2.0 * math.exp(-0.15 * t) + 0.25)
    acc_fn = acc_fn or (lambda t: 0.85 / (1 + math.exp(-0.3 * (t - 8))))
    tiered_fn = tiered_fn or (lambda t: 0.5 / (1 + math.exp(-0.25 * (t - 10))))
    epoch, step = 0, 0
    for phase, epochs in phases:
        path = train_dir / phase / "history.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = HISTORY_COLUMNS if tiered else HISTORY_COLUMNS[:-1]
        if with_val:
            columns = [*columns, "val_lm_loss", "val_token_accuracy"]
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            for _ in range(epochs):
                epoch += 1
                for i in range(rows_per_epoch):
                    step += 1
                    lm_loss = loss_fn(epoch) + rng.normal(0, 0.01)
                    row = {"phase": phase, "epoch": epoch, "step": step,
                           "loss": lm_loss + 0.2, "lm_loss": lm_loss,  # total = lm + q losses
                           "q_halt_loss": 0.1, "q_continue_loss": 0.1,
                           "token_accuracy": acc_fn(epoch) + rng.normal(0, 0.005),
                           "exact_accuracy": 0.0, "q_halt_accuracy": 0.5, "act_steps": 2, "lr": 1e-3,
                           "tokens_per_s": 1000.0, "wall_time_s": float(step)}
                    if tiered:
                        row["code_tiered_accuracy"] = tiered_fn(epoch) + rng.normal(0, 0.005)
                    if with_val:
                        last = i == rows_per_epoch - 1
                        row["val_lm_loss"] = val_loss_fn(epoch) + rng.normal(0, 0.01) if last else ""
                        row["val_token_accuracy"] = (val_acc_fn(epoch) + rng.normal(0, 0.005)
                                                     if last else "")
                    w.writerow(row)


@dataclass
class Run:
    """One synthetic pipeline run's gate inputs."""

    root: Path
    eval_dir: Path
    train_dir: Path
    out_dir: Path
    checkpoint: Path
    tokenizer: Path

    def new_checkpoint(self, payload: bytes, step: int = 100) -> Path:
        """Write `step-<step>.pt` with `payload` and a manifest that verifies (a different
        candidate when it is the newest step or replaces it), and name it in the metrics as
        `hrm evaluate` of the new candidate would (decide again to use them)."""
        path = write_checkpoint(self.checkpoint, step, payload)
        stamp_checkpoint(self.eval_dir, self.checkpoint)
        return path


def stamp_checkpoint(eval_dir: Path, checkpoint: Path) -> str:
    """Write the sha256 of the checkpoint `checkpoint` resolves to into every split's
    metrics.json under `eval_dir` (what `hrm evaluate` records); returns it."""
    from hrm.gate.registry import checkpoint_sha256

    sha = checkpoint_sha256(checkpoint)
    for path in eval_dir.glob("*/metrics.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "checkpoint_sha256": sha}))
    return sha


def write_checkpoint(ckpt_dir: Path, step: int, payload: bytes) -> Path:
    """A checkpoint file in hrm.train.checkpoint's layout (`step-XXXXXXXX.pt` + manifest); the
    payload is opaque bytes: the registry hashes and verifies, it never unpickles."""
    import hashlib

    path = ckpt_dir / f"step-{step:08d}.pt"
    path.write_bytes(payload)
    path.with_suffix(".json").write_text(json.dumps(
        {"file": path.name, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
         "step": step, "epoch": 1, "phase": "refinement"}))
    return path


@pytest.fixture()
def run_dirs(tmp_path: Path) -> Run:
    eval_dir, train_dir = tmp_path / "eval", tmp_path / "train"
    write_metrics(eval_dir, "val", MID_TRAINING_VAL)
    write_metrics(eval_dir, "train", {**MID_TRAINING_VAL, "token_accuracy_all": 0.93, "loss": 0.31})
    write_history(train_dir, [("foundation", 10), ("optimisation", 5), ("refinement", 5)])
    ckpt = train_dir / "refinement" / "checkpoints"
    ckpt.mkdir(parents=True)
    write_checkpoint(ckpt, 100, b"weights-v1" * 1000)
    stamp_checkpoint(eval_dir, ckpt)
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')
    (tok / "meta.json").write_text('{"vocab_size": 512}')
    return Run(tmp_path, eval_dir, train_dir, tmp_path / "gate", ckpt, tok)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """An empty MLflow sqlite database with every migration applied (tracking + registry)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    client.search_experiments()
    client.search_registered_models()
    return db


@pytest.fixture()
def make_params(repo_root: Path, tmp_path: Path, template_db: Path, monkeypatch):
    """Build tiny-profile Params with gate overrides and tracking in a fresh sqlite registry."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HRM_PIPELINE_RUN", f"test-{tmp_path.name}")
    db = tmp_path / "mlflow.db"
    shutil.copy2(template_db, db)

    def make(criteria: list[dict] | None = None, **gate: object) -> Params:
        raw = yaml.safe_load((repo_root / "params.yaml").read_text())
        raw["profile"] = "tiny"
        raw["artifacts_dir"] = str(tmp_path / "artifacts")
        # The real sample is all tenacity: nothing held out, so there are train rows; the
        # environment and corpus caches are the suite's shared ones (built once).
        raw["sequences"]["held_out_repos"] = []
        raw["envs"]["cache_dir"] = str(repo_root / ".cache" / "hrm-envs")
        raw["corpus"]["cache_dir"] = str(repo_root / ".cache" / "hrm-corpus")
        raw["tracking"] = {"tracking_uri": f"sqlite:///{db}", "artifact_location": str(tmp_path / "mlartifacts"),
                           "experiment": "gate-test"}
        if criteria is not None:
            raw["gate"]["criteria"] = criteria
        raw["gate"].update(gate)
        # the tiny profile overrides gate keys too: the test's overrides must win over it
        raw["profiles"]["tiny"].setdefault("gate", {}).update(gate)
        return parse_params(raw, "tiny")

    yield make
    import mlflow

    while mlflow.active_run() is not None:  # never leak a run into the next test
        mlflow.end_run()


@pytest.fixture(scope="session")
def synth():
    """The synthetic-input helpers (pytest's importlib mode does not make conftest importable)."""
    from types import SimpleNamespace

    return SimpleNamespace(write_metrics=write_metrics, write_history=write_history, LENIENT=LENIENT,
                           MID_TRAINING_VAL=MID_TRAINING_VAL, write_checkpoint=write_checkpoint,
                           stamp_checkpoint=stamp_checkpoint)


def wait_for_http(url: str, proc, timeout_s: float, output) -> None:
    """Poll `url` until it answers 200; fail with the server's `output()` if `proc` exits or
    `timeout_s` passes first."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{url} did not answer in {timeout_s:.0f} s:\n{output()[-3000:]}")
        time.sleep(0.5)


def stop_process(proc, timeout_s: float = 15) -> None:
    """Terminate a server started by a test; kill it if it does not exit within `timeout_s`."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()

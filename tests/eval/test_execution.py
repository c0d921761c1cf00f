"""The execution tier on real tenacity rows with the cached environment: oracle resolves, copy
does not, and hostile predictions fail with a reason inside the sandbox's limits."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hrm.eval.execution import ExecutionTier
from hrm.eval.rows import RowScorer
from hrm.hunks import Hunk

from .conftest import TENACITY


@dataclass
class _Record:
    instance_id: str
    repo: str
    hunks: list


def _scorer(tenacity_env, instances, max_p2p=2):
    _env, cfg = tenacity_env
    tier = ExecutionTier(cfg, {i.instance_id: i for i in instances}, max_p2p)
    return RowScorer([0.1, 0.2, 0.3, 0.4], tier, run_tests=True)


def _tokens_dummy():
    labels = np.array([-100, 5, 2])
    return np.array([0, 5, 2]), labels, [5, 2]


@pytest.mark.slow
def test_oracle_resolves_copy_does_not(tenacity_env, sample_hunks, instances):
    scorer = _scorer(tenacity_env, instances)
    rows = [(i, h) for i, h in sample_hunks if i.repo == TENACITY][:6]
    oracle, copy = [], []
    for inst, hunks in rows:
        rec = _Record(inst.instance_id, inst.repo, hunks)
        if isinstance(scorer.context(rec), str):
            continue  # the 2 of 56 patches that do not apply to the sdist
        refs = [h.fixed_text for h in hunks]
        pred, labels, buggy = _tokens_dummy()
        oracle.append(scorer.score(rec, pred, labels, -100, buggy, refs, refs))
        copy.append(scorer.score(rec, pred, labels, -100, buggy, [h.buggy_text for h in hunks],
                                 refs))
        if len(oracle) == 4:
            break
    assert len(oracle) == 4
    assert all(r.code.context == "file" and r.resolved is True and r.tier == 4 for r in oracle)
    assert all(r.code.compiles is True and r.resolved is False and r.test_reason for r in copy)


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and ".git" not in p.parts:
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_hostile_predictions_are_contained(tenacity_env, instances, tmp_path):
    env, cfg = tenacity_env
    cfg = cfg.model_copy(update={"timeout_s": 8.0})
    inst = next(i for i in instances if i.repo == TENACITY and "func_pm" in i.instance_id)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    outside = tmp_path / "written_by_prediction.txt"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    connections: list[object] = []

    def accept() -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                connections.append(server.accept())
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    hostile = {
        "infinite loop": "while True:\n    pass\n",
        "fork bomb": "import os\nwhile True:\n    os.fork()\n",
        "file damage": (f"import os\nopen({str(outside)!r}, 'w').write('x')\n"
                        f"os.remove({str(victim)!r})\n"),
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n",
        "100 MB output": "import os\nfor _ in range(100):\n    os.write(1, b'x' * 1_000_000)\n",
    }
    pristine_before = _tree_digest(env.pristine)
    with env.working_copy() as tree:
        env.apply_patch(tree, inst.patch)
        first = (tree / "tenacity/__init__.py").read_text().splitlines(keepends=True)[0]
    hunk = Hunk("tenacity/__init__.py", 1, first, first, "<module>")
    rec = _Record(inst.instance_id, inst.repo, [hunk])
    tier = ExecutionTier(cfg, {inst.instance_id: inst}, 1)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], tier, run_tests=True)
    pred, labels, buggy = _tokens_dummy()
    for name, code in hostile.items():
        start = time.time()
        row = scorer.score(rec, pred, labels, -100, buggy, [code + first], [first])
        took = time.time() - start
        assert row.code.compiles is True, name
        assert row.resolved is False and row.test_reason, name
        assert took < cfg.timeout_s + 20, f"{name} took {took:.0f}s"
    assert victim.read_text() == "keep me"
    assert not outside.exists()
    assert connections == []
    assert _tree_digest(env.pristine) == pristine_before
    server.close()

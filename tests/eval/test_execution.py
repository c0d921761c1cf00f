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
from hrm.hunks import Hunk, parse_patch

from .conftest import TENACITY


@dataclass
class _Record:
    instance_id: str
    repo: str
    hunks: list


def _tokens_dummy():
    labels = np.array([-100, 5, 2])
    return np.array([0, 5, 2]), labels, [5, 2]


@pytest.mark.slow
def test_oracle_resolves_copy_does_not(tenacity_scorer, tenacity_rows):
    scorer = tenacity_scorer
    oracle, copy = [], []
    for _inst, rec in tenacity_rows:
        refs = [h.fixed_text for h in rec.hunks]
        pred, labels, buggy = _tokens_dummy()
        oracle.append(scorer.score(rec, pred, labels, -100, buggy, refs, refs))
        copy.append(scorer.score(rec, pred, labels, -100, buggy,
                                 [h.buggy_text for h in rec.hunks], refs))
    assert len(oracle) == 2
    assert all(r.code.context == "file" and r.resolved is True and r.tier == 4 for r in oracle)
    assert all(r.tier_score == 1.0 and r.test_outcomes and
               set(r.test_outcomes.values()) == {"passed"} for r in oracle)
    assert all(r.code.compiles is True and r.resolved is False and r.test_reason for r in copy)
    # the FAIL_TO_PASS tests are what fails on the copy
    assert all(any(o != "passed" for n, o in r.test_outcomes.items() if n in inst.FAIL_TO_PASS)
               for r, (inst, _rec) in zip(copy, tenacity_rows, strict=True))


def test_truncated_target_has_no_file_context(tenacity_scorer, tenacity_rows):
    _inst, rec = tenacity_rows[0]
    cut = _Record(rec.instance_id, rec.repo, rec.hunks)
    cut.target_truncated = True
    ctx = tenacity_scorer.context(cut)
    assert isinstance(ctx, str) and "truncated" in ctx
    pred, labels, buggy = _tokens_dummy()
    row = tenacity_scorer.score(cut, pred, labels, -100, buggy, ["x = (\n"], ["x = (1)\n"])
    assert row.has_env is False and row.resolved is None and row.code.context == "fragment"


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
    cfg = cfg.model_copy(update={"timeout_s": 5.0})
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
    # Effects that would not end the run share one prediction (each attempt guarded, so one
    # refused attempt does not stop the next); the loop and the fork bomb end it, alone each.
    effects = (
        f"try:\n    open({str(outside)!r}, 'w').write('x')\nexcept OSError:\n    pass\n"
        f"try:\n    os.remove({str(victim)!r})\nexcept OSError:\n    pass\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "except OSError:\n    pass\n"
        "for _ in range(100):\n    os.write(1, b'x' * 1_000_000)\n"
    )
    hostile = {
        "infinite loop": "while True:\n    pass\n",
        "fork bomb": "import os\nwhile True:\n    os.fork()\n",
        "file damage, network, 100 MB output": "import os\nimport socket\n" + effects,
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


@pytest.mark.slow
def test_order_dependent_pass_to_pass_does_not_fail_the_fix(tenacity_env, instances):
    """In this instance's 3-test PASS_TO_PASS sample, a tornado test leaves no event loop for
    an asyncio test, so the selection fails even on the reference fix: those tests are ignored
    (and named), while the copy still fails on FAIL_TO_PASS."""
    _env, cfg = tenacity_env
    inst = next(i for i in instances
                if i.instance_id == "jd__tenacity.0d40e76f.func_pm_ctrl_shuffle__3ljvivv1")
    tier = ExecutionTier(cfg, {inst.instance_id: inst}, 3)
    hunks = parse_patch(inst.patch, source=inst.instance_id)
    ctx = tier.context(inst.instance_id, inst.repo, hunks)
    oracle = tier.run(ctx, [h.fixed_text for h in hunks])
    assert oracle.resolved is True and "ignored 1 PASS_TO_PASS" in oracle.reason
    assert [n for n, o in oracle.outcomes.items() if o != "passed"] == [
        "tests/test_asyncio.py::TestContextManager::test_reraise"]
    copy = tier.run(ctx, [h.buggy_text for h in hunks])
    assert copy.resolved is False and "ignored" not in copy.reason

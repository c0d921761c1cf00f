"""The execution tier on real tenacity rows with the cached environment: oracle resolves, copy
does not, and hostile predictions fail with a reason inside the sandbox's limits."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest

from hrm.eval.execution import ExecutionTier
from hrm.eval.rows import UNCHANGED, RowScorer
from hrm.hunks import Hunk, parse_patch

from .conftest import TENACITY


@dataclass
class _Record:
    """A scorer record for a hand-made region (the token tier scores its one position)."""

    instance_id: str
    repo: str
    hunks: list
    kind: str = "func_pm_op_change"
    segments: tuple = ((0, 1),)


NO_OUTPUTS: dict = {}


@pytest.mark.slow
def test_oracle_resolves_copy_is_not_run(tenacity_scorer, env_split, tok):
    """The reference regions resolve the first rows; the buggy code is no repair, so the scorer
    never runs it; run anyway, its FAIL_TO_PASS tests fail."""
    from .conftest import reference_outputs

    scorer = tenacity_scorer
    for i, rec in enumerate(env_split.records[:2]):
        ref = reference_outputs(env_split, i, tok)
        refs = [h.fixed_text for h in rec.hunks]
        buggy = [h.buggy_text for h in rec.hunks]
        oracle = scorer.score(rec, ref, ref, refs, refs)
        assert oracle.code.context == "file" and oracle.resolved is True and oracle.tier == 4
        assert oracle.tier_score == pytest.approx(1.0) and oracle.test_outcomes
        copy = scorer.score(rec, NO_OUTPUTS, ref, buggy, refs)
        assert copy.resolved is False and copy.test_outcomes == {} and copy.tier == 0
        assert copy.test_reason == f"not run: {UNCHANGED}" and copy.code.compiles is False
        ctx = scorer.context(rec)
        ran = scorer.execution.run(ctx, buggy)
        f2p = set(ctx.instance.FAIL_TO_PASS)
        assert not ran.resolved and any(o != "passed" for n, o in ran.outcomes.items() if n in f2p)


HOSTILE_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def hostile(tenacity_env, instances):
    """Score a hostile prediction: the given code prepended to the first line of the buggy
    tenacity/__init__.py (so it runs when the tests import tenacity), through the row scorer
    and a fresh execution tier with a 5 s timeout. Returns (row, seconds)."""
    env, cfg = tenacity_env
    cfg = cfg.model_copy(update={"timeout_s": HOSTILE_TIMEOUT_S})
    inst = next(i for i in instances if i.repo == TENACITY and "func_pm" in i.instance_id)
    with env.working_copy() as tree:
        env.apply_patch(tree, inst.patch)
        first = (tree / "tenacity/__init__.py").read_text().splitlines(keepends=True)[0]
    rec = _Record(inst.instance_id, inst.repo, [Hunk("tenacity/__init__.py", 1, first, first,
                                                     "<module>")])
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], ExecutionTier(cfg, {inst.instance_id: inst}, 1),
                       run_tests=True)

    def score(code: str):
        start = time.time()
        row = scorer.score(rec, {1: (7,)}, {}, [code + first], [first])
        took = time.time() - start
        assert row.code.compiles is True and row.has_env  # it really ran in the sandbox
        assert row.resolved is False and row.tier == 2, row.test_reason
        assert took < HOSTILE_TIMEOUT_S + 20, f"took {took:.0f}s"
        return row, took

    return score


@pytest.fixture(scope="module")
def cache_before(tenacity_env):
    """Hash of the whole cached environment (pristine tree AND venv) before hostile runs."""
    from tests.envs.conftest import hash_tree

    return hash_tree(tenacity_env[0].root)


def _cache_unchanged(tenacity_env, before: str) -> None:
    from tests.envs.conftest import hash_tree

    assert hash_tree(tenacity_env[0].root) == before, "the cached environment changed"


@pytest.mark.slow
def test_hostile_infinite_loop_times_out(hostile, tenacity_env, cache_before):
    row, took = hostile("while True:\n    pass\n")
    assert row.test_reason.startswith("wall-clock timeout"), row.test_reason
    assert set(row.test_outcomes.values()) == {"timeout"}
    assert took >= HOSTILE_TIMEOUT_S  # ended by the limit, not by something else
    _cache_unchanged(tenacity_env, cache_before)


@pytest.mark.slow
def test_a_looping_prediction_stops_at_a_multiple_of_the_original_run(tenacity_env, instances):
    """`eval.timeout_factor`: the limit is the factor times the original repository's run of the
    same tests (at least the minimum), not the minute of `envs.timeout_s`; the reason says so.
    Factor 0 keeps `envs.timeout_s`."""
    env, cfg = tenacity_env
    cfg = cfg.model_copy(update={"timeout_s": 60.0})
    inst = next(i for i in instances if i.repo == TENACITY and "func_pm" in i.instance_id)
    with env.working_copy() as tree:
        env.apply_patch(tree, inst.patch)
        first = (tree / "tenacity/__init__.py").read_text().splitlines(keepends=True)[0]
    rec = _Record(inst.instance_id, inst.repo, [Hunk("tenacity/__init__.py", 1, first, first, "<module>")])
    tier = ExecutionTier(cfg, {inst.instance_id: inst}, 1, timeout_factor=2.0, timeout_min_s=3.0)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], tier, run_tests=True)
    ctx = scorer.context(rec)
    original = tier._original(ctx)
    assert original.duration_s > 0 and not original.reason
    limit = tier.timeout(ctx)
    assert limit == pytest.approx(max(3.0, 2.0 * original.duration_s)) and limit < 60.0
    start = time.time()
    row = scorer.score(rec, {1: (7,)}, {}, ["while True:\n    pass\n" + first], [first])
    took = time.time() - start
    assert row.resolved is False and row.test_reason.startswith("wall-clock timeout"), row.test_reason
    assert "eval.timeout_factor" in row.test_reason
    assert limit <= took < limit + 20
    assert ExecutionTier(cfg, {inst.instance_id: inst}, 1).timeout(ctx) is None


@pytest.mark.slow
def test_hostile_fork_bomb_hits_the_process_limit(hostile, tenacity_env, cache_before):
    """Children that stay alive fill envs.max_processes; the next fork fails with EAGAIN
    (RLIMIT_NPROC), the import fails, and the reason says so; no timeout involved."""
    row, _ = hostile("import os\nimport time\nwhile True:\n    if os.fork() == 0:\n"
                     "        time.sleep(60)\n        os._exit(0)\n")
    assert "process limit reached: fork failed with EAGAIN" in row.test_reason, row.test_reason
    assert "timeout" not in row.test_reason
    assert "not passing" in row.test_reason
    _cache_unchanged(tenacity_env, cache_before)


@pytest.mark.slow
def test_hostile_classic_fork_bomb_is_killed(hostile, tenacity_env, cache_before):
    """Every process forking forever: held at the process limit, killed at the timeout with
    its whole PID namespace."""
    row, _ = hostile("import os\nwhile True:\n    os.fork()\n")
    assert row.test_reason.startswith("wall-clock timeout"), row.test_reason
    _cache_unchanged(tenacity_env, cache_before)


@pytest.mark.slow
def test_hostile_100mb_output_is_capped(hostile, tenacity_env, cache_before):
    row, _ = hostile("import os\nfor _ in range(100):\n    os.write(1, b'x' * 1_000_000)\n")
    assert "output capped at envs.max_output_kb=" in row.test_reason, row.test_reason
    assert "(truncated)" in row.test_reason
    _cache_unchanged(tenacity_env, cache_before)


@pytest.mark.slow
def test_hostile_writes_deletes_and_network_fail(hostile, tenacity_env, cache_before, tmp_path):
    """Writing and deleting outside the working tree and connecting to a listening host port:
    every attempt is refused (the import then fails on purpose, reporting what happened), the
    row fails with the tests not passing, and the host files, the port and the cache are
    untouched."""
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
    code = (
        "import os\nimport socket\n_done = []\n"
        f"try:\n    open({str(outside)!r}, 'w').write('x')\n    _done.append('write')\n"
        "except OSError:\n    pass\n"
        f"try:\n    os.remove({str(victim)!r})\n    _done.append('delete')\n"
        "except OSError:\n    pass\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    _done.append('connect')\nexcept OSError:\n    pass\n"
        "raise ImportError(f'hostile prediction done: {_done}')\n"
    )
    row, _ = hostile(code)
    assert "tests not passing: " in row.test_reason and "limit" not in row.test_reason, \
        row.test_reason
    assert set(row.test_outcomes.values()) <= {"missing", "error", "failed"}
    assert victim.read_text() == "keep me"
    assert not outside.exists()
    assert connections == []
    server.close()
    _cache_unchanged(tenacity_env, cache_before)


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


def _unconfined(monkeypatch) -> None:
    """The isolation probe as on a host without user namespaces, not root (only what the
    execution tier reads; the sandbox itself is not touched)."""
    import hrm.eval.execution as execution
    from hrm.envs.sandbox import Isolation

    monkeypatch.setattr(execution, "isolation_for",
                        lambda limits: Isolation(None, None, [], "sitecustomize-net+unconfined-fs"))


def test_unconfined_sandbox_refuses_to_run_predictions(tenacity_env, env_split, instances,
                                                      monkeypatch):
    from hrm.eval.metrics import row_metrics

    _unconfined(monkeypatch)
    _env, cfg = tenacity_env
    tier = ExecutionTier(cfg, {i.instance_id: i for i in instances}, 1)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], tier, run_tests=True)
    rows = []
    for rec in env_split.records[:2]:
        refs = [h.fixed_text for h in rec.hunks]
        start = time.time()
        row = scorer.score(rec, {}, {}, refs, refs)  # the oracle
        assert time.time() - start < 1.0  # refused, not run
        assert row.has_env and row.code.compiles is True
        assert row.resolved is False and row.test_outcomes == {}
        assert row.test_reason.startswith("not run: unconfined sandbox (isolation "
                                          "sitecustomize-net+unconfined-fs"), row.test_reason
        assert row.tier == 3  # syntax, compile and AST reached; tests not
        rows.append(row)
    m = row_metrics(rows, tests_enabled=True)
    assert m["resolved_rate"] == 0.0 and m["resolved_rows_without_env"] == 0.0


@pytest.mark.slow
def test_unconfined_sandbox_runs_when_allowed(tenacity_env, env_split, instances,
                                              monkeypatch, eval_params):
    from hrm.eval.search import verify

    _unconfined(monkeypatch)
    _env, cfg = tenacity_env
    rec = env_split.records[0]
    inst = next(i for i in instances if i.instance_id == rec.instance_id)
    refs = [h.fixed_text for h in rec.hunks]
    denied = ExecutionTier(cfg, {inst.instance_id: inst}, 1)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], denied, run_tests=True)
    # the search verifier goes through the same tier: refused too, so never "passes"
    verdict = verify(scorer.context(rec), refs, scorer, [h.buggy_text for h in rec.hunks])
    assert verdict.passes is False and "unconfined sandbox" in verdict.reason
    assert eval_params.eval.allow_unconfined_execution is False  # the default refuses
    allowed = ExecutionTier(cfg, {inst.instance_id: inst}, 1, allow_unconfined=True)
    row = RowScorer([0.1, 0.2, 0.3, 0.4], allowed, run_tests=True).score(rec, {}, {}, refs, refs)
    assert row.resolved is True and row.test_outcomes, row.test_reason


def test_limit_notes_name_the_limit(tenacity_env):
    from types import SimpleNamespace

    from hrm.eval.execution import limit_notes

    _env, cfg = tenacity_env

    def notes(output="", truncated=False, timed_out=False):
        run = SimpleNamespace(output=output, output_truncated=truncated, timed_out=timed_out)
        return limit_notes(run, cfg)

    eagain = "E   BlockingIOError: [Errno 11] Resource temporarily unavailable\n"
    assert notes() == ()
    # EAGAIN on a non-blocking socket is no process limit; on a fork or a thread start it is
    assert notes("    sock.recv(1)\n" + eagain) == ()
    assert notes("    os.fork()\n" + eagain)[0].startswith("process limit reached")
    assert notes("RuntimeError: can't start new thread")[0].startswith("process limit reached")
    assert notes("OSError: [Errno 27] File too large")[0].startswith("file-size limit reached")
    assert notes(truncated=True) == (
        f"output capped at envs.max_output_kb={cfg.max_output_kb} KB (truncated)",)
    assert notes(timed_out=True)[0].startswith("wall-clock timeout")

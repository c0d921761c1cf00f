"""SWE-search on the real sample: an oracle candidate source is found, verified and kept (score
1.0, converged); an untrained model's search scores about 0; with the tenacity environment the
verifier runs the tests and only a fix that resolves the instance passes."""

from __future__ import annotations

import numpy as np
import pytest

from hrm.config import SearchConfig
from hrm.eval.baselines import place, target_ids
from hrm.eval.fragments import compiles, reference_wrapper
from hrm.eval.rows import RowScorer
from hrm.eval.search import (
    Sample,
    SearchOutcome,
    SourceView,
    max_samples,
    search_metrics,
    search_row,
    verify,
)

CFG = SearchConfig(candidates_per_iteration=2, max_iterations=3, temperature=0.7,
                   alternative_positions=0)


def _certain(name: str, ids: np.ndarray, q: float) -> SourceView:
    """A source sure of `ids` (probability 1 at every position; the runner-up is id+1)."""
    ids = np.asarray(ids, dtype=np.int64)
    top = np.stack([ids, ids + 1], axis=1)
    probs = np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(ids), 1))
    return SourceView(name, top, probs, q)


def _oracle_search(greedy_ids, oracle_ids, start, decode, check, cfg=CFG) -> SearchOutcome:
    """Greedy = `greedy_ids` with a Q head saying "continue" (every sample repeats it); one
    alternative ACT segment count (searched first) outputs `oracle_ids` with a Q head saying
    "halt"."""
    tail = greedy_ids[start:]
    return search_row(
        greedy_ids=greedy_ids, greedy=_certain("greedy", tail, -5.0),
        steps=[_certain("act_steps=1", oracle_ids[start:], 5.0)],
        samples=[Sample(tail.copy(), np.ones(len(tail), np.float32))] * max_samples(cfg),
        target_start=start, decode=decode, check=check, cfg=cfg)


def _decoder(tok, start):
    from hrm.sequences import decode_target

    return lambda ids: decode_target(tok, ids[start:])



def _scored(data, mp, tok, start):
    """The greedy rows of a model pass, scored statically: (decode, scorer, buggy, refs, rows)."""
    ignore = data.meta.ignore_index
    decode = _decoder(tok, start)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], None, run_tests=True)
    buggy = [target_ids([h.buggy_text for h in r.hunks], tok) for r in data.records]
    refs = [decode(row) for row in data.labels]
    rows = [scorer.score(r, mp.pred_ids[i], data.labels[i], ignore, buggy[i],
                         decode(mp.pred_ids[i]), refs[i]) for i, r in enumerate(data.records)]
    return decode, scorer, buggy, refs, rows

def test_oracle_candidate_source_scores_one_and_converges(built):
    from hrm.sequences import load_split
    from hrm.tokenizer import load_tokenizer

    tok = load_tokenizer(built / "tok")
    data = load_split(built / "seq", "val")
    start, ignore = data.meta.prompt_len, data.meta.ignore_index
    decode = _decoder(tok, start)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], None, run_tests=True)
    outcomes, tiered = [], []
    for i, record in enumerate(data.records):
        refs = decode(data.labels[i])
        wrappers = [reference_wrapper(h.buggy_text) for h in record.hunks]
        if len(refs) != len(wrappers) or not all(
                r.strip() and w is not None and compiles(w.apply(r))
                for r, w in zip(refs, wrappers, strict=True)):
            continue  # the no-env verifier cannot pass a reference outside the buggy wrapper
        oracle = np.where(data.labels[i] != ignore, data.labels[i], tok.pad_id)
        buggy = target_ids([h.buggy_text for h in record.hunks], tok)
        copy = place(buggy, data.labels[i], ignore, tok.pad_id)
        ctx = scorer.context(record)
        bug = [h.buggy_text for h in record.hunks]
        oc = _oracle_search(copy, oracle, start, decode,
                            lambda h, q, _c=ctx, _b=bug: verify(_c, h, q, scorer, _b))
        assert oc.best_source == "act_steps=1" and oc.best_hunks == refs
        outcomes.append(oc)
        tiered.append(scorer.score(record, oc.best_ids, data.labels[i], ignore, buggy,
                                   oc.best_hunks, refs).tier_score)
    assert len(outcomes) >= 4
    m = search_metrics(outcomes, tiered)
    assert m["greedy_pass_rate"] == 0.0  # the copy compiles, but its Q head says continue
    assert m["swe_search_score"] == 1.0 and m["swe_search_convergence_rate"] == 1.0
    # samples of one-hot logits repeat a seen candidate and are not verified again
    assert m["swe_search_candidates"] == 1.0 and m["swe_search_efficiency"] == 1.0
    assert m["swe_search_iterations"] == 3.0
    assert m["swe_search_tiered_accuracy"] == pytest.approx(0.6)  # no env: at most AST match

    # Converging needs the best to stay unchanged for 2 iterations: 2 are not enough.
    short = _oracle_search(copy, oracle, start, decode, lambda h, q: verify(ctx, h, q, scorer, bug),
                           cfg=CFG.model_copy(update={"max_iterations": 2}))
    assert short.best_passes and not short.converged


def test_untrained_model_search_scores_about_zero(built, eval_params):
    import torch

    from hrm.eval.model_pass import run_model_pass
    from hrm.eval.search_runner import run_search
    from hrm.model import build_model
    from hrm.sequences import load_split
    from hrm.tokenizer import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(built / "tok")
    data = load_split(built / "seq", "val")
    start, ignore = data.meta.prompt_len, data.meta.ignore_index
    model = build_model(eval_params.model, data.meta.vocab_size, data.meta.seq_len, "cpu")
    mp = run_model_pass(model, data.inputs, data.labels, ignore_index=ignore,
                        batch_size=eval_params.eval.batch_size, halt_on_q=False, ablation=False)
    decode, scorer, buggy, refs, rows = _scored(data, mp, tok, start)
    outcomes, m = run_search(model, data, mp, rows, decode, buggy, refs, scorer, eval_params)
    assert len(outcomes) == len(data)
    assert m["greedy_pass_rate"] <= 0.1 and m["swe_search_score"] <= 0.1
    assert m["swe_search_convergence_rate"] <= 0.1
    # the search did run: distinct candidates were verified on every row, every iteration
    assert m["swe_search_candidates"] >= 2.0
    assert m["swe_search_iterations"] == float(eval_params.eval.search.max_iterations)
    assert m["swe_search_tiered_accuracy"] is not None and m["swe_search_tiered_accuracy"] < 0.3
    assert all(r.tokens.exact is False for r in rows)


@pytest.mark.slow
def test_search_with_the_tenacity_environment(built, tenacity_scorer, tenacity_rows):
    """The verifier runs the row's tests: the copy compiles in its file but fails them; the
    oracle resolves the instance and is selected without the verifier seeing the reference."""
    from hrm.tokenizer import load_tokenizer

    tok = load_tokenizer(built / "tok")
    inst, rec = tenacity_rows[0]
    ctx = tenacity_scorer.context(rec)
    width = 512

    def pad(ids):
        assert len(ids) <= width
        return np.array(list(ids) + [tok.pad_id] * (width - len(ids)), dtype=np.int64)

    refs = [h.fixed_text for h in rec.hunks]
    oracle = pad(target_ids(refs, tok))
    copy = pad(target_ids([h.buggy_text for h in rec.hunks], tok))
    decode = _decoder(tok, 0)
    verdicts = []

    def check(hunks, q):
        verdicts.append(verify(ctx, hunks, q, tenacity_scorer, []))
        return verdicts[-1]

    oc = _oracle_search(copy, oracle, 0, decode, check)
    assert not oc.greedy_passes and "not passing" in verdicts[0].reason
    assert oc.best_passes and oc.converged and oc.best_source == "act_steps=1"
    assert oc.best_hunks == refs and oc.candidates == 1 and len(verdicts) == 2
    assert inst.FAIL_TO_PASS  # the verdict above ran them


def test_no_env_verifier_compiles_under_the_buggy_hunks_wrapper():
    """Without an environment the wrapper comes from the BUGGY hunk: a method-body line moved to
    column 0 compiles on its own (the old check) but not where the buggy hunk sits."""
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], None, run_tests=True)
    buggy = ["        x = 2\n"]
    assert verify("no env", ["        x = 1\n"], 5.0, scorer, buggy).passes
    assert not verify("no env", ["x = 1\n"], 5.0, scorer, buggy).passes
    assert not verify("no env", ["        x = 1\n"], -5.0, scorer, buggy).passes  # Q says continue
    assert not verify("no env", ["        x = 1\n", "y\n"], 5.0, scorer, buggy).passes
    # a buggy hunk that compiles nowhere: the candidate's own wrapper, and the reason says so
    v = verify("no env", ["x = 1\n"], 5.0, scorer, ["x = (\n"])
    assert v.passes and "candidate's own wrapper" in v.reason


@pytest.mark.slow
def test_env_verifier_never_reads_the_reference(tenacity_env, instances):
    """The reference text in the row context is replaced by garbage: the verifier's compile
    check (the candidate in its buggy file) and its order-dependence excuse (a baseline run of
    the original repository) still pass the real fix; the metrics' excuse names the reference."""
    from dataclasses import replace

    from hrm.eval.execution import ExecutionTier
    from hrm.hunks import parse_patch

    _env, cfg = tenacity_env
    inst = next(i for i in instances
                if i.instance_id == "jd__tenacity.0d40e76f.func_pm_ctrl_shuffle__3ljvivv1")
    tier = ExecutionTier(cfg, {inst.instance_id: inst}, 3)
    scorer = RowScorer([0.1, 0.2, 0.3, 0.4], tier, run_tests=True)
    hunks = parse_patch(inst.patch, source=inst.instance_id)
    ctx = tier.context(inst.instance_id, inst.repo, hunks)
    fix = [h.fixed_text for h in hunks]
    blind = replace(ctx, hunks=[replace(h, fixed_text="@@ not python (\n") for h in ctx.hunks])
    v = verify(blind, fix, -5.0, scorer, [])
    assert v.passes, v.reason
    assert "original repository" in v.reason and "test_reraise" in v.reason
    assert "reference fix" in tier.run(ctx, fix).reason  # the metrics may use the reference
    copy = verify(blind, [h.buggy_text for h in hunks], 5.0, scorer, [])
    assert not copy.passes and "ignored" not in copy.reason
    broken = verify(blind, ["def (\n" + f for f in fix], 5.0, scorer, [])
    assert not broken.passes and "does not compile" in broken.reason


def test_search_runner_runs_the_model_twice_per_batch_and_keeps_no_full_logits(
        built, eval_params, monkeypatch):
    """halt_max_steps=4: one hooked run gives every segment count (equal to separate
    `run_inference(max_steps=s)` runs), one greedy run; nothing of vocabulary width reaches
    `search_row`."""
    import torch

    import hrm.eval.search_runner as runner
    import hrm.model.inference as inference
    from hrm.eval.model_pass import run_model_pass
    from hrm.model import build_model
    from hrm.sequences import load_split
    from hrm.tokenizer import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(built / "tok")
    data = load_split(built / "seq", "val")
    start, ignore, vocab = data.meta.prompt_len, data.meta.ignore_index, data.meta.vocab_size
    mcfg = eval_params.model.model_copy(update={"halt_max_steps": 4})
    model = build_model(mcfg, vocab, data.meta.seq_len, "cpu")
    x = torch.as_tensor(data.inputs[:4])
    segs = runner.segment_views(model, x, start)
    assert [s[0].name for s in segs] == [f"act_steps={s}" for s in range(1, 5)]
    for s, views in enumerate(segs, start=1):
        o = inference.run_inference(model, x, max_steps=s)
        ref = o.logits[:, start:].argmax(-1).numpy()
        assert np.array_equal(np.stack([v.ids for v in views]), ref), s
        assert np.allclose([v.q_halt for v in views], o.q_halt.numpy(), atol=1e-5)
    assert not np.array_equal(segs[0][0].ids, segs[-1][0].ids)  # segments do differ

    params = eval_params.model_copy(update={"eval": eval_params.eval.model_copy(
        update={"batch_size": 8})})
    mp = run_model_pass(model, data.inputs, data.labels, ignore_index=ignore, batch_size=8,
                        halt_on_q=False, ablation=False)
    decode, scorer, buggy, refs, rows = _scored(data, mp, tok, start)
    calls, seen = [], []
    real_run, real_row = inference.run_inference, runner.search_row
    monkeypatch.setattr(inference, "run_inference",
                        lambda *a, **k: calls.append(k) or real_run(*a, **k))
    monkeypatch.setattr(runner, "search_row", lambda **k: seen.append(k) or real_row(**k))
    outcomes, _ = runner.run_search(model, data, mp, rows, decode, buggy, refs, scorer, params)
    batches = -(-len(data) // 8)
    assert len(calls) == 2 * batches and len(outcomes) == len(seen) == len(data)
    widths = set()
    for k in seen:
        views = [k["greedy"], *k["steps"]]
        assert len(k["steps"]) == 3 and len(k["samples"]) >= max_samples(params.eval.search)
        arrays = [a for v in views for a in (v.top_ids, v.top_probs, v.chosen_conf)]
        arrays += [a for smp in k["samples"] for a in (smp.ids, smp.probs)]
        widths |= {a.shape[-1] for a in arrays if a.ndim == 2}
        assert all(a.shape[0] == data.inputs.shape[1] - start for a in arrays)
    assert widths == {2} and vocab > 2

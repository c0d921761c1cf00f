"""The "about 0 for an untrained model" half of the metric tests, end to end through
`evaluate_loaded` / `evaluate` on the real sample's sequences: a randomly initialised tiny model
(fixed seed), its decoded output scored by every tier, the copy and unigram baselines beside it.
Also: the reverse-learning metrics of a model without feedback are "not applicable", and the
reported `loss` is softmax cross-entropy whatever loss the model was trained with."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from .conftest import TENACITY


@pytest.fixture(scope="module")
def tok(built):
    from hrm.tokenizer import load_tokenizer

    return load_tokenizer(built / "tok")


def _no_log(monkeypatch):
    import hrm.eval.evaluate as evaluate_mod

    logged = []
    monkeypatch.setattr(evaluate_mod, "_log", lambda *a: logged.append(a))
    return logged


@pytest.mark.slow
def test_untrained_model_scores_about_zero(built, eval_params, tok, tenacity_scorer, tmp_path,
                                           monkeypatch):
    import torch

    from hrm.eval.decoding import decode_prediction
    from hrm.eval.evaluate import evaluate_loaded
    from hrm.model import build_model
    from hrm.sequences import load_split

    data = load_split(built / "seq", "val")
    start, vocab = data.meta.prompt_len, data.meta.vocab_size
    env_rows = [r for r in data.records if r.repo == TENACITY
                and not isinstance(tenacity_scorer.context(r), str)]
    assert env_rows, "no val row with an environment: resolved_rate would not be computed"
    torch.manual_seed(0)
    model = build_model(eval_params.model, vocab, data.meta.seq_len, "cpu")  # untrained
    assert eval_params.model.reverse_feedback
    _no_log(monkeypatch)
    m = evaluate_loaded(eval_params, model, data, tok,
                        lambda ids: decode_prediction(tok, ids[start:]), tenacity_scorer, tmp_path,
                        train_labels=load_split(built / "seq", "train").labels,
                        model_info={"checkpoint": "untrained", "step": 0, "phase": None,
                                    "weights": "model", "reverse_feedback": True},
                        split="val")
    n = m["rows"]
    assert n == len(data) >= 5
    # Chance level of argmax over V tokens is 1/V (0.002 at this fixture's V=512); an untrained
    # model is at chance, so 10/V bounds it while staying below the best constant guess (the
    # unigram baseline, ~0.03-0.05 here).
    assert m["token_accuracy_all"] < 10 / vocab < m["baselines"]["unigram"]["token_accuracy_all"]
    assert m["edit_accuracy"] < 10 / vocab
    # A whole row right needs ~50-128 tokens right at 1/V each: impossible by chance.
    assert m["exact_accuracy"] == 0.0
    # Random byte-level tokens do not tokenize as Python with the reference's brackets except by
    # a rare accident: at most one row in the split.
    assert m["code_syntax_validity"] <= 1 / n
    # ... and never compile in the reference's context nor equal its AST; hence no tests run
    # and nothing is resolved, the test tier being computed (rows with an environment exist).
    assert m["code_compilation_success"] == 0.0 and m["code_ast_match"] == 0.0
    assert m["resolved_rate"] == 0.0 and m["resolved_rows_without_env"] == n - len(env_rows)
    # Tiered: at most the syntax weight (0.1) on that one accidental row.
    assert m["code_tiered_accuracy"] <= 0.1 / n
    # Search: no candidate (greedy, other ACT step counts, samples) passes the verifier.
    assert m["greedy_pass_rate"] == 0.0 and m["swe_search_score"] == 0.0
    assert m["swe_search_convergence_rate"] == 0.0 and m["swe_search_efficiency"] == 0.0
    assert m["swe_search_tiered_accuracy"] <= 0.1 * 2 / n  # a sample may reach syntax by chance
    # The LM loss of an untrained model is about that of the uniform guess, ln V.
    assert abs(m["loss"] - math.log(vocab)) < 1.0
    # The ablation is computed (the model has a feedback path): a share and two diagnostics.
    assert 0.0 <= m["reverse_learning_integration"] <= 1.0
    assert m["reverse_integration_gate"] is not None and m["reverse_planning_refinement"] > 0

    # The baselines are reported beside it, on the same rows, by the same scorer.
    copy, uni = m["baselines"]["copy"], m["baselines"]["unigram"]
    assert copy["rows"] == uni["rows"] == n
    assert copy["token_accuracy_all"] > 0.3 > m["token_accuracy_all"]
    assert copy["code_compilation_success"] > 0.5 and copy["resolved_rate"] == 0.0
    assert uni["exact_accuracy"] == 0.0 and uni["resolved_rate"] == 0.0
    report = (tmp_path / "report.md").read_text()
    assert "| metric | model | copy | unigram |" in report
    assert (f"| token_accuracy_all | {m['token_accuracy_all']:.4f} | "
            f"{copy['token_accuracy_all']:.4f} | {uni['token_accuracy_all']:.4f} |") in report
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == n and not any(p["resolved"] for p in preds)


def _checkpoint(tmp_path, model_cfg, data, tok):
    """A checkpoint of an untrained model, written the way training writes them."""
    import torch

    from hrm.model import build_model
    from hrm.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(model_cfg, data.meta.vocab_size, data.meta.seq_len, "cpu")
    state = {"step": 0, "global_epoch": 0, "phase": "untrained",
             "vocab_size": data.meta.vocab_size, "seq_len": data.meta.seq_len,
             "model_config": model_cfg.model_dump(mode="json"), "model": model.state_dict(),
             "tokenizer_fingerprint": tok.fingerprint}
    save_checkpoint(tmp_path / "ckpt", state, keep=1)
    return tmp_path / "ckpt"


@pytest.mark.slow
def test_model_without_feedback_reports_not_applicable(built, eval_params, tok, tmp_path,
                                                       monkeypatch, sample_path):
    """`model.reverse_feedback: false` in the checkpoint: the reverse-learning metrics are null
    in metrics.json and the report says "Not applicable", not a number."""
    import hrm.eval.evaluate as evaluate_mod
    from hrm.sequences import load_split

    data = load_split(built / "seq", "val")
    no_fb = eval_params.model.model_copy(update={"reverse_feedback": False})
    ckpt = _checkpoint(tmp_path, no_fb, data, tok)
    _no_log(monkeypatch)
    # eval.allow_unconfined_execution reaches the execution tier
    seen = []
    real = evaluate_mod.ExecutionTier

    def spy(*a, **kw):
        seen.append(kw.get("allow_unconfined"))
        return real(*a, **kw)

    monkeypatch.setattr(evaluate_mod, "ExecutionTier", spy)
    params = eval_params.model_copy(update={"eval": eval_params.eval.model_copy(update={
        "allow_unconfined_execution": True, "run_tests": False})})
    m = evaluate_mod.evaluate(params, ckpt, built / "tok", built / "seq", "val", tmp_path / "out",
                              sample_path)
    assert seen == [True]
    for name in ("reverse_learning_integration", "reverse_integration_gate",
                 "reverse_planning_refinement"):
        assert m[name] is None, name
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["reverse_learning_integration"] is None
    report = (tmp_path / "out" / "report.md").read_text()
    section = report.split("## Reverse-learning ablation")[1].split("##")[0]
    assert "Not applicable: the model has no L->H feedback path" in section
    assert "reverse_learning_integration" not in section  # no number, no n/a row
    assert m["loss"] is not None and m["token_accuracy_all"] is not None  # the rest is scored


def test_loss_is_softmax_cross_entropy_for_a_stablemax_model(built, eval_params):
    """The reported loss is F.cross_entropy (fp32) on the final segment's logits, even for a
    model configured with the stablemax loss (whose own loss differs)."""
    import torch
    import torch.nn.functional as F

    from hrm.eval.model_pass import pass_metrics, run_model_pass
    from hrm.model import build_model
    from hrm.model.inference import run_inference
    from hrm.model.losses import token_losses
    from hrm.sequences import load_split

    data = load_split(built / "seq", "val")
    ignore = data.meta.ignore_index
    cfg = eval_params.model.model_copy(update={"loss": "stablemax"})
    torch.manual_seed(0)
    model = build_model(cfg, data.meta.vocab_size, data.meta.seq_len, "cpu")
    mp = run_model_pass(model, data.inputs, data.labels, ignore_index=ignore, batch_size=4,
                        halt_on_q=False, ablation=False)
    loss = pass_metrics(mp)["loss"]
    logits = run_inference(model, data.inputs).logits.float()
    labels = torch.as_tensor(data.labels).long()
    want = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=ignore).item()
    assert loss == pytest.approx(want, rel=1e-5)
    stablemax = token_losses(logits, labels, "stablemax")
    mask = labels != ignore
    assert abs(float(stablemax[mask].mean()) - want) > 1e-3  # the model's own loss differs
    # per-row sums agree too (they feed the ablation share and predictions.jsonl)
    rows = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=ignore,
                           reduction="none").view(labels.shape).sum(1).double().numpy()
    np.testing.assert_allclose(mp.row_loss_sum, rows, rtol=1e-5)


def test_cli_split_defaults_to_val(monkeypatch, tmp_path, tiny_params_file):
    from typer.testing import CliRunner

    import hrm.eval.evaluate as evaluate_mod
    from hrm.cli import app

    calls = []

    def fake(params, checkpoint, tokenizer, sequences, split, out, instances, **kw):
        calls.append((split, instances))
        return {"loss": 1.0}

    monkeypatch.setattr(evaluate_mod, "evaluate", fake)
    args = ["evaluate", "--checkpoint", str(tmp_path / "c"), "--tokenizer", str(tmp_path / "t"),
            "--sequences", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--no-instances",
            "--params", str(tiny_params_file)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [("val", None)] and "val: loss=1.0000" in result.output
    result = CliRunner().invoke(app, [*args, "--split", "train"])
    assert result.exit_code == 0 and calls[-1] == ("train", None)

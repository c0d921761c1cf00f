"""End-to-end `evaluate_loaded` on an untrained tiny model over the real sample's sequences."""

from __future__ import annotations

import json

import pytest

from hrm.eval.metric_names import METRIC_NAMES


@pytest.mark.slow
def test_evaluate_untrained_model(built, tiny_params, tmp_path, monkeypatch):
    import torch

    from hrm.eval.evaluate import evaluate_loaded
    from hrm.eval.rows import RowScorer
    from hrm.model import build_model
    from hrm.sequences import decode_target, load_split
    from hrm.tokenizer import load_tokenizer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    torch.manual_seed(0)
    tok = load_tokenizer(built / "tok")
    data = load_split(built / "seq", "val")
    model = build_model(tiny_params.model, data.meta.vocab_size, data.meta.seq_len, "cpu")
    scorer = RowScorer(tiny_params.eval.tier_weights, None, run_tests=True)
    decode = lambda ids: decode_target(tok, ids[data.meta.prompt_len:])  # noqa: E731
    out = tmp_path / "eval"
    metrics = evaluate_loaded(tiny_params, model, data, tok, decode, scorer, out,
                              train_labels=load_split(built / "seq", "train").labels,
                              model_info={"checkpoint": "untrained", "step": 0,
                                          "reverse_feedback": True}, split="val")
    written = json.loads((out / "metrics.json").read_text())
    # every canonical name is written; only resolved_rate and q_halt_balanced_accuracy (one
    # class absent: no exact row) may be null here
    assert set(METRIC_NAMES) <= set(written)
    nulls = {k for k in METRIC_NAMES if written[k] is None}
    assert nulls <= {"resolved_rate", "q_halt_balanced_accuracy", "edit_accuracy"}
    assert written["resolved_rate"] is None  # no environment: not computed, never 0 or 1
    assert metrics["token_accuracy_all"] < 0.2 and metrics["exact_accuracy"] == 0.0
    assert metrics["code_ast_match"] == 0.0
    assert metrics["loss"] > 3.0
    assert 0.0 <= metrics["reverse_learning_integration"] <= 1.0
    copy = written["baselines"]["copy"]
    assert copy["token_accuracy_all"] > metrics["token_accuracy_all"]
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(data)
    assert "Model vs baselines" in (out / "report.md").read_text()

"""The success path of `evaluate_loaded`: a real model whose every segment outputs the labels
(an oracle, via a forward hook) on the tenacity rows that have an environment. The model pass,
the tiers, the tests in the sandbox, the search and the outputs must all say "fixed"."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from .conftest import TENACITY


@pytest.mark.slow
def test_oracle_model_resolves_tenacity_rows(built, eval_params, tenacity_scorer, tmp_path,
                                             monkeypatch):
    import torch

    import hrm.eval.evaluate as evaluate_mod
    from hrm.eval.decoding import decode_prediction
    from hrm.model import build_model
    from hrm.sequences import load_split
    from hrm.tokenizer import load_tokenizer

    tok = load_tokenizer(built / "tok")
    picked = None
    for split in ("val", "test", "train"):
        data = load_split(built / "seq", split)
        idx = [i for i, r in enumerate(data.records)
               if r.repo == TENACITY and not isinstance(tenacity_scorer.context(r), str)][:2]
        if idx:
            picked = (split, data, idx)
            break
    assert picked is not None, "no tenacity row with an environment in the built splits"
    split, data, idx = picked
    data = replace(data, inputs=data.inputs[idx], labels=data.labels[idx],
                   records=[data.records[i] for i in idx])
    start, ignore, vocab = data.meta.prompt_len, data.meta.ignore_index, data.meta.vocab_size

    torch.manual_seed(0)
    model = build_model(eval_params.model, vocab, data.meta.seq_len, "cpu")
    answers = {row.tobytes(): np.where(lab != ignore, lab, tok.pad_id)
               for row, lab in zip(data.inputs, data.labels, strict=True)}

    def oracle(_module, args, out):
        ids = torch.as_tensor(np.stack([answers[r.tobytes()]
                                        for r in args[0].inputs.cpu().numpy()]))
        logits = torch.full((*ids.shape, vocab), -20.0)
        logits.scatter_(-1, ids.unsqueeze(-1), 20.0)
        return replace(out, logits=logits.to(out.logits.dtype),
                       q_halt=torch.full_like(out.q_halt, 5.0))

    model.register_forward_hook(oracle)
    logged = []
    monkeypatch.setattr(evaluate_mod, "_log", lambda *a: logged.append(a))
    decode = lambda ids: decode_prediction(tok, ids[start:])  # noqa: E731
    search = eval_params.eval.search.model_copy(update={"alternative_positions": 0})
    params = eval_params.model_copy(update={"eval": eval_params.eval.model_copy(
        update={"search": search})})
    m = evaluate_mod.evaluate_loaded(
        params, model, data, tok, decode, tenacity_scorer, tmp_path,
        train_labels=load_split(built / "seq", "train").labels,
        model_info={"checkpoint": "oracle", "step": 0, "phase": "none", "weights": "raw",
                    "reverse_feedback": False}, split=split)
    assert m["rows"] == len(idx) and logged
    assert m["exact_accuracy"] == 1.0 and m["loss"] < 0.01
    assert m["resolved_rate"] == 1.0 and m["resolved_rows_without_env"] == 0.0
    assert m["code_tiered_accuracy"] == pytest.approx(1.0)
    assert m["greedy_pass_rate"] == 1.0 and m["swe_search_score"] == 1.0
    assert m["swe_search_tiered_accuracy"] == pytest.approx(1.0)
    # the buggy code does not resolve the same rows: the success above is the oracle's
    assert m["baselines"]["copy"]["resolved_rate"] == 0.0
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [p["resolved"] for p in preds] == [True] * len(idx)
    assert all(p["tier_name"] == "tests" and p["search"]["greedy_passes"] for p in preds)

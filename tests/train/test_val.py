"""Per-epoch validation: val_* history columns every `val_every_epochs`, off when 0, no effect on
training (EMA weights evaluated when on), the clean evaluation's values against an independent
computation from `run_inference`, and enough val points for the gate to fit val learning
curves."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import subset, synthetic_arrays  # noqa: E402

from hrm.train import train_phase  # noqa: E402
from hrm.train.history import HISTORY_COLUMNS  # noqa: E402

VAL_COLUMNS = ("val_lm_loss", "val_token_accuracy", "val_edit_accuracy", "val_exact_accuracy")


def _with(params, epochs: int | None = None, **train):
    phases = params.train.phases
    if epochs is not None:
        phases = [phases[0].model_copy(update={"epochs": epochs}), *phases[1:]]
    return params.model_copy(update={"train": params.train.model_copy(update={**train, "phases": phases})})


def _csv(path: Path) -> list[dict]:
    with open(path / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_val_columns_every_n_epochs_and_at_phase_end(tiny_params, arrays, tmp_path):
    params = _with(tiny_params, epochs=5, val_every_epochs=2, val_max_rows=6)
    val = synthetic_arrays(n=10, seed=1)
    result = train_phase(params, "foundation", arrays, tmp_path, val_arrays=val, final_eval=False, progress=False)
    rows = _csv(tmp_path)
    assert tuple(rows[0]) == HISTORY_COLUMNS and set(VAL_COLUMNS) <= set(HISTORY_COLUMNS)
    with_val = [int(r["epoch"]) for r in rows if r["val_lm_loss"]]
    assert with_val == [2, 4, 5]  # every 2nd global epoch, and the phase's last
    for r in rows:
        if r["val_lm_loss"]:
            assert all(math.isfinite(float(r[c])) for c in VAL_COLUMNS)
            # exact accuracy over the 6 rows evaluated (val_max_rows), not the 10 of the split
            exact = float(r["val_exact_accuracy"]) * 6
            assert abs(exact - round(exact)) < 1e-9
        else:
            assert all(r[c] == "" for c in VAL_COLUMNS)
    assert math.isfinite(result.summary["val_lm_loss"])  # the last epoch's pass reaches summary.json


def _expected_metrics(model, arrays, rows: int, kind: str) -> dict:
    """The clean evaluation computed independently: `run_inference` (full width, every row
    halt_max_steps segments), `slot_logits` at the labelled insertions, and the metrics' plain
    definitions, position by position."""
    from hrm.model.inference import run_inference, slot_logits
    from hrm.model.losses import token_losses

    out = run_inference(model, arrays.inputs[:rows])
    inputs = torch.from_numpy(arrays.inputs[:rows]).long()
    labels = torch.from_numpy(arrays.labels[:rows]).long()
    inserts = torch.from_numpy(arrays.inserts[:rows]).long()
    mask = labels != -100
    r, e = (inserts[:, :, 0] >= 0).nonzero(as_tuple=True)
    pos, slot_labels = inserts[r, e, 0], inserts[r, e, 1:]
    inserting = torch.zeros_like(mask)
    inserting[r, pos] = True
    first_loss = token_losses(out.logits, labels, kind)
    ins_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        out.insert_logits, inserting.float(), reduction="none") * mask
    slots = slot_logits(model, out.z_H, r, pos)
    slot_loss = token_losses(slots, slot_labels, kind).sum()
    right = (out.logits.argmax(-1) == labels) & ((out.insert_logits > 0) == inserting) & mask
    slots_right = ((slots.argmax(-1) == slot_labels) | (slot_labels == -100)).all(-1)
    right[r, pos] &= slots_right
    edited = mask & ((labels != inputs) | inserting)
    return {
        "val_lm_loss": float((first_loss.sum() + ins_loss.sum() + slot_loss) / mask.sum()),
        "val_token_accuracy": float(right.sum() / mask.sum()),
        "val_edit_accuracy": float((right & edited).sum() / edited.sum()),
        "val_exact_accuracy": float((right.sum(-1) == mask.sum(-1)).float().mean()),
    }


def test_val_pass_matches_a_clean_evaluation_of_the_same_rows(tiny_params, tmp_path):
    """The val columns are the clean evaluation of the first val_max_rows rows: a model part way
    to memorising 16 synthetic rows (hidden 64, one segment, 16 epochs), evaluated on 7 of them,
    so that every metric lies strictly between its extremes (measured: token 0.97, edit 0.69,
    exact 0.43)."""
    from hrm.train.checkpoint import load_for_inference

    params = _with(tiny_params, epochs=16, val_max_rows=7, val_every_epochs=16, weight_decay=0.0)
    params = params.model_copy(update={"model": params.model.model_copy(
        update={"hidden_size": 64, "halt_max_steps": 1, "q_target": "halt_only"})})
    arrays = synthetic_arrays(n=16)
    val = subset(arrays, slice(0, 8))  # 1 to 3 edits per row, insertions in 4 of the first 7
    result = train_phase(params, "foundation", arrays, tmp_path, val_arrays=val, final_eval=False, progress=False)
    model, _ = load_for_inference(tmp_path / "checkpoints", "cpu")
    expected = _expected_metrics(model, val, 7, params.model.loss)
    for c in VAL_COLUMNS[1:]:
        assert 0 < expected[c] < 1, expected
    for c in VAL_COLUMNS:
        assert abs(result.history[-1][c] - expected[c]) < 1e-5, (c, result.history[-1][c], expected[c])


def test_untrained_model_scores_every_kept_position_and_no_edit(tiny_params, arrays):
    """Thanks to the copy bias, an untrained model is right exactly at the positions that keep
    their token and insert nothing: token accuracy is their share, edit accuracy 0."""
    from hrm.model import build_model
    from hrm.train.loop import evaluate_arrays

    torch.manual_seed(0)
    model = build_model(tiny_params.model, arrays.vocab_size, arrays.seq_len, "cpu", arrays.slots,
                        arrays.max_insertions)
    got = evaluate_arrays(model, arrays, 8, "softmax")
    labelled = (arrays.labels != -100).sum()
    edited = int(arrays.difficulty().sum())
    assert got["train_eval_token_accuracy"] == pytest.approx((labelled - edited) / labelled)
    assert got["train_eval_edit_accuracy"] == 0.0 and got["train_eval_exact_accuracy"] == 0.0
    assert model.training  # the mode is restored


def test_val_off_or_missing_leaves_the_columns_empty(tiny_params, arrays, tmp_path):
    val = synthetic_arrays(n=8, seed=1)
    train_phase(_with(tiny_params, val_every_epochs=0), "foundation", arrays, tmp_path / "off",
                val_arrays=val, final_eval=False, progress=False)
    train_phase(tiny_params, "foundation", arrays, tmp_path / "none", final_eval=False, progress=False)
    for name in ("off", "none"):
        rows = _csv(tmp_path / name)
        assert rows and all(r[c] == "" for r in rows for c in VAL_COLUMNS)


def test_val_pass_does_not_change_training(tiny_params, arrays, tmp_path):
    # EMA on: the val pass then builds a model for the EMA weights, which draws from the torch RNG.
    params = _with(tiny_params, epochs=3, ema_decay=0.9)
    val = synthetic_arrays(n=8, seed=1)
    on = train_phase(params, "foundation", arrays, tmp_path / "on", val_arrays=val, final_eval=False,
                     progress=False)
    off = train_phase(_with(params, val_every_epochs=0), "foundation", arrays, tmp_path / "off",
                      val_arrays=val, final_eval=False, progress=False)
    assert on.step_losses == off.step_losses
    assert all(r["val_lm_loss"] is not None for r in on.history)
    a = torch.load(on.checkpoint, weights_only=False)
    b = torch.load(off.checkpoint, weights_only=False)
    for key in ("model", "ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)
    assert a["rank_states"][0]["rng"]["explore"].equal(b["rank_states"][0]["rng"]["explore"])
    assert torch.equal(a["rank_states"][0]["rng"]["torch"], b["rank_states"][0]["rng"]["torch"])


def test_gate_fits_val_curves_of_a_real_tiny_run(tiny_params, real_sequences, tmp_path):
    """run_phase on the real sample's sequences: the gate reads >= 5 finite val points."""
    from hrm.gate.inputs import load_history
    from hrm.gate.projection import MIN_POINTS
    from hrm.gate.report import history_column
    from hrm.train.run import run_phase

    params = _with(tiny_params, epochs=5, val_every_epochs=1)
    run_phase(params, "foundation", real_sequences / "sequences", real_sequences / "tokenizer",
              tmp_path / "train" / "foundation", track=False)
    history = load_history(tmp_path / "train", ["foundation"])
    for column in ("lm_loss", "token_accuracy"):
        epochs, values = history.series(f"val_{column}")
        assert len(epochs) >= MIN_POINTS and all(math.isfinite(v) for v in values)
        assert history_column(history, "val", column) == (f"val_{column}", False)

"""The reverse-learning control (`hrm train-control`): the model's phases again with the feedback
path off, on the same data, seed and epochs; its record; the paired comparison the evaluation
makes with it, and the refusal of a control that is not the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrm.errors import InputError


def _train_chain(params, seq, tok, out):
    """The model's three stages (`hrm train --phase ...` each resuming from the previous)."""
    from hrm.train.run import run_phase

    previous, steps = None, {}
    for phase in params.train.phases:
        result = run_phase(params, phase.name, seq, tok, out / phase.name, resume_from=previous, track=False)
        steps[phase.name] = int(result.summary["phase_steps"])
        previous = result.checkpoint
    return previous, steps


def _fast(params):
    """The tiny profile without the per-epoch val pass (it changes nothing trained)."""
    return params.model_copy(update={"train": params.train.model_copy(update={"val_every_epochs": 0})})


def test_the_control_is_the_model_trained_without_the_feedback_path(tiny_params, real_sequences, tmp_path):
    """Deterministic tiny training: the control's weights equal, bit for bit, those of the
    model's own three stages run with `model.reverse_feedback: false`, and its steps per phase
    are those stages' (not necessarily the model's: an ACT batch takes in rows as its rows halt,
    so the steps follow each model's halting); the evaluation accepts it as the model's control
    and pairs their losses."""
    from hrm.eval.control import load_control
    from hrm.eval.model_pass import paired_control_metrics, run_loss_pass, run_model_pass
    from hrm.sequences import load_split
    from hrm.train.checkpoint import load_checkpoint, load_for_inference
    from hrm.train.control import CONTROL_FILE, read_control, train_control

    seq, tok = real_sequences / "sequences", real_sequences / "tokenizer"
    params = _fast(tiny_params)
    assert params.train.deterministic and params.model.reverse_feedback and params.train.reverse_control
    model_ckpt, model_steps = _train_chain(params, seq, tok, tmp_path / "model")
    record = train_control(params, seq, tok, tmp_path / "control", track=False)
    assert record.trained and set(record.steps) == set(model_steps) and sum(model_steps.values()) > 0
    assert read_control(tmp_path / "control") == record
    assert json.loads((tmp_path / "control" / CONTROL_FILE).read_text())["checkpoint"].startswith("refinement/")

    no_fb = params.model_copy(update={"model": params.model.model_copy(update={"reverse_feedback": False})})
    by_hand, hand_steps = _train_chain(no_fb, seq, tok, tmp_path / "by-hand")
    assert record.steps == hand_steps
    control_state = load_checkpoint(tmp_path / "control" / record.checkpoint)["model"]
    hand_state = load_checkpoint(by_hand)["model"]
    assert control_state.keys() == hand_state.keys()
    assert all(torch.equal(control_state[k], hand_state[k]) for k in hand_state)
    model_state = load_checkpoint(model_ckpt)["model"]
    assert not torch.equal(model_state["core.token_head.weight"], control_state["core.token_head.weight"])

    model, info = load_for_inference(model_ckpt, "cpu")
    loaded = load_control(tmp_path / "control", info, "cpu")
    control = loaded.model
    assert loaded.reason is None and control.core.feedback is None
    assert loaded.describe()["global_epoch"] == info.global_epoch
    val = load_split(seq, "val")
    mp = run_model_pass(model, val, end_id=2, delete_id=5, batch_size=8, halt_on_q=False,
                        ablation=False, positions=4, alternatives=2)
    control_loss = run_loss_pass(control, val, batch_size=8, halt_on_q=False)
    assert np.all(control_loss > 0) and not np.allclose(control_loss, mp.row_loss_sum)
    m = paired_control_metrics(mp, control_loss)
    lower, higher = m["reverse_learning_rows_lower"], m["reverse_learning_rows_higher"]
    assert lower + higher <= len(val) and m["reverse_learning_integration"] == pytest.approx(
        (lower + 0.5 * (len(val) - lower - higher)) / len(val))


def test_a_control_of_other_steps_or_settings_is_refused(tiny_params, real_sequences, tmp_path):
    from hrm.eval.control import load_control
    from hrm.train.checkpoint import load_for_inference
    from hrm.train.control import train_control

    seq, tok = real_sequences / "sequences", real_sequences / "tokenizer"
    params = _fast(tiny_params)
    model_ckpt, _ = _train_chain(params, seq, tok, tmp_path / "model")
    _, info = load_for_inference(model_ckpt, "cpu")
    phases = [p.model_copy(update={"epochs": p.epochs + 1}) if p.name == "optimisation" else p
              for p in params.train.phases]
    longer = params.model_copy(update={"train": params.train.model_copy(update={"phases": phases})})
    train_control(longer, seq, tok, tmp_path / "longer", track=False)
    with pytest.raises(InputError, match="not the control of the evaluated model: phase refinement epoch"):
        load_control(tmp_path / "longer", info, "cpu")
    wider = params.model_copy(update={"model": params.model.model_copy(update={"H_cycles": 2})})
    train_control(wider, seq, tok, tmp_path / "wider", track=False)
    with pytest.raises(InputError, match=r"model settings \['H_cycles'\] differ"):
        load_control(tmp_path / "wider", info, "cpu")
    reseeded = params.model_copy(update={"train": params.train.model_copy(update={"seed": 7, "ema_decay": 0.9})})
    train_control(reseeded, seq, tok, tmp_path / "reseeded", track=False)
    with pytest.raises(InputError, match=r"train settings \['ema_decay', 'seed'\] differ; ema weights "
                                         r"against the model's model"):
        load_control(tmp_path / "reseeded", info, "cpu")
    # What the control does not run (the val pass, the train evaluation) may differ.
    quiet = params.model_copy(update={"train": params.train.model_copy(update={"val_max_rows": 3, "num_threads": 2})})
    train_control(quiet, seq, tok, tmp_path / "quiet", track=False)
    assert load_control(tmp_path / "quiet", info, "cpu").model is not None


@pytest.mark.parametrize("change", ["reverse_control", "reverse_feedback"])
def test_no_control_writes_only_its_reason(tiny_params, real_sequences, tmp_path, change):
    from hrm.eval.control import load_control
    from hrm.train.control import CONTROL_FILE, train_control

    seq, tok = real_sequences / "sequences", real_sequences / "tokenizer"
    if change == "reverse_control":
        params = tiny_params.model_copy(update={"train": tiny_params.train.model_copy(update={"reverse_control": False})})
        reason = "no control model was trained (train.reverse_control: false)"
    else:
        params = tiny_params.model_copy(update={"model": tiny_params.model.model_copy(update={"reverse_feedback": False})})
        reason = "the model has no feedback path (model.reverse_feedback: false): nothing to ablate"
    record = train_control(params, seq, tok, tmp_path / "control", track=False)
    assert (record.trained, record.reason) == (False, reason)
    assert sorted(p.name for p in (tmp_path / "control").iterdir()) == [CONTROL_FILE]
    loaded = load_control(tmp_path / "control", None, "cpu")
    assert (loaded.model, loaded.info, loaded.reason) == (None, None, reason)


def test_a_missing_or_malformed_control_record_names_the_file(tmp_path):
    from hrm.train.control import CONTROL_FILE, read_control

    with pytest.raises(InputError, match="no control record .run `hrm train-control`."):
        read_control(tmp_path)
    (tmp_path / CONTROL_FILE).write_text('{"trained": true}')
    with pytest.raises(InputError, match="a trained control must name its 'checkpoint'") as err:
        read_control(tmp_path)
    assert str(tmp_path / CONTROL_FILE) in str(err.value)
    (tmp_path / CONTROL_FILE).write_text('{"trained": "yes"}')
    with pytest.raises(InputError, match="boolean 'trained'"):
        read_control(tmp_path)

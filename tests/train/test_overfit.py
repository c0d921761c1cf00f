"""The model can learn real data: 8 real SWE-smith training rows to exact accuracy 1.0.

The issue asks this of the `tiny` profile; the test runs it with overrides (docs/training.md,
"Deviations"): model hidden 64 (tiny: 32), halt_max_steps 1 (tiny: 2), q_target halt_only (tiny:
bootstrap), weight decay 0 (tiny: 0.2), and one foundation phase of 150 epochs (the bound: 150
optimizer steps at batch 8), lr 3e-3, warm-up 5, q_loss_weight 0.1, min_lr_ratio 0.3. Measured
on the 2-core machine: with these overrides exact accuracy 1.0 at train LM loss 0.004; with
tiny's own model and weight decay and this phase also 1.0 but at LM loss 0.087 (0.875 after 110
epochs), and with tiny's own foundation settings (q_loss_weight 0.5, min_lr_ratio 0.1) 0.875
after 150 epochs: the overrides give the bound a margin.
"""

from __future__ import annotations

import numpy as np
import pytest

from hrm.config import PhaseConfig
from hrm.train import train_phase
from hrm.train.data import TrainArrays, load_train_arrays


@pytest.mark.slow
def test_overfits_eight_real_examples(tiny_params, real_sequences, tmp_path):
    full = load_train_arrays(real_sequences / "sequences", "train")
    assert len(full.inputs) >= 8
    # The 8 rows with the shortest targets (fewest tokens to memorise; all are real fixes).
    pick = np.argsort(full.target_lengths(), kind="stable")[:8]
    arrays = TrainArrays(full.inputs[pick], full.labels[pick], full.vocab_size)
    model = tiny_params.model.model_copy(update={"hidden_size": 64, "num_heads": 2, "halt_max_steps": 1,
                                                 "q_target": "halt_only"})
    phase = PhaseConfig(name="foundation", epochs=150, lr=3e-3, warmup_steps=5, q_loss_weight=0.1)
    train = tiny_params.train.model_copy(update={"phases": [phase], "batch_size": 8, "weight_decay": 0.0,
                                                 "min_lr_ratio": 0.3, "keep_checkpoints": 1})
    params = tiny_params.model_copy(update={"model": model, "train": train})
    result = train_phase(params, "foundation", arrays, tmp_path, progress=False)
    first = result.history[0]
    assert result.summary["train_eval_exact_accuracy"] == 1.0, result.summary
    assert result.summary["train_eval_token_accuracy"] == 1.0
    assert first["token_accuracy"] < 0.5  # it really had to learn

"""Training data: TrainArrays checks, loading rows (inserts included) into the carry, per-epoch
augmentation (deterministic per seed, epoch and row; exact resume with it on), and the split a
phase trains on (`phase.data`) through run_phase."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm.errors import InputError
from hrm.train import train_phase
from hrm.train.augmentation import make_augment, variant_seed
from hrm.train.data import RowFeeder, TrainArrays, fill_halted_rows, load_train_arrays

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import synthetic_arrays  # noqa: E402


def _with(params, epochs: int | None = None, phase: str = "foundation", phase_update=None, **train):
    phases = []
    for p in params.train.phases:
        if p.name == phase:
            p = p.model_copy(update={**({"epochs": epochs} if epochs else {}), **(phase_update or {})})
        phases.append(p)
    return params.model_copy(update={"train": params.train.model_copy(update={**train, "phases": phases})})


# ---- TrainArrays and the carry -------------------------------------------------------------

def test_train_arrays_check_shapes_and_ids():
    a = synthetic_arrays(n=4)
    assert (a.slots, a.max_insertions, a.seq_len) == (4, 4, 24)
    with pytest.raises(InputError, match=r"inserts .* must be \[N, E, K\] for 4 rows"):
        TrainArrays(a.inputs, a.labels, a.inserts[:3], a.vocab_size)
    with pytest.raises(InputError, match="must be equal"):
        TrainArrays(a.inputs, a.labels[:, :-1], a.inserts, a.vocab_size)
    bad = a.inserts.copy()
    bad[1, 0, 1] = a.vocab_size  # an inserted token outside the vocabulary
    with pytest.raises(InputError, match="output ids outside"):
        TrainArrays(a.inputs, a.labels, bad, a.vocab_size)
    bad_labels = a.labels.copy()
    bad_labels[0, 10] = -5
    with pytest.raises(InputError, match="label ids outside"):
        TrainArrays(a.inputs, bad_labels, a.inserts, a.vocab_size)
    with pytest.raises(InputError, match="empty"):
        TrainArrays(a.inputs[:0], a.labels[:0], a.inserts[:0], a.vocab_size)


def test_fill_halted_rows_loads_inserts_and_pads_exhausted_rows(tiny_params):
    from hrm.model import build_model

    arrays = synthetic_arrays(n=5)
    model = build_model(tiny_params.model, arrays.vocab_size, arrays.seq_len, "cpu", arrays.slots,
                        arrays.max_insertions)
    carry = model.initial_carry(4, torch.device("cpu"))
    assert carry.inserts.shape == (4, arrays.max_insertions, arrays.slots)
    feeder = RowFeeder(arrays, tiny_params.train.phases[0], 0, 0, 1)
    gen = torch.Generator().manual_seed(0)
    assert fill_halted_rows(carry, feeder, arrays, 0.0, 2, gen) == 4
    order = feeder._stream[:4]
    for slot, idx in enumerate(order):
        assert torch.equal(carry.inserts[slot], torch.from_numpy(arrays.inserts[idx]))
        assert torch.equal(carry.labels[slot], torch.from_numpy(arrays.labels[idx]))
    carry.halted[:] = True
    assert fill_halted_rows(carry, feeder, arrays, 0.0, 2, gen) == 1  # one row left in the epoch
    assert carry.valid.tolist() == [True, False, False, False]
    assert (carry.inserts[1:, :, 0] == -1).all() and (carry.labels[1:] == -100).all()


# ---- augmentation ----------------------------------------------------------------------------

def _rows_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _segments(labels: np.ndarray) -> list[list[int]]:
    """[anchor, code tokens] of each run of labelled positions (a region of the row)."""
    out, p = [], 0
    while p < len(labels):
        if labels[p] == -100:
            p += 1
            continue
        q = p
        while q < len(labels) and labels[q] != -100:
            q += 1
        out.append([p, q - p - 1])
        p = q
    return out


@pytest.mark.parametrize("split", ["train", "corpus"])
def test_augment_variant_is_the_renamed_regions_encoded(real_sequences, split):
    """A variant row holds exactly the row's regions renamed by `rename_identifiers` with the
    (seed, epoch, row) seed: its inputs decode to the renamed buggy code, its labels to the
    renamed fix."""
    from hrm.augment import rename_identifiers
    from hrm.sequences import decode_segments, label_outputs, load_split
    from hrm.tokenizer import load_tokenizer

    seq, tok_dir = real_sequences / "sequences", real_sequences / "tokenizer"
    data, tok = load_split(seq, split), load_tokenizer(tok_dir)
    augment = make_augment(seq, split, tok_dir, seed=5, rate=0.5)
    checked = 0
    for i, record in enumerate(data.records):
        got = augment(i, 2)
        if got is None:
            continue
        inputs, labels, inserts = got
        assert inputs.shape == data.inputs[i].shape and inserts.shape == data.inserts[i].shape
        assert not np.array_equal(inputs, data.inputs[i])  # names were renamed
        segments = _segments(labels)
        fixed = decode_segments(tok, inputs, segments, label_outputs(
            inputs, labels, inserts, segments, delete_id=tok.mask_id, end_id=tok.eos_id))
        renamed = rename_identifiers([(h.buggy_text, h.fixed_text) for h in record.hunks],
                                     variant_seed(5, 2, i), rate=0.5)
        assert decode_segments(tok, inputs, segments, {}) == [b for b, _ in renamed]
        assert fixed == [f for _, f in renamed]
        checked += 1
    assert checked >= len(data.records) - 2  # nearly every function has a local name


def test_augment_variants_are_deterministic_per_seed_epoch_and_row(real_sequences):
    seq, tok = real_sequences / "sequences", real_sequences / "tokenizer"
    stored = load_train_arrays(seq, "train")
    first, again = make_augment(seq, "train", tok, seed=0), make_augment(seq, "train", tok, seed=0)
    other_seed = make_augment(seq, "train", tok, seed=1)
    n = len(stored.inputs)
    variants = [first(i, 0) for i in range(n)]
    for i, v in enumerate(variants):
        if v is not None:
            assert _rows_equal(v, again(i, 0))  # a fresh augmenter (a resumed run) gives the same
    differ_epoch = sum(not _rows_equal(v, first(i, 1)) for i, v in enumerate(variants) if v is not None
                       and first(i, 1) is not None)
    differ_seed = sum(not _rows_equal(v, other_seed(i, 0)) for i, v in enumerate(variants) if v is not None
                      and other_seed(i, 0) is not None)
    assert differ_epoch >= n - 3 and differ_seed >= n - 3
    assert len({variant_seed(0, 1, 2), variant_seed(0, 2, 1), variant_seed(1, 0, 2), variant_seed(0, 0, 12)}) == 4
    # TrainArrays.row: the variant when augmenting, the stored row otherwise.
    assert _rows_equal(stored.row(0, 0), (stored.inputs[0], stored.labels[0], stored.inserts[0]))
    stored.augment = first
    assert _rows_equal(stored.row(0, 3), first(0, 3))


def test_exact_resume_with_augmentation(tiny_params, real_sequences, tmp_path):
    """Augmented rows (a fresh variant per epoch) with the listwise loss's negatives drawn from
    each variant, and resume: a run killed mid-phase and resumed with resume="auto" is
    bit-identical to the uninterrupted one (the carry's negatives are in the checkpoint);
    augmentation and negatives did change the training."""
    from hrm.train.negatives import make_negatives

    seq, tok = real_sequences / "sequences", real_sequences / "tokenizer"
    params = _with(tiny_params, epochs=3, checkpoint_every_steps=3, keep_checkpoints=10)
    params = params.model_copy(update={"train": params.train.model_copy(update={"rank_weight": 1.0})})

    def arrays(augment: bool):
        a = load_train_arrays(seq, "train")
        if augment:
            a.augment = make_augment(seq, "train", tok, seed=params.train.seed)
            a.negatives = make_negatives(tok, seed=7, count=params.train.rank_negatives, slots=a.slots)
        return a

    straight = train_phase(params, "foundation", arrays(True), tmp_path / "a", final_eval=False, progress=False)
    assert len(straight.step_losses) > 9

    class Killed(Exception):
        pass

    def kill(info):
        if info.step == 7:
            raise Killed

    with pytest.raises(Killed):
        train_phase(params, "foundation", arrays(True), tmp_path / "b", on_step=kill, final_eval=False,
                    progress=False)
    resumed = train_phase(params, "foundation", arrays(True), tmp_path / "b", resume="auto", final_eval=False,
                          progress=False)
    assert resumed.step_losses == straight.step_losses[6:]
    a = torch.load(straight.checkpoint, weights_only=False)
    b = torch.load(resumed.checkpoint, weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    strip = ("wall_time_s", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in a["history"]] == \
           [{k: v for k, v in r.items() if k not in strip} for r in b["history"]]
    plain = train_phase(params, "foundation", arrays(False), tmp_path / "plain", final_eval=False,
                        progress=False)
    assert plain.step_losses[0] != straight.step_losses[0]


# ---- phase.data through run_phase ------------------------------------------------------------

def test_run_phase_trains_on_the_phase_data_split(tiny_params, real_sequences, tmp_path):
    """The tiny foundation phase has `data: corpus`: run_phase trains on the corpus split with
    the augmentation of seed train.seed + 1000 * phase index (the same steps as train_phase on
    those arrays), and its final evaluation is on the stored corpus rows; `augment: false` trains
    on them as stored; optimisation (`data: train`) trains on the train split. The end-of-phase
    evaluation reads `train.train_eval_max_rows` evenly spaced rows."""
    from hrm.train.checkpoint import load_for_inference
    from hrm.train.loop import evaluate_arrays, evenly_spaced
    from hrm.train.run import run_phase

    seq, tok = real_sequences / "sequences", real_sequences / "tokenizer"
    phases = {p.name: p for p in tiny_params.train.phases}
    assert phases["foundation"].data == "corpus" and phases["foundation"].augment
    assert phases["optimisation"].data == "train"
    params = _with(tiny_params, val_every_epochs=0, train_eval_max_rows=5)
    corpus = load_train_arrays(seq, "corpus")
    train = load_train_arrays(seq, "train")
    assert len(corpus.inputs) != len(train.inputs)

    ran = run_phase(params, "foundation", seq, tok, tmp_path / "foundation", track=False)
    augmented = load_train_arrays(seq, "corpus")
    augmented.augment = make_augment(seq, "corpus", tok, seed=params.train.seed,
                                     rate=params.train.augment_rate)
    direct = train_phase(params, "foundation", augmented, tmp_path / "direct", progress=False, tokenizer_dir=tok)
    assert ran.step_losses == direct.step_losses
    model, _ = load_for_inference(ran.checkpoint, "cpu")
    clean = evaluate_arrays(model, evenly_spaced(corpus, 5), params.train.batch_size, params.model.loss)
    assert {k: ran.summary[k] for k in clean} == clean
    assert clean != evaluate_arrays(model, corpus, params.train.batch_size, params.model.loss)

    stored = _with(params, phase_update={"augment": False})
    ran_stored = run_phase(stored, "foundation", seq, tok, tmp_path / "stored", track=False)
    direct_stored = train_phase(stored, "foundation", corpus, tmp_path / "direct-stored", progress=False,
                                tokenizer_dir=tok)
    assert ran_stored.step_losses == direct_stored.step_losses != ran.step_losses

    opt = run_phase(_with(params, phase="optimisation", phase_update={"augment": False}), "optimisation", seq,
                    tok, tmp_path / "optimisation", track=False)
    model, _ = load_for_inference(opt.checkpoint, "cpu")
    clean = evaluate_arrays(model, evenly_spaced(train, 5), params.train.batch_size, params.model.loss)
    assert {k: opt.summary[k] for k in clean} == clean


def test_evenly_spaced_spreads_rows_over_the_split():
    from hrm.train.loop import evenly_spaced

    arrays = synthetic_arrays(n=10)
    assert evenly_spaced(arrays, None) is arrays and evenly_spaced(arrays, 10) is arrays
    four = evenly_spaced(arrays, 4)
    rows = [int(np.flatnonzero((arrays.inputs == r).all(1))[0]) for r in four.inputs]
    assert rows == [0, 3, 6, 9]
    assert np.array_equal(four.labels, arrays.labels[rows]) and np.array_equal(four.inserts, arrays.inserts[rows])

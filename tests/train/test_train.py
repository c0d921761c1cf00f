"""Training: phases, history files, checkpoints (exact resume, also with sampled head
positions; corruption), non-finite stop, curriculum (by edited positions)."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm.model.inference import run_inference
from hrm.tokenizer import tokenizer_fingerprint
from hrm.train import NonFiniteLoss, train_phase
from hrm.train.checkpoint import (
    CorruptCheckpoint,
    latest_valid,
    list_checkpoints,
    load_for_inference,
    resolve_checkpoint,
)
from hrm.train.history import HISTORY_COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import subset  # noqa: E402


def _with(params, epochs: int | None = None, **train):
    """Params with train overrides; `epochs` sets the foundation phase's."""
    if epochs is not None:
        phases = params.train.phases
        train["phases"] = [phases[0].model_copy(update={"epochs": epochs}), *phases[1:]]
    return params.model_copy(update={"train": params.train.model_copy(update=train)})


def _fake_tokenizer(directory: Path, content: str) -> str:
    """A tokenizer dir as far as fingerprints go; returns its fingerprint (sha256 of tokenizer.json)."""
    import hashlib

    directory.mkdir(parents=True)
    (directory / "tokenizer.json").write_text(content)
    return hashlib.sha256(content.encode()).hexdigest()


def test_phases_chain_and_write_history(tiny_params, arrays, tmp_path):
    from hrm.errors import InputError

    tiny_params = _with(tiny_params, epochs=2)
    fp = _fake_tokenizer(tmp_path / "tok", '{"vocab": "A"}')
    other = _fake_tokenizer(tmp_path / "tok-other", '{"vocab": "B"}')
    first = train_phase(tiny_params, "foundation", arrays, tmp_path / "foundation", progress=False,
                        tokenizer_dir=tmp_path / "tok")
    # The hand-off refuses a previous phase trained with another tokenizer (or none).
    for tok_dir, pattern in ((tmp_path / "tok-other", f"{fp}.*{other}"), (None, f"{fp}.*\\(none\\)")):
        with pytest.raises(InputError, match=pattern):
            train_phase(tiny_params, "optimisation", arrays, tmp_path / "refused",
                        resume_from=tmp_path / "foundation" / "checkpoints", tokenizer_dir=tok_dir,
                        progress=False)
    second = train_phase(tiny_params, "optimisation", arrays, tmp_path / "optimisation",
                         resume_from=tmp_path / "foundation" / "checkpoints", progress=False,
                         tokenizer_dir=tmp_path / "tok")
    assert [r["epoch"] for r in first.history] == [1, 2]
    assert [r["epoch"] for r in second.history] == [3]  # the global epoch continues
    with open(tmp_path / "optimisation" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == HISTORY_COLUMNS and rows[0]["phase"] == "optimisation"
    hist = json.loads((tmp_path / "foundation" / "history.json").read_text())
    assert len(hist) == 2 and all(math.isfinite(r["loss"]) for r in hist)
    summary = json.loads((tmp_path / "foundation" / "summary.json").read_text())
    assert summary["epoch"] == 2 and summary["precision"] == first.summary["precision"]
    for key in ("token_accuracy", "edit_accuracy", "exact_accuracy", "lm_loss"):
        assert math.isfinite(summary[f"train_eval_{key}"]), key
    # The second phase starts from the first phase's weights.
    model, info = load_for_inference(tmp_path / "optimisation" / "checkpoints", "cpu")
    assert info.phase == "optimisation" and info.global_epoch == 3 and info.weights == "model"
    assert info.tokenizer_fingerprint == fp
    assert (model.slots, model.max_insertions) == (arrays.slots, arrays.max_insertions)
    out = run_inference(model, torch.from_numpy(arrays.inputs[:2]))
    assert out.logits.shape == (2, arrays.seq_len, arrays.vocab_size)


class Killed(Exception):
    pass


def _killed_and_resumed(params, phase, arrays, tmp_path, val=None, kill_at: int = 7):
    """(uninterrupted run, resumed run): the second is killed one step after the checkpoint of
    step kill_at - 1 (that step is lost and redone) and continued with resume="auto"."""
    straight = train_phase(params, phase, arrays, tmp_path / "a", final_eval=False, progress=False,
                           val_arrays=val)
    assert len(straight.step_losses) > kill_at + 2

    def kill(info):
        if info.step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        train_phase(params, phase, arrays, tmp_path / "b", on_step=kill, final_eval=False, progress=False,
                    val_arrays=val)
    resumed = train_phase(params, phase, arrays, tmp_path / "b", resume="auto", final_eval=False,
                          progress=False, val_arrays=val)
    return straight, resumed


def test_exact_resume_after_kill(tiny_params, arrays, tmp_path):
    """Also with the heads on a random sample of 8 of the ~17 labelled positions per row: the
    sample's RNG state is part of the checkpoint."""
    params = _with(tiny_params, epochs=3, checkpoint_every_steps=3, keep_checkpoints=10)
    params = params.model_copy(update={"model": params.model.model_copy(update={"head_positions": 8})})
    val = subset(arrays, slice(0, 6))  # val pass on: no effect
    straight, resumed = _killed_and_resumed(params, "foundation", arrays, tmp_path, val)
    total = len(straight.step_losses)
    assert resumed.step_losses == straight.step_losses[6:]
    a = torch.load(straight.checkpoint, weights_only=False)
    b = torch.load(resumed.checkpoint, weights_only=False)
    assert a["step"] == b["step"] == total
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    strip = ("wall_time_s", "tokens_per_s")
    assert all(r["val_lm_loss"] is not None for r in b["history"])
    assert [{k: v for k, v in r.items() if k not in strip} for r in a["history"]] == \
           [{k: v for k, v in r.items() if k not in strip} for r in b["history"]]


def test_resume_auto_skips_corrupt_checkpoint(tiny_params, arrays, tmp_path):
    params = _with(tiny_params, checkpoint_every_steps=2, keep_checkpoints=5)
    train_phase(params, "foundation", arrays, tmp_path, final_eval=False, progress=False)
    files = list_checkpoints(tmp_path / "checkpoints")
    newest, previous = files[-1], files[-2]
    with open(newest, "r+b") as fh:  # flip bytes in the middle of the newest file
        fh.seek(newest.stat().st_size // 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.warns(UserWarning, match="skipping corrupt checkpoint"):
        assert latest_valid(tmp_path / "checkpoints") == previous
    with pytest.warns(UserWarning, match="skipping corrupt checkpoint"):
        result = train_phase(params, "foundation", arrays, tmp_path, resume="auto", final_eval=False,
                             progress=False)
    expected_remaining = int(newest.stem.split("-")[1]) - int(previous.stem.split("-")[1])
    assert len(result.step_losses) == expected_remaining


def test_corrupt_newest_checkpoint_is_an_error_outside_resume_auto(tiny_params, arrays, tmp_path):
    """Evaluation, the next phase and `--resume DIR` take the newest checkpoint of a directory and
    refuse it when corrupt: never a silent fallback to older weights."""
    params = _with(tiny_params, checkpoint_every_steps=2, keep_checkpoints=5)
    train_phase(params, "foundation", arrays, tmp_path / "a", final_eval=False, progress=False)
    ckpt_dir = tmp_path / "a" / "checkpoints"
    files = list_checkpoints(ckpt_dir)
    newest, previous = files[-1], files[-2]
    assert resolve_checkpoint(ckpt_dir) == newest and resolve_checkpoint(previous) == previous
    with open(newest, "r+b") as fh:
        fh.seek(newest.stat().st_size // 2)
        fh.write(b"\x00\x01\x02\x03")
    pattern = f"{re.escape(str(newest))}.*sha256 mismatch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping" warning either: an error, not a fallback
        for call in (lambda: resolve_checkpoint(ckpt_dir),
                     lambda: resolve_checkpoint(newest),
                     lambda: load_for_inference(ckpt_dir, "cpu"),
                     lambda: train_phase(params, "optimisation", arrays, tmp_path / "b", resume_from=ckpt_dir,
                                         final_eval=False, progress=False),
                     lambda: train_phase(params, "foundation", arrays, tmp_path / "c", resume=str(ckpt_dir),
                                         final_eval=False, progress=False)):
            with pytest.raises(CorruptCheckpoint, match=pattern):
                call()
    assert not (tmp_path / "b" / "checkpoints").exists() and not (tmp_path / "c" / "checkpoints").exists()
    # A missing manifest (a write cut between the file and its manifest) is corrupt as well.
    newest.with_suffix(".json").unlink()
    with pytest.raises(CorruptCheckpoint, match=f"{re.escape(str(newest))}.*no manifest"):
        load_for_inference(ckpt_dir, "cpu")
    # An older checkpoint stays usable when named explicitly.
    _, info = load_for_inference(previous, "cpu")
    assert info.path == str(previous)


def test_resume_refuses_a_checkpoint_of_another_tokenizer(tiny_params, arrays, tmp_path):
    from hrm.errors import InputError

    params = _with(tiny_params, checkpoint_every_steps=2, keep_checkpoints=5)
    fp = _fake_tokenizer(tmp_path / "tok", "A")
    other = _fake_tokenizer(tmp_path / "tok-other", "B")

    class Killed(Exception):
        pass

    def kill(info):
        if info.step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_phase(params, "foundation", arrays, tmp_path / "run", tokenizer_dir=tmp_path / "tok", on_step=kill,
                    final_eval=False, progress=False)
    with pytest.raises(InputError, match=f"{fp}.*{other}"):
        train_phase(params, "foundation", arrays, tmp_path / "run", resume="auto",
                    tokenizer_dir=tmp_path / "tok-other", final_eval=False, progress=False)


def test_run_phase_refuses_sequences_of_another_tokenizer(tiny_params, real_sequences, tmp_path):
    import json
    import shutil

    from hrm.errors import InputError
    from hrm.tokenizer import load_tokenizer
    from hrm.train.run import run_phase

    real_tok = real_sequences / "tokenizer"
    fp = load_tokenizer(real_tok).fingerprint
    meta = json.loads((real_sequences / "sequences" / "meta.json").read_text())
    assert meta["tokenizer_fingerprint"] == fp
    other = tmp_path / "other-tok"
    shutil.copytree(real_tok, other)
    spec = json.loads((other / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][:-1]  # one merge fewer: another tokenizer
    (other / "tokenizer.json").write_text(json.dumps(spec))
    other_fp = tokenizer_fingerprint(other)
    seq_meta = real_sequences / "sequences" / "meta.json"
    with pytest.raises(InputError, match=f"{re.escape(str(seq_meta))}.*{fp}.*{re.escape(str(other / 'tokenizer.json'))}.*{other_fp}"):
        run_phase(tiny_params, "foundation", real_sequences / "sequences", other, tmp_path / "out", track=False)
    assert not (tmp_path / "out").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_params, arrays, tmp_path):
    params = _with(tiny_params, checkpoint_every_steps=2, keep_checkpoints=5)

    def poison(info):
        if info.step == 3:
            with torch.no_grad():
                info.model.core.token_head.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLoss, match="non-finite loss.*step 4.*last good checkpoint kept"):
        train_phase(params, "foundation", arrays, tmp_path, on_step=poison, final_eval=False, progress=False)
    good = latest_valid(tmp_path / "checkpoints")
    assert good is not None and good.name == "step-00000002.pt"
    model, _ = load_for_inference(good, "cpu")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_phase_name_is_a_clear_error(tiny_params, arrays, tmp_path):
    from hrm.errors import InputError

    with pytest.raises(InputError, match="no phase named 'nope'"):
        train_phase(tiny_params, "nope", arrays, tmp_path, progress=False)


def test_curriculum_orders(tiny_params, arrays):

    from hrm.train.data import epoch_order

    phases = {p.name: p for p in tiny_params.train.phases}
    lengths = arrays.difficulty()
    assert lengths.tolist() == [1 + i % 3 for i in range(len(lengths))]  # the marks of each row
    easy = epoch_order(len(lengths), 0, 0, phases["optimisation"], lengths)
    assert (np.diff(lengths[easy]) >= 0).all() and sorted(easy) == list(range(len(lengths)))
    hard = epoch_order(len(lengths), 0, 0, phases["refinement"], lengths)
    assert len(hard) == len(lengths) // 2 and lengths[hard].min() >= np.median(lengths)


def test_length_buckets_order_each_chunk_by_trimmed_width(tiny_params):
    from hrm.model.act import WIDTH_MULTIPLE
    from hrm.train.data import epoch_order

    foundation = next(p for p in tiny_params.train.phases if p.name == "foundation")
    plain, bucketed = (foundation.model_copy(update={"bucket_rows": rows}) for rows in (0, 8))
    lengths = np.random.default_rng(3).integers(10, 160, size=30)
    steps = -(-lengths // WIDTH_MULTIPLE)
    shuffled = epoch_order(30, 0, 0, plain, lengths, lengths)
    order = epoch_order(30, 0, 0, bucketed, lengths, lengths)
    assert sorted(order) == list(range(30))
    for start in range(0, 30, 8):  # the same rows per chunk, sorted by width, ties as shuffled
        chunk, was = order[start:start + 8], shuffled[start:start + 8]
        assert sorted(chunk) == sorted(was) and (np.diff(steps[chunk]) >= 0).all()
        assert [i for i in chunk if steps[i] == steps[chunk[0]]] == [i for i in was if steps[i] == steps[chunk[0]]]
    assert not np.array_equal(order, shuffled)
    assert np.array_equal(order, epoch_order(30, 0, 0, bucketed, lengths, lengths))
    assert not np.array_equal(order, epoch_order(30, 0, 1, bucketed, lengths, lengths))
    # the widest of every 4 consecutive rows (a batch) shrinks
    def widest(o):
        return np.mean([steps[o[i:i + 4]].max() for i in range(0, 28, 4)])
    assert widest(order) < widest(shuffled)
    with pytest.raises(ValueError, match="pass row_lengths"):
        epoch_order(30, 0, 0, bucketed, lengths)


def test_bucketed_phases_divide_the_edit_loss_by_a_random_batchs_count(tiny_params, arrays, tmp_path):
    from hrm.train.loop import lm_denominator, setup_phase

    bucketed, _ = setup_phase(tiny_params, "foundation", arrays, tmp_path / "f", None)
    plain, _ = setup_phase(tiny_params, "optimisation", arrays, tmp_path / "o", None)
    assert bucketed.phase.bucket_rows and not plain.phase.bucket_rows
    per_row = float((arrays.labels != -100).sum(axis=1).mean())
    assert arrays.mean_labelled == pytest.approx(per_row)
    for labelled in (3.0, 500.0):  # whatever the batch holds
        assert lm_denominator(bucketed, labelled) == pytest.approx(tiny_params.train.batch_size * per_row)
        assert lm_denominator(plain, labelled) == labelled
    assert lm_denominator(plain, 0.0) == 1.0


def test_bucket_rows_needs_a_shuffled_phase_and_the_padding_mask(tiny_params):
    from hrm.config import Params

    raw = tiny_params.model_dump()
    raw["train"]["phases"][1]["bucket_rows"] = 64  # optimisation: easy_to_hard
    with pytest.raises(ValueError, match=r"phases\[optimisation\].bucket_rows needs curriculum: none"):
        Params.model_validate(raw)
    raw = tiny_params.model_dump()
    raw["model"]["mask_padding"] = False
    with pytest.raises(ValueError, match="model.mask_padding: true"):
        Params.model_validate(raw)


def test_load_for_inference_rejects_missing_dir(tmp_path):
    from hrm.errors import InputError

    with pytest.raises(InputError, match="no checkpoint"):
        load_for_inference(tmp_path, "cpu")
    assert not Path(tmp_path / "x").exists()

"""Sequences: layout, no leak, exact targets, truncation accounting, loader and errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from hrm.config import SequencesConfig
from hrm.errors import InputError
from hrm.hunks import parse_patch
from hrm.sequences import IGNORE_INDEX, build_sequences, decode_target, load_split
from hrm.tokenizer import HUNK_SEPARATOR, file_header

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module", params=["seq_tiny", "seq_roomy"])
def loaded(request, built):
    return {s: load_split(built[request.param], s) for s in SPLITS}


def test_no_label_is_visible_in_inputs(loaded, instances, tok):
    patches = {i.instance_id: i.patch for i in instances}
    for split in loaded.values():
        meta = split.meta
        labelled = split.labels != IGNORE_INDEX
        assert labelled.any()
        assert not (split.inputs[labelled] == split.labels[labelled]).any()
        assert (split.inputs[:, meta.prompt_len:] == meta.mask_id).all()
        assert not labelled[:, : meta.prompt_len].any()
        assert (split.inputs[:, : meta.prompt_len] != meta.mask_id).all()
        for row, rec in zip(split.inputs, split.records, strict=True):
            text = tok.decode(row[: meta.prompt_len])
            assert patches[rec.instance_id] not in text
            assert "diff --git" not in text and "\n@@ -" not in text


def test_prompt_and_target_content_exact(built, tok, instances, assignments):
    split_data = {s: load_split(built["seq_roomy"], s) for s in SPLITS}
    by_id = {i.instance_id: i for i in instances}
    seen = 0
    for split, data in split_data.items():
        meta = data.meta
        assert data.inputs.dtype == np.int32 and data.labels.dtype == np.int64
        assert data.inputs.shape[1] == meta.seq_len == meta.prompt_len + meta.target_len
        for row_in, row_lab, rec in zip(data.inputs, data.labels, data.records, strict=True):
            seen += 1
            inst = by_id[rec.instance_id]
            assert rec.split == split == assignments[rec.instance_id]
            hunks = parse_patch(inst.patch)
            assert [h.buggy_text for h in rec.hunks] == [h.buggy_text for h in hunks]
            joined = HUNK_SEPARATOR.join(file_header(h.file) + h.buggy_text for h in hunks)
            assert rec.buggy_code == joined
            prompt = [t for t in row_in[: meta.prompt_len] if t != meta.pad_id]
            assert prompt[0] == meta.bos_id and prompt.count(meta.sep_id) == 1
            assert tok.decode(prompt[prompt.index(meta.sep_id) + 1 :]) == joined
            assert tok.decode(prompt[1 : prompt.index(meta.sep_id)]) in inst.problem_statement
            target = row_lab[meta.prompt_len :]
            n = rec.target_token_count
            assert target[n - 1] == meta.eos_id and (target[n:] == IGNORE_INDEX).all()
            assert (target[: n - 1] != IGNORE_INDEX).all()
            assert decode_target(tok, target) == [h.fixed_text for h in hunks]
            assert rec.fixed_code == HUNK_SEPARATOR.join(h.fixed_text for h in hunks)
    meta = split_data["train"].meta
    assert seen + sum(meta.dropped.values()) == len(instances)


def _expected_lengths(tok, inst):
    hunks = parse_patch(inst.patch)
    stmt = len(tok.encode(inst.problem_statement))
    code = sum(len(tok.encode(file_header(h.file) + h.buggy_text)) for h in hunks)
    target = sum(len(tok.encode(h.fixed_text)) for h in hunks) + len(hunks)  # seps + eos
    return stmt, code + len(hunks) - 1, target


def test_truncation_counts_on_a_tiny_budget(built, tok, instances, assignments, budgets):
    TINY_SEQ = budgets["tiny"]
    meta = load_split(built["seq_tiny"], "train").meta
    P, T, S = TINY_SEQ.max_prompt_tokens, TINY_SEQ.max_target_tokens, TINY_SEQ.max_statement_tokens
    for split in SPLITS:
        exp = {"statement_capped": 0, "statement_cut": 0, "prompt_truncated": 0,
               "target_truncated": 0}
        for inst in instances:
            if assignments[inst.instance_id] != split:
                continue
            stmt, code, target = _expected_lengths(tok, inst)
            exp["statement_capped"] += stmt > S
            exp["statement_cut"] += min(stmt, S) > max(P - 2 - code, 0)
            exp["prompt_truncated"] += code > P - 2
            exp["target_truncated"] += target > T
        assert meta.truncation[split] == exp, split
        assert meta.dropped[split] == 0
        recs = load_split(built["seq_tiny"], split).records
        assert sum(r.target_truncated for r in recs) == exp["target_truncated"]
    assert sum(t["target_truncated"] for t in meta.truncation.values()) > 0
    assert sum(t["prompt_truncated"] for t in meta.truncation.values()) > 0


def test_drop_counts_and_truncated_rows_fill_the_target(built, sample_path, tok, instances,
                                                        assignments, tmp_path, budgets):
    cfg = budgets["tiny"].model_copy(update={"truncation": "drop"})
    meta = build_sequences(sample_path, built["splits"], built["tok"], tmp_path, cfg,
                           progress=False)
    for split in SPLITS:
        too_long = sum(1 for i in instances if assignments[i.instance_id] == split
                       and _expected_lengths(tok, i)[2] > cfg.max_target_tokens)
        assert meta.dropped[split] == too_long
        assert meta.counts[split] + too_long == sum(1 for s in assignments.values() if s == split)
    tiny = load_split(built["seq_tiny"], "train")
    for row, rec in zip(tiny.labels, tiny.records, strict=True):
        if rec.target_truncated:  # cut rows label every target position, none is eos
            target = row[tiny.meta.prompt_len :]
            assert (target != IGNORE_INDEX).all() and tiny.meta.eos_id not in target


def test_meta_fingerprints_and_counts(built, budgets):
    ROOMY_SEQ = budgets["roomy"]
    meta = json.loads((built["seq_roomy"] / "meta.json").read_text())
    tok_meta = json.loads((built["tok"] / "meta.json").read_text())
    tok_sha = hashlib.sha256((built["tok"] / "tokenizer.json").read_bytes()).hexdigest()
    assert meta["tokenizer_fingerprint"] == tok_sha == tok_meta["tokenizer_sha256"]
    assert meta["seq_len"] == ROOMY_SEQ.seq_len and meta["ignore_index"] == -100
    stats = meta["length_stats"]["train"]["target"]
    assert stats["min"] <= stats["p50"] <= stats["max"] and stats["max"] > 1


def test_decode_target_treats_model_output_as_untrusted(tok):
    a, b = tok.encode("x = 1\n"), tok.encode("y = 2\n")
    ids = [tok.pad_id] + a + [tok.mask_id, tok.hunk_id] + b + [tok.eos_id] + a
    assert decode_target(tok, ids) == ["x = 1\n", "y = 2\n"]
    assert decode_target(tok, []) == [""]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode_target(tok, [tok.vocab_size])


def test_bad_inputs(built, sample_path, tmp_path):
    with pytest.raises(InputError, match="meta.json: sequences meta not found"):
        load_split(tmp_path, "train")
    with pytest.raises(InputError, match="unknown split 'dev'"):
        load_split(built["seq_tiny"], "dev")
    with pytest.raises(InputError, match="tokenizer.json: tokenizer file not found"):
        build_sequences(sample_path, built["splits"], tmp_path / "none", tmp_path / "o",
                        SequencesConfig(), progress=False)


def test_cli_end_to_end_and_clear_error(sample_path, tiny_params_file, tmp_path):
    from typer.testing import CliRunner

    from hrm.cli import app

    runner = CliRunner()
    common = ["--params", str(tiny_params_file), "--no-track"]
    steps = [
        ["sequences", "split", "--instances", str(sample_path), "--out", str(tmp_path / "s")],
        ["tokenizer", "build", "--instances", str(sample_path), "--splits",
         str(tmp_path / "s/splits.json"), "--out", str(tmp_path / "t")],
        ["sequences", "build", "--instances", str(sample_path), "--splits",
         str(tmp_path / "s/splits.json"), "--tokenizer", str(tmp_path / "t"), "--out",
         str(tmp_path / "q")],
    ]
    for args in steps:
        result = runner.invoke(app, args + common)
        assert result.exit_code == 0, result.output
    assert "target truncated" in result.output
    data = load_split(tmp_path / "q", "val")
    assert data.meta.seq_len == 144 and len(data) > 0
    proc = subprocess.run(
        [sys.executable, "-m", "hrm", "sequences", "split", "--instances",
         str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x"), *common],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "missing.jsonl: instances file not found" in proc.stderr


def test_rebuilt_sequences_are_byte_identical(tmp_path, sample_path):
    """Equal arrays must give equal files, or DVC re-runs training after every rebuild
    (numpy writes fixed zip timestamps; this guards that)."""
    import hashlib
    import time

    from hrm.config import SequencesConfig, TokenizerConfig
    from hrm.sequences import build_sequences, load_split
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    build_splits(sample_path, tmp_path / "splits", SequencesConfig())
    build_tokenizer(sample_path, tmp_path / "splits" / "splits.json", tmp_path / "tok",
                    TokenizerConfig(vocab_size=512))
    digests = []
    for run in ("a", "b"):
        if digests:
            time.sleep(2.1)  # zip timestamps have 2 s resolution: make the clock visible
        out = tmp_path / run
        build_sequences(sample_path, tmp_path / "splits" / "splits.json", tmp_path / "tok", out,
                        SequencesConfig(), progress=False)
        digests.append(hashlib.sha256((out / "train.npz").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert load_split(tmp_path / "a", "train").inputs.shape[0] > 0

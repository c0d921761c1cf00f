"""Tokenizer: lossless on all real text, deterministic, trained on train only."""

from __future__ import annotations

import json

import pytest

from hrm.config import SequencesConfig, TokenizerConfig
from hrm.data.instance import Instance, read_instances, write_instances
from hrm.errors import InputError
from hrm.hunks import parse_patch
from hrm.naturalness import TRAINING_CODE_FILE
from hrm.splits import assign_splits, load_splits
from hrm.tokenizer import SPECIAL_TOKENS, build_tokenizer, file_header, load_tokenizer


def test_round_trip_exact_on_every_statement_and_region(instances, tok):
    checked = 0
    for inst in instances:  # all 57 rows, val and test included (text the BPE never saw)
        texts = [inst.problem_statement]
        for h in parse_patch(inst.patch):
            texts += [h.buggy_text, h.fixed_text, file_header(h.file)]
        for text in texts:
            assert tok.decode(tok.encode(text)) == text
            checked += 1
    assert checked > 3 * len(instances)


def test_special_tokens_fixed_and_never_produced_by_text(tok):
    assert [tok.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(8))
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.sep_id, tok.hunk_id, tok.mask_id,
            tok.unk_id) == (0, 1, 2, 3, 4, 5, 6)
    text = "x = '<|mask|>' + '<|hunk|><|eos|>'\r\n\t \x0c é 漢字\n"
    ids = tok.encode(text)
    assert not set(ids) & set(range(7))
    assert tok.decode(ids) == text


def test_deterministic(sample_path, built, tmp_path):
    build_tokenizer(sample_path, built["splits"], tmp_path / "again",
                    TokenizerConfig(vocab_size=1024))
    for name in ("tokenizer.json", "meta.json"):
        assert (tmp_path / "again" / name).read_bytes() == (built["tok"] / name).read_bytes()
    meta = json.loads((built["tok"] / "meta.json").read_text())
    assert meta["vocab_size"] == load_tokenizer(built["tok"]).vocab_size
    assert meta["special_ids"]["mask"] == 5


def test_trained_on_train_split_only(tmp_path):
    """A word repeated only in val/test statements must not become one token, while a word
    repeated as often in train statements does (the control that makes this test able to fail).
    """
    insts = []
    for k in range(30):
        patch = (f"--- a/m{k}.py\n+++ b/m{k}.py\n@@ -1,1 +1,1 @@\n-x = {k}\n+x = -{k}\n")
        insts.append(Instance(f"o__r.0000abcd.func__{k:08d}", "swesmith/o__r.0000abcd", patch,
                              "", ["t"], []))
    cfg = SequencesConfig(val_fraction=0.2, test_fraction=0.2, split_seed=3)
    splits = assign_splits(insts, cfg).assignments
    assert {"train", "val", "test"} == set(splits.values())
    rows = []
    for inst in insts:
        word = " trainonlyword" if splits[inst.instance_id] == "train" else " heldoutword"
        rows.append(Instance(inst.instance_id, inst.repo, inst.patch, word * 40, ["t"], []))
    write_instances(tmp_path / "inst.jsonl", rows)
    (tmp_path / "splits.json").write_text(json.dumps({"splits": splits}))
    build_tokenizer(tmp_path / "inst.jsonl", tmp_path / "splits.json", tmp_path / "tok",
                    TokenizerConfig(vocab_size=400))
    tok = load_tokenizer(tmp_path / "tok")
    assert len(tok.encode(" trainonlyword")) == 1
    assert len(tok.encode(" heldoutword")) > 1


def test_bad_inputs(sample_path, built, tmp_path):
    with pytest.raises(InputError, match="tokenizer.json: tokenizer file not found"):
        load_tokenizer(tmp_path)
    with pytest.raises(InputError, match="nope.json: splits file not found"):
        build_tokenizer(sample_path, tmp_path / "nope.json", tmp_path / "t", TokenizerConfig())
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"splits": {"only-one": "train"}}))
    with pytest.raises(InputError, match="have no split"):
        build_tokenizer(sample_path, stale, tmp_path / "t", TokenizerConfig())


def test_fingerprint_is_the_tokenizer_file_not_the_training_text(sample_path, built, tmp_path):
    """Same training text, another vocab size: another tokenizer, so another fingerprint; the
    training-text hash stays under its own name."""
    import hashlib
    import shutil

    from hrm.tokenizer import tokenizer_fingerprint

    base = load_tokenizer(built["tok"])
    assert base.fingerprint == hashlib.sha256((built["tok"] / "tokenizer.json").read_bytes()).hexdigest()
    assert base.fingerprint == tokenizer_fingerprint(built["tok"]) == base.meta["tokenizer_sha256"]
    build_tokenizer(sample_path, built["splits"], tmp_path / "small", TokenizerConfig(vocab_size=600))
    small = load_tokenizer(tmp_path / "small")
    assert small.meta["training_text_sha256"] == base.meta["training_text_sha256"]
    assert small.fingerprint != base.fingerprint

    # tokenizer.json swapped after meta.json was written: refused, naming the file.
    mixed = tmp_path / "mixed"
    shutil.copytree(built["tok"], mixed)
    shutil.copy2(tmp_path / "small" / "tokenizer.json", mixed / "tokenizer.json")
    with pytest.raises(InputError, match=f"mixed/tokenizer.json: .*{small.fingerprint}.*{base.fingerprint}"):
        load_tokenizer(mixed)


def test_corpus_rows_are_trained_on(sample_path, built, tmp_path):
    """`corpus_path`: the corpus's statements and functions join the training text (a word
    repeated only there becomes one token; without the corpus it does not)."""
    from hrm.corpus.rows import CorpusRow, write_rows

    rows = [CorpusRow(id=f"p-1.0:m.py:f{k}:op_change:0", package="p==1.0", file="m.py",
                      function=f"f{k}", kind="op_change", start_line=1,
                      buggy=f"def f{k}(corpusonlyword):\n    return corpusonlyword - {k}\n",
                      fixed=f"def f{k}(corpusonlyword):\n    return corpusonlyword + {k}\n",
                      problem_statement=f"`f{k}` in `m` misbehaves\n") for k in range(30)]
    write_rows(tmp_path / "corpus.jsonl", rows)
    build_tokenizer(sample_path, built["splits"], tmp_path / "with", TokenizerConfig(
        vocab_size=1024), corpus_path=tmp_path / "corpus.jsonl")
    with_corpus = load_tokenizer(tmp_path / "with")
    assert with_corpus.meta["corpus_rows"] == 30
    assert len(with_corpus.encode(" corpusonlyword")) == 1
    without = load_tokenizer(built["tok"])
    assert without.meta["corpus_rows"] == 0
    assert len(without.encode(" corpusonlyword")) > 1
    # the naturalness model's training code: the corpus's FIXED functions and the train split's
    # fixed hunks, never a buggy side and never val or test code
    code = [json.loads(line) for line in (tmp_path / "with" / TRAINING_CODE_FILE).read_text().splitlines()]
    assert code[:30] == [r.fixed for r in rows] and with_corpus.meta["training_code_texts"] == len(code)
    assert not any(r.buggy in code for r in rows)
    splits = load_splits(built["splits"])
    held = [h.fixed_text for i in read_instances(sample_path) if splits[i.instance_id] != "train"
            for h in parse_patch(i.patch, source=i.instance_id)]
    train = [h.fixed_text for i in read_instances(sample_path) if splits[i.instance_id] == "train"
             for h in parse_patch(i.patch, source=i.instance_id)]
    assert set(code[30:]) == set(train) - {""} and not (set(held) - set(train)) & set(code)
    with pytest.raises(InputError, match="missing.jsonl: corpus file not found"):
        build_tokenizer(sample_path, built["splits"], tmp_path / "x", TokenizerConfig(),
                        corpus_path=tmp_path / "missing.jsonl")

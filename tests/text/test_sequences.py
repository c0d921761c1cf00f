"""Sequences: row layout, labels that decode to the exact fix, windowing and drops (always
counted), no hunk boundary in the input, patch-only fallback, corpus split and overlap, loader."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrm.config import SequencesConfig
from hrm.corpus.rows import CorpusRow, write_rows
from hrm.data.instance import Instance, write_instances
from hrm.errors import InputError
from hrm.hunks import parse_patch
from hrm.regions import Region, bug_regions, split_lines
from hrm.sequences import (
    ALL_SPLITS,
    DROP_REASONS,
    IGNORE_INDEX,
    build_sequences,
    decode_segments,
    encode_example,
    label_outputs,
    load_split,
    special_tokens_in,
)
from hrm.tokenizer import HUNK_SEPARATOR, file_header

SPLITS = ("train", "val", "test")
TENACITY = "swesmith/jd__tenacity.0d40e76f"
PANDAS_ID = "pandas-dev__pandas.95280573.pr_53652"
HUNK_CONTEXT = {PANDAS_ID, "jd__tenacity.0d40e76f.lm_rewrite__0siuyh3e",
                "jd__tenacity.0d40e76f.lm_rewrite__3rty13vw"}
"""Rows whose regions are the patch's hunks: pandas has no environment, the two lm_rewrite
patches do not apply to the tenacity sdist."""


@pytest.fixture(scope="module", params=["seq_tiny", "seq_roomy"])
def loaded(request, built):
    return {s: load_split(built[request.param], s) for s in SPLITS}


def _outputs(split, i):
    rec = split.records[i]
    return label_outputs(split.inputs[i], split.labels[i], split.inserts[i], rec.segments,
                         delete_id=split.meta.mask_id, end_id=split.meta.eos_id)


def test_row_layout_is_statement_then_headed_buggy_regions(loaded, tok):
    """Every input token is accounted for: bos, the statement's first tokens, sep, then per region
    its `# file:` header (the anchor last) and its buggy code, `<|hunk|>` between regions, pad.
    Neither the fixed code nor the patch is anywhere else to see."""
    rows = 0
    for split in loaded.values():
        meta = split.meta
        assert split.inputs.dtype == np.int32 and split.labels.dtype == np.int32
        assert split.inserts.shape == (len(split), meta.max_insertions, meta.slots)
        for i, rec in enumerate(split.records):
            rows += 1
            inputs, labels = split.inputs[i].tolist(), split.labels[i].tolist()
            stmt = tok.encode(rec.statement)
            sep = inputs.index(meta.sep_id)
            assert inputs[0] == meta.bos_id and inputs[1:sep] == stmt[: sep - 1]
            assert rec.statement_truncated == (sep - 1 < len(stmt))
            pos = sep + 1
            coded = set()
            for k, ((anchor, n), hunk) in enumerate(zip(rec.segments, rec.hunks, strict=True)):
                if k:
                    assert inputs[pos] == meta.hunk_id
                    pos += 1
                header = tok.encode(file_header(hunk.file))
                assert inputs[pos: pos + len(header)] == header
                assert anchor == pos + len(header) - 1
                assert tok.decode(inputs[anchor + 1: anchor + 1 + n]) == hunk.buggy_text
                assert labels[anchor] == inputs[anchor]  # the anchor never replaces its token
                coded.update(range(anchor, anchor + n + 1))
                pos = anchor + 1 + n
            assert all(t == meta.pad_id for t in inputs[pos:])
            for p, label in enumerate(labels):
                assert (label != IGNORE_INDEX) == (p in coded)
            used = [e for e in split.inserts[i].tolist() if e[0] >= 0]
            assert split.inserts[i][len(used):, 0].tolist() == [-1] * (meta.max_insertions
                                                                        - len(used))
            assert all(e[0] in coded for e in used)
            assert rec.buggy_code == HUNK_SEPARATOR.join(h.buggy_text for h in rec.hunks)
            assert rec.fixed_code == HUNK_SEPARATOR.join(h.fixed_text for h in rec.hunks)
            text = tok.decode(inputs[:pos])
            assert "diff --git" not in text and "\n@@ -" not in text
    assert rows > 20


def test_labels_decode_to_the_exact_fix_and_no_output_to_the_buggy_code(loaded, tok):
    for split in loaded.values():
        for i, rec in enumerate(split.records):
            outputs = _outputs(split, i)
            assert len(outputs) == rec.edited_positions > 0
            assert decode_segments(tok, split.inputs[i], rec.segments, outputs) == [
                h.fixed_text for h in rec.hunks]
            assert decode_segments(tok, split.inputs[i], rec.segments, {}) == [
                h.buggy_text for h in rec.hunks]
            # labels differ from the inputs only at edited positions
            differs = {p for p in outputs if split.labels[i][p] != split.inputs[i][p]}
            coded = split.labels[i] != IGNORE_INDEX
            assert int((split.labels[i][coded] != split.inputs[i][coded]).sum()) == len(differs)


def test_whole_regions_match_the_instances(built, instances, assignments, tenacity_pristine):
    """Roomy rows: one row per instance, regions as `hrm.regions` cuts them from the snapshot
    (their fixed texts splice the original file back), the hunk fallback where none applies."""
    from hrm.hunks import apply_regions
    from hrm.regions import apply_patch_text

    by_id = {i.instance_id: i for i in instances}
    seen = set()
    for split in SPLITS:
        data = load_split(built["seq_roomy"], split)
        for rec in data.records:
            seen.add(rec.instance_id)
            inst = by_id[rec.instance_id]
            assert rec.split == split == assignments[rec.instance_id]
            assert rec.repo == inst.repo and rec.statement == inst.problem_statement
            assert not rec.code_truncated
            hunks = parse_patch(inst.patch)
            if rec.instance_id in HUNK_CONTEXT:
                assert rec.context.startswith("hunk: ")
                assert [(h.buggy_text, h.fixed_text) for h in rec.hunks] == [
                    (h.buggy_text, h.fixed_text) for h in hunks]
                continue
            assert rec.context == "file"
            for file in {h.file for h in hunks}:
                fixed = (tenacity_pristine / file).read_text()
                buggy = apply_patch_text(fixed, [h for h in hunks if h.file == file])
                assert apply_regions(buggy, [h for h in rec.hunks if h.file == file]) == fixed
    assert seen == set(by_id)


def test_every_instance_is_written_or_counted(built, instances, assignments):
    for name in ("seq_tiny", "seq_roomy"):
        meta = load_split(built[name], "train").meta
        assert set(meta.counts) == set(ALL_SPLITS) and meta.counts["corpus"] == 0
        for split in SPLITS:
            assert set(meta.dropped[split]) == set(DROP_REASONS)
            expected = sum(1 for s in assignments.values() if s == split)
            assert meta.counts[split] + sum(meta.dropped[split].values()) == expected
            records = load_split(built[name], split).records
            hunk = sum(r.context.startswith("hunk: ") for r in records)
            assert meta.context[split].get("hunk", 0) == hunk
            assert meta.context[split].get("file", 0) == len(records) - hunk
            assert sum(meta.kinds[split].values()) == len(records)
    roomy = load_split(built["seq_roomy"], "train").meta
    assert all(v == 0 for reasons in roomy.dropped.values() for v in reasons.values())
    assert sum(c.get("hunk", 0) for c in roomy.context.values()) == len(HUNK_CONTEXT)
    tiny = load_split(built["seq_tiny"], "train").meta
    assert sum(r["outside_window"] for r in tiny.dropped.values()) > 0
    assert sum(t["code_truncated"] for t in tiny.truncation.values()) > 0
    assert sum(t["statement_truncated"] for t in tiny.truncation.values()) > 0


def test_patch_only_fallback_is_counted(built, instances, assignments):
    split = assignments[PANDAS_ID]
    data = load_split(built["seq_roomy"], split)
    (rec,) = [r for r in data.records if r.instance_id == PANDAS_ID]
    assert rec.context == "hunk: pandas/core/indexes/base.py not in the repository snapshot"
    assert data.meta.context[split]["hunk"] >= 1


def test_windowed_rows_show_the_first_lines_of_the_whole_regions(built, tok, budgets):
    """A tiny-budget row cut to its first lines is a line prefix of the roomy row's region, with
    every change inside: the fixed window plus the buggy rest is the whole fixed region. The
    statement gave up its room first, down to `min_statement_tokens`."""
    cfg = budgets["tiny"]
    windowed = 0
    for split in SPLITS:
        roomy = {r.instance_id: r for r in load_split(built["seq_roomy"], split).records}
        for rec in load_split(built["seq_tiny"], split).records:
            whole = roomy[rec.instance_id]
            assert len(rec.hunks) <= len(whole.hunks)
            for cut, full in zip(rec.hunks, whole.hunks, strict=False):
                assert (cut.file, cut.buggy_start, cut.function) == (
                    full.file, full.buggy_start, full.function)
                rest = full.buggy_text[len(cut.buggy_text):]
                assert full.buggy_text.startswith(cut.buggy_text)
                assert cut.buggy_text.endswith("\n") or not rest
                assert cut.fixed_text + rest == full.fixed_text
            if rec.code_truncated:
                windowed += 1
                n_stmt = rec.segments[0][0] - len(tok.encode(file_header(rec.hunks[0].file))) - 1
                assert n_stmt == min(len(tok.encode(rec.statement)), cfg.min_statement_tokens)
            else:
                assert [h.buggy_text for h in rec.hunks] == [h.buggy_text for h in whole.hunks]
    assert windowed >= 1


# ---------------------------------------------------------------- synthetic bugs on tenacity

INIT = "tenacity/__init__.py"
COPY_LINES = {  # lines of BaseRetrying.copy in the sdist's tenacity/__init__.py
    "sleep_default": ("        sleep: t.Union[t.Callable[[t.Union[int, float]], None], object]"
                      " = _unset,\n"),
    "wait_default": '        wait: t.Union["WaitBaseT", object] = _unset,\n',
    "sleep_arg": "            sleep=_first_set(sleep, self.sleep),\n",
    "reraise_arg": "            reraise=_first_set(reraise, self.reraise),\n",
}
BUGS = {
    "sleep_default": ("= _unset,", "= None,"),
    "wait_default": ("= _unset,", "= None,"),
    "sleep_arg": ("self.sleep", "self.stop"),
    "reraise_arg": ("self.reraise", "self.retry"),
}


def _bug_patch(fixed: str, name: str) -> tuple[str, str]:
    """(patch, buggy file) of a one-line bug in BaseRetrying.copy, as SWE-smith writes it."""
    line = COPY_LINES[name]
    assert fixed.count(line) == 1
    old, new = BUGS[name]
    buggy = fixed.replace(line, line.replace(old, new))
    diff = difflib.unified_diff(split_lines(fixed), split_lines(buggy), f"a/{INIT}", f"b/{INIT}")
    return f"diff --git a/{INIT} b/{INIT}\n" + "".join(diff), buggy


def _synthetic(tmp_path: Path, built, envs_cfg, names: list[str], cfg: SequencesConfig,
               tenacity_pristine: Path):
    """Build sequences of one-line bugs in BaseRetrying.copy (all in val)."""
    fixed = (tenacity_pristine / INIT).read_text()
    insts, buggy_files = [], {}
    for k, name in enumerate(names):
        patch, buggy = _bug_patch(fixed, name)
        iid = f"jd__tenacity.0d40e76f.func_basic__synth{k:03d}"
        insts.append(Instance(iid, TENACITY, patch, "Retrying.copy() loses a setting.", ["t"],
                              []))
        buggy_files[iid] = (buggy, patch)
    write_instances(tmp_path / "inst.jsonl", insts)
    (tmp_path / "splits.json").write_text(json.dumps(
        {"splits": {i.instance_id: "val" for i in insts}}))
    meta = build_sequences(tmp_path / "inst.jsonl", tmp_path / "splits.json", built["tok"],
                           tmp_path / "seq", cfg, envs=envs_cfg, progress=False)
    data = load_split(tmp_path / "seq", "val")
    return meta, data, {r.instance_id: r for r in data.records}, buggy_files


def _copy_span(source: str) -> tuple[int, int]:
    """1-based first and last line of BaseRetrying.copy, found with ast."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "BaseRetrying":
            (func,) = [f for f in node.body if getattr(f, "name", "") == "copy"]
            first = min([func.lineno] + [d.lineno for d in func.decorator_list])
            return first, func.end_lineno
    raise AssertionError("no BaseRetrying.copy")


def test_long_function_is_cut_the_same_wherever_the_bug_is_and_outside_is_counted(
        tmp_path, built, envs_cfg, tok, tenacity_pristine):
    fixed = (tenacity_pristine / INIT).read_text()
    first, last = _copy_span(fixed)
    function = "".join(split_lines(fixed)[first - 1: last])
    header = len(tok.encode(file_header(INIT)))
    room = len(tok.encode(function)) // 2
    seq_len = 2 + header + 8 + room
    cfg = SequencesConfig(seq_len=seq_len, max_statement_tokens=min(32, seq_len // 2 - 1),
                          min_statement_tokens=8)
    meta, data, recs, _ = _synthetic(tmp_path, built, envs_cfg,
                                     ["sleep_default", "wait_default", "reraise_arg"], cfg,
                                     tenacity_pristine)
    assert meta.counts["val"] == 2
    assert meta.dropped["val"]["outside_window"] == 1  # the bug past the cut: counted
    a, b = (recs[f"jd__tenacity.0d40e76f.func_basic__synth00{k}"] for k in (0, 1))
    assert a.code_truncated and b.code_truncated and meta.truncation["val"]["code_truncated"] == 2
    (ha,), (hb,) = a.hunks, b.hunks
    assert ha.buggy_start == hb.buggy_start == first  # both start at the def
    lines_a, lines_b = split_lines(ha.buggy_text), split_lines(hb.buggy_text)
    assert len(lines_a) == len(lines_b)  # the same cut for both bugs
    assert 4 < len(lines_a) < last - first + 1
    # the window shows the buggy function's first lines; each differs from the other only at
    # the two bug lines (line 3 of the function for one, line 5 for the other)
    differ = [k for k, (x, y) in enumerate(zip(lines_a, lines_b, strict=True)) if x != y]
    assert differ == [2, 4]
    assert split_lines(function)[: len(lines_a)] == split_lines(ha.fixed_text)
    for i, rec in enumerate(data.records):
        assert decode_segments(tok, data.inputs[i], rec.segments, _outputs(data, i)) == [
            rec.hunks[0].fixed_text]


def test_the_input_never_shows_where_the_hunk_was(tmp_path, built, envs_cfg, tok,
                                                  tenacity_pristine, budgets):
    """Two bugs far apart in one function: each row shows the whole function from the buggy
    file (found with ast), and the two inputs are token-identical up to the first bug's line:
    nothing says where the patch's hunk started."""
    meta, data, recs, buggy_files = _synthetic(
        tmp_path, built, envs_cfg, ["sleep_arg", "reraise_arg"], budgets["roomy"],
        tenacity_pristine)
    assert meta.counts["val"] == 2
    ids = [f"jd__tenacity.0d40e76f.func_basic__synth00{k}" for k in (0, 1)]
    rows = {iid: data.inputs[[r.instance_id for r in data.records].index(iid)] for iid in ids}
    codes = {}
    for iid in ids:
        rec = recs[iid]
        buggy, patch = buggy_files[iid]
        first, last = _copy_span(buggy)
        whole = "".join(split_lines(buggy)[first - 1: last])
        ((anchor, n),) = rec.segments
        code = rows[iid][anchor + 1: anchor + 1 + n].tolist()
        assert tok.decode(code) == whole == rec.hunks[0].buggy_text
        (patch_hunk,) = parse_patch(patch)
        assert patch_hunk.buggy_start > first  # the hunk starts inside; the input does not
        codes[iid] = code
    a, b = (recs[i] for i in ids)
    assert a.segments[0][0] == b.segments[0][0]  # same statement and header: same anchor
    lines_a, lines_b = (split_lines(r.hunks[0].buggy_text) for r in (a, b))
    differ = [k for k, (x, y) in enumerate(zip(lines_a, lines_b, strict=True)) if x != y]
    assert len(differ) == 2 and differ[1] - differ[0] > 3
    prefix = len(tok.encode("".join(lines_a[: differ[0]]))) - 1
    assert codes[ids[0]][:prefix] == codes[ids[1]][:prefix]
    anchor = a.segments[0][0]
    assert (rows[ids[0]][: anchor + 1] == rows[ids[1]][: anchor + 1]).all()


# ---------------------------------------------------------------- drops of one example


def _region(fixed: str, buggy: str) -> Region:
    (region,) = bug_regions("m.py", fixed, buggy)
    return region


def test_encode_example_drop_reasons(tok):
    cfg = SequencesConfig(seq_len=128, max_statement_tokens=16, min_statement_tokens=4, slots=4,
                          max_insertions=1)
    fixed = "def f(a):\n    b = a + 1\n    c = b * 2\n    return c\n"
    one = _region(fixed, fixed.replace("b * 2", "b"))  # one insertion: `b` -> `b * 2`
    assert not isinstance(encode_example(tok, "s", [one], cfg), str)
    two = _region(fixed, fixed.replace("b * 2", "b").replace("a + 1", "a"))
    assert encode_example(tok, "s", [two], cfg) == "too_many_insertions"
    removed = _region(fixed, "def f(a):\n    return c\n")  # two lines re-added: spread
    big = "def f(a):\n" + "".join(f"    v{i} = a.attribute_{i}(a, {i})\n" for i in range(40)) + \
        "    return a\n"
    overflow = _region(big, "def f(a):\n    return a\n")
    assert encode_example(tok, "s", [overflow], cfg.model_copy(update={"max_insertions": 64})) \
        == "edit_overflow"
    assert not isinstance(encode_example(tok, "s", [removed],
                                         cfg.model_copy(update={"max_insertions": 64})), str)
    far = "def g(a):\n" + "".join(f"    w{i} = a + {i}\n" for i in range(60)) + "    return a\n"
    late = _region(far, far.replace("w55 = a + 55", "w55 = a - 55"))
    assert encode_example(tok, "s", [late], cfg) == "outside_window"
    early = _region(far, far.replace("w1 = a + 1", "w1 = a - 1"))
    enc = encode_example(tok, "s", [early], cfg)
    assert enc.code_truncated and len(enc.inputs) <= cfg.seq_len


def test_statement_gives_room_to_code_down_to_its_minimum(tok):
    cfg = SequencesConfig(seq_len=96, max_statement_tokens=40, min_statement_tokens=10)
    statement = "word " * 60
    small = _region("def f():\n    return 1\n", "def f():\n    return 2\n")
    enc = encode_example(tok, statement, [small], cfg)
    assert enc.statement_truncated and enc.inputs.index(tok.sep_id) - 1 == 40
    body = "".join(f"    x{i} = {i}\n" for i in range(30))
    big = _region("def f():\n" + body, "def f():\n" + body.replace("x0 = 0", "x0 = 1"))
    enc = encode_example(tok, statement, [big], cfg)
    assert enc.inputs.index(tok.sep_id) - 1 == 10 and enc.code_truncated


# ---------------------------------------------------------------- corpus split


def test_corpus_split_and_overlap_with_val_and_test(built, sample_path, envs_cfg, tmp_path,
                                                    tok, budgets):
    """A corpus function equal (whitespace aside) to a val/test region is dropped and counted
    as `overlap`; one equal to a TRAIN region is kept (training on train is fine)."""
    roomy = {s: load_split(built["seq_roomy"], s) for s in SPLITS}

    def single(split: str):
        return next(r.hunks[0] for r in roomy[split].records
                    if r.context == "file" and len(r.hunks) == 1 and ", " not in
                    r.hunks[0].function)

    held, trained = single("val"), single("train")
    row = dict(package="tenacity==9.0.0", file=held.file, kind="op_change",
               problem_statement="`f` in `m` misbehaves\n")
    rows = [
        CorpusRow(id="tenacity-9.0.0:a.py:f:op_change:0", function=held.function,
                  start_line=held.buggy_start, buggy=held.buggy_text,
                  fixed=held.fixed_text.replace("\n", "  \n").replace("(", "( "), **row),
        CorpusRow(id="tenacity-9.0.0:a.py:g:op_change:0", function=trained.function,
                  start_line=trained.buggy_start, buggy=trained.buggy_text,
                  fixed=trained.fixed_text, **row),
        CorpusRow(id="tenacity-9.0.0:a.py:h:op_change:0", function="h", start_line=1,
                  buggy="def h(a):\n    return a - 1\n", fixed="def h(a):\n    return a + 1\n",
                  **row),
    ]
    write_rows(tmp_path / "corpus.jsonl", rows)
    meta = build_sequences(sample_path, built["splits"], built["tok"], tmp_path / "seq",
                           budgets["roomy"], corpus_path=tmp_path / "corpus.jsonl",
                           envs=envs_cfg, progress=False)
    assert meta.dropped["corpus"]["overlap"] == 1
    assert meta.counts["corpus"] == 2
    assert all(meta.counts[s] == roomy[s].meta.counts[s] for s in SPLITS)
    assert meta.kinds["corpus"] == {"func_pm_op_change": 2}
    corpus = load_split(tmp_path / "seq", "corpus")
    assert [r.instance_id for r in corpus.records] == [rows[1].id, rows[2].id]
    for i, rec in enumerate(corpus.records):
        assert rec.split == "corpus" and rec.context == "file"
        assert decode_segments(tok, corpus.inputs[i], rec.segments, _outputs(corpus, i)) == [
            rows[i + 1].fixed]
    # the data fingerprint covers the corpus file
    assert meta.data_fingerprint != roomy["train"].meta.data_fingerprint


# ---------------------------------------------------------------- meta, loader, CLI


def test_meta_fingerprints_and_stats(built, budgets):
    cfg = budgets["roomy"]
    meta = json.loads((built["seq_roomy"] / "meta.json").read_text())
    tok_meta = json.loads((built["tok"] / "meta.json").read_text())
    tok_sha = hashlib.sha256((built["tok"] / "tokenizer.json").read_bytes()).hexdigest()
    assert meta["tokenizer_fingerprint"] == tok_sha == tok_meta["tokenizer_sha256"]
    assert (meta["seq_len"], meta["slots"], meta["max_insertions"]) == (
        cfg.seq_len, cfg.slots, cfg.max_insertions)
    assert meta["ignore_index"] == -100 and meta["mask_id"] == 5 and meta["eos_id"] == 2
    assert meta["config"] == cfg.model_dump(mode="json")
    records = load_split(built["seq_roomy"], "train").records
    edited = meta["length_stats"]["train"]["edited"]
    assert edited["max"] == max(r.edited_positions for r in records)
    assert edited["min"] == min(r.edited_positions for r in records)
    assert meta["kinds"]["train"]["func_basic"] == sum(r.kind == "func_basic" for r in records)


def test_decoding_treats_model_output_as_untrusted(tok, built):
    data = load_split(built["seq_roomy"], "train")
    rec = data.records[0]
    anchor, n = rec.segments[0]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode_segments(tok, data.inputs[0], rec.segments, {anchor + 1: (tok.vocab_size,)})
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode_segments(tok, data.inputs[0], rec.segments, {anchor: (-1,)})
    # outputs outside every segment are ignored; special tokens in outputs are reported
    assert decode_segments(tok, data.inputs[0], rec.segments, {0: (tok.eos_id,)}) == [
        h.buggy_text for h in rec.hunks]
    assert special_tokens_in(tok, {anchor + 1: (tok.hunk_id, 42), anchor + 2: ()}) == ["hunk"]


def test_bad_inputs(built, sample_path, tmp_path):
    with pytest.raises(InputError, match="meta.json: sequences meta not found"):
        load_split(tmp_path, "train")
    with pytest.raises(InputError, match="unknown split 'dev'"):
        load_split(built["seq_tiny"], "dev")
    with pytest.raises(InputError, match="tokenizer.json: tokenizer file not found"):
        build_sequences(sample_path, built["splits"], tmp_path / "none", tmp_path / "o",
                        SequencesConfig(), progress=False)
    with pytest.raises(InputError, match="missing.jsonl: instances file not found"):
        build_sequences(tmp_path / "missing.jsonl", built["splits"], built["tok"],
                        tmp_path / "o", SequencesConfig(), progress=False)
    # arrays that do not match meta are refused, naming the file
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(built["seq_tiny"], broken)
    with np.load(broken / "val.npz") as data:
        arrays = {k: data[k] for k in data.files}
    np.savez_compressed(broken / "val.npz", inputs=arrays["inputs"][:, :-1],
                        labels=arrays["labels"][:, :-1], inserts=arrays["inserts"])
    with pytest.raises(InputError, match="val.npz: shapes"):
        load_split(broken, "val")


def test_cli_end_to_end_on_the_tiny_profile(sample_path, tiny_params_file, tmp_path, repo_root,
                                            monkeypatch):
    from typer.testing import CliRunner

    from hrm.cli import app

    monkeypatch.chdir(repo_root)  # envs.cache_dir is relative to the project
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
    assert "windowed" in result.output and "dropped" in result.output
    data = load_split(tmp_path / "q", "val")
    assert data.meta.seq_len == 160 and len(data) > 0
    # the tiny profile holds tenacity out: none of its rows is in train
    train = load_split(tmp_path / "q", "train")
    assert all(r.repo != TENACITY for r in train.records)
    proc = subprocess.run(
        [sys.executable, "-m", "hrm", "sequences", "split", "--instances",
         str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x"), *common],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "missing.jsonl: instances file not found" in proc.stderr


def test_rebuilt_sequences_are_byte_identical_and_no_envs_means_hunks(tmp_path, sample_path,
                                                                      built):
    """Equal arrays must give equal files, or DVC re-runs training after every rebuild
    (numpy writes fixed zip timestamps; this guards that). Without environments every row falls
    back to the patch's hunks, counted."""
    import time

    digests = []
    for run in ("a", "b"):
        if digests:
            time.sleep(2.1)  # zip timestamps have 2 s resolution: make the clock visible
        out = tmp_path / run
        meta = build_sequences(sample_path, built["splits"], built["tok"], out,
                               SequencesConfig(), progress=False)
        digests.append([hashlib.sha256((out / f"{s}.npz").read_bytes()).hexdigest()
                        for s in ALL_SPLITS])
    assert digests[0] == digests[1]
    assert load_split(tmp_path / "a", "train").inputs.shape[0] > 0
    assert all(c.get("file", 0) == 0 for c in meta.context.values())
    assert sum(c.get("hunk", 0) for c in meta.context.values()) == sum(meta.counts.values())

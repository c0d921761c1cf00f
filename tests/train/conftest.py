"""Fixtures of the training tests: tiny-profile params, synthetic arrays, real-sample sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hrm.config import Params, load_params
from hrm.train.data import TrainArrays

# Special ids of hrm.tokenizer (pad, bos, eos, sep, hunk, mask, unk, swap = 0..7).
PAD, BOS, EOS, SEP, MASK = 0, 1, 2, 3, 5
# Marker tokens of the synthetic task and what a position holding one outputs.
COPY_LEFT, DELETE, DUPLICATE_RIGHT = 7, 8, 9
FIRST_PLAIN = 10


def synthetic_arrays(n: int = 16, seq: int = 24, vocab: int = 40, seed: int = 0, slots: int = 4,
                     max_insertions: int = 4) -> TrainArrays:
    """A repair task in the layout of hrm.sequences: [bos, 4 statement tokens, sep, anchor, code,
    pad], labels on the anchor and the code (-100 elsewhere), 1 to 3 marked code positions per
    row, each fixed by a function of its neighbours:

    - `COPY_LEFT` is replaced by its left neighbour's token;
    - `DELETE` is deleted (label `<|mask|>`);
    - `DUPLICATE_RIGHT` is kept and inserts its right neighbour's token after it
      (`inserts` row [position, right token, eos, -100]).

    Every other code position keeps its token (label = input). Code lengths and the number of
    marks (the row's `difficulty`) vary per row."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(FIRST_PLAIN, vocab, (n, seq)).astype(np.int32)
    labels = np.full((n, seq), -100, np.int64)
    inserts = np.full((n, max_insertions, slots), -100, np.int64)
    inserts[:, :, 0] = -1
    anchor = 6
    inputs[:, 0], inputs[:, anchor - 1] = BOS, SEP
    for i in range(n):
        end = seq - i % 3  # code [anchor + 1, end), padding after
        inputs[i, end:] = PAD
        labels[i, anchor:end] = inputs[i, anchor:end]
        # Marks on code positions with a plain token on both sides (never adjacent).
        candidates = np.arange(anchor + 2, end - 1, 2)
        marks = rng.choice(candidates, size=1 + i % 3, replace=False)
        slot = 0
        for k, pos in enumerate(sorted(marks)):
            kind = (i + k) % 3
            if kind == 0:
                inputs[i, pos] = COPY_LEFT
                labels[i, pos] = inputs[i, pos - 1]
            elif kind == 1:
                inputs[i, pos], labels[i, pos] = DELETE, MASK
            else:
                inputs[i, pos] = labels[i, pos] = DUPLICATE_RIGHT
                inserts[i, slot, :3] = (pos, inputs[i, pos + 1], EOS)
                slot += 1
    return TrainArrays(inputs, labels, inserts, vocab)


def subset(arrays: TrainArrays, rows) -> TrainArrays:
    """Rows of `arrays` (a val split, a smaller training set)."""
    return TrainArrays(arrays.inputs[rows], arrays.labels[rows], arrays.inserts[rows], arrays.vocab_size)


@pytest.fixture()
def tiny_params(tiny_params_file: Path) -> Params:
    return load_params(tiny_params_file)


@pytest.fixture()
def arrays() -> TrainArrays:
    return synthetic_arrays(n=32)


# A small mutation corpus (the rows `hrm corpus build` writes): one function and one procedural
# bug each, covering replaced, deleted and inserted tokens.
CORPUS_FUNCTIONS = (
    ("clamp", "op_flip_cmp",
     "def clamp(value, low, high):\n    if value < low:\n        return low\n"
     "    if value > high:\n        return high\n    return value\n",
     "def clamp(value, low, high):\n    if value > low:\n        return low\n"
     "    if value > high:\n        return high\n    return value\n"),
    ("total", "remove_assign",
     "def total(items):\n    result = 0\n    for item in items:\n        result += item\n"
     "    return result\n",
     "def total(items):\n    result = 0\n    for item in items:\n        pass\n    return result\n"),
    ("pick", "var_misuse",
     "def pick(mapping, key, default):\n    if key in mapping:\n        return mapping[key]\n"
     "    return default\n",
     "def pick(mapping, key, default):\n    if key in mapping:\n        return mapping[default]\n"
     "    return default\n"),
    ("both", "op_flip_bool",
     "def both(first, second):\n    ready = first and second\n    return ready\n",
     "def both(first, second):\n    ready = first or second\n    return ready\n"),
    ("span", "op_swap",
     "def span(start, stop):\n    width = stop - start\n    return width\n",
     "def span(start, stop):\n    width = start - stop\n    return width\n"),
    ("count_true", "op_change_const",
     "def count_true(flags):\n    count = 0\n    for flag in flags:\n        if flag:\n"
     "            count += 1\n    return count\n",
     "def count_true(flags):\n    count = 0\n    for flag in flags:\n        if flag:\n"
     "            count += 1\n            count += 1\n    return count\n"),
    ("last_index", "op_off_by_one",
     "def last_index(items):\n    size = len(items)\n    return size - 1\n",
     "def last_index(items):\n    size = len(items)\n    return size - 2\n"),
    ("scaled", "op_change",
     "def scaled(values, factor):\n    out = []\n    for value in values:\n"
     "        out.append(value * factor)\n    return out\n",
     "def scaled(values, factor):\n    out = []\n    for value in values:\n"
     "        out.append(value + factor)\n    return out\n"),
    ("first_even", "op_change_const",
     "def first_even(numbers):\n    for number in numbers:\n        if number % 2 == 0:\n"
     "            return number\n    return None\n",
     "def first_even(numbers):\n    for number in numbers:\n        if number % 2 == 1:\n"
     "            return number\n    return None\n"),
    ("join_words", "var_misuse",
     "def join_words(words, sep):\n    text = sep.join(words)\n    return text.strip()\n",
     "def join_words(words, sep):\n    text = words.join(sep)\n    return text.strip()\n"),
    ("is_inside", "op_flip_bool",
     "def is_inside(point, lo, hi):\n    inside = lo <= point and point <= hi\n    return inside\n",
     "def is_inside(point, lo, hi):\n    inside = lo <= point or point <= hi\n    return inside\n"),
    ("pairs", "remove_assign",
     "def pairs(items):\n    result = []\n    previous = None\n    for item in items:\n"
     "        result.append((previous, item))\n        previous = item\n    return result\n",
     "def pairs(items):\n    result = []\n    previous = None\n    for item in items:\n"
     "        result.append((previous, item))\n    return result\n"),
)


def write_corpus(path: Path) -> Path:
    from hrm.corpus.rows import CorpusRow, write_rows

    rows = [CorpusRow(id=f"toolbox-1.0:toolbox/util.py:{name}:{kind}:0", package="toolbox==1.0",
                      file="toolbox/util.py", function=name, kind=kind, start_line=1 + 10 * i,
                      buggy=buggy, fixed=fixed,
                      problem_statement=f"`{name}` in toolbox.util returns wrong results.")
            for i, (name, kind, fixed, buggy) in enumerate(CORPUS_FUNCTIONS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_rows(path, rows)
    return path


@pytest.fixture(scope="session")
def real_sequences(sample_path: Path, repo_root: Path, tmp_path_factory) -> Path:
    """The real sample, split, tokenised and packed at the tiny profile's sizes, with whole
    functions from the cached tenacity environment, plus a corpus split (`CORPUS_FUNCTIONS`) for
    the foundation phase (`data: corpus`). Tenacity is not held out here (the sample is nearly
    all tenacity), so the train split holds real rows: <out>/{splits,tokenizer,sequences}."""
    import yaml

    from hrm.config import parse_params
    from hrm.sequences import build_sequences, load_meta
    from hrm.splits import build_splits
    from hrm.tokenizer import build_tokenizer

    params = parse_params(yaml.safe_load((repo_root / "params.yaml").read_text()), "tiny")
    out = tmp_path_factory.mktemp("real")
    corpus = write_corpus(out / "corpus" / "corpus.jsonl")
    envs = params.envs.model_copy(update={"cache_dir": str(repo_root / ".cache" / "hrm-envs")})
    build_splits(sample_path, out / "splits", params.sequences.model_copy(update={"held_out_repos": []}))
    splits = out / "splits" / "splits.json"
    build_tokenizer(sample_path, splits, out / "tokenizer", params.tokenizer, corpus_path=corpus)
    build_sequences(sample_path, splits, out / "tokenizer", out / "sequences", params.sequences,
                    corpus_path=corpus, envs=envs, progress=False)
    meta = load_meta(out / "sequences")
    assert meta.counts["train"] >= 8 and meta.counts["val"] >= 2, meta.counts
    assert meta.counts["corpus"] == len(CORPUS_FUNCTIONS), meta.dropped
    assert meta.context["train"].get("file", 0) >= 8, meta.context  # whole functions from the env
    return out

"""The n-gram re-ranking of the HRM's rewrites and the abstention (`hrm.eval.fusion`)."""

from __future__ import annotations

import math
from pathlib import Path

from hrm.eval.fusion import cached_model, fuse, naturalness_scorer, repository_sources
from hrm.eval.proposals import RowProposal
from hrm.naturalness import NgramModel, python_tokens


class _ByToken:
    """A stand-in unigram model: a fixed log-probability per token (0 for the others)."""

    order = 1

    def __init__(self, scores: dict[str, float]):
        self.scores = scores

    def prob(self, context, token):
        return math.exp(self.scores.get(token, 0.0))


TEXTS = {(): "a = b", ((0, (1,)),): "a = c", ((0, (2,)),): "a = d", ((0, (3,)),): "a = e"}


def _texts_of(outputs):
    return [TEXTS[tuple(sorted(outputs.items()))]]


def _proposal(gains):
    # rewrites best first by the HRM's gain, as `propose` returns them
    rewrites = sorted(((g, "name", {0: (k,)}) for k, g in gains.items()), key=lambda r: -r[0])
    return RowProposal(options={}, change_prob={}, q_halt=0.0, rewrites=rewrites)


def test_rewrites_reranked_by_gain_plus_weighted_naturalness():
    prop = _proposal({1: 3.0, 2: 2.0, 3: 0.5})  # HRM: c, d, e
    lm = _ByToken({"b": -10.0, "c": -14.0, "d": -9.0, "e": -7.0})  # naturalness -4, +1, +3
    fused = fuse(prop, naturalness_scorer(_texts_of, lm), weight=1.0, abstain=True)
    assert [r[2] for r in fused.rewrites] == [{0: (3,)}, {0: (2,)}, {0: (1,)}]  # 3.5, 3.0, -1.0
    assert fused.naturalness == [3.0, 1.0, -4.0]
    assert not fused.abstain and fused.prediction() == {0: (3,)}
    # weight 0: the HRM's own order; hrm_weight 0: the n-gram model's
    assert [r[2] for r in fuse(prop, naturalness_scorer(_texts_of, lm), weight=0.0, abstain=True).rewrites][0] == {0: (1,)}
    alone = fuse(prop, naturalness_scorer(_texts_of, lm), weight=1.0, abstain=True, hrm_weight=0.0)
    assert alone.naturalness == [3.0, 1.0, -4.0]


def test_abstains_when_the_best_rewrite_reads_no_better_than_the_buggy_code():
    prop = _proposal({1: 5.0, 2: 1.0})
    lm = _ByToken({"b": -10.0, "c": -10.5, "d": -12.0})
    fused = fuse(prop, naturalness_scorer(_texts_of, lm), weight=1.0, abstain=True)
    assert fused.abstain and fused.naturalness[0] == -0.5
    assert fused.prediction() == {}  # the buggy code is kept ...
    assert fused.greedy() == {0: (1,)}  # ... and the search still starts from the best rewrite
    assert not fuse(prop, naturalness_scorer(_texts_of, lm), weight=1.0, abstain=False).abstain
    # a tie with the buggy code is not "more natural" either
    tie = _ByToken({"b": -10.0, "c": -10.0, "d": -12.0})
    assert fuse(prop, naturalness_scorer(_texts_of, tie), weight=1.0, abstain=True).abstain


def test_each_rewrite_is_scored_once_however_many_systems_rank_it():
    calls = []

    def texts_of(outputs):
        calls.append(tuple(sorted(outputs.items())))
        return _texts_of(outputs)

    natural = naturalness_scorer(texts_of, _ByToken({"b": -10.0, "c": -14.0, "d": -9.0, "e": -7.0}))
    prop = _proposal({1: 3.0, 2: 2.0, 3: 0.5})
    first = fuse(prop, natural, weight=1.0, abstain=True)
    alone = fuse(prop, natural, weight=1.0, abstain=True, hrm_weight=0.0)
    assert first.naturalness == alone.naturalness == [3.0, 1.0, -4.0]
    assert len(calls) == 4 == len(set(calls))  # the buggy code and three rewrites, once each


def test_an_empty_cache_adds_no_cache_model():
    base = NgramModel(2).fit([python_tokens("x = 1\n")])
    assert cached_model(base, None, 0.3).cache is None
    assert cached_model(base, [[], []], 0.3).cache is None  # an empty model would say p = 1
    with_cache = cached_model(base, [python_tokens("y = 2\n")], 0.3)
    assert with_cache.cache is not None and with_cache.cache_weight == 0.3


def test_a_row_without_rewrites_is_left_alone():
    prop = RowProposal(options={}, change_prob={}, q_halt=0.0)
    assert fuse(prop, naturalness_scorer(_texts_of, _ByToken({})), weight=1.0, abstain=True) is prop


def _tree(tmp_path: Path) -> Path:
    files = {
        "pkg/core.py": "def keep_me(x):\n    return x + 1\n\n\ndef judged(y):\n    return y * 7919\n",
        "pkg/other.py": "def other(z):\n    return z\n",
        "pkg/patched_elsewhere.py": "def secret_fix(q):\n    return q - 31337\n",
        "tests/test_core.py": "def test_it():\n    assert 4242\n",
        "pkg/test_inline.py": "def test_too():\n    assert 4343\n",
        "setup.py": "NAME = 'pkg'\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_cache_never_holds_the_code_being_judged(tmp_path):
    tree = _tree(tmp_path)
    buggy = {"pkg/core.py": "def keep_me(x):\n    return x + 1\n\n\ndef judged(y):\n    return y * 7918\n"}
    seqs = repository_sources(tree, buggy, [("pkg/core.py", 5, "def judged(y):\n    return y * 7918\n")],
                              patched={"pkg/core.py", "pkg/patched_elsewhere.py"}, max_tokens=10_000)
    tokens = [t for s in seqs for t in s]
    assert "keep_me" in tokens and "other" in tokens and "NAME" in tokens
    assert "judged" not in tokens and "7918" not in tokens and "7919" not in tokens  # own region blanked
    assert "31337" not in tokens  # a file the patch touches, buggy state unknown: left out
    assert "4242" not in tokens and "4343" not in tokens  # tests are not the repository's code
    assert seqs[0][:2] == ["def", "keep_me"]  # the row's own file first


def test_the_cache_stops_at_its_token_budget(tmp_path):
    tree = _tree(tmp_path)
    seqs = repository_sources(tree, {}, [("pkg/other.py", 1, "def other(z):\n    return z\n")],
                              patched=set(), max_tokens=9)
    assert sum(map(len, seqs)) == 9
    assert seqs[0] == []  # pkg/other.py blanked whole, then pkg/core.py (same directory)
    assert seqs[1][:2] == ["def", "keep_me"]

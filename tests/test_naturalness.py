"""The n-gram naturalness model (`hrm.naturalness`): lexing, Kneser-Ney probabilities, mixing."""

from __future__ import annotations

import math

import pytest

from hrm.errors import InputError
from hrm.naturalness import (
    TRAINING_CODE_FILE,
    Interpolated,
    NgramModel,
    base_model,
    logprob_delta,
    python_tokens,
    write_training_code,
)

CODE = '''\
def area(width, height):
    # a comment is not a token
    return width * height  # nor is this one


def label(name):
    return "hello " + name
'''


def test_python_tokens_layout_strings_and_comments():
    toks = python_tokens(CODE)
    assert toks[:8] == ["def", "area", "(", "width", ",", "height", ")", ":"]
    assert "<indent>" in toks and "<dedent>" in toks and toks.count("<nl>") == 4
    assert "<str>" in toks and "hello" not in " ".join(toks)
    assert not any("comment" in t for t in toks)


def test_python_tokens_dedents_a_method_and_keeps_a_cut_prefix():
    method = "    def f(self):\n        return self.x\n"
    assert python_tokens(method)[:3] == ["def", "f", "("]
    cut = "def f(a,\n"  # a window that ends inside the brackets
    assert python_tokens(cut) == ["def", "f", "(", "a", ","]


def _model(order=3):
    seqs = [python_tokens(CODE)] * 3 + [python_tokens("def g(x):\n    return x + 1\n")]
    return NgramModel(order).fit(seqs), seqs


@pytest.mark.parametrize("context", [[], ["return", "width"], ["never", "seen"], ["def", "area"]])
def test_probabilities_sum_to_one_over_the_vocabulary(context):
    lm, seqs = _model()
    vocab = {t for s in seqs for t in s} | {NgramModel.BOS, NgramModel.EOS}
    total = sum(lm.prob(context, w) for w in vocab) + lm.prob(context, "<an unknown token>")
    assert total == pytest.approx(1.0, abs=1e-9)
    assert lm.vocab_size == len(vocab) + 1


def test_seen_code_is_more_probable_than_its_mutation():
    lm, _ = _model()
    right = python_tokens("def area(width, height):\n    return width * height\n")
    wrong = python_tokens("def area(width, height):\n    return width - height\n")
    assert lm.logprob(right) > lm.logprob(wrong) + 1.0
    assert math.isfinite(lm.logprob(["no", "such", "tokens"]))


def test_interpolation_mixes_token_by_token():
    base, _ = _model()
    cache = NgramModel(3).fit([python_tokens("def h(y):\n    return y - 1\n")])
    mixed = Interpolated(base, cache, 0.25)
    ctx, w = ["return", "y"], "-"
    assert mixed.prob(ctx, w) == pytest.approx(0.75 * base.prob(ctx, w) + 0.25 * cache.prob(ctx, w))
    assert Interpolated(base, None, 0.9).prob(ctx, w) == base.prob(ctx, w)
    with pytest.raises(ValueError, match="order 2 differs"):
        Interpolated(base, NgramModel(2), 0.5)


@pytest.mark.parametrize("kwargs, match", [({"order": 0}, "order"), ({"discount": 1.0}, "discount")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NgramModel(**kwargs)


def test_base_model_fits_the_tokenizer_directorys_distinct_training_code(tmp_path):
    with pytest.raises(InputError, match="rebuild it") as err:
        base_model(tmp_path, 3)
    assert TRAINING_CODE_FILE in str(err.value)
    code = "def f(a):\n    return a + 1\n"
    assert write_training_code(tmp_path, [code, code, "  ", "def g(b):\n    return b\n"]) == 2
    lm = base_model(tmp_path, 3)
    assert lm.counts[2][("return", "a")]["+"] == 1  # the duplicate written once
    assert lm.logprob(python_tokens(code)) > lm.logprob(python_tokens(code.replace("+", "-")))
    (tmp_path / TRAINING_CODE_FILE).write_text('"ok"\n{"not": "a string"}\n')
    with pytest.raises(InputError, match="expected a JSON string") as err:
        base_model(tmp_path, 3)
    assert f"{TRAINING_CODE_FILE}:2: expected a JSON string, got dict" in str(err.value)
    (tmp_path / TRAINING_CODE_FILE).write_text("")
    with pytest.raises(InputError, match="no training code"):
        base_model(tmp_path, 3)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_logprob_delta_equals_the_whole_difference(order):
    """The local computation the decoding uses is exactly the difference of whole-sequence
    log-probabilities, for edits at the start, middle and end, insertions and deletions."""
    import random

    base, _ = _model(order)
    mixed = Interpolated(base, NgramModel(order).fit([python_tokens("def h(y):\n    return y - 1\n")]), 0.3)
    old = python_tokens(CODE)
    rng = random.Random(0)
    vocab = sorted(set(old)) + ["zzz"]
    cases = [old[:], ["x"] + old[1:], old[:-1] + ["x"], old[:5] + old[6:], old[:7] + ["+", "y"] + old[7:], [],
             old + old[:3]]
    for _ in range(30):
        new = old[:]
        i = rng.randrange(len(new))
        new[i:i + rng.randrange(3)] = [rng.choice(vocab) for _ in range(rng.randrange(3))]
        cases.append(new)
    for lm in (base, mixed):
        for new in cases:
            assert logprob_delta(lm, old, new) == pytest.approx(lm.logprob(new) - lm.logprob(old), abs=1e-9)

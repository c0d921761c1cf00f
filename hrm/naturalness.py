"""How natural a piece of Python reads: an n-gram language model over its lexical tokens.

Code is repetitive, and code with a bug is less so than the same code fixed ("On the
'naturalness' of buggy code", Ray et al., ICSE 2016): `x - 1` where the repository always writes
`x + 1`, a name used where the same file reads another. The decoding uses this beside the HRM
(`hrm.eval.fusion`): a rewrite of the buggy function is worth more when the fixed text is more
probable than the buggy one. The HRM alone cannot tell a buggy function from the same function
fixed (BENCHMARKS.md "Token accuracy against copying"); this model can, partly, because it reads
the rest of the user's repository.

Two models are interpolated per function (`Interpolated`): a *base* model fitted on the clean
functions the HRM trained on (never a held-out function), and a *cache*
model fitted on the rest of the function's own repository (Tu et al., "On the localness of
software", FSE 2014), its own code removed so that it cannot vote for itself.

The smoothing is interpolated Kneser-Ney with one absolute discount (Chen & Goodman 1998):

    p(w | ctx) = max(c(ctx w) - d, 0) / c(ctx) + d * N1+(ctx .) / c(ctx) * p(w | ctx[1:])

with continuation counts (how many distinct tokens precede `ctx[1:] w`) in place of counts at
every order but the highest, and the uniform distribution over the vocabulary (plus one
unknown) at the bottom: every token, seen or not, has a positive probability.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
import tokenize
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from hrm.errors import InputError

TRAINING_CODE_FILE = "training_code.jsonl"
"""In a tokenizer directory: the clean code the base model is fitted on, one JSON string a line
(written by `hrm tokenizer build`, so every step and the registered model that carry the
tokenizer decode with the same n-gram model)."""

STRING = "<str>"
"""All string literals lex to this one token: their text is rarely what a bug changes."""


def python_tokens(code: str) -> list[str]:
    """The lexical tokens of Python code: names, operators, numbers, `<str>` for a string,
    `<indent>` / `<dedent>` / `<nl>` for the layout; comments and blank lines dropped. The code
    is dedented first (a method cut from its class). Code that stops lexing (a cut window, an
    unclosed bracket) gives the tokens read up to there."""
    out: list[str] = []
    names = {tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>", tokenize.NEWLINE: "<nl>",
             tokenize.STRING: STRING}
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(textwrap.dedent(code)).readline):
            if tok.type not in skip:
                out.append(names.get(tok.type, tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


class NgramModel:
    """Interpolated Kneser-Ney n-gram model over token sequences (see the module docstring)."""

    BOS, EOS = "<s>", "</s>"

    def __init__(self, order: int = 4, discount: float = 0.75):
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.order, self.discount = order, discount
        # counts[k][context of length k][token]: raw counts at the highest order, continuation
        # counts below it.
        self.counts: list[dict[tuple[str, ...], Counter]] = [defaultdict(Counter) for _ in range(order)]
        self.totals: list[dict[tuple[str, ...], int]] = [{} for _ in range(order)]
        self.vocab_size = 1

    def fit(self, sequences: Iterable[Sequence[str]]) -> NgramModel:
        n = self.order
        preceding: list[dict[tuple[tuple[str, ...], str], set[str]]] = [defaultdict(set) for _ in range(n - 1)]
        vocab: set[str] = set()
        for seq in sequences:
            padded = [self.BOS] * (n - 1) + list(seq) + [self.EOS]
            vocab.update(padded)
            for i in range(n - 1, len(padded)):
                token = padded[i]
                self.counts[n - 1][tuple(padded[i - n + 1:i])][token] += 1
                for k in range(n - 1):
                    preceding[k][(tuple(padded[i - k:i]), token)].add(padded[i - k - 1])
        for k in range(n - 1):
            for (context, token), before in preceding[k].items():
                self.counts[k][context][token] = len(before)
        self.totals = [{c: sum(cnt.values()) for c, cnt in level.items()} for level in self.counts]
        self.vocab_size = len(vocab) + 1  # + one unknown token
        return self

    def prob(self, context: Sequence[str], token: str) -> float:
        """p(token | the last order - 1 tokens of context)."""
        p = 1.0 / self.vocab_size
        for k in range(self.order):
            ctx = tuple(context[len(context) - k:]) if k else ()
            counts = self.counts[k].get(ctx)
            if not counts:
                continue
            total = self.totals[k][ctx]
            p = (max(counts.get(token, 0) - self.discount, 0.0) / total
                 + self.discount * len(counts) / total * p)
        return p

    def logprob(self, tokens: Sequence[str]) -> float:
        """Natural-log probability of a whole sequence, its end included."""
        return _logprob(tokens, self.order, self.prob)


class Interpolated:
    """(1 - cache_weight) x base + cache_weight x cache, token by token (same order)."""

    def __init__(self, base: NgramModel, cache: NgramModel | None, cache_weight: float):
        if cache is not None and cache.order != base.order:
            raise ValueError(f"cache order {cache.order} differs from the base's {base.order}")
        self.base, self.cache = base, cache
        self.cache_weight = cache_weight if cache is not None else 0.0
        self.order = base.order

    def prob(self, context: Sequence[str], token: str) -> float:
        p = self.base.prob(context, token)
        if self.cache is None:
            return p
        return (1 - self.cache_weight) * p + self.cache_weight * self.cache.prob(context, token)

    def logprob(self, tokens: Sequence[str]) -> float:
        return _logprob(tokens, self.order, self.prob)


def logprob_delta(model, old: Sequence[str], new: Sequence[str]) -> float:
    """model.logprob(new) - model.logprob(old), computed over the predictions that differ only:
    the tokens between the common prefix and suffix, and the next order - 1 whose context
    reaches into them (the rest are the same tokens after the same context on both sides)."""
    n = model.order
    prefix = 0
    while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(old), len(new)) - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1

    def part(tokens: Sequence[str]) -> float:
        padded = [NgramModel.BOS] * (n - 1) + list(tokens) + [NgramModel.EOS]
        stop = min(len(tokens) - suffix + n - 1, len(tokens) + 1)  # token index len = the end
        return sum(math.log(model.prob(padded[j:j + n - 1], padded[j + n - 1])) for j in range(prefix, stop))

    return part(new) - part(old)


def _logprob(tokens: Sequence[str], order: int, prob) -> float:
    padded = [NgramModel.BOS] * (order - 1) + list(tokens) + [NgramModel.EOS]
    return sum(math.log(prob(padded[i - order + 1:i], padded[i])) for i in range(order - 1, len(padded)))


def write_training_code(directory: str | Path, texts: Iterable[str]) -> int:
    """Write the distinct `texts` (in first-seen order) to `directory`/TRAINING_CODE_FILE."""
    distinct = list(dict.fromkeys(t for t in texts if t.strip()))
    with (Path(directory) / TRAINING_CODE_FILE).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in distinct)
    return len(distinct)


def base_model(tokenizer_dir: str | Path, order: int) -> NgramModel:
    """The base n-gram model: fitted on the training code a tokenizer directory carries."""
    path = Path(tokenizer_dir) / TRAINING_CODE_FILE
    if not path.is_file():
        raise InputError("no training code for the naturalness model (a tokenizer built before it "
                         "was added: rebuild it with `hrm tokenizer build`, or set "
                         "eval.naturalness.enabled: false)", path=str(path))
    texts = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                text = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"not a JSON string: {err.msg}", path=str(path), line=lineno) from None
            if not isinstance(text, str):
                raise InputError(f"expected a JSON string, got {type(text).__name__}", path=str(path),
                                 line=lineno)
            texts.append(text)
    if not texts:
        raise InputError("no training code to fit the naturalness model on", path=str(path))
    return NgramModel(order).fit(python_tokens(t) for t in texts)

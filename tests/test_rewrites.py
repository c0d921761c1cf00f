"""`hrm.rewrites`: every small rewrite of one expression or statement pair, as text.

Each kind is checked on a function whose bug it undoes, and the whole space against the
generator's own mutations of real code (the standard library's `textwrap` and `colorsys`): the
original function must be among the rewrites of its mutated version.
"""

from __future__ import annotations

import ast
import collections
import inspect
import random
import textwrap

import pytest

from hrm.rewrites import iter_rewrites, rewrites
from hrm.synth.mutations import function_mutations


def _texts(unit: str) -> dict[str, str]:
    return {r.text: r.kind for r in rewrites(unit)}


CASES = [
    ("operator", "def f(a, b):\n    return a - b\n", "def f(a, b):\n    return a + b\n"),
    ("comparison", "def f(a, b):\n    if a >= b:\n        return a\n",
     "def f(a, b):\n    if a < b:\n        return a\n"),
    ("comparison", "def f(x, ys):\n    return x not in ys\n", "def f(x, ys):\n    return x in ys\n"),
    ("comparison", "def f(x):\n    return x is None\n", "def f(x):\n    return x is not None\n"),
    ("boolean", "def f(a, b, c):\n    return a or b or c\n", "def f(a, b, c):\n    return a and b and c\n"),
    ("constant", "def f(x):\n    return x * 3\n", "def f(x):\n    return x * 2\n"),
    ("constant", "def f():\n    return True\n", "def f():\n    return False\n"),
    ("off_by_one", "def f(n):\n    return list(range(n - 1))\n", "def f(n):\n    return list(range(n))\n"),
    ("off_by_one", "def f(xs, n):\n    return xs[:n]\n", "def f(xs, n):\n    return xs[:n - 1]\n"),
    ("operands", "def f(a, b):\n    return b - a\n", "def f(a, b):\n    return a - b\n"),
    ("operands", "def f(a, b, c):\n    return (b + c) // a\n", "def f(a, b, c):\n    return a // (b + c)\n"),
    ("arguments", "def f(a, b):\n    return g(b, a)\n", "def f(a, b):\n    return g(a, b)\n"),
    ("name", "def f(total, count):\n    n = count\n    return total / total\n",
     "def f(total, count):\n    n = count\n    return total / n\n"),
    ("attribute", "def f(self):\n    print(self.start)\n    return self.stop - self.stop\n",
     "def f(self):\n    print(self.start)\n    return self.start - self.stop\n"),
    ("statements", "def f(d):\n    d.clear()\n    # note\n    d.update(x=1)\n",
     "def f(d):\n    d.update(x=1)\n    # note\n    d.clear()\n"),
    ("invert_if", "def f(a):\n    if not a:\n        return 1\n    else:\n        return 2\n",
     "def f(a):\n    if a:\n        return 2\n    else:\n        return 1\n"),
]


@pytest.mark.parametrize("kind, buggy, fixed", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_kind_undoes_its_bug(kind, buggy, fixed):
    got = _texts(buggy)
    assert got.get(fixed) == kind, sorted(got)


def test_rewrites_are_distinct_parse_and_change_the_code():
    unit = "def f(a, b, xs):\n    if a < b and b in xs:\n        return xs[a:b + 1]\n    return g(a, b) - 1\n"
    found = rewrites(unit)
    texts = [r.text for r in found]
    assert len(texts) == len(set(texts)) > 20
    assert unit not in texts
    for text in texts:
        ast.parse(text)
    # a fixed order: the same list every time
    assert [r.text for r in rewrites(unit)] == texts


def test_iter_rewrites_is_the_same_set_lazily_in_a_seeded_order():
    unit = "def f(a, b, xs):\n    if a < b and b in xs:\n        return xs[a:b + 1]\n    return g(a, b) - 1\n"
    every = [r.text for r in rewrites(unit)]
    assert len(every) > 20 and [r.text for r in iter_rewrites(unit)] == every
    shuffled = [r.text for r in iter_rewrites(unit, rng=random.Random(1))]
    assert sorted(shuffled) == sorted(every) and shuffled != every
    assert shuffled == [r.text for r in iter_rewrites(unit, rng=random.Random(1))]
    lazy = iter_rewrites(unit, rng=random.Random(2))
    assert next(lazy).text in every  # the first without checking the rest


def test_an_indented_method_keeps_its_layout_and_multiline_strings():
    unit = ('    def m(self, a):\n        """Doc\nat column 0."""\n'
            "        return a - self.x\n")
    got = _texts(unit)
    fixed = unit.replace("a - self.x", "self.x - a")
    assert got[fixed] == "operands"
    assert all(t.startswith("    def m(self, a):\n") and "\nat column 0." in t for t in got)


def test_columns_count_characters_not_utf8_bytes():
    """AST columns are UTF-8 byte offsets: a non-ASCII string before the expression on the
    same line must not shift the edit."""
    unit = 'def f(a, b):\n    return ("é€" , a - b)\n'
    assert 'def f(a, b):\n    return ("é€" , b - a)\n' in _texts(unit)
    assert 'def f(a, b):\n    return ("é€" , a + b)\n' in _texts(unit)


def test_a_unit_cut_short_is_rewritten_in_its_parsable_prefix():
    """The sequence budget cuts long functions to their first lines, mid-block: the rewrites
    edit the lines that parse and keep the rest as it is."""
    unit = ("def f(a, b):\n    c = a - b\n    if c:\n        return c\n    else:\n")
    got = _texts(unit)
    assert "def f(a, b):\n    c = b - a\n    if c:\n        return c\n    else:\n" in got
    assert all(t.endswith("    else:\n") for t in got)
    assert rewrites("def f(:\n    return 1\n") == []
    assert rewrites("") == []


def _tree(unit: str) -> str:
    return ast.dump(ast.parse(textwrap.dedent(unit)))


def _short_functions(module) -> list[str]:
    src = inspect.getsource(module)
    lines = src.splitlines(keepends=True)
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno < 25:
            start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
            out.append("".join(lines[start:node.end_lineno]))
    return out


# Every inferable kind of the generator whose inverse is a rewrite. Compared as ASTs: the
# generator re-renders the changed expression with `ast.unparse` (`i+1` -> `i - 1`, added
# brackets), which one text edit of the bug cannot give back character for character (on the val
# split of the cpu recipe 41 of 45 inferable fixes are exact texts among the rewrites).
# wrong_attr is left out: the attribute it replaced is mostly read nowhere else in the function,
# so no rewrite can name it (the kind's own case is above).
KINDS = ("op_flip_cmp", "op_flip_bool", "op_change", "op_change_const", "op_off_by_one", "op_swap",
         "swap_args", "var_misuse", "ctrl_shuffle", "ctrl_invert_if")


def test_the_generators_mutations_of_real_code_are_undone():
    import colorsys

    found: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for unit in _short_functions(textwrap) + _short_functions(colorsys):
        for kind, _i, mutated in function_mutations(unit, KINDS):
            if found[kind][1] >= 25:
                continue
            found[kind][0] += _tree(unit) in {_tree(r.text) for r in rewrites(mutated)}
            found[kind][1] += 1
    assert {k for k, (_hit, n) in found.items() if n >= 5} >= {
        "op_flip_cmp", "op_change", "op_change_const", "op_swap", "var_misuse", "ctrl_shuffle",
        "ctrl_invert_if", "swap_args"}, dict(found)
    assert all(hit == n for hit, n in found.values()), dict(found)

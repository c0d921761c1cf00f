"""The corpus's newer mutation kinds (`hrm.synth.mutations`): each makes exactly the expected
small edit, on a module-level function and on an indented method (`function_mutations`)."""

from __future__ import annotations

import ast
import difflib
import textwrap

import pytest

from hrm.synth.mutations import KINDS, NON_INFERABLE, function_mutations


def _code(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _method(text: str) -> str:
    return textwrap.indent(_code(text), "    ")


def _mutants(text: str, kind: str) -> list[str]:
    out = function_mutations(text, (kind,))
    assert [k for k, _, _ in out] == [kind] * len(out)
    assert [i for _, i, _ in out] == sorted(i for _, i, _ in out)
    return [m for _, _, m in out]


def _edits(before: str, after: str) -> list[tuple[list[str], list[str]]]:
    """The changed lines, as (removed, added) per block."""
    a, b = before.splitlines(), after.splitlines()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


CASES = {
    "op_swap": (
        """
        def f(a, b, c):
            x = (a + 1) - b
            y = a + b
            if c <= x:
                return x ** c
            return a == b
        """,
        [
            (["    x = (a + 1) - b"], ["    x = b - (a + 1)"]),
            (["    if c <= x:"], ["    if x <= c:"]),
            (["        return x ** c"], ["        return c ** x"]),
        ],  # `+` and `==` are symmetric: never swapped
    ),
    "var_misuse": (
        """
        def f(a):
            n = len(a)
            return n
        """,
        [
            (["    n = len(a)"], ["    n = len(n)"]),
            (["    return n"], ["    return a"]),
        ],  # `len` is no local: never a candidate, never a replacement
    ),
    "wrong_attr": (
        """
        def f(self, other):
            width = self.stop - self.start
            return other.size + width
        """,
        [
            (["    width = self.stop - self.start"], ["    width = self.start - self.start"]),
            (["    width = self.stop - self.start"], ["    width = self.stop - self.stop"]),
        ],  # `other` has one attribute read: nothing to confuse it with
    ),
    "swap_args": (
        """
        def f(a, b):
            g(a, b, key=a)
            h(*a, b)
            k(a, a)
            return m(a,
                     b)
        """,
        [(["    g(a, b, key=a)"], ["    g(b, a, key=a)"])],
    ),
    "wrong_return": (
        """
        def f(a):
            if a:
                return True
            if a is None:
                return
            if a == 2:
                return None
            return a + 1
        """,
        [
            (["        return True"], ["        return False"]),
            (["    return a + 1"], ["    return None"]),
        ],
    ),
    "remove_loop": (
        """
        def f(items):
            total = 0
            for item in items:
                total += item
            while total > 10:
                total -= 10
            else:
                total = 0
            return total
        """,
        [(["    for item in items:", "        total += item"], [])],  # a loop with else stays
    ),
    "remove_wrapper": (
        """
        def f(path):
            with open(path) as fh:
                data = fh.read()
            try:
                value = int(data)
            except ValueError:
                value = 0
            try:
                return value
            finally:
                pass
        """,
        [
            (["    with open(path) as fh:", "        data = fh.read()"],
             ["    data = fh.read()"]),
            (["    try:", "        value = int(data)", "    except ValueError:",
              "        value = 0"], ["    value = int(data)"]),
        ],  # a try with finally stays
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("as_method", [False, True])
def test_each_kind_makes_exactly_the_expected_edit(kind, as_method):
    source, expected = CASES[kind]
    text = _method(source) if as_method else _code(source)
    mutants = _mutants(text, kind)
    pad = "    " if as_method else ""
    want = [[([pad + x for x in rem], [pad + x for x in add])] for rem, add in expected]
    assert [_edits(text, m) for m in mutants] == want
    for mutated in mutants:
        # layout kept: the indentation of the first line, and it parses as one function
        assert mutated[: len(pad) + 4] == pad + "def "
        wrapped = "class _W:\n" + mutated if as_method else mutated
        (node,) = ast.parse(wrapped).body[0].body if as_method else ast.parse(wrapped).body
        assert isinstance(node, ast.FunctionDef)


def test_an_only_statement_removed_leaves_pass():
    text = _method("""
        def drain(self):
            for item in self.items:
                self.seen.append(item)
        """)
    (mutated,) = _mutants(text, "remove_loop")
    assert mutated == "    def drain(self):\n        pass\n"


def test_indented_methods_keep_strings_and_decorators():
    text = _method('''
        @property
        def span(self):
            """Multi-line
        docstring kept as is."""
            return self.stop - self.start
        ''')
    mutants = _mutants(text, "op_swap")
    assert mutants == [text.replace("self.stop - self.start", "self.start - self.stop")]
    everything = function_mutations(text)
    assert len(everything) > 3
    for _, _, m in everything:  # only the return line changes; strings are never dedented
        assert _edits(text, m)[0][0] == ["        return self.stop - self.start"]
        assert len(_edits(text, m)) == 1 and m.startswith("    @property\n")


def test_kind_lists_are_consistent():
    assert set(CASES) <= set(KINDS) and NON_INFERABLE <= set(KINDS)
    assert {"remove_loop", "remove_wrapper"} <= NON_INFERABLE
    with pytest.raises(ValueError, match="unknown mutation kind"):
        function_mutations("def f():\n    return 1\n", ("no_such_kind",))
    assert function_mutations("x = 1\n") == [] and function_mutations("def f(:\n") == []

"""Identifier renaming (hrm.augment): consistency, exclusions, layout, diff shape, real code."""

from __future__ import annotations

import ast
import builtins
import importlib
import io
import json
import keyword
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

from hrm.augment import DEFAULT_POOL, rename_identifiers
from hrm.regions import line_opcodes, split_lines

# ---------------------------------------------------------------- helpers


def _parse(text: str) -> ast.Module:
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    return ast.parse("if 1:\n" + text if first[:1] in (" ", "\t") else text)


def _tokens(text: str) -> list[tuple[int, str]]:
    return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(text).readline)]


def _check(regions: list[tuple[str, str]], out: list[tuple[str, str]]) -> dict[str, str]:
    """Asserts `out` is `regions` with one injective mapping of fresh names applied at name
    tokens only (strings, comments, layout byte-identical), every text parses, and each pair keeps
    its line-diff shape. Returns the mapping (old -> new)."""
    assert len(out) == len(regions)
    originals = [t for pair in regions for t in pair]
    renamed = [t for pair in out for t in pair]
    words = {w for t in originals for w in re.findall(r"\w+", t)}
    mapping: dict[str, str] = {}
    for orig, new in zip(originals, renamed, strict=True):
        old_toks, new_toks = _tokens(orig), _tokens(new)
        assert len(old_toks) == len(new_toks)
        for (kind, old), (kind2, got) in zip(old_toks, new_toks, strict=True):
            assert kind == kind2
            if kind == tokenize.NAME and old != got:
                assert mapping.setdefault(old, got) == got, f"{old} renamed two ways"
            else:
                assert old == got, "a non-name token changed"
        _parse(new)
    assert len(set(mapping.values())) == len(mapping), "two names renamed to one"
    assert not set(mapping.values()) & words, "a new name already occurred"
    inverse = {new: old for old, new in mapping.items()}
    for orig, new in zip(originals, renamed, strict=True):
        assert re.sub(r"\w+", lambda m: inverse.get(m.group(), m.group()), new) == orig
    for (b, f), (rb, rf) in zip(regions, out, strict=True):
        assert (line_opcodes(split_lines(f), split_lines(b))
                == line_opcodes(split_lines(rf), split_lines(rb)))
    return mapping


def _all(regions: list[tuple[str, str]], seed: int = 0) -> dict[str, str]:
    out = rename_identifiers(regions, seed, rate=1.0)
    assert out is not None
    return _check(regions, out)


def _code(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _method(text: str) -> str:
    return textwrap.indent(_code(text), "    ")


# ---------------------------------------------------------------- consistency

FIXED_METHOD = _method('''
    def scale(self, values, factor=2, *extra, **options):
        """Scale values by factor."""
        total = 0
        for v in values:
            total += v * factor
        self.last_total = total
        return [t + self.offset for t in (total, *extra)], options
''')
BUGGY_METHOD = FIXED_METHOD.replace("total += v * factor", "total += v + factor")


def test_renames_params_locals_and_self_attributes_in_both_versions():
    mapping = _all([(BUGGY_METHOD, FIXED_METHOD)])
    assert set(mapping) == {"values", "factor", "extra", "options", "total", "v", "t",
                            "last_total", "offset"}
    out = rename_identifiers([(BUGGY_METHOD, FIXED_METHOD)], 0, rate=1.0)
    buggy, fixed = out[0]
    assert f"self.{mapping['last_total']} = {mapping['total']}" in fixed
    assert f"{mapping['total']} += {mapping['v']} + {mapping['factor']}" in buggy
    assert f"{mapping['total']} += {mapping['v']} * {mapping['factor']}" in fixed
    assert '"""Scale values by factor."""' in fixed  # the docstring is not code
    assert "def scale(self," in buggy and "def scale(self," in fixed


def test_one_mapping_across_regions():
    other = _method("""
        def report(self, total):
            line = f"{self.name}"
            return self.offset - total, line
    """)
    regions = [(BUGGY_METHOD, FIXED_METHOD), (other, other.replace(" - ", " + "))]
    for seed in range(10):
        out = rename_identifiers(regions, seed, rate=0.7)
        mapping = _check(regions, out)
        if "offset" in mapping:
            assert f"self.{mapping['offset']} -" in out[1][0]
            assert f"self.{mapping['offset']} +" in out[1][1]
            assert f" + self.{mapping['offset']} for " in out[0][1]
    mapping = _all(regions)
    assert {"total", "offset", "line"} <= set(mapping)
    assert "name" not in mapping  # inside an f-string


def test_rate_zero_still_renames_exactly_one_and_rate_one_renames_all():
    regions = [(BUGGY_METHOD, FIXED_METHOD)]
    for seed in range(20):
        assert len(_check(regions, rename_identifiers(regions, seed, rate=0.0))) == 1
    assert len(_all(regions, seed=5)) == 9


def test_deterministic_per_seed_and_varies_across_seeds():
    regions = [(BUGGY_METHOD, FIXED_METHOD)]
    first = rename_identifiers(regions, 123)
    assert first == rename_identifiers(list(regions), 123)
    outs = {tuple(rename_identifiers(regions, seed)) for seed in range(12)}
    assert len(outs) >= 8
    chosen = {frozenset(_check(regions, list(o))) for o in outs}
    assert len(chosen) >= 3  # which names get renamed varies too, not only the new names


def test_custom_pool_and_fresh_names():
    code = _code("""
        def f(a, b):
            value = a + b  # item
            return value
    """)
    out = rename_identifiers([(code, code)], 0, rate=1.0, pool=("value", "item", "zeta", "eta", "theta"))
    mapping = _check([(code, code)], out)
    assert set(mapping) == {"a", "b", "value"}
    assert set(mapping.values()) == {"zeta", "eta", "theta"}  # value/item occur already
    # A pool of names that all occur: nothing to rename to.
    assert rename_identifiers([(code, code)], 0, pool=("value", "item", "a")) is None


def test_leading_underscores_kept():
    code = _method("""
        def get(self, _key):
            self._cache = self.__store
            return _key
    """)
    mapping = _all([(code, code)])
    assert set(mapping) == {"_key", "_cache", "__store"}
    for old, new in mapping.items():
        lead = len(old) - len(old.lstrip("_"))
        assert new[:lead] == "_" * lead and new[lead] != "_"


# ---------------------------------------------------------------- exclusions

def test_never_renames_builtins_imports_globals_defs_and_keyword_keys():
    code = _code("""
        import os
        from collections import OrderedDict as OD

        @decorate(level=LEVEL)
        def build(path, x, n=DEFAULT):
            import json as js
            global COUNTER
            COUNTER += 1
            out = OD()
            for i in range(len(path)):
                out[i] = os.path.join(path, str(i))
            def inner(y):
                return helper(y, x=x)
            x = inner(x)
            return js.dumps(out), configure(x=x, path=path), CONSTANT
    """)
    mapping = _all([(code, code)])
    assert set(mapping) == {"path", "x", "n", "out", "i", "y"}
    out = rename_identifiers([(code, code)], 0, rate=1.0)[0][1]
    assert f"helper({mapping['y']}, x={mapping['x']})" in out
    assert f"configure(x={mapping['x']}, path={mapping['path']})" in out
    for kept in ("import os", "OrderedDict as OD", "@decorate(level=LEVEL)", "def build(",
                 "global COUNTER", "COUNTER += 1", "def inner(", "= inner(", "js.dumps(",
                 "range(len(", "str(", "os.path.join(", "CONSTANT", "=DEFAULT"):
        assert kept in out


def test_global_use_of_a_name_also_bound_elsewhere_blocks_it():
    # `data` is a local of f but a global read in g: renaming it in f only would be fine for f,
    # but the rule keeps one meaning per name, so it stays everywhere.
    f = _code("""
        def f():
            data = 1
            return data
    """)
    g = _code("""
        def g():
            return data + 1
    """)
    assert rename_identifiers([(f, f), (g, g)], 0, rate=1.0) is None
    nonlocal_code = _code("""
        def outer():
            count = 0
            def bump(step):
                nonlocal count
                count += step
            return bump
    """)
    assert set(_all([(nonlocal_code, nonlocal_code)])) == {"step"}


def test_fstring_names_and_strings_untouched():
    code = _code('''
        def show(name, label, width):
            """name and label are printed."""
            text = f"{name!r:>{width}}"  # name
            return text + "label" + label
    ''')
    mapping = _all([(code, code)])
    assert set(mapping) == {"label", "text"}  # name, width: inside the f-string
    out = rename_identifiers([(code, code)], 0, rate=1.0)[0][0]
    assert '"""name and label are printed."""' in out
    assert '"label"' in out and "# name" in out


def test_self_attributes_read_elsewhere_or_spelled_in_strings_are_kept():
    code = _method("""
        def __eq__(self, other):
            self.hits += 1
            getattr(self, "seen")
            return self.key == other.key and self.seen and self.__class__ is cls.kind
    """)
    mapping = _all([(code, code)])
    assert set(mapping) == {"other", "hits", "kind"}


def test_class_attributes_and_nested_classes():
    code = _method("""
        class Inner:
            limit = 3

            def check(self, count):
                return count < self.limit or self.extra
    """)
    mapping = _all([(code, code)])
    assert set(mapping) == {"count", "extra"}  # `limit` is bound in the class body
    assert _code(code).startswith("class Inner:")


def test_dynamic_namespaces_keep_names_spelled_in_strings():
    code = _code("""
        def f(count, step):
            msg = "{count} by {step}".format(**locals())
            return msg
    """)
    assert set(_all([(code, code)])) == {"msg"}


def test_no_candidates_gives_none():
    only_globals = _code("""
        def f():
            return helper(CONFIG, len(ITEMS))
    """)
    assert rename_identifiers([(only_globals, only_globals)], 0) is None
    only_self = _method("""
        def g(self):
            return self.__class__
    """)
    assert rename_identifiers([(only_self, only_self)], 0) is None


def test_unparsable_region_gives_none():
    good = _code("""
        def f(a):
            return a
    """)
    assert rename_identifiers([(good, "def f(a):\n    return a +\n")], 0) is None
    assert rename_identifiers([(good, good), ("    class X(Base):\n", "    class X(Base):\n")], 0) is None
    assert rename_identifiers([("def f(a):\n  return a\n return a\n", good)], 0) is None


# ---------------------------------------------------------------- syntax coverage

def test_binding_forms():
    code = _code("""
        async def f(seq, /, first, *, last=None, **kw):
            (a, [b, *rest]) = seq
            with open(first) as fh, ctx() as (c, d):
                pass
            try:
                pass
            except (ValueError,
                    KeyError) as err:
                raise
            except Exception as\\
                    other:
                del other
            total: int = sum(x for x in rest if (y := x) > 0)
            squares = {k: k * k for k in range(3) if (z := k)}
            fn = lambda u, *vs: u + len(vs) + y
            async for item in seq:
                total += item
            match kw:
                case {"a": [1, *tail]} | {"b": [2, *tail]}:
                    pass
                case Point(x=0, y=yy) as pt:
                    return pt, yy
                case captured:
                    return captured, z
            return a, b, c, d, fh, err, fn, squares, last
    """)
    mapping = _all([(code, code)])
    assert set(mapping) == {"seq", "first", "last", "kw", "a", "b", "rest", "fh", "c", "d", "err",
                            "other", "total", "x", "y", "squares", "k", "z", "fn", "u", "vs",
                            "item", "tail", "yy", "pt", "captured"}
    out = rename_identifiers([(code, code)], 0, rate=1.0)[0][0]
    assert f"except Exception as\\\n            {mapping['other']}:" in out
    assert "case Point(x=0, y=" in out  # class-pattern keywords are attribute names


def test_match_mapping_rest_is_kept():
    code = _code("""
        def f(obj):
            match obj:
                case {"k": v, **rest}:
                    return v, rest
    """)
    assert set(_all([(code, code)])) == {"obj", "v"}


def test_closures_and_comprehension_scopes():
    code = _code("""
        def outer(items):
            seen = set()
            def visit(node):
                seen.add(node)
                return [seen for seen in node]
            return [visit(i) for i in items]
    """)
    mapping = _all([(code, code)])
    assert set(mapping) == {"items", "seen", "node", "i"}
    out = rename_identifiers([(code, code)], 0, rate=1.0)[0][0]
    assert f"{mapping['seen']}.add({mapping['node']})" in out


def test_decorated_function_and_indented_method():
    fixed = _method("""
        @staticmethod
        @cache(maxsize=size_limit)
        def pick(options, index):
            chosen = options[index]
            return chosen
    """)
    buggy = fixed.replace("options[index]", "options[index - 1]")
    out = rename_identifiers([(buggy, fixed)], 4, rate=1.0)
    mapping = _check([(buggy, fixed)], out)
    assert set(mapping) == {"options", "index", "chosen"}
    assert out[0][1].startswith("    @staticmethod\n    @cache(maxsize=size_limit)\n    def pick(")
    deep = textwrap.indent(fixed, "        ")
    assert set(_check([(deep, deep)], rename_identifiers([(deep, deep)], 1, rate=1.0))) == set(mapping)


def test_non_ascii_on_the_same_line():
    code = _code("""
        def greet(größe, name):
            msg = "héllo wörld ✓"; total = größe + len(msg)  # ünïcode ✓
            return {"é": name, "ß": total}, msg
    """)
    mapping = _all([(code, code.replace("größe + len", "größe - len"))])
    assert set(mapping) == {"größe", "name", "msg", "total"}
    out = rename_identifiers([(code, code)], 0, rate=1.0)[0][0]
    assert (f'    {mapping["msg"]} = "héllo wörld ✓"; {mapping["total"]} = {mapping["größe"]} + '
            f'len({mapping["msg"]})  # ünïcode ✓') in out


def test_crlf_tabs_and_form_feeds_kept():
    code = "def f(a,\tb):\r\n\tc = a  # x\r\n\f\treturn c + b\r\n"
    mapping = _all([(code, code.replace("c + b", "c - b"))])
    assert set(mapping) == {"a", "b", "c"}


def test_nfkc_spellings_are_kept_not_mangled():
    code = "def f(ﬁle, other):\n    return ﬁle, other\n"  # the ligature reads as `file`
    mapping = _all([(code, code)])
    assert set(mapping) == {"other"}


# ---------------------------------------------------------------- diff shape on bug pairs

BUG_PAIRS = {
    "operator": (
        _method("""
            def area(self, width, height):
                scaled = width * self.scale
                return scaled * height
        """),
        "return scaled * height", "return scaled + height"),
    "variable_misuse": (
        _code("""
            def merge(left, right, key=None):
                result = []
                i = j = 0
                while i < len(left) and j < len(right):
                    if key(left[i]) <= key(right[j]):
                        result.append(left[i])
                        i += 1
                    else:
                        result.append(right[j])
                        j += 1
                result.extend(left[i:])
                result.extend(right[j:])
                return result
        """),
        "result.extend(right[j:])", "result.extend(right[i:])"),
    "removed_statement": (
        _method("""
            def pop(self):
                item = self.items[-1]
                self.items.pop()
                self.size -= 1
                return item
        """),
        "        self.size -= 1\n", ""),
    "swapped_args": (
        _code("""
            def clamp(value, low, high):
                bounded = max(low, min(value, high))
                return bounded
        """),
        "min(value, high)", "min(high, value)"),
    "added_line": (
        _code("""
            def count_words(text, sep=" "):
                counts = {}
                for word in text.split(sep):
                    counts[word] = counts.get(word, 0) + 1
                return counts
        """),
        "    return counts\n", "    counts.clear()\n    return counts\n"),
}


@pytest.mark.parametrize("name", sorted(BUG_PAIRS))
def test_diff_shape_kept_on_bug_pairs(name):
    fixed, old, new = BUG_PAIRS[name]
    buggy = fixed.replace(old, new, 1)
    assert buggy != fixed
    before = line_opcodes(split_lines(fixed), split_lines(buggy))
    for seed in range(25):
        for rate in (0.0, 0.5, 1.0):
            out = rename_identifiers([(buggy, fixed)], seed, rate=rate)
            _check([(buggy, fixed)], out)
            assert line_opcodes(split_lines(out[0][1]), split_lines(out[0][0])) == before
            assert out[0][0] != out[0][1]


# ---------------------------------------------------------------- pool

def test_default_pool():
    assert 250 <= len(DEFAULT_POOL) <= 500
    assert len(set(DEFAULT_POOL)) == len(DEFAULT_POOL)
    reserved = set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)
    for name in DEFAULT_POOL:
        assert name.isidentifier() and name not in reserved and not name.startswith("_")
    assert {"value", "item", "result", "count", "idx", "data", "node", "key", "name"} <= set(DEFAULT_POOL)


# ---------------------------------------------------------------- real code

def _stdlib_functions() -> list[str]:
    """Every def of the json package and textwrap, decorators included, indentation kept."""
    modules = ["textwrap", "json"] + [f"json.{m.name}" for m in pkgutil.iter_modules(json.__path__)]
    out = []
    for mod_name in modules:
        source = Path(importlib.import_module(mod_name).__file__).read_text(encoding="utf-8")
        lines = source.splitlines(keepends=True)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                out.append("".join(lines[start - 1:node.end_lineno]))
    return out


def _plus_to_minus(text: str) -> str:
    """`text` with its first `+` operator made a `-` (unchanged when it has none)."""
    lines = text.splitlines(keepends=True)
    shift = 1 if text[:1] in (" ", "\t") else 0
    src = "if 1:\n" * shift + text
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.OP and tok.string in ("+", "+="):
            row, col = tok.start[0] - 1 - shift, tok.start[1]
            lines[row] = lines[row][:col] + "-" + lines[row][col + 1:]
            return "".join(lines)
    return text


def test_real_stdlib_functions_parse_and_keep_diff_shape():
    funcs = _stdlib_functions()
    assert len(funcs) > 40
    renamed = changed = 0
    reserved = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls"}
    for i, fixed in enumerate(funcs):
        buggy = _plus_to_minus(fixed)
        changed += buggy != fixed
        for seed in (i, i + 1000):
            out = rename_identifiers([(buggy, fixed)], seed)
            if out is None:
                continue
            renamed += 1
            mapping = _check([(buggy, fixed)], out)
            assert mapping
            assert not set(mapping) & reserved
            assert not any(n.startswith("__") and n.endswith("__") for n in mapping)
    assert changed > 10
    assert renamed > 0.8 * 2 * len(funcs)
    # All of one module's functions as the regions of one example.
    regions = [(_plus_to_minus(f), f) for f in funcs[:12]]
    _check(regions, rename_identifiers(regions, 7))


def test_independent_of_string_hashing():
    """Exact resume replays augmentations in another process: the output must not depend on
    PYTHONHASHSEED (set iteration order)."""
    script = (
        "from hrm.augment import rename_identifiers\n"
        "import sys, json\n"
        "regions = json.loads(sys.stdin.read())\n"
        "print(repr([rename_identifiers([tuple(r) for r in regions], s) for s in range(8)]))\n"
    )
    regions = json.dumps([list(p) for p in [(BUGGY_METHOD, FIXED_METHOD)]]
                         + [[f.replace(old, new, 1), f] for f, old, new in BUG_PAIRS.values()])
    outs = set()
    for hash_seed in ("1", "2"):
        got = subprocess.run([sys.executable, "-c", script], input=regions, text=True,
                             capture_output=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        outs.add(got.stdout)
    assert len(outs) == 1

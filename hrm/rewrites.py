"""Candidate fixes of a buggy function: every small rewrite of one expression, as text.

A rewrite changes one thing the way a one-line bug fix does (BugLab's rewrite space; the inverses
of the generator's inferable mutation kinds, `hrm.synth.mutations`):

    operator        an arithmetic/bitwise operator replaced by another one
    comparison      a comparison operator replaced by another one (`<` -> `<=`, `in` -> `not in`)
    boolean         `and` <-> `or`
    constant        an int n -> n - 1 or n + 1, a float x -> x / 2, 2 x, x - 1 or x + 1,
                    True <-> False
    off_by_one      `x + 1` / `x - 1` -> `x`; a range() stop or slice bound shifted by one
    operands        the operands of a non-commutative operator or comparison swapped
    arguments       two adjacent positional arguments of a call swapped
    statements      two adjacent statements of a block swapped (each on lines of its own)
    invert_if       an if/else with its branches swapped and its condition negated
    name            a read of a local name or parameter replaced by another one of the function
    attribute       an attribute read replaced by another attribute read on the same object

Edits are made on the text (only the changed characters move, so a rewrite of the mutated code
can give back the original text exactly); a rewrite is kept only if the result parses. The model
scores the rewrites (`hrm.eval.proposals`): nothing here knows which one is right.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from hrm.safe_ast import parse
from hrm.synth.mutations import local_names, own_nodes

_WRAPPER = "if 1:\n"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")

_BIN_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
                ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@"}
_ARITHMETIC = ("+", "-", "*", "/", "//", "%", "**")
_BITWISE = ("&", "|", "^", "<<", ">>")
_CMP_SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
                ast.GtE: ">=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_ORDER = ("==", "!=", "<", "<=", ">", ">=")
_IDENTITY = ("is", "is not")
_MEMBERSHIP = ("in", "not in")
_NON_COMMUTATIVE_BIN = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
                        ast.MatMult)
_NON_COMMUTATIVE_CMP = (ast.Lt, ast.Gt, ast.LtE, ast.GtE, ast.In, ast.NotIn)


SWAP_KINDS = ("operands", "arguments", "statements")
"""Kinds that exchange two spans of the code (the first ends where `Rewrite.pivot` points)."""


@dataclass(frozen=True)
class Rewrite:
    kind: str
    text: str
    pivot: int | None = None
    """For a swap (`SWAP_KINDS`): the character offset in the unit where the first of the two
    exchanged spans ends (`hrm.swaps` labels the token holding it); None otherwise."""


class _Text:
    """The parsed text with AST positions (UTF-8 byte columns) turned into character offsets."""

    def __init__(self, text: str):
        self.text = text
        # Lines as the parser counts them (a form feed is not a line break, as in splitlines).
        self.lines = _LINE.findall(text)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + len(self.lines[line - 1].encode()[:col].decode(errors="ignore"))

    def lines_span(self, stmt: ast.stmt) -> tuple[int, int]:
        """Character span of the whole lines `stmt` occupies."""
        return self.starts[stmt.lineno - 1], self.starts[stmt.end_lineno]

    def span(self, node: ast.AST, *, parens: bool = False) -> tuple[int, int]:
        """Character span of `node`; with `parens`, widened over brackets that enclose it alone."""
        s = self.offset(node.lineno, node.col_offset)
        e = self.offset(node.end_lineno, node.end_col_offset)
        while parens and s > 0 and e < len(self.text) and self.text[s - 1] == "(" and self.text[e] == ")":
            s, e = s - 1, e + 1
        return s, e


def _edit(text: str, edits: list[tuple[int, int, str]]) -> str:
    for s, e, new in sorted(edits, reverse=True):
        text = text[:s] + new + text[e:]
    return text


def _symbol_gap(src: _Text, left: ast.AST, right: ast.AST, symbol: str) -> tuple[int, int] | None:
    """The span of `symbol` between two operands (brackets and spaces around it allowed)."""
    s, e = src.span(left)[1], src.span(right)[0]
    pattern = r"\s+".join(re.escape(w) for w in symbol.split())
    if symbol.isalpha() or " " in symbol:
        pattern = rf"(?<![\w]){pattern}(?![\w])"
    found = [m for m in re.finditer(pattern, src.text[s:e])]
    if len(found) != 1:
        return None
    return s + found[0].start(), s + found[0].end()


def _family(symbol: str) -> tuple[str, ...]:
    for group in (_ARITHMETIC, _BITWISE, _ORDER, _IDENTITY, _MEMBERSHIP):
        if symbol in group:
            return group
    return ()


def _scope_rewrites(func: ast.AST, src: _Text) -> list[tuple[str, list[tuple[int, int, str]]]]:
    out: list[tuple[str, list[tuple[int, int, str]]]] = []
    nodes = own_nodes(func)
    local = sorted(local_names(func) - {"self", "cls"})
    attrs: dict[str, set[str]] = {}
    for n in nodes:
        if isinstance(n, ast.Attribute):
            attrs.setdefault(ast.dump(n.value), set()).add(n.attr)
    for n in nodes:
        if isinstance(n, ast.BinOp) and type(n.op) in _BIN_SYMBOLS:
            sym = _BIN_SYMBOLS[type(n.op)]
            gap = _symbol_gap(src, n.left, n.right, sym)
            if gap:
                out += [("operator", [(*gap, other)]) for other in _family(sym) if other != sym]
            if isinstance(n.op, _NON_COMMUTATIVE_BIN):
                out.append(("operands", _swap(src, n.left, n.right)))
            if (isinstance(n.op, (ast.Add, ast.Sub)) and isinstance(n.right, ast.Constant)
                    and n.right.value == 1 and type(n.right.value) is int):
                s, e = src.span(n)
                ls, le = src.span(n.left)
                out.append(("off_by_one", [(s, e, src.text[ls:le])]))
        elif isinstance(n, ast.Compare) and len(n.ops) == 1:
            sym = _CMP_SYMBOLS[type(n.ops[0])]
            gap = _symbol_gap(src, n.left, n.comparators[0], sym)
            if gap:
                out += [("comparison", [(*gap, other)]) for other in _family(sym) if other != sym]
            if isinstance(n.ops[0], _NON_COMMUTATIVE_CMP):
                out.append(("operands", _swap(src, n.left, n.comparators[0])))
        elif isinstance(n, ast.BoolOp):
            sym, other = ("and", "or") if isinstance(n.op, ast.And) else ("or", "and")
            gaps = [_symbol_gap(src, a, b, sym) for a, b in zip(n.values, n.values[1:], strict=False)]
            if all(gaps):
                out.append(("boolean", [(*g, other) for g in gaps]))
        elif isinstance(n, ast.Constant) and type(n.value) in (int, float, bool):
            s, e = src.span(n)
            if type(n.value) is bool:
                values = [not n.value]
            elif type(n.value) is int:
                values = [n.value - 1, n.value + 1]
            else:
                values = [n.value / 2, n.value * 2, n.value - 1, n.value + 1]
            out += [("constant", [(s, e, repr(v))]) for v in values]
        elif isinstance(n, ast.Call) and not any(isinstance(a, ast.Starred) for a in n.args):
            for a, b in zip(n.args, n.args[1:], strict=False):
                out.append(("arguments", _swap(src, a, b)))
            if isinstance(n.func, ast.Name) and n.func.id == "range" and 1 <= len(n.args) <= 3:
                out += _shift(src, n.args[0] if len(n.args) == 1 else n.args[1])
        elif isinstance(n, ast.Slice):
            for bound in (n.lower, n.upper):
                if bound is not None:
                    out += _shift(src, bound)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in local:
            s, e = src.span(n)
            out += [("name", [(s, e, other)]) for other in local if other != n.id]
        if isinstance(n, ast.If) and n.orelse and _owns_lines(src, n):
            out += _invert_if(src, n)
        for block in _blocks(n):
            for a, b in zip(block, block[1:], strict=False):
                if _owns_lines(src, a) and _owns_lines(src, b):
                    first, second = src.lines_span(a), src.lines_span(b)
                    out.append(("statements", [(*first, src.text[second[0]:second[1]]),
                                               (*second, src.text[first[0]:first[1]])]))
        if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
            e = src.span(n)[1]
            s = e - len(n.attr)
            if src.text[s:e] == n.attr:
                others = sorted(attrs.get(ast.dump(n.value), set()) - {n.attr})
                out += [("attribute", [(s, e, other)]) for other in others]
    return out


def _blocks(node: ast.AST) -> list[list[ast.stmt]]:
    """The statement lists a node holds directly (its body, else, finally, handlers' bodies)."""
    blocks = [getattr(node, name, None) for name in ("body", "orelse", "finalbody")]
    blocks += [h.body for h in getattr(node, "handlers", None) or []]
    return [b for b in blocks if isinstance(b, list) and b and isinstance(b[0], ast.stmt)]


def _owns_lines(src: _Text, stmt: ast.stmt) -> bool:
    """`stmt` alone occupies its lines (no `;` neighbours, not on its block's header line)."""
    s, e = src.span(stmt)
    head = src.text[src.starts[stmt.lineno - 1]:s]
    tail = src.text[e:src.starts[stmt.end_lineno]]
    return not head.strip() and (not tail.strip() or tail.strip().startswith("#"))


def _invert_if(src: _Text, n: ast.If) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """`if c: A else: B` -> `if not c: B else: A` (an `elif` chain is left alone)."""
    else_line = n.orelse[0].lineno - 1  # 1-based line just above the else branch
    if (n.body[0].lineno <= n.test.end_lineno or else_line <= n.body[-1].end_lineno
            or src.lines[else_line - 1].strip() != "else:"):
        return []
    body = (src.starts[n.body[0].lineno - 1], src.starts[n.body[-1].end_lineno])
    orelse = (src.starts[n.orelse[0].lineno - 1], src.starts[n.orelse[-1].end_lineno])
    test = n.test
    s, e = src.span(test)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        os_, oe = src.span(test.operand, parens=True)
        inner = src.text[os_:oe]
        negated = inner[1:-1] if inner.startswith("(") and inner.endswith(")") else inner
    elif isinstance(test, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)):
        negated = f"not {src.text[s:e]}"
    else:
        negated = f"not ({src.text[s:e]})"
    return [("invert_if", [(s, e, negated), (*body, src.text[orelse[0]:orelse[1]]),
                           (*orelse, src.text[body[0]:body[1]])])]


def _swap(src: _Text, a: ast.AST, b: ast.AST) -> list[tuple[int, int, str]]:
    sa, ea = src.span(a, parens=True)
    sb, eb = src.span(b, parens=True)
    return [(sa, ea, src.text[sb:eb]), (sb, eb, src.text[sa:ea])]


def _shift(src: _Text, node: ast.AST) -> list[tuple[str, list[tuple[int, int, str]]]]:
    s, e = src.span(node)
    return [("off_by_one", [(e, e, " - 1")]), ("off_by_one", [(e, e, " + 1")])]


def _parsable_prefix(text: str, max_cut: int) -> tuple[str, ast.Module] | None:
    """The longest prefix of whole lines (cutting at most `max_cut` from the end) that parses:
    a function cut to the sequence budget ends mid-block."""
    lines = _LINE.findall(text)
    for cut in range(0, min(max_cut, len(lines) - 1) + 1):
        prefix = "".join(lines[: len(lines) - cut])
        try:
            return prefix, parse(prefix)
        except (SyntaxError, ValueError):
            continue
    return None


def rewrites(unit: str, *, max_cut: int = 40) -> list[Rewrite]:
    """Every rewrite of `unit` (code cut from a file, indented as it was there: an indented unit
    is parsed under an `if 1:` wrapper) that parses, each text once, in a fixed order: inside
    each function, and in the code outside functions. A unit cut short (the sequence budget) is
    rewritten in its longest prefix that parses; code with no such prefix has none."""
    return list(iter_rewrites(unit, max_cut=max_cut))


def iter_rewrites(unit: str, *, max_cut: int = 40, rng: random.Random | None = None,
                  kinds: Collection[str] | None = None) -> Iterator[Rewrite]:
    """`rewrites` one at a time; with `rng`, in an order it shuffles; with `kinds`, of those
    kinds only. Each is checked (parsed) only when it is reached, so taking a few costs a few
    checks (training's negatives)."""
    indented = unit[:1] in (" ", "\t")
    head = _WRAPPER if indented else ""
    parsed = _parsable_prefix(head + unit, max_cut)
    if parsed is None:
        return
    text, tree = parsed
    rest = (head + unit)[len(text):]
    src = _Text(text)
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]
    candidates = [(kind, edits) for scope in scopes for kind, edits in _scope_rewrites(scope, src)
                  if kinds is None or kind in kinds]
    if rng is not None:
        rng.shuffle(candidates)
    seen = {unit}
    for kind, edits in candidates:
        new = _edit(text, edits)
        if new[len(head):] + rest in seen:
            continue
        seen.add(new[len(head):] + rest)
        try:
            parse(new)
        except (SyntaxError, ValueError):
            continue
        pivot = min(e for _, e, _ in edits) - len(head) if kind in SWAP_KINDS else None
        yield Rewrite(kind, new[len(head):] + rest, pivot)

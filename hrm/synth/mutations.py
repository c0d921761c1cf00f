"""Procedural AST mutations in the spirit of SWE-smith's `func_pm_*` classes.

Each mutation is found on the AST but applied as a minimal TEXT edit (only the changed
expression or the moved/removed lines), so the resulting `git diff` looks like a human edit
rather than a reformatted file. A mutation is valid only if the file still compiles and its
AST differs from the original.

Kinds (the instance id reads `func_pm_<kind>__<hash>`):
    op_flip_cmp      a comparison operator negated (`<` -> `>=`, `==` -> `!=`, `in` -> `not in`)
    op_flip_bool     a boolean operator swapped (`and` <-> `or`)
    op_change        an arithmetic/bitwise operator changed (`+` -> `-`, `*` -> `/`, ...)
    op_change_const  a numeric constant changed (n -> n + 1)
    op_off_by_one    a range() stop or a slice bound shifted by one
    ctrl_invert_if   an if/else with its branches swapped and the condition negated
    remove_cond      an `if` block (without else) removed
    remove_assign    an assignment statement removed
    ctrl_shuffle     two adjacent independent statements swapped
    op_swap          the operands of a non-commutative operator or comparison swapped
                     (`a - b` -> `b - a`, `x < y` -> `y < x`)
    var_misuse       a read of a local variable or parameter replaced by another one of the
                     same function (BugLab's variable misuse)
    wrong_attr       an attribute read replaced by another attribute the function reads on the
                     same object (`self.start` -> `self.stop`)
    swap_args        two adjacent positional arguments of a call swapped
    wrong_return     a returned value replaced (`return x` -> `return None`, True <-> False)
    remove_loop      a `for`/`while` loop removed with its body
    remove_wrapper   a `with`/`try` statement replaced by its own body (the wrapper removed)

Kinds whose fix cannot be inferred from the buggy code alone (the fix re-adds code that is gone)
are `NON_INFERABLE`; metrics report them separately.

`function_mutations` mutates one function's text on its own (the training corpus: no file, no
tests), `enumerate_sites`/`apply_site` a whole module (the test-verified generator).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

KINDS = ("op_flip_cmp", "op_flip_bool", "op_change", "op_change_const", "op_off_by_one",
         "ctrl_invert_if", "remove_cond", "remove_assign", "ctrl_shuffle", "op_swap",
         "var_misuse", "wrong_attr", "swap_args", "wrong_return", "remove_loop", "remove_wrapper")

NON_INFERABLE = frozenset({"remove_cond", "remove_assign", "remove_loop", "remove_wrapper"})
"""Kinds whose fix re-adds code the buggy version no longer shows."""

_SWAP_BIN = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift, ast.MatMult)
_SWAP_CMP = (ast.Lt, ast.Gt, ast.LtE, ast.GtE, ast.In, ast.NotIn)
_ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Call, ast.Subscript, ast.List, ast.Tuple,
          ast.Dict, ast.Set)

_CMP_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
             ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
             ast.In: ast.NotIn, ast.NotIn: ast.In}
_BIN_CHANGE = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
               ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift,
               ast.RShift: ast.LShift}
_OPERATOR_PARENTS = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Await)
_SIMPLE_STMTS = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class Site:
    """One place a mutation can be applied; (file, function, kind, index) identifies it."""

    file: str
    function: str
    """Qualified name of the enclosing function or method, e.g. `BaseRetrying.iter`."""
    kind: str
    index: int
    line: int

    @property
    def key(self) -> str:
        return f"{self.file}:{self.function}:{self.kind}:{self.index}"


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def source_lines(text: str) -> list[str]:
    """Lines as the parser counts them (`\n`, `\r\n`, `\r` only; a form feed is not a line
    break, as it is for `str.splitlines`), each keeping its end."""
    return _LINE.findall(text)


class _Src:
    """Source text as lines with UTF-8-byte-offset aware span replacement."""

    def __init__(self, text: str):
        self.lines = source_lines(text)

    def text(self) -> str:
        return "".join(self.lines)

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text(), node) or ast.unparse(node)

    def replace(self, node: ast.AST, new: str) -> None:
        first = self.lines[node.lineno - 1].encode()
        last = self.lines[node.end_lineno - 1].encode()
        prefix = first[: node.col_offset].decode()
        suffix = last[node.end_col_offset :].decode()
        self.lines[node.lineno - 1 : node.end_lineno] = [prefix + new + suffix]

    def char_around(self, node: ast.AST) -> tuple[str, str]:
        first = self.lines[node.lineno - 1].encode()
        last = self.lines[node.end_lineno - 1].encode()
        before = first[: node.col_offset].decode().rstrip()[-1:]
        after = last[node.end_col_offset :].decode().lstrip()[:1]
        return before, after

    def owns_lines(self, stmt: ast.stmt) -> bool:
        """True if `stmt` alone occupies its lines (no `;` neighbours, not after a colon)."""
        head = self.lines[stmt.lineno - 1].encode()[: stmt.col_offset].decode()
        tail = self.lines[stmt.end_lineno - 1].encode()[stmt.end_col_offset :].decode()
        return not head.strip() and (not tail.strip() or tail.strip().startswith("#"))


def _functions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    out: list[tuple[str, ast.AST]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((name, child))
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def own_nodes(func: ast.AST) -> list[ast.AST]:
    """Nodes of a function (or module) body, not descending into nested functions/classes."""
    out: list[ast.AST] = []
    stack = list(reversed(func.body))
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, _SCOPES):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return out


def _blocks(func: ast.AST) -> list[list[ast.stmt]]:
    blocks = [func.body]
    for node in own_nodes(func):
        if isinstance(node, _SCOPES):
            continue
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                blocks.append(block)
        for handler in getattr(node, "handlers", []) or []:
            blocks.append(handler.body)
    return blocks


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(
        stmt.value.value, str)


def _names(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """(reads, writes) of a statement as dotted names (`self.x` counts as its own name)."""
    reads: set[str] = set()
    writes: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Name, ast.Attribute)):
            try:
                dotted = ast.unparse(node)
            except Exception:  # noqa: BLE001 - exotic nodes simply do not count
                continue
            (writes if isinstance(node.ctx, (ast.Store, ast.Del)) else reads).add(dotted)
    if isinstance(stmt, ast.AugAssign):
        reads |= writes
    return reads, writes


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    ra, wa = _names(a)
    rb, wb = _names(b)

    def clash(x: set[str], y: set[str]) -> bool:
        return any(p == q or p.startswith(q + ".") or q.startswith(p + ".") for p in x for q in y)

    return not (clash(wa, rb | wb) or clash(wb, ra))


def _candidates(func: ast.AST, src: _Src, kind: str) -> list[ast.AST | tuple]:
    nodes = own_nodes(func)
    if kind == "op_flip_cmp":
        return [n for n in nodes if isinstance(n, ast.Compare) and len(n.ops) == 1
                and type(n.ops[0]) in _CMP_FLIP]
    if kind == "op_flip_bool":
        return [n for n in nodes if isinstance(n, ast.BoolOp)]
    if kind == "op_change":
        return [n for n in nodes if isinstance(n, ast.BinOp) and type(n.op) in _BIN_CHANGE]
    if kind == "op_change_const":
        return [n for n in nodes if isinstance(n, ast.Constant) and type(n.value) in (int, float)]
    if kind == "op_off_by_one":
        out: list = []
        for n in nodes:
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "range"
                    and 1 <= len(n.args) <= 3 and not n.keywords):
                out.append((n.args[0] if len(n.args) == 1 else n.args[1], " - 1"))
            elif isinstance(n, ast.Slice):
                if n.lower is not None:
                    out.append((n.lower, " + 1"))
                if n.upper is not None:
                    out.append((n.upper, " - 1"))
        return out
    if kind == "ctrl_invert_if":
        out = []
        for n in nodes:
            if not (isinstance(n, ast.If) and n.orelse and src.owns_lines(n)):
                continue
            else_line = src.lines[n.orelse[0].lineno - 2] if n.orelse[0].lineno >= 2 else ""
            if (n.body[0].lineno > n.test.end_lineno and else_line.strip() == "else:"
                    and n.orelse[0].lineno > n.body[-1].end_lineno + 1):
                out.append(n)
        return out
    if kind == "remove_cond":
        return [n for n in nodes if isinstance(n, ast.If) and not n.orelse and src.owns_lines(n)]
    if kind == "remove_assign":
        return [n for n in nodes if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                and getattr(n, "value", None) is not None and src.owns_lines(n)]
    if kind == "ctrl_shuffle":
        out = []
        for block in _blocks(func):
            for a, b in zip(block, block[1:], strict=False):
                if (isinstance(a, _SIMPLE_STMTS) and isinstance(b, _SIMPLE_STMTS)
                        and not _is_docstring(a) and src.owns_lines(a) and src.owns_lines(b)
                        and _independent(a, b)):
                    out.append((a, b))
        return out
    if kind == "op_swap":
        return [n for n in nodes if (isinstance(n, ast.BinOp) and isinstance(n.op, _SWAP_BIN))
                or (isinstance(n, ast.Compare) and len(n.ops) == 1
                    and isinstance(n.ops[0], _SWAP_CMP))]
    if kind == "var_misuse":
        local = sorted(local_names(func) - {"self", "cls"})
        out = []
        for n in nodes:
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in local:
                others = [x for x in local if x != n.id]
                if others:
                    # One alternative per read, fixed by its position (deterministic, spread).
                    out.append((n, others[(n.lineno * 31 + n.col_offset) % len(others)]))
        return out
    if kind == "wrong_attr":
        by_base: dict[str, set[str]] = {}
        for n in nodes:
            if isinstance(n, ast.Attribute):
                by_base.setdefault(src.segment(n.value), set()).add(n.attr)
        out = []
        for n in nodes:
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
                others = sorted(by_base.get(src.segment(n.value), set()) - {n.attr})
                if others:
                    out.append((n, others[(n.lineno * 31 + n.col_offset) % len(others)]))
        return out
    if kind == "swap_args":
        out = []
        for n in nodes:
            if isinstance(n, ast.Call) and not any(isinstance(a, ast.Starred) for a in n.args):
                for a, b in zip(n.args, n.args[1:], strict=False):
                    if src.segment(a) != src.segment(b) and a.lineno == b.end_lineno:
                        out.append((a, b))
        return out
    if kind == "wrong_return":
        return [n for n in nodes if isinstance(n, ast.Return) and n.value is not None
                and not (isinstance(n.value, ast.Constant) and n.value.value is None)]
    if kind == "remove_loop":
        return [n for n in nodes if isinstance(n, (ast.For, ast.AsyncFor, ast.While))
                and not n.orelse and src.owns_lines(n)]
    if kind == "remove_wrapper":
        out = []
        for n in nodes:
            plain_try = isinstance(n, ast.Try) and not n.orelse and not n.finalbody
            if ((isinstance(n, (ast.With, ast.AsyncWith)) or plain_try) and src.owns_lines(n)
                    and n.body[0].lineno > n.lineno):
                out.append(n)
        return out
    raise ValueError(f"unknown mutation kind {kind!r}")


def local_names(func: ast.AST) -> set[str]:
    """Parameters and names assigned in the function, or in a module's code outside functions
    (not global/nonlocal ones)."""
    names: set[str] = set()
    args = getattr(func, "args", None)
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if args else []:
        if a is not None:
            names.add(a.arg)
    excluded: set[str] = set()
    for n in own_nodes(func):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            excluded.update(n.names)
    return names - excluded


def _operand(node: ast.AST, src: _Src) -> str:
    text = src.segment(node)
    return text if isinstance(node, _ATOMS) else f"({text})"


def _wrap(node: ast.AST, text: str, parents: dict[ast.AST, ast.AST], src: _Src) -> str:
    parent = parents.get(node)
    # A comparison binds tighter than `and`/`or`/`not`: no parentheses needed there.
    if isinstance(node, ast.Compare) and (
            isinstance(parent, ast.BoolOp)
            or (isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not))):
        return text
    if isinstance(parent, _OPERATOR_PARENTS) and src.char_around(node) != ("(", ")"):
        return f"({text})"
    return text


def _drop_lines(src: _Src, stmt: ast.stmt, block: list[ast.stmt]) -> None:
    indent = src.lines[stmt.lineno - 1][: stmt.col_offset]
    keep = [f"{indent}pass\n"] if len(block) == 1 else []
    src.lines[stmt.lineno - 1 : stmt.end_lineno] = keep


def _block_of(func: ast.AST, stmt: ast.stmt) -> list[ast.stmt]:
    for block in _blocks(func):
        if any(s is stmt for s in block):
            return block
    return [stmt]


def _apply(func: ast.AST, src: _Src, kind: str, target, parents) -> None:
    if kind == "op_flip_cmp":
        new = ast.Compare(left=target.left, ops=[_CMP_FLIP[type(target.ops[0])]()],
                          comparators=target.comparators)
        src.replace(target, _wrap(target, ast.unparse(new), parents, src))
    elif kind == "op_flip_bool":
        new = ast.BoolOp(op=ast.Or() if isinstance(target.op, ast.And) else ast.And(),
                         values=target.values)
        src.replace(target, _wrap(target, ast.unparse(new), parents, src))
    elif kind == "op_change":
        new = ast.BinOp(left=target.left, op=_BIN_CHANGE[type(target.op)](), right=target.right)
        src.replace(target, _wrap(target, ast.unparse(new), parents, src))
    elif kind == "op_change_const":
        value = target.value + 1 if isinstance(target.value, int) else target.value * 2 or 1.0
        src.replace(target, repr(value))
    elif kind == "op_off_by_one":
        node, delta = target
        text = src.segment(node)
        if not isinstance(node, (ast.Name, ast.Constant, ast.Attribute, ast.Call, ast.Subscript)):
            text = f"({text})"
        src.replace(node, text + delta)
    elif kind == "ctrl_invert_if":
        n = target
        body = src.lines[n.body[0].lineno - 1 : n.body[-1].end_lineno]
        middle = src.lines[n.body[-1].end_lineno : n.orelse[0].lineno - 1]
        orelse = src.lines[n.orelse[0].lineno - 1 : n.orelse[-1].end_lineno]
        src.lines[n.body[0].lineno - 1 : n.orelse[-1].end_lineno] = orelse + middle + body
        test = n.test
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            src.replace(test, src.segment(test.operand))
        else:
            inner = src.segment(test)
            simple = isinstance(test, (ast.Name, ast.Attribute, ast.Call, ast.Subscript))
            src.replace(test, f"not {inner}" if simple else f"not ({inner})")
    elif kind in ("remove_cond", "remove_assign"):
        _drop_lines(src, target, _block_of(func, target))
    elif kind == "ctrl_shuffle":
        a, b = target
        first = src.lines[a.lineno - 1 : a.end_lineno]
        middle = src.lines[a.end_lineno : b.lineno - 1]
        second = src.lines[b.lineno - 1 : b.end_lineno]
        src.lines[a.lineno - 1 : b.end_lineno] = second + middle + first
    elif kind == "op_swap":
        n = target
        if isinstance(n, ast.BinOp):
            sym = ast.unparse(ast.BinOp(ast.Name("a"), n.op, ast.Name("b")))[2:-2]
            text = f"{_operand(n.right, src)} {sym} {_operand(n.left, src)}"
        else:
            sym = ast.unparse(ast.Compare(ast.Name("a"), [n.ops[0]], [ast.Name("b")]))[2:-2]
            text = f"{_operand(n.comparators[0], src)} {sym} {_operand(n.left, src)}"
        src.replace(n, _wrap(n, text, parents, src))
    elif kind == "var_misuse":
        node, other = target
        src.replace(node, other)
    elif kind == "wrong_attr":
        node, other = target
        src.replace(node, f"{_operand(node.value, src)}.{other}")
    elif kind == "swap_args":
        a, b = target
        text_a, text_b = src.segment(a), src.segment(b)
        line = src.lines[a.lineno - 1].encode()
        start, end = a.col_offset, b.end_col_offset
        middle = line[a.end_col_offset: b.col_offset].decode()
        new = line[:start].decode() + text_b + middle + text_a + line[end:].decode()
        src.lines[a.lineno - 1] = new
    elif kind == "wrong_return":
        value = target.value
        if isinstance(value, ast.Constant) and isinstance(value.value, bool):
            src.replace(value, repr(not value.value))
        else:
            src.replace(value, "None")
    elif kind == "remove_loop":
        _drop_lines(src, target, _block_of(func, target))
    elif kind == "remove_wrapper":
        n = target
        outer = src.lines[n.lineno - 1][: n.col_offset]
        inner = src.lines[n.body[0].lineno - 1][: n.body[0].col_offset]
        cut = len(inner) - len(outer)
        body = src.lines[n.body[0].lineno - 1: n.body[-1].end_lineno]
        dedented = [ln[cut:] if ln.startswith(inner) else ln for ln in body]
        src.lines[n.lineno - 1: n.end_lineno] = dedented
    else:
        raise ValueError(f"unknown mutation kind {kind!r}")


def _line_of(target) -> int:
    node = target[0] if isinstance(target, tuple) else target
    return node.lineno


_WRAPPER = "if 1:\n"


def function_mutations(unit: str, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, int, str]]:
    """Every valid mutation of one function's text on its own, as (kind, index, mutated text).

    `unit` is a def (decorators included) cut from its file, indented as it was there (a method
    is parsed under an `if 1:` wrapper, so no dedenting ever touches its strings). A mutation is
    kept only if the result compiles and its AST differs; the text keeps the unit's layout.
    """
    indented = unit[:1] in (" ", "\t")
    text = _WRAPPER + unit if indented else unit
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    func = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
                None)
    if func is None:
        return []
    parents = {child: node for node in ast.walk(func) for child in ast.iter_child_nodes(node)}
    before = ast.dump(func)
    out: list[tuple[str, int, str]] = []
    probe = _Src(text)
    for kind in kinds:
        for i, target in enumerate(_candidates(func, probe, kind)):
            src = _Src(text)
            try:
                _apply(func, src, kind, target, parents)
                mutated = src.text()
                compile(mutated, "<unit>", "exec", dont_inherit=True)
                new_tree = ast.parse(mutated)
            except (SyntaxError, ValueError, IndexError):
                continue
            new_func = next((n for n in ast.walk(new_tree)
                             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
            if new_func is None or ast.dump(new_func) == before:
                continue
            out.append((kind, i, mutated[len(_WRAPPER):] if indented else mutated))
    return out


def enumerate_sites(source: str, file: str) -> list[Site]:
    """Every mutation site of a module, in a fixed order (file position, then kind)."""
    tree = ast.parse(source)
    src = _Src(source)
    sites: list[Site] = []
    for qualname, func in _functions(tree):
        for kind in KINDS:
            for i, target in enumerate(_candidates(func, src, kind)):
                sites.append(Site(file, qualname, kind, i, _line_of(target)))
    return sites


def apply_site(source: str, site: Site) -> str | None:
    """The module text with `site` mutated, or None if the result would not compile or
    would not change the AST (such sites are skipped, never kept)."""
    tree = ast.parse(source)
    src = _Src(source)
    funcs = [f for name, f in _functions(tree) if name == site.function]
    if not funcs:
        return None
    func = funcs[0]
    targets = _candidates(func, src, site.kind)
    if site.index >= len(targets):
        return None
    parents = {child: node for node in ast.walk(func) for child in ast.iter_child_nodes(node)}
    _apply(func, src, site.kind, targets[site.index], parents)
    mutated = src.text()
    try:
        compile(mutated, site.file, "exec", dont_inherit=True)
        new_tree = ast.parse(mutated)
    except (SyntaxError, ValueError):
        return None
    if ast.dump(new_tree) == ast.dump(tree):
        return None
    return mutated

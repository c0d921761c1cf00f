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
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

KINDS = ("op_flip_cmp", "op_flip_bool", "op_change", "op_change_const", "op_off_by_one",
         "ctrl_invert_if", "remove_cond", "remove_assign", "ctrl_shuffle")

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


class _Src:
    """Source text as lines with UTF-8-byte-offset aware span replacement."""

    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)

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


def _own_nodes(func: ast.AST) -> list[ast.AST]:
    """Nodes of a function body, not descending into nested functions/classes."""
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
    for node in _own_nodes(func):
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
    nodes = _own_nodes(func)
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
    raise ValueError(f"unknown mutation kind {kind!r}")


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
    else:
        raise ValueError(f"unknown mutation kind {kind!r}")


def _line_of(target) -> int:
    node = target[0] if isinstance(target, tuple) else target
    return node.lineno


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

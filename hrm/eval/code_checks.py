"""Static code tiers of one row: syntax, compilation and AST match, in the reference's context.

Context, in order of preference:

- `file`: the buggy file is available (an environment provides the pristine tree and the bug
  patch applies): every predicted hunk is spliced over its buggy region and the whole file is
  compiled; the reference (the fixed regions spliced the same way) must compile there too.
- `fragment`: each hunk's text is checked under the smallest wrapper in which the reference
  hunk compiles (see `hrm.eval.fragments`).

A row whose reference does not compile in its context is `excluded` from the compile and AST
tiers (and from the tiered score) and counted; it is never scored as a pass or a failure.
Predictions are only compiled, never executed.
"""

from __future__ import annotations
import __future__

import ast
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hrm.eval.fragments import (
    compiles,
    is_blank,
    normalized_ast,
    reference_wrapper,
    scan_tokens,
    syntax_valid,
)
from hrm.hunks import Hunk, apply_regions
from hrm.safe_ast import compile_source


@dataclass(frozen=True)
class CodeCheck:
    """Static tiers reached by one prediction; a tier is None when the reference cannot be
    checked at it (excluded from that metric's denominator, and counted)."""

    syntax: bool | None
    compiles: bool | None
    ast_match: bool | None
    context: str
    """`file`, `fragment`, or `excluded: <why>`."""
    reason: str = ""
    """Why every tier failed without looking at the code (special tokens inside the prediction,
    `hrm.eval.decoding`); empty otherwise."""

    @property
    def excluded(self) -> bool:
        return self.compiles is None


def _syntax(pred_hunks: Sequence[str], ref_hunks: Sequence[str]) -> bool | None:
    """All hunks token-valid; None (excluded) when some reference hunk is not checkable."""
    if all(is_blank(r) for r in ref_hunks):
        return None
    results: list[bool | None] = []
    for pred, ref in zip(pred_hunks, ref_hunks, strict=True):
        # An empty reference hunk is a pure deletion: only an empty prediction matches it.
        results.append(is_blank(pred) if is_blank(ref) else syntax_valid(pred, ref))
    if any(r is None for r in results):
        return None
    return all(results)


def check_fragments(pred_hunks: Sequence[str], ref_hunks: Sequence[str]) -> CodeCheck:
    """Check each predicted hunk under the wrapper its reference hunk compiles in.

    A prediction with a different number of hunks than the reference fails every tier.
    """
    if len(pred_hunks) != len(ref_hunks):
        return _wrong_hunk_count(ref_hunks)
    syntax = _syntax(pred_hunks, ref_hunks)
    ok_compile = ok_ast = True
    for pred, ref in zip(pred_hunks, ref_hunks, strict=True):
        if is_blank(ref):
            # A pure deletion: the empty region is the right answer, checkable only in a file.
            if not is_blank(pred):
                ok_compile = ok_ast = False
            continue
        wrapper = reference_wrapper(ref)
        if wrapper is None:
            return CodeCheck(syntax, None, None, "excluded: reference compiles in no wrapper")
        pred_src = wrapper.apply(pred)
        hunk_compiles = not is_blank(pred) and compiles(pred_src)
        ok_compile &= hunk_compiles
        ok_ast &= hunk_compiles and normalized_ast(pred_src) == normalized_ast(wrapper.apply(ref))
    if all(is_blank(r) for r in ref_hunks):
        return CodeCheck(syntax, None, None, "excluded: reference is empty (pure deletion)")
    return CodeCheck(syntax, ok_compile, ok_compile and ok_ast, "fragment")


def _wrong_hunk_count(ref_hunks: Sequence[str]) -> CodeCheck:
    return CodeCheck(False, False, False, f"fragment: expected {len(ref_hunks)} hunk(s)")


def splice_files(
    hunks: Sequence[Hunk], texts: Sequence[str], buggy_files: Mapping[str, str]
) -> dict[str, str]:
    """Each touched file with `texts[k]` spliced over hunk k's buggy region (bottom-up)."""
    out: dict[str, str] = {}
    for path in dict.fromkeys(h.file for h in hunks):
        idx = [k for k, h in enumerate(hunks) if h.file == path]
        out[path] = apply_regions(
            buggy_files[path], [hunks[k] for k in idx], replacements=[texts[k] for k in idx]
        )
    return out


@lru_cache(maxsize=256)
def _parse_module(source: str, flags: int = 0) -> ast.Module | None:
    """The module's AST when `source` compiles (parser and symbol table), else None. Cached:
    the reference file of a row is checked for every system and search candidate. `flags`:
    `__future__` compiler flags in force (those of the file a segment was cut from)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrusted model output: its warnings are noise
        try:
            tree = compile_source(source, "<hrm-file>", "exec", ast.PyCF_ONLY_AST | flags)
            compile_source(tree, "<hrm-file>", "exec", flags)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return None
    return tree


def module_compiles(source: str) -> bool:
    """`source` parses and compiles as a module (never executed)."""
    return _parse_module(source) is not None


def _lines(source: str) -> list[str]:
    """Lines as the tokenizer counts them (`\r\n`, `\r` and `\n` end a line; `str.splitlines`
    also splits on `\f`, `\x1c`... and would misplace AST line numbers)."""
    return source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _stmt_text(lines: list[str], node: ast.stmt) -> tuple[str, int, int]:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[first - 1:node.end_lineno]), node.col_offset, node.end_col_offset or 0


def same_ast(a: ast.AST, b: ast.AST) -> bool:
    """`ast.dump(a) == ast.dump(b)` without positions, compared node by node (no dump strings;
    stops at the first difference). Scalars compare by type and value (`1`, `1.0` and `True`
    differ), floats and complex numbers by repr (`0.0` and `-0.0` differ, NaN equals NaN)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, ast.AST):
            for name in x._fields:
                stack.append((getattr(x, name, None), getattr(y, name, None)))
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif isinstance(x, (float, complex)):
            if repr(x) != repr(y):
                return False
        elif x != y:
            return False
    return True


def same_module_ast(a_src: str, a: ast.Module, b_src: str, b: ast.Module) -> bool:
    """Normalised-AST equality of two modules (as `ast.dump` without positions), comparing only
    the top-level statements whose source text differs: a spliced file shares the rest."""
    if a_src == b_src:
        return True
    if len(a.body) != len(b.body):
        return False
    a_lines, b_lines = _lines(a_src), _lines(b_src)
    for x, y in zip(a.body, b.body, strict=True):
        if type(x) is not type(y):
            return False
        if _stmt_text(a_lines, x) == _stmt_text(b_lines, y):
            continue  # the same statement text at the same columns parses to the same AST
        if not same_ast(x, y):
            return False
    return True


# ---- segments: compile only the statements a row's hunks touch ---------------------------------
#
# A buggy file B compiles. A candidate C is B with the hunks' regions replaced; outside the
# top-level statements those regions touch (or, inside one class, the class-body statements),
# C is B byte for byte. The touched statements, with the replacements, form a *segment*; put
# under the headers of the classes it sits in (B's own header lines), it is parsed and compiled
# alone, with B's `__future__` flags. When the segment compiles alone and the guards below hold,
# C compiles: the segment starts and ends at statement boundaries of B, where the tokenizer
# holds no open bracket, string or line continuation, and a module (or class body) is a
# sequence of statements; nothing in the symbol table links two top-level statements except
# `global` and `__future__` imports, which send a file to the full check. The ASTs of two
# candidates differ only inside their segments, so comparing the segments' ASTs is comparing
# the files'. When the segment does NOT compile alone, the whole file decides (the suffix
# might close what the segment leaves open), so a segment can never turn a failure into a
# pass or a pass into a failure; it only spares parsing the statements no hunk touches.

_GLOBAL = re.compile(r"\bglobal\b")


@dataclass(frozen=True)
class _Stmt:
    first: int
    """First line, decorators included (1-based)."""
    last: int
    body: tuple[_Stmt, ...] | None = None
    """A class whose body starts on a later line: its body statements (else None)."""
    header_end: int = 0
    """Last line before the body's first statement."""
    indent: str = ""
    """Indentation of the body's first statement."""


@dataclass(frozen=True)
class _Layout:
    source: str
    offsets: tuple[int, ...]
    """Character offset of the start of each line (1-based line n starts at offsets[n - 1]);
    one more entry: len(source)."""
    body: tuple[_Stmt, ...]
    flags: int
    future_end: int
    """Last line of the last `from __future__` import (0: none): a segment starting at or
    before it could move the imports off the top of the file."""


def _line_count(text: str) -> int:
    """Lines of a region as `hrm.hunks.apply_regions` counts them (a last line without `\\n`
    counts)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _stmts(nodes: list[ast.stmt], lines: list[str]) -> tuple[_Stmt, ...]:
    out = []
    for node in nodes:
        first = _first_line(node)
        body = getattr(node, "body", None)
        start = _first_line(body[0]) if body else 0
        if isinstance(node, ast.ClassDef) and start > node.lineno \
                and not lines[start - 2].rstrip("\r").endswith("\\"):
            line = lines[start - 1]
            out.append(_Stmt(first, node.end_lineno, _stmts(body, lines), start - 1,
                             line[:len(line) - len(line.lstrip(" \t"))]))
        else:
            out.append(_Stmt(first, node.end_lineno))
    return tuple(out)


@lru_cache(maxsize=64)
def _layout(source: str) -> _Layout | None:
    """Statement layout of a buggy file, cached by its content (the key is the whole text, so
    two versions of a path never share an entry); None when segments do not apply to it."""
    if "\r" in source.replace("\r\n", "") or _GLOBAL.search(source):
        return None  # lone CR: line numbers differ from `\n` lines; `global`: see above
    tree = _parse_module.__wrapped__(source)  # the whole file must compile, not only parse
    if tree is None:
        return None
    flags = future_end = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future_end = node.end_lineno
            for alias in node.names:
                feature = getattr(__future__, alias.name, None)
                if not isinstance(feature, __future__._Feature):
                    return None
                flags |= feature.compiler_flag
    offsets, pos = [0], 0
    for line in source.split("\n")[:-1]:
        pos += len(line) + 1
        offsets.append(pos)
    if offsets[-1] != len(source):
        offsets.append(len(source))
    return _Layout(source, tuple(offsets), _stmts(tree.body, source.split("\n")), flags,
                   future_end)


def _touched(stmt: _Stmt, start: int, count: int) -> bool:
    """Whether a region (`count` lines from `start`; 0: an insertion before `start`) is
    inside the statement or overlaps it."""
    if count == 0:
        return stmt.first < start <= stmt.last
    return start <= stmt.last and start + count - 1 >= stmt.first


def _span(layout: _Layout, regions: list[tuple[int, int]]
          ) -> tuple[int, int, list[tuple[int, int, str]]]:
    """(first line, last line, enclosing classes as (first line, header end, body indent))
    of the statements the regions touch, descending into a class while all regions lie in
    its body."""
    body, classes = layout.body, []
    while True:
        lo = min(s for s, _ in regions)
        hi = max(s + c - 1 for s, c in regions)
        hit = [st for st in body if any(_touched(st, s, c) for s, c in regions)]
        for st in hit:
            lo, hi = min(lo, st.first), max(hi, st.last)
        grown = True
        while grown:  # statements between two regions, or sharing a line with the span
            grown = False
            for st in body:
                if st.first <= hi and st.last >= lo and (st.first < lo or st.last > hi):
                    lo, hi, grown = min(lo, st.first), max(hi, st.last), True
        if len(hit) == 1 and hit[0].body is not None and (lo, hi) == (hit[0].first, hit[0].last):
            cls = hit[0]
            inside = all(cls.header_end < s and (s + c - 1 <= cls.last if c else s <= cls.last)
                         for s, c in regions)
            if inside:
                classes.append((cls.first, cls.header_end, cls.indent))
                body = cls.body
                continue
        return lo, hi, classes


@dataclass(frozen=True)
class _Checked:
    """One candidate file: compiles, and the AST to compare (of its segment or whole file)."""

    tree: ast.Module | None
    segment: str | None
    """The segment source (under its class headers); None: `tree` is the whole file."""


def _segment(layout: _Layout, regions: list[tuple[int, int]], spliced: str
             ) -> tuple[str, list[tuple[int, int, str]]] | None:
    """The segment of `spliced` under its class headers, and the classes; None when a guard
    fails."""
    lo, hi, classes = _span(layout, regions)
    src, offsets = layout.source, layout.offsets
    lines_n = len(offsets) - 1
    if lo < 1 or lo > lines_n + 1 or lo <= layout.future_end:
        return None
    p = offsets[lo - 1] if lo - 1 < len(offsets) else len(src)
    q = offsets[hi] if hi < len(offsets) else len(src)
    q = max(p, q)
    suffix_len = len(src) - q
    if len(spliced) < p + suffix_len or not spliced.startswith(src[:p]) or \
            not spliced.endswith(src[q:]):
        return None
    seg = spliced[p:len(spliced) - suffix_len]
    if p and src.endswith(("\\\n", "\\\r\n"), 0, p):
        return None  # the line before continues into the segment
    if suffix_len and (not seg.endswith("\n") or seg.endswith(("\\\n", "\\\r\n"))):
        return None  # the segment would join the line after it
    if "__future__" in seg or _GLOBAL.search(seg):
        return None
    heads = "".join(src[offsets[first - 1]:offsets[end]] for first, end, _ in classes)
    return heads + seg, classes


def _class_nesting_ok(tree: ast.Module, seg_src: str, classes: list) -> bool:
    """The segment parsed inside its class headers and nothing else: one class per level
    (the segment never dedents out of its class) and its first statement indented as B's."""
    nodes = tree.body
    for _ in classes:
        if len(nodes) != 1 or not isinstance(nodes[0], ast.ClassDef):
            return False
        nodes = nodes[0].body
    if not nodes:
        return False
    first = _first_line(nodes[0])
    line = _lines(seg_src)[first - 1]
    return line[:len(line) - len(line.lstrip(" \t"))] == classes[-1][2]


def _regions(file_hunks: Sequence[Hunk], texts: Sequence[str]) -> list[tuple[int, int]]:
    """(first line, line count) of each `texts[k]` in the file where they replaced the hunks'
    buggy regions (the buggy texts themselves: the regions of the buggy file)."""
    out, delta = [], 0
    for hunk, text in sorted(zip(file_hunks, texts, strict=True), key=lambda p: p[0].buggy_start):
        count = _line_count(text)
        out.append((hunk.buggy_start + delta, count))
        delta += count - _line_count(hunk.buggy_text)
    return out


def _check_file(base: str, regions: list[tuple[int, int]], spliced: str) -> _Checked:
    """Does `spliced` (= `base` with `regions` replaced) compile? Through its segment when the
    segment compiles alone (see above), else through the whole file."""
    layout = _layout(base)
    if layout is not None:
        cut = _segment(layout, regions, spliced)
        if cut is not None:
            seg, classes = cut
            tree = _parse_module(seg, layout.flags)
            if tree is not None and (not classes or _class_nesting_ok(tree, seg, classes)):
                return _Checked(tree, seg)
    return _Checked(_parse_module(spliced), None)


def _same_file_ast(pred: _Checked, pred_src: str, ref: _Checked, ref_src: str) -> bool:
    if pred.segment is not None and ref.segment is not None:
        return pred.segment == ref.segment or same_ast(pred.tree, ref.tree)
    pred_tree = pred.tree if pred.segment is None else _parse_module(pred_src)
    ref_tree = ref.tree if ref.segment is None else _parse_module(ref_src)
    return same_module_ast(pred_src, pred_tree, ref_src, ref_tree)


def files_compile(hunks: Sequence[Hunk], texts: Sequence[str], buggy_files: Mapping[str, str]
                  ) -> bool:
    """Every file compiles with `texts[k]` spliced over hunk k (ValueError: no splice); the
    buggy file is the base the segments are cut from."""
    spliced = splice_files(hunks, texts, buggy_files)
    for path, src in spliced.items():
        idx = [k for k, h in enumerate(hunks) if h.file == path]
        file_hunks = [hunks[k] for k in idx]
        regions = _regions(file_hunks, [h.buggy_text for h in file_hunks])
        if _check_file(buggy_files[path], regions, src).tree is None:
            return False
    return True


def clear_caches() -> None:
    """Forget every cached parse and scan (benchmarks: one evaluation's reuse, no more)."""
    _parse_module.cache_clear()
    _layout.cache_clear()
    scan_tokens.cache_clear()


def check_in_files(
    pred_hunks: Sequence[str],
    ref_hunks: Sequence[str],
    hunks: Sequence[Hunk],
    buggy_files: Mapping[str, str],
) -> CodeCheck:
    """Splice prediction and reference into the buggy files; compile and compare ASTs there.

    Raises ValueError when a hunk's buggy region does not match `buggy_files` (the caller then
    has no file context for this row and must say so).
    """
    if len(pred_hunks) != len(ref_hunks):
        return _wrong_hunk_count(ref_hunks)
    ref_files = splice_files(hunks, ref_hunks, buggy_files)
    syntax = _syntax(pred_hunks, ref_hunks)
    # Segments are cut from the reference file: with the fixed texts as reference it is the
    # original file, the same for every instance that touches it (one full parse, cached).
    idx = {p: [k for k, h in enumerate(hunks) if h.file == p] for p in ref_files}
    regions = {p: _regions([hunks[k] for k in ks], [ref_hunks[k] for k in ks])
               for p, ks in idx.items()}
    ref_checks = {p: _check_file(src, regions[p], src) for p, src in ref_files.items()}
    if any(c.tree is None for c in ref_checks.values()):
        return CodeCheck(syntax, None, None, "excluded: reference does not compile in its file")
    if any(is_blank(p) and not is_blank(r) for p, r in zip(pred_hunks, ref_hunks, strict=True)):
        return CodeCheck(syntax, False, False, "file")
    try:
        pred_files = splice_files(hunks, pred_hunks, buggy_files)
    except ValueError:
        return CodeCheck(syntax, False, False, "file")
    pred_checks = {}
    for p, src in pred_files.items():
        pred_checks[p] = _check_file(ref_files[p], regions[p], src)
        if pred_checks[p].tree is None:
            return CodeCheck(syntax, False, False, "file")
    match = all(_same_file_ast(pred_checks[p], pred_files[p], ref_checks[p], ref_files[p])
                for p in ref_files)
    return CodeCheck(syntax, True, match, "file")

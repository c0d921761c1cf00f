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

import ast
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hrm.eval.fragments import (
    compiles,
    is_blank,
    normalized_ast,
    reference_wrapper,
    syntax_valid,
)
from hrm.hunks import Hunk, apply_regions


@dataclass(frozen=True)
class CodeCheck:
    """Static tiers reached by one prediction; a tier is None when the reference cannot be
    checked at it (excluded from that metric's denominator, and counted)."""

    syntax: bool | None
    compiles: bool | None
    ast_match: bool | None
    context: str
    """`file`, `fragment`, or `excluded: <why>`."""

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
def _parse_module(source: str) -> ast.Module | None:
    """The module's AST when `source` compiles (parser and symbol table), else None. Cached:
    the reference file of a row is checked for every system and search candidate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrusted model output: its warnings are noise
        try:
            tree = ast.parse(source)
            compile(tree, "<hrm-file>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return None
    return tree


def module_compiles(source: str) -> bool:
    """`source` parses and compiles as a module (never executed)."""
    return _parse_module(source) is not None


def _stmt_text(lines: list[str], node: ast.stmt) -> tuple[str, int, int]:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "".join(lines[first - 1:node.end_lineno]), node.col_offset, node.end_col_offset or 0


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=True, include_attributes=False)


def same_module_ast(a_src: str, a: ast.Module, b_src: str, b: ast.Module) -> bool:
    """Normalised-AST equality of two modules (as `ast.dump` without positions), dumping only
    the top-level statements whose source text differs: a spliced file shares the rest."""
    if a_src == b_src:
        return True
    if len(a.body) != len(b.body):
        return False
    a_lines, b_lines = a_src.splitlines(keepends=True), b_src.splitlines(keepends=True)
    for x, y in zip(a.body, b.body, strict=True):
        if type(x) is not type(y):
            return False
        if _stmt_text(a_lines, x) == _stmt_text(b_lines, y):
            continue  # the same statement text at the same columns parses to the same AST
        if _dump(x) != _dump(y):
            return False
    return True


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
    ref_trees = {path: _parse_module(src) for path, src in ref_files.items()}
    if any(tree is None for tree in ref_trees.values()):
        return CodeCheck(syntax, None, None, "excluded: reference does not compile in its file")
    if any(is_blank(p) and not is_blank(r) for p, r in zip(pred_hunks, ref_hunks, strict=True)):
        return CodeCheck(syntax, False, False, "file")
    try:
        pred_files = splice_files(hunks, pred_hunks, buggy_files)
    except ValueError:
        return CodeCheck(syntax, False, False, "file")
    pred_trees = {path: _parse_module(src) for path, src in pred_files.items()}
    if any(tree is None for tree in pred_trees.values()):
        return CodeCheck(syntax, False, False, "file")
    match = all(same_module_ast(pred_files[p], pred_trees[p], ref_files[p], ref_trees[p])
                for p in ref_files)
    return CodeCheck(syntax, True, match, "file")

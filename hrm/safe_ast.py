"""Building Python ASTs from several threads: one lock around every conversion.

CPython 3.11 keeps the AST converter's recursion depth in interpreter state, not per thread.
When a conversion (`ast.parse`, `compile(..., PyCF_ONLY_AST)`, `compile(tree, ...)`) allocates,
the garbage collector may run a finalizer, the thread may switch, and another thread's
conversion moves the shared depth: the first one then fails with "SystemError: AST constructor
recursion depth mismatch (before=48, after=44)" (seen in `make test`, evaluation's two worker
threads; reproduced by `tests/test_safe_ast.py`). Evaluation scores and searches rows on a
thread pool, so every parse on that path goes through `parse` / `compile_source` here.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.RLock()  # re-entrant: a finalizer run inside a conversion may parse too


def parse(source: str) -> ast.Module:
    """`ast.parse(source)`, one thread at a time."""
    with _LOCK:
        return ast.parse(source)


def compile_source(source: str | ast.AST, filename: str, mode: str, flags: int = 0):
    """`compile(source, filename, mode, flags, dont_inherit=True)`, one thread at a time."""
    with _LOCK:
        return compile(source, filename, mode, flags, dont_inherit=True)

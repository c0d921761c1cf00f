"""Write an issue-style problem statement from what a mutation's test run showed.

The statement is built only from observations (failing test names, their assertion or
exception messages, the affected function and module). It never quotes the diff or the
mutated code: message lines that look like diff lines or that repeat a changed line of the
patch are dropped, and the result is checked by `leaks_patch`.

A changed line counts (is searched for) when its content is more than a single identifier or
literal: at least two tokens (runs of word characters, or single punctuation characters) and at
least one word character, so `i + 1` or `x[0]` count while `return`, `pass` or `)` do not. It matches
token by token (any whitespace between tokens, not inside a longer identifier).
"""

from __future__ import annotations

import re

from hrm.envs.results import TestResult

_MAX_LISTED = 6
_DIFF_PREFIXES = ("+", "-", "@@", "diff --git", "index ")


_TOKEN = re.compile(r"\w+|[^\w\s]")


def _pattern(content: str) -> re.Pattern[str] | None:
    """A token-wise pattern for a changed line's content; None for a single token or no word."""
    tokens = _TOKEN.findall(content)
    if len(tokens) < 2 or not re.search(r"\w", content):
        return None
    body = r"\s*".join(re.escape(t) for t in tokens)
    head = r"(?<!\w)" if re.match(r"\w", tokens[0]) else ""
    tail = r"(?!\w)" if re.match(r"\w", tokens[-1][-1]) else ""
    return re.compile(head + body + tail)


def _changed_lines(patch: str) -> list[re.Pattern[str]]:
    out: dict[str, re.Pattern[str]] = {}
    for line in patch.splitlines():
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        content = line[1:].strip()
        pattern = _pattern(content) if content not in out else None
        if pattern is not None:
            out[content] = pattern
    return list(out.values())


def _quotes(text: str, changed: list[re.Pattern[str]]) -> bool:
    return any(p.search(text) for p in changed)


def _clean(message: str, changed: list[re.Pattern[str]]) -> str:
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    if not first or first.startswith(_DIFF_PREFIXES) or _quotes(first, changed):
        return ""
    return first[:200]


def leaks_patch(statement: str, patch: str) -> bool:
    """True if the statement holds a diff-looking line or any changed line of the patch."""
    changed = _changed_lines(patch)
    for line in statement.splitlines():
        if line.startswith(_DIFF_PREFIXES) or _quotes(line, changed):
            return True
    return False


def write_statement(
    *, function: str, module: str, failing: list[TestResult], n_passing: int, patch: str
) -> str:
    """An issue report: what broke, where it seems to be, which tests show it."""
    changed = _changed_lines(patch)
    short = function.split(".<locals>.")[0]
    n = len(failing)
    kinds = sorted({r.outcome for r in failing})
    lines = [
        f"`{short}` in `{module}` misbehaves",
        "",
        f"After the latest change, {n} test{'s' if n != 1 else ''} that used to pass now "
        f"{'fail' if n != 1 else 'fails'} ({', '.join(kinds)}), while {n_passing} other "
        "tests still pass. Everything points at "
        f"`{short}` (module `{module}`): the behaviour of code that goes through it no "
        "longer matches what the tests expect.",
        "",
        "Failing tests and what they report:",
        "",
    ]
    for r in failing[:_MAX_LISTED]:
        msg = _clean(r.message, changed)
        lines.append(f"* `{r.node_id}`" + (f": {msg}" if msg else f" ({r.outcome})"))
    if n > _MAX_LISTED:
        lines.append(f"* ... and {n - _MAX_LISTED} more")
    lines += ["", "Expected: these tests pass again without changing the tests themselves."]
    statement = "\n".join(lines) + "\n"
    if leaks_patch(statement, patch):  # defensive: never ship a statement that quotes the bug
        raise ValueError(f"problem statement for {short} would leak the patch")
    return statement

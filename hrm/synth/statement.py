"""Write an issue-style problem statement from what a mutation's test run showed.

The statement is built only from observations (failing test names, their assertion or
exception messages, the affected function and module). It never quotes the diff or the
mutated code: message lines that look like diff lines or that repeat a changed line of the
patch are dropped, and the result is checked by `leaks_patch`.
"""

from __future__ import annotations

from hrm.envs.results import TestResult

_MAX_LISTED = 6
_DIFF_PREFIXES = ("+", "-", "@@", "diff --git", "index ")


def _changed_lines(patch: str) -> set[str]:
    out = set()
    for line in patch.splitlines():
        if line.startswith(("+++", "---")):
            continue
        if line.startswith(("+", "-")) and len(line[1:].strip()) >= 6:
            out.add(line[1:].strip())
    return out


def _clean(message: str, changed: set[str]) -> str:
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    if not first or first.startswith(_DIFF_PREFIXES) or any(c in first for c in changed):
        return ""
    return first[:200]


def leaks_patch(statement: str, patch: str) -> bool:
    """True if the statement holds a diff-looking line or any changed line of the patch."""
    changed = _changed_lines(patch)
    for line in statement.splitlines():
        if line.startswith(_DIFF_PREFIXES) or any(c in line for c in changed):
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

"""Write an issue-style problem statement from what a mutation's test run showed.

The statement is built only from observations (failing test names, their assertion or
exception messages, the affected function and module). It never quotes the diff or the
mutated code: message lines that look like diff lines or that repeat a changed line of the
patch are dropped, and the result is checked by `leaks_patch`.

A changed line counts (is searched for) when its content is more than a single identifier or
literal: at least two tokens (runs of word characters, or single punctuation characters) and at
least one word character, so `i + 1` or `x[0]` count while `return`, `pass` or `)` do not. It matches
token by token (any whitespace between tokens, not inside a longer identifier).

Messages are normalised first (`normalise_message`) so that the same bug gives the same text on
every machine and run: memory addresses (`0x7feb12ab34cd` -> `0x...`), paths of the working
copy (made relative) and of temporary directories (`/tmp/...`, `/tmp/pytest-of-nobody/...` ->
`<tmp>`), measured times (in a message that speaks of time, with a unit like `1.02s` or a word
like `elapsed`, `took`, `duration`, `sleep`, `timeout`, `seconds`, every number with a
fractional part -> `<time>`) and long fractions from anywhere else (four or more decimals, as
random or measured values print: `6088.937123` -> `<float>`) never reach the statement. The
generator also leaves out a message that differs between its two runs with the bug (a value no
rule above recognises, e.g. a measured integer) or that holds `<time>` / `<float>` (the rest of
such a message tends to vary with the value, e.g. which assertion failed first).
"""

from __future__ import annotations

import re
import tempfile

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


_HEX_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_TMP_ROOTS = sorted({"/tmp", "/var/tmp", "/private/tmp", "/dev/shm",
                     tempfile.gettempdir().rstrip("/") or "/tmp"}, key=len, reverse=True)
_TMP_PATH = re.compile(
    r"(?<![\w.~/-])(?:" + "|".join(re.escape(r) for r in _TMP_ROOTS) + r")(?:/[^\s'\"`()\[\]{},;:<>]*)?")
_NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
_WITH_UNIT = re.compile(r"(?<![\w.])" + _NUMBER +
                        r"\s?(?:ns|us|µs|ms|s|secs?|seconds?|minutes?|mins?)(?!\w)")
_TIME_WORDS = re.compile(r"(?i)\b(?:times?|timed|timing|elapsed|took|duration|delay(?:ed)?|"
                         r"sleep(?:s|ing|t)?|slept|waited|timeout|seconds?|secs?|clock|"
                         r"monotonic|perf_counter|latency)\b")
_FRACTION = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d+|\.\d+)(?:[eE][-+]?\d+)?(?!\d)")
_LONG_FRACTION = re.compile(r"(?<![\w.])[-+]?\d*\.\d{4,}(?:[eE][-+]?\d+)?(?!\d)")


UNSTABLE_MARKS = ("<time>", "<float>")
"""What `normalise_message` puts where a measured or random value was."""


def normalise_message(message: str, roots: tuple[str, ...] | list[str] = ()) -> str:
    """`message` without what differs between runs and machines (see the module docstring).

    `roots` are directories the run happened in (the working copy): a path below one becomes
    relative to it, the directory itself `.`.
    """
    text = message
    for root in sorted((r.rstrip("/") for r in roots if r.rstrip("/")), key=len, reverse=True):
        text = text.replace(root + "/", "").replace(root, ".")
    text = _TMP_PATH.sub("<tmp>", text)
    text = _HEX_ADDRESS.sub("0x...", text)
    if _TIME_WORDS.search(text) or _WITH_UNIT.search(text):
        text = _FRACTION.sub("<time>", text)
    return _LONG_FRACTION.sub("<float>", text)


def _quotes(text: str, changed: list[re.Pattern[str]]) -> bool:
    return any(p.search(text) for p in changed)


def _clean(message: str, changed: list[re.Pattern[str]], roots: tuple[str, ...]) -> str:
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    first = normalise_message(first, roots)
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
    *, function: str, module: str, failing: list[TestResult], n_passing: int, patch: str,
    roots: tuple[str, ...] = (),
) -> str:
    """An issue report: what broke, where it seems to be, which tests show it.

    `roots`: the directories the tests ran in (made relative in the messages).
    """
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
        msg = _clean(r.message, changed, tuple(roots))
        lines.append(f"* `{r.node_id}`" + (f": {msg}" if msg else f" ({r.outcome})"))
    if n > _MAX_LISTED:
        lines.append(f"* ... and {n - _MAX_LISTED} more")
    lines += ["", "Expected: these tests pass again without changing the tests themselves."]
    statement = "\n".join(lines) + "\n"
    if leaks_patch(statement, patch):  # defensive: never ship a statement that quotes the bug
        raise ValueError(f"problem statement for {short} would leak the patch")
    return statement

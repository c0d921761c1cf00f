"""Parse a SWE-smith bug patch (a unified diff) into exact buggy/fixed regions.

In SWE-smith the `patch` INTRODUCES the bug, so for every hunk:

- the post-patch side (context + `+` lines) is the code as it reads WITH the bug: `buggy_text`;
- the pre-patch side (context + `-` lines) is the code as it reads once fixed: `fixed_text`.

Texts are kept byte-exact: lines keep their `\\n`, nothing is stripped, and a
`\\ No newline at end of file` marker removes the newline of the line just before it on the side(s)
that line belongs to. Splicing `fixed_text` over the `buggy_text` lines starting at line
`buggy_start` of the buggy file therefore reproduces the fixed file exactly (see `apply_regions`).

Each hunk also carries the enclosing function (qualified like `Class.method`) of its first changed
line, every scope its changed lines touch, and the original-file line numbers of its changes, so
that splits can keep instances that edit the same function on one side (see `hrm.splits`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hrm.errors import InputError

MODULE_SCOPE = "<module>"
"""Function name of a hunk whose changes are at module level (no enclosing def/class)."""

_HUNK_HEADER_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_DEF_RE = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_][A-Za-z0-9_]*)")
_NO_NEWLINE = "\\ No newline at end of file"


@dataclass(frozen=True)
class Hunk:
    """One hunk of a bug patch, as exact buggy and fixed regions of one file."""

    file: str
    """Path of the file in the repository (the buggy side's path; the fixed side's when deleted)."""
    buggy_start: int
    """1-based line in the BUGGY file where `buggy_text` begins (for an empty region: the line
    before which the fixed text is inserted)."""
    buggy_text: str
    """The region as it reads with the bug (context + `+` lines), exact bytes."""
    fixed_text: str
    """The same region once fixed (context + `-` lines), exact bytes."""
    function: str
    """Qualified scope of the first changed line (`Class.method`, `func`, or `<module>`)."""
    scopes: tuple[str, ...] = field(default=())
    """Every distinct scope touched by a changed line, on either side, in order of appearance."""
    fixed_start: int = 0
    """1-based line in the FIXED (original) file where `fixed_text` begins."""
    changed_lines: tuple[int, ...] = field(default=())
    """Lines of the FIXED (original) file the change touches: each removed line's number, and for
    added lines the number of the original line they follow (0: the start of the file)."""

    @property
    def buggy_line_count(self) -> int:
        return _count_lines(self.buggy_text)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "buggy_start": self.buggy_start,
            "buggy_text": self.buggy_text,
            "fixed_text": self.fixed_text,
            "function": self.function,
        }


def _count_lines(text: str) -> int:
    """Lines in `text`, counting a last line without a newline."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def split_lines(text: str) -> list[str]:
    """Split on `\\n` only, keeping it; source may contain `\\f` or `\\r` that str.splitlines
    would treat as line breaks and a diff does not."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _strip_prefix(path: str) -> str:
    path = path.rstrip("\n").split("\t", 1)[0]
    if path.startswith('"') and path.endswith('"'):
        raise InputError(f"quoted diff path {path!r} is not supported")
    if path == "/dev/null":
        return path
    if path.startswith(("a/", "b/")):
        return path[2:]
    return path


def _header_scope(section: str) -> list[tuple[int, str]]:
    """Scope from the `@@ ... @@ section` context git prints (the nearest unindented line)."""
    m = _DEF_RE.match(section)
    return [(len(m.group(1)), m.group(3))] if m else []


def _scopes(lines: Sequence[tuple[str, bool]], header: list[tuple[int, str]]) -> list[str]:
    """For one side of a hunk, the qualified scope at each changed line.

    `lines` are (text, changed) pairs of that side. A stack of (indent, name) of def/class lines
    is kept; a non-blank line at or left of a def's indentation closes that def. The header's
    scope (git's function context, unindented) seeds the stack. A changed decorator line belongs
    to the def/class it decorates (the next def/class at its indentation, when the hunk shows it).
    """
    stack = list(header)
    out: list[str] = []
    pending: list[tuple[int, int]] = []  # (index in out, indent) of changed decorator lines
    for text, changed in lines:
        body = text.rstrip("\n")
        stripped = body.lstrip(" \t")
        indent = len(body) - len(stripped)
        # Comments and lines that close a bracket (the `) -> T:` of a multi-line signature)
        # do not end a scope.
        if body.strip() and not stripped.startswith(("#", ")", "]", "}")):
            while stack and indent <= stack[-1][0]:
                stack.pop()
            m = _DEF_RE.match(body)
            if m:
                stack.append((len(m.group(1)), m.group(3)))
                scope = ".".join(name for _, name in stack)
                for k, dec_indent in pending:
                    if dec_indent == indent:
                        out[k] = scope
                pending = []
            elif not stripped.startswith("@"):
                pending = []
        if changed:
            out.append(".".join(name for _, name in stack) or MODULE_SCOPE)
            if stripped.startswith("@"):
                pending.append((len(out) - 1, indent))
    return out


@dataclass
class _HunkBody:
    """One hunk's lines read: both sides' texts, (text, changed) per side for scope detection,
    the original-file numbers of the changed lines, the line counts, and where reading ended."""

    fixed: list[str]
    buggy: list[str]
    fixed_side: list[tuple[str, bool]]
    buggy_side: list[tuple[str, bool]]
    changed_lines: list[int]
    n_old: int
    n_new: int
    end: int


def _read_hunk_body(lines: list[str], i: int, old_start: int, old_count: int, new_count: int,
                    source: str) -> _HunkBody:
    """Read the body of the hunk whose first body line is `lines[i]` (`\\ No newline` markers
    applied to the side(s) of the line before them)."""
    fixed: list[str] = []
    buggy: list[str] = []
    # (text, changed) per side, for scope detection
    fixed_side: list[tuple[str, bool]] = []
    buggy_side: list[tuple[str, bool]] = []
    last_sides: tuple[bool, bool] = (False, False)  # (in fixed, in buggy) of the previous line
    n_old = n_new = 0
    # number of the last original (fixed-side) line seen; git's start for an empty old side
    # is the line before the insertion
    fixed_pos = old_start - 1 if old_count else old_start
    changed_lines: list[int] = []
    while i < len(lines) and (n_old < old_count or n_new < new_count or
                              lines[i].startswith("\\")):
        body = lines[i]
        tag, text = body[:1], body[1:]
        if body.startswith("\\"):
            if not body.startswith(_NO_NEWLINE[:2]) or not (fixed or buggy):
                raise InputError(f"{source}: line {i + 1}: unexpected marker {body!r}")
            in_fixed, in_buggy = last_sides
            if in_fixed and fixed[-1].endswith("\n"):
                fixed[-1] = fixed[-1][:-1]
            if in_buggy and buggy[-1].endswith("\n"):
                buggy[-1] = buggy[-1][:-1]
            i += 1
            continue
        if body == "\n":  # some tools drop the space of an empty context line
            tag, text = " ", "\n"
        if tag == " ":
            fixed.append(text)
            buggy.append(text)
            fixed_side.append((text, False))
            buggy_side.append((text, False))
            fixed_pos += 1
            n_old += 1
            n_new += 1
            last_sides = (True, True)
        elif tag == "-":
            fixed.append(text)
            fixed_side.append((text, True))
            fixed_pos += 1
            changed_lines.append(fixed_pos)
            n_old += 1
            last_sides = (True, False)
        elif tag == "+":
            buggy.append(text)
            buggy_side.append((text, True))
            changed_lines.append(fixed_pos)
            n_new += 1
            last_sides = (False, True)
        else:
            break
        i += 1
    return _HunkBody(fixed, buggy, fixed_side, buggy_side, changed_lines, n_old, n_new, i)


def parse_patch(patch: str, *, source: str = "patch") -> list[Hunk]:
    """Parse a unified diff (several files and hunks allowed) into `Hunk` regions.

    `source` names the patch in error messages (e.g. the instance id). Raises `InputError` when a
    hunk's line counts do not match its header, a hunk appears before a file header, or the patch
    has no hunk at all.
    """
    lines = split_lines(patch)
    hunks: list[Hunk] = []
    old_path = new_path = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            old_path = new_path = None
            i += 1
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old_path = _strip_prefix(line[4:])
            new_path = _strip_prefix(lines[i + 1][4:])
            i += 2
            continue
        m = _HUNK_HEADER_RE.match(line.rstrip("\n"))
        if m is None:
            i += 1  # index, mode, rename and similar extended header lines
            continue
        if new_path is None or old_path is None:
            raise InputError(f"{source}: line {i + 1}: hunk before any ---/+++ file header")
        file = new_path if new_path != "/dev/null" else old_path
        old_start, old_count = int(m[1]), int(m[2]) if m[2] is not None else 1
        new_start, new_count = int(m[3]), int(m[4]) if m[4] is not None else 1
        header_line = i + 1
        i += 1
        hb = _read_hunk_body(lines, i, old_start, old_count, new_count, source)
        i, fixed, buggy, n_old, n_new = hb.end, hb.fixed, hb.buggy, hb.n_old, hb.n_new
        fixed_side, buggy_side, changed_lines = hb.fixed_side, hb.buggy_side, hb.changed_lines
        if n_old != old_count or n_new != new_count:
            raise InputError(
                f"{source}: hunk at line {header_line} ({file}) declares -{old_count} +{new_count} "
                f"lines but has -{n_old} +{n_new}"
            )
        header = _header_scope(m[5])
        scopes_fixed = _scopes(fixed_side, header)
        scopes_buggy = _scopes(buggy_side, header)
        # The first change in file order: whichever side's first changed line comes first.
        first = _first_change_scope(fixed_side, buggy_side, scopes_fixed, scopes_buggy)
        scopes = tuple(dict.fromkeys(scopes_fixed + scopes_buggy))
        hunks.append(
            Hunk(
                file=file,
                # With an empty buggy side, git's start is the line BEFORE the (empty) region.
                buggy_start=new_start if new_count else new_start + 1,
                buggy_text="".join(buggy),
                fixed_text="".join(fixed),
                function=first,
                scopes=scopes,
                fixed_start=old_start if old_count else old_start + 1,
                changed_lines=tuple(dict.fromkeys(changed_lines)),
            )
        )
    if not hunks:
        raise InputError(f"{source}: no hunk found in the patch")
    return hunks


def _first_change_scope(
    fixed_side: Sequence[tuple[str, bool]],
    buggy_side: Sequence[tuple[str, bool]],
    scopes_fixed: list[str],
    scopes_buggy: list[str],
) -> str:
    """Scope of the first changed line, preferring the fixed (original) side on a tie: the
    original code is what other instances of the same repository commit share."""
    def first_index(side: Sequence[tuple[str, bool]]) -> int | None:
        # position counted in context lines preceding the first change (shared by both sides)
        context = 0
        for _text, changed in side:
            if changed:
                return context
            context += 1
        return None

    f, b = first_index(fixed_side), first_index(buggy_side)
    if f is not None and (b is None or f <= b):
        return scopes_fixed[0]
    if b is not None:
        return scopes_buggy[0]
    return MODULE_SCOPE


def apply_regions(buggy_file: str, hunks: Iterable[Hunk], *, replacements: Sequence[str] | None
                  = None) -> str:
    """Replace each hunk's buggy region of ONE file with its fixed text (or `replacements[k]`).

    Used to check the parser and to splice model predictions into a file. Any object with
    `file`, `buggy_start`, `buggy_text` and `fixed_text` works (`Hunk`, or the `SequenceHunk` of
    a sequence record). Hunks are applied bottom-up so earlier line numbers stay valid.
    Replacement texts are inserted as they are: one without a final newline joins the next line,
    exactly as that prediction would read. Raises ValueError when a region does not match the
    file at its line (the file is not the buggy file this patch produced).
    """
    hunks = list(hunks)
    texts = list(replacements) if replacements is not None else [h.fixed_text for h in hunks]
    if len(texts) != len(hunks):
        raise ValueError(f"{len(texts)} replacements for {len(hunks)} hunks")
    lines = split_lines(buggy_file)
    order = sorted(range(len(hunks)), key=lambda k: hunks[k].buggy_start, reverse=True)
    for k in order:
        hunk = hunks[k]
        start = hunk.buggy_start - 1
        count = _count_lines(hunk.buggy_text)
        current = "".join(lines[start : start + count])
        if current != hunk.buggy_text:
            raise ValueError(
                f"{hunk.file}: region at line {hunk.buggy_start} does not match the buggy text"
            )
        lines[start : start + count] = split_lines(texts[k])
    return "".join(lines)

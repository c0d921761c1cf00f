"""The code a model sees and rewrites: the whole functions a bug touches, from the BUGGY file.

A *unit* is a function or method (decorators included; a def nested in another def belongs to
the outer one), or, for code outside functions, the statement that holds it (a module-level or
class-body statement; a class's header lines, `class X(Base):`, form a unit of their own). Units
come from the buggy file's AST, so they never depend on where the patch's hunks start or end.

A *region* is one contiguous run of buggy-file lines made of the units that changes touch (and
the lines between them), with the same code once fixed. Every line-level change between the
fixed (original) and the buggy file is owned by exactly one region:

- changed or added buggy lines belong to the unit holding them (the nearest unit above, or below,
  for blank and comment lines between units);
- lines the bug REMOVED leave an insertion point between two buggy lines: it belongs to the unit
  of the line before it (so a statement removed at the end of a function stays in that function),
  else the unit of the line after it.

So `fixed_text` is `buggy_text` with exactly the region's own changes undone, and splicing each
region's `fixed_text` over its buggy lines reproduces the fixed file (`hrm.hunks.apply_regions`
does the splicing; tests check every row of the real sample and of the generator).

`window` cuts a region to its first lines, a rule that does not depend on where the bug is; it
says whether every change of the region is still inside.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field

from hrm.hunks import MODULE_SCOPE, split_lines
from hrm.safe_ast import parse

Opcode = tuple[str, int, int, int, int]
"""difflib opcode over lines: (tag, fixed_lo, fixed_hi, buggy_lo, buggy_hi), 0-based, half-open."""


class RegionError(ValueError):
    """The buggy file cannot be cut into units (it does not parse)."""


@dataclass(frozen=True)
class Unit:
    start: int
    """0-based first buggy line (the first decorator of a def)."""
    end: int
    """0-based line after the last one."""
    name: str
    """Qualified name (`Class.method`, `func`, `Class` for class-level code, `<module>`)."""


@dataclass(frozen=True)
class Region:
    """Whole units of one file as they read with the bug and once fixed.

    Duck-types `hrm.hunks.Hunk` for splicing (`file`, `buggy_start`, `buggy_text`,
    `fixed_text`), so the evaluation splices predicted regions into buggy files unchanged.
    """

    file: str
    buggy_start: int
    """1-based first line of the region in the buggy file."""
    buggy_text: str
    fixed_text: str
    fixed_start: int
    """1-based first line of the region in the fixed (original) file."""
    function: str
    """Names of the units it holds, joined by `, ` (the first is the one to show)."""
    ops: tuple[Opcode, ...] = field(default=(), compare=False, repr=False)
    """The region's own line opcodes, relative to its first line on both sides (`window`)."""

    @property
    def buggy_lines(self) -> int:
        return len(split_lines(self.buggy_text))

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "buggy_start": self.buggy_start, "buggy_text": self.buggy_text,
                "fixed_text": self.fixed_text, "fixed_start": self.fixed_start,
                "function": self.function}


def units_of(source: str) -> list[Unit]:
    """The units of a module, in file order (non-overlapping). Raises RegionError if the source
    does not parse."""
    try:
        tree = parse(source)
    except (SyntaxError, ValueError) as err:
        raise RegionError(f"does not parse: {err}") from None
    out: list[Unit] = []

    def first_line(node: ast.stmt) -> int:
        decorators = getattr(node, "decorator_list", None) or []
        return min([node.lineno] + [d.lineno for d in decorators]) - 1

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append(Unit(first_line(node), node.end_lineno, prefix + node.name))
            elif isinstance(node, ast.ClassDef):
                name = prefix + node.name
                header_end = node.body[0].lineno - 1 if node.body else node.end_lineno
                # Lines between the header and the first statement (comments) join the header.
                out.append(Unit(first_line(node), max(header_end, node.lineno), name))
                visit(node.body, name + ".")
            else:
                out.append(Unit(node.lineno - 1, node.end_lineno,
                                prefix.rstrip(".") or MODULE_SCOPE))

    visit(tree.body, "")
    out.sort(key=lambda u: u.start)
    # A class whose first body statement shares the header line (`class X: pass`) would
    # overlap its body unit: clip.
    clipped: list[Unit] = []
    for unit in out:
        if clipped and unit.start < clipped[-1].end:
            prev = clipped[-1]
            clipped[-1] = Unit(prev.start, max(unit.start, prev.start + 1), prev.name)
            if unit.end <= clipped[-1].end:
                continue
            unit = Unit(max(unit.start, clipped[-1].end), unit.end, unit.name)
        clipped.append(unit)
    return clipped


def line_opcodes(fixed_lines: list[str], buggy_lines: list[str]) -> list[Opcode]:
    """Line-level opcodes from the fixed to the buggy file (autojunk off: blank lines and `)`
    lines are aligned like any other)."""
    matcher = difflib.SequenceMatcher(None, fixed_lines, buggy_lines, autojunk=False)
    return [tuple(op) for op in matcher.get_opcodes()]  # type: ignore[misc]


class _Owners:
    """Which unit owns each buggy line (nearest unit above for lines between units)."""

    def __init__(self, units: list[Unit], n_lines: int):
        self.units = units
        self.at = [-1] * n_lines
        for k, unit in enumerate(units):
            for line in range(unit.start, min(unit.end, n_lines)):
                self.at[line] = k

    def of_line(self, line: int) -> int:
        """Unit of a line; between units, the nearest above (else below); -1 with no unit."""
        if not self.units:
            return -1
        line = min(max(line, 0), len(self.at) - 1) if self.at else 0
        if self.at and self.at[line] >= 0:
            return self.at[line]
        for k in range(len(self.units) - 1, -1, -1):
            if self.units[k].end <= line:
                return k
        return 0

    def of_point(self, point: int) -> int:
        """Unit owning an insertion point before buggy line `point` (0..n): the line before's
        unit, else the line after's, else the nearest above."""
        if point - 1 >= 0 and point - 1 < len(self.at) and self.at[point - 1] >= 0:
            return self.at[point - 1]
        if point < len(self.at) and self.at[point] >= 0:
            return self.at[point]
        return self.of_line(point - 1 if point > 0 else 0)


def bug_regions(file: str, fixed_source: str, buggy_source: str) -> list[Region]:
    """The regions of one file a bug changes (empty when the texts are equal).

    Raises RegionError when the buggy file does not parse (no units to cut)."""
    fixed_lines, buggy_lines = split_lines(fixed_source), split_lines(buggy_source)
    ops = line_opcodes(fixed_lines, buggy_lines)
    changes = [op for op in ops if op[0] != "equal"]
    if not changes:
        return []
    units = units_of(buggy_source)
    if not units:
        units = [Unit(0, len(buggy_lines), MODULE_SCOPE)]
    owners = _Owners(units, len(buggy_lines))

    # Union-find over units: a change whose lines span several units joins them.
    parent = list(range(len(units)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        parent[find(a)] = find(b)

    owner_of_change: list[int] = []
    for _tag, _f1, _f2, b1, b2 in changes:
        if b2 > b1:
            ks = {owners.of_line(line) for line in range(b1, b2)}
        else:
            ks = {owners.of_point(b1)}
        first = min(ks)
        for k in ks:
            union(first, k)
        owner_of_change.append(first)

    # A region spans its units and its changes; a change inside another region's span merges
    # the two, until stable.
    while True:
        spans: dict[int, list[int]] = {}
        for c, (_tag, _f1, _f2, b1, b2) in enumerate(changes):
            root = find(owner_of_change[c])
            unit_roots = [k for k in range(len(units)) if find(k) == root]
            lo = min([units[k].start for k in unit_roots] + [b1])
            hi = max([min(units[k].end, len(buggy_lines)) for k in unit_roots] + [b2])
            cur = spans.get(root)
            spans[root] = [min(lo, cur[0]), max(hi, cur[1])] if cur else [lo, hi]
        merged = False
        for c, (_tag, _f1, _f2, b1, b2) in enumerate(changes):
            mine = find(owner_of_change[c])
            for root, (lo, hi) in spans.items():
                if root == mine:
                    continue
                inside = (lo < b2 and b1 < hi) if b2 > b1 else (lo < b1 < hi)
                if inside:
                    union(root, mine)
                    merged = True
        # Overlapping spans of two regions merge too.
        items = sorted(spans.items(), key=lambda kv: kv[1][0])
        for (ra, (_la, ha)), (rb, (lb, _hb)) in zip(items, items[1:], strict=False):
            if lb < ha:
                union(ra, rb)
                merged = True
        if not merged:
            break

    regions = []
    for root, (lo, hi) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        own = {c for c in range(len(changes)) if find(owner_of_change[c]) == root}
        names = list(dict.fromkeys(units[k].name for k in range(len(units))
                                   if find(k) == root or (units[k].start >= lo and units[k].end <= hi
                                                          and units[k].end > units[k].start)))
        regions.append(_region(file, ops, changes, own, lo, hi, fixed_lines, buggy_lines, names))
    return regions


def _region(file: str, ops: list[Opcode], changes: list[Opcode], own: set[int], lo: int, hi: int,
            fixed_lines: list[str], buggy_lines: list[str], names: list[str]) -> Region:
    """Cut buggy lines [lo, hi) and their fixed counterpart (own changes undone)."""
    fixed_out: list[str] = []
    rel_ops: list[Opcode] = []
    fixed_start: int | None = None
    change_index = {id(op): k for k, op in enumerate(changes)}
    for op in ops:
        tag, f1, f2, b1, b2 = op
        if tag == "equal":
            a, b = max(b1, lo), min(b2, hi)
            if a >= b:
                continue
            if fixed_start is None:
                fixed_start = f1 + (a - b1)
            rel_ops.append(("equal", len(fixed_out), len(fixed_out) + b - a, a - lo, b - lo))
            fixed_out.extend(fixed_lines[f1 + (a - b1): f1 + (b - b1)])
            continue
        if change_index[id(op)] not in own:
            continue
        if fixed_start is None:
            fixed_start = f1
        rel_ops.append((tag, len(fixed_out), len(fixed_out) + f2 - f1, b1 - lo, b2 - lo))
        fixed_out.extend(fixed_lines[f1:f2])
    return Region(
        file=file,
        buggy_start=lo + 1,
        buggy_text="".join(buggy_lines[lo:hi]),
        fixed_text="".join(fixed_out),
        fixed_start=(fixed_start if fixed_start is not None else 0) + 1,
        function=", ".join(names) or MODULE_SCOPE,
        ops=tuple(rel_ops),
    )


def window(region: Region, max_lines: int) -> tuple[Region, bool]:
    """The region cut to its first `max_lines` buggy lines, and whether every change of the
    region lies inside the cut (a change at or across the cut is outside). The cut depends only
    on the region's length, never on where its changes are."""
    lines = split_lines(region.buggy_text)
    if max_lines >= len(lines):
        return region, True
    fixed = split_lines(region.fixed_text)
    fixed_out: list[str] = []
    rel: list[Opcode] = []
    complete = True
    for tag, f1, f2, b1, b2 in region.ops:
        if tag == "equal":
            b = min(b2, max_lines)
            if b > b1:
                rel.append(("equal", len(fixed_out), len(fixed_out) + b - b1, b1, b))
                fixed_out.extend(fixed[f1: f1 + (b - b1)])
            continue
        if b2 <= max_lines and b1 < max_lines:
            rel.append((tag, len(fixed_out), len(fixed_out) + f2 - f1, b1, b2))
            fixed_out.extend(fixed[f1:f2])
        else:
            complete = False
    cut = Region(region.file, region.buggy_start, "".join(lines[:max_lines]), "".join(fixed_out),
                 region.fixed_start, region.function, tuple(rel))
    return cut, complete


def apply_patch_text(fixed_source: str, hunks) -> str:
    """The buggy file: each hunk's `buggy_text` spliced over its `fixed_text` at `fixed_start`
    (bottom-up). Raises ValueError when a hunk's fixed side does not match the file (the patch
    was made against another version of it)."""
    lines = split_lines(fixed_source)
    for hunk in sorted(hunks, key=lambda h: h.fixed_start, reverse=True):
        start = hunk.fixed_start - 1
        old = split_lines(hunk.fixed_text)
        if "".join(lines[start: start + len(old)]) != hunk.fixed_text:
            raise ValueError(f"{hunk.file}: the patch does not match line {hunk.fixed_start}")
        lines[start: start + len(old)] = split_lines(hunk.buggy_text)
    return "".join(lines)


def patch_regions(patch: str, read_fixed, *, source: str = "patch") -> tuple[list[Region], str]:
    """Regions of an instance's bug patch, and where their code came from.

    `read_fixed(path)` returns the file as it reads before the bug (the repository snapshot) or
    None when unknown. With every touched file known and the patch matching it, the regions are
    whole units (`"file"`); otherwise each hunk of the patch stands as its own region, with the
    few context lines the patch shows (`"hunk"`: the reason is in the second value after `: `).
    Raises InputError for a patch that does not parse.
    """
    from hrm.hunks import parse_patch

    hunks = parse_patch(patch, source=source)
    files = patched_files(hunks, read_fixed)
    if isinstance(files, str):
        return _hunk_regions(hunks), f"hunk: {files}"
    regions: list[Region] = []
    for file, (fixed, buggy) in files.items():
        try:
            regions.extend(bug_regions(file, fixed, buggy))
        except ValueError as err:  # RegionError included
            return _hunk_regions(hunks), f"hunk: {err}"
    return regions, "file"


def patched_files(hunks, read_fixed) -> dict[str, tuple[str, str]] | str:
    """Every file the hunks touch as (fixed, buggy) text: the snapshot's file and the same with
    the bug patch applied; or why not (a file the snapshot lacks, a patch that does not match)."""
    by_file: dict[str, list] = {}
    for hunk in hunks:
        by_file.setdefault(hunk.file, []).append(hunk)
    out: dict[str, tuple[str, str]] = {}
    for file, file_hunks in by_file.items():
        fixed = read_fixed(file)
        if fixed is None:
            return f"{file} not in the repository snapshot"
        try:
            out[file] = (fixed, apply_patch_text(fixed, file_hunks))
        except ValueError as err:
            return str(err)
    return out


def _hunk_regions(hunks) -> list[Region]:
    return [Region(h.file, h.buggy_start, h.buggy_text, h.fixed_text, h.fixed_start, h.function,
                   tuple(line_opcodes(split_lines(h.fixed_text), split_lines(h.buggy_text))))
            for h in hunks]

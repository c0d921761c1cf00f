"""One corpus row, and reading/writing `corpus.jsonl`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from hrm.errors import InputError


@dataclass(frozen=True)
class CorpusRow:
    """A function with one procedural bug, as cut from its module (indentation kept)."""

    id: str
    """`<name>-<version>:<file>:<function>@<line>:<kind>:<index>`: unique in the corpus (a
    property getter and setter share a name, not a line)."""
    package: str
    """The pinned requirement the function comes from (`NAME==VERSION`)."""
    file: str
    """Module path inside the sdist."""
    function: str
    """Qualified name (`Class.method`)."""
    kind: str
    """Mutation kind (`hrm.synth.mutations.KINDS`)."""
    start_line: int
    """1-based line of the function (first decorator) in its module."""
    buggy: str
    """The function with the bug."""
    fixed: str
    """The function as the package has it."""
    problem_statement: str


FIELDS = tuple(f.name for f in fields(CorpusRow))


def write_rows(path: Path, rows: Iterable[CorpusRow]) -> int:
    """Write rows as JSON lines, atomically (a `.partial` file renamed at the end)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_rows(path: str | Path) -> list[CorpusRow]:
    """Read `corpus.jsonl`; a line that is not a complete row is an error naming the line."""
    from hrm.json_input import iter_jsonl

    out: list[CorpusRow] = []
    for lineno, raw in iter_jsonl(path, missing="corpus file not found (run `hrm corpus build`)"):
        if not isinstance(raw, dict) or set(raw) != set(FIELDS):
            got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise InputError(f"a corpus row has exactly the fields {list(FIELDS)}, got {got}",
                             path=str(path), line=lineno)
        try:
            out.append(CorpusRow(**raw))
        except TypeError as err:
            raise InputError(str(err), path=str(path), line=lineno) from None
    return out

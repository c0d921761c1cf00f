"""Repair one function of a user's file: the core of `hrm repair` and of the MLflow model.

The model was trained on whole functions (`hrm.regions`: decorators included), so a user's
function is cut from the file by the same rule (`units_of`) and shown to the model with the
issue text as its problem statement. Without a function name, every function of the file is
proposed for and the one the model is surest holds a bug (its largest per-position change
probability) is chosen: the model localises among functions, the user never has to.

The result is the fixed function and a unified diff against the file (`git apply`-able from the
directory the path is relative to). The model's code is never run here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hrm.errors import InputError
from hrm.hunks import Hunk, split_lines
from hrm.regions import Region, RegionError, Unit, units_of
from hrm.repairer import Proposal, Repairer

MAX_FUNCTIONS = 200
"""A file with more functions than this needs `function` (each costs one model row)."""

ALTERNATIVES = 16
"""Next-best outputs tried, in the model's order, when its best one does not parse."""


@dataclass(frozen=True)
class FunctionFix:
    """The model's fix for one function of a file."""

    file: str
    function: str
    start_line: int
    """1-based first line of the function (its first decorator)."""
    buggy: str
    """The function as the model read it (its first lines only when `truncated`)."""
    fixed: str
    """The proposed function ('' when the proposal is not code: see `reason`)."""
    patch: str
    """Unified diff of the file ('' when nothing changes)."""
    fixed_source: str
    """The whole file with the fix in place (the file as given when there is no fix)."""
    change_probability: float
    q_halt: float
    truncated: bool
    """The function was longer than the model's rows: only its first lines could change."""
    candidates: int
    """Functions the model compared (1 when one was named)."""
    parses: bool = False
    """The fixed file parses and compiles (Python's own compiler; nothing is run)."""
    rank: int = 0
    """Which of the model's outputs this is: 0 its best; k > 0 the k-th next best, taken
    because every better one did not parse."""
    reason: str = ""
    """Why there is no usable fix ('' when there is one)."""

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def functions_of(source: str, path: str) -> list[Unit]:
    """The functions and methods of a module (nested defs belong to their outer function).
    Raises InputError naming the file and line when it does not parse."""
    try:
        units = units_of(source)
    except RegionError as err:
        raise InputError(f"not Python this model can read: {err}", path=path) from None
    lines = split_lines(source)
    return [u for u in units if u.name != "<module>"
            and lines[u.start:u.end] and _is_def("".join(lines[u.start:u.end]))]


def _is_def(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped and not stripped.startswith(("@", "#")):
            return stripped.startswith(("def ", "async def "))
    return False


def select_functions(units: list[Unit], function: str | None, path: str) -> list[Unit]:
    """The unit named `function` (qualified `Class.method`, or a bare name that is unique), or
    every function when None."""
    if not units:
        raise InputError("no function or method in this file", path=path)
    if function is None:
        if len(units) > MAX_FUNCTIONS:
            raise InputError(f"{len(units)} functions: name one with --function (the model "
                             f"compares at most {MAX_FUNCTIONS})", path=path)
        return units
    exact = [u for u in units if u.name == function]
    if exact:
        return exact[:1]
    by_tail = [u for u in units if u.name.rsplit(".", 1)[-1] == function]
    if len(by_tail) == 1:
        return by_tail
    names = [u.name for u in units]
    if by_tail:
        raise InputError(f"{function!r} is ambiguous: {', '.join(u.name for u in by_tail)}; "
                         "qualify it (Class.method)", path=path)
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    raise InputError(f"no function {function!r} here; the file defines: {shown}", path=path)


def _region(path: str, source: str, unit: Unit) -> Region:
    text = "".join(split_lines(source)[unit.start:unit.end])
    return Region(path, unit.start + 1, text, text, unit.start + 1, unit.name)


def repair_source(repairer: Repairer, path: str, source: str, *, function: str | None = None,
                  issue: str = "") -> FunctionFix:
    """The model's fix for `function` of `source` (or for the function it is surest is buggy).

    `path` names the file in the model's row (`# file: path`) and in the diff."""
    from hrm.eval.code_checks import module_compiles, splice_files
    from hrm.eval.patches import file_diff

    units = select_functions(functions_of(source, path), function, path)
    regions = [_region(path, source, u) for u in units]
    from hrm.eval.fusion import file_cache

    results = repairer.propose([(issue, [r]) for r in regions], alternatives=ALTERNATIVES,
                               caches=[file_cache(source, [(r.buggy_start, r.buggy_text)]) for r in regions])
    usable = [(r, p) for r, p in zip(regions, results, strict=True) if isinstance(p, Proposal)]
    if not usable:
        raise InputError(f"{regions[0].function}: {results[0]}" if len(regions) == 1 else
                         f"none of the {len(regions)} functions fits the model's rows", path=path)
    region, prop = max(usable, key=lambda rp: rp[1].change_probability)
    shown = prop.hunks[0]
    common = dict(file=path, function=region.function, start_line=region.buggy_start,
                  buggy=shown.buggy_text, change_probability=prop.change_probability,
                  q_halt=prop.q_halt, truncated=prop.code_truncated, candidates=len(regions))
    hunk = Hunk(path, shown.buggy_start, shown.buggy_text, shown.buggy_text, region.function)
    options = ([prop.texts] if prop.is_code else []) + prop.alternatives
    if not options:
        return FunctionFix(fixed="", patch="", fixed_source=source, reason="the model's output "
                           f"holds special tokens ({', '.join(prop.special_tokens)}): not code",
                           **common)
    if prop.abstained:
        return FunctionFix(fixed=region.buggy_text, patch="", fixed_source=source, parses=True,
                           reason="kept as it is: no rewrite the model ranks reads more naturally "
                           "than the code given (eval.naturalness)", **common)
    files = [splice_files([hunk], [texts[0]], {path: source})[path] for texts in options]
    rank = next((k for k, text in enumerate(files) if module_compiles(text)), None)
    parses = rank is not None
    rank = rank or 0
    rest = "".join(split_lines(region.buggy_text)[len(split_lines(shown.buggy_text)):])
    return FunctionFix(fixed=options[rank][0] + rest, patch=file_diff(path, source, files[rank]),
                       fixed_source=files[rank], parses=parses,
                       rank=rank + (0 if prop.is_code else 1),
                       reason="" if parses else f"none of the model's {len(options)} most likely "
                       "outputs parses; its best is shown", **common)


"""Transfer evaluation: a model trained on one set of instances, scored on instances from
elsewhere (typically: trained on generated bugs, evaluated on the real SWE-smith sample).

`prepare_transfer` keeps the external instances the model has not trained on: a row whose
`instance_id` or whose diff (the changed lines and file names, whitespace at line ends
ignored) equals a TRAIN-split row, or that edits a top-level function of the same repository
some TRAIN-split row edits (the model has read that function, with a bug, in training), is
dropped and listed with the reason in `overlap.json`. The kept rows get one split, `test`, and
sequences built with the trained tokenizer (whole functions from the repository snapshot where
an environment exists); `evaluate` then scores them like any split (with the breakdown by
SWE-smith bug kind), the unigram baseline taken from the training sequences.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hrm.config import EnvsConfig, SequencesConfig
from hrm.data.instance import Instance, read_instances, write_instances
from hrm.errors import InputError

TRANSFER_SPLIT = "test"
OVERLAP_FILE = "overlap.json"


def diff_key(patch: str) -> tuple[str, ...]:
    """What a diff changes: its file headers and +/- lines (trailing whitespace ignored).

    Index lines, hunk line numbers and context do not matter: the same edit made at another
    offset, or with other context, is the same bug.
    """
    key = []
    for line in patch.splitlines():
        if line.startswith(("--- ", "+++ ")) or (line[:1] in "+-" and not line.startswith(("---", "+++"))):
            key.append(line.rstrip())
    return tuple(key)


def _functions(inst: Instance) -> set[tuple[str, str, str]]:
    """(repo, file, top-level name) of every scope a changed line of the patch touches (not
    only the scope of each hunk's first changed line: a hunk can reach into the next def)."""
    from hrm.hunks import parse_patch

    return {(inst.repo, h.file, scope.split(".")[0])
            for h in parse_patch(inst.patch, source=inst.instance_id)
            for scope in (h.scopes or (h.function,)) if scope}


@dataclass
class TransferSet:
    """What `prepare_transfer` kept and dropped (written to `overlap.json`)."""

    external: int
    kept: int
    dropped: list[dict[str, str]] = field(default_factory=list)
    """One entry per dropped row: instance_id, reason, and the train row it matches."""
    same_function_as_train: int = 0
    """Dropped rows that edit a top-level function some train row edits too."""
    sequence_rows: int = 0
    """Kept rows that fit the sequence budget (the others are counted in the sequences meta)."""
    sequence_dropped: dict[str, int] = field(default_factory=dict)
    """Kept rows the sequences could not hold, per reason (`hrm.sequences.DROP_REASONS`)."""


def prepare_transfer(external_path: str | Path, train_instances_path: str | Path, splits_path: str | Path,
                     tokenizer_dir: str | Path, out_dir: str | Path, cfg: SequencesConfig,
                     envs: EnvsConfig | None = None) -> TransferSet:
    """Write `instances.jsonl`, `splits.json`, `sequences/` and `overlap.json` under `out_dir`."""
    from hrm.sequences import build_sequences
    from hrm.splits import load_splits

    external = read_instances(external_path)
    if not external:
        raise InputError("no instances to transfer to", path=str(external_path))
    splits = load_splits(splits_path)
    train = [i for i in read_instances(train_instances_path) if splits.get(i.instance_id) == "train"]
    if not train:
        raise InputError("no TRAIN-split row among these instances (wrong splits file?)",
                         path=str(train_instances_path))
    by_id = {i.instance_id: i for i in train}
    by_diff = {diff_key(i.patch): i for i in train}
    train_functions: dict[tuple[str, str, str], str] = {}
    for inst in train:
        for key in _functions(inst):
            train_functions.setdefault(key, inst.instance_id)

    result = TransferSet(external=len(external), kept=0)
    kept: list[Instance] = []
    for inst in external:
        if inst.instance_id in by_id:
            result.dropped.append({"instance_id": inst.instance_id, "reason": "same instance_id as a train row",
                                   "train_row": inst.instance_id})
        elif diff_key(inst.patch) in by_diff:
            result.dropped.append({"instance_id": inst.instance_id, "reason": "same diff as a train row",
                                   "train_row": by_diff[diff_key(inst.patch)].instance_id})
        elif _functions(inst) & train_functions.keys():
            key = sorted(_functions(inst) & train_functions.keys())[0]
            result.dropped.append({"instance_id": inst.instance_id,
                                   "reason": f"edits {key[1]}:{key[2]}, a function trained on",
                                   "train_row": train_functions[key]})
            result.same_function_as_train += 1
        else:
            kept.append(inst)
    if not kept:
        raise InputError(f"all {len(external)} external instances are in the training data",
                         path=str(external_path))
    result.kept = len(kept)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_instances(out / "instances.jsonl", kept)
    (out / "splits.json").write_text(json.dumps(
        {"splits": {i.instance_id: TRANSFER_SPLIT for i in kept}}, indent=1) + "\n", encoding="utf-8")
    meta = build_sequences(out / "instances.jsonl", out / "splits.json", tokenizer_dir, out / "sequences",
                           cfg, envs=envs, progress=False)
    result.sequence_rows = meta.counts[TRANSFER_SPLIT]
    result.sequence_dropped = {k: v for k, v in meta.dropped[TRANSFER_SPLIT].items() if v}
    if result.sequence_rows == 0:
        raise InputError(f"none of the {len(kept)} kept instances fits the sequences "
                         f"({result.sequence_dropped})", path=str(external_path))
    (out / OVERLAP_FILE).write_text(json.dumps(asdict(result), indent=1) + "\n", encoding="utf-8")
    return result

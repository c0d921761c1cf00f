"""Training examples: the buggy functions of a bug, labelled with edits aligned to their tokens.

Layout of one row (L = `sequences.seq_len`, K = `sequences.slots`, E = `sequences.max_insertions`):

    inputs   [bos  statement...  sep  header_1.. a  code_1..  hunk  header_2.. a  code_2..  pad..]
    labels   [-100 ...........  -100 -100....  f  f f f f  -100  -100....  f  f f f   -100..]
    inserts  [E, K]: per position that inserts tokens, its index in the row, then K - 1 tokens

The code part holds every region the bug touches (`hrm.regions`: whole functions from the BUGGY
file, a `# file: path` header before each), never the fixed code and never the patch. Position
`a` is a segment's anchor (the header's last token). It and every code token carry the first
token of their output (`hrm.edits`): their own token when kept, the new token when replaced,
`<|mask|>` when deleted; positions that also insert tokens after it list them in `inserts`
(`<|eos|>`-terminated). So labels equal to the inputs everywhere reproduce the buggy code. See
docs/sequences.md for the format and why.

Budget: the statement is capped at `max_statement_tokens`, and shortened down to
`min_statement_tokens` when the code needs the room. A region longer than what is left is cut to
its first lines (`hrm.regions.window`: a rule blind to where the bug is). Rows are dropped, and
counted per split and reason, when a change falls outside the window (`outside_window`), the fix
is longer than the positions can hold even spread (`edit_overflow`), or more than E positions
insert (`too_many_insertions`).

Splits: the instances' train/val/test (`hrm.splits`) and `corpus`, the mutation corpus
(`hrm.corpus`), which trains the foundation phase. A corpus function whose code equals a val or
test region's is dropped (counted as `overlap`), so nothing evaluated is ever trained on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hrm.config import EnvsConfig, Params, SequencesConfig
from hrm.edits import (
    apply_outputs,
    encode_edits,
    output_of,
    pivot_targets,
    position_labels,
    rest_labels,
)
from hrm.errors import InputError
from hrm.json_input import read_json_strict
from hrm.regions import Region, patch_regions, split_lines, window
from hrm.splits import SPLITS, check_coverage, load_splits
from hrm.swaps import swap_pivot, swap_text
from hrm.tokenizer import HUNK_SEPARATOR, SPECIAL_NAMES, HrmTokenizer, file_header, load_tokenizer

IGNORE_INDEX = -100
META_FILE = "meta.json"
ALL_SPLITS = (*SPLITS, "corpus")
"""Every split a sequences directory holds: the instances' three and the mutation corpus."""
DROP_REASONS = ("outside_window", "edit_overflow", "too_many_insertions", "overlap")


@dataclass(frozen=True)
class SequenceHunk:
    """One region of the buggy repository as the model sees it (the window) and its fix."""

    file: str
    buggy_start: int
    """1-based line in the buggy file where `buggy_text` begins."""
    buggy_text: str
    fixed_text: str
    function: str


@dataclass(frozen=True)
class SequenceRecord:
    """What row i of `{split}.npz` is about; row i of `{split}.jsonl`."""

    instance_id: str
    repo: str
    split: str
    kind: str
    """Bug kind: the SWE-smith bug type (`func_pm_op_swap`, `func_basic`, `lm_rewrite`,
    `pr_<N>`, ...); corpus rows `func_pm_<mutation kind>`."""
    statement: str
    """The problem statement as given (the row holds its first tokens)."""
    hunks: list[SequenceHunk]
    """The regions shown, in row order (windowed when cut)."""
    segments: list[list[int]]
    """Per region: [anchor position, number of code tokens]; code tokens follow the anchor."""
    context: str
    """`file` (whole units from the repository snapshot) or `hunk: <reason>` (the patch's own
    context lines, when the snapshot is unknown or does not match the patch)."""
    buggy_code: str
    """The regions' buggy texts joined by `<|hunk|>`, exactly as the row holds them."""
    fixed_code: str
    """The regions' fixed texts joined by `<|hunk|>`: the reference."""
    edited_positions: int
    """Positions whose output is not their own token."""
    statement_truncated: bool
    code_truncated: bool
    """A region was cut to its first lines (every change still inside)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> SequenceRecord:
        names = {f.name for f in fields(cls)}
        missing = names - row.keys()
        if missing:
            raise ValueError(f"missing fields {sorted(missing)}")
        values = {k: row[k] for k in names}
        values["hunks"] = [SequenceHunk(**h) for h in row["hunks"]]
        return cls(**values)


@dataclass(frozen=True)
class SequenceMeta:
    """`meta.json` of a sequences directory."""

    seq_len: int
    slots: int
    """K: output tokens a position can hold (its first token and K - 1 inserted)."""
    max_insertions: int
    """E: positions with inserted tokens a row may have (rows of `inserts`)."""
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    """Also the `end` label of an insertion shorter than K - 1."""
    sep_id: int
    hunk_id: int
    mask_id: int
    """Also the label of a deleted position."""
    unk_id: int
    swap_id: int
    """The label of a swap's pivot token (`hrm.swaps`)."""
    ignore_index: int
    counts: dict[str, int]
    """Rows written per split."""
    dropped: dict[str, dict[str, int]]
    """Per split and reason (`DROP_REASONS`): rows not written."""
    context: dict[str, dict[str, int]]
    """Per split: rows whose regions are whole units (`file`) or patch hunks (`hunk`)."""
    truncation: dict[str, dict[str, int]]
    """Per split: statement_truncated and code_truncated rows."""
    length_stats: dict[str, dict[str, dict[str, float]]]
    """Per split and quantity (statement/code tokens before any cut; edited and inserting
    positions): min, mean, p50, p95, max."""
    kinds: dict[str, dict[str, int]]
    """Per split: rows per bug kind."""
    tokenizer_fingerprint: str
    data_fingerprint: str
    """sha256 of the instances, splits and corpus files."""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def special_ids(self) -> dict[str, int]:
        return {n: getattr(self, f"{n}_id") for n in SPECIAL_NAMES}


@dataclass
class Encoded:
    """One example as ids (unpadded) and its records' parts."""

    inputs: list[int]
    labels: list[int]
    inserts: list[list[int]]
    """[position, K - 1 inserted-token labels] per inserting position."""
    edited: int
    """Positions whose output is not their own token."""
    hunks: list[SequenceHunk]
    segments: list[list[int]]
    statement_truncated: bool
    code_truncated: bool


@dataclass
class SequenceSplit:
    """One split loaded: arrays, row records and the directory's meta."""

    split: str
    inputs: np.ndarray
    """int32 [N, L]."""
    labels: np.ndarray
    """int32 [N, L]: each position's first output token, `ignore_index` outside the code."""
    inserts: np.ndarray
    """int32 [N, E, K]: position (-1: unused) and K - 1 inserted-token labels (`ignore_index`
    unused)."""
    records: list[SequenceRecord]
    meta: SequenceMeta

    def __len__(self) -> int:
        return len(self.records)


def _fit_lines(tokenizer: HrmTokenizer, region: Region, room: int) -> int:
    """The most leading lines of the region whose tokens fit in `room` (0 if none)."""
    lines = split_lines(region.buggy_text)
    lo, hi = 0, len(lines)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tokenizer.encode("".join(lines[:mid]))) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def encode_example(tokenizer: HrmTokenizer, statement: str, regions: Sequence[Region],
                   cfg: SequencesConfig) -> Encoded | str:
    """Encode one example, or return the drop reason (`DROP_REASONS`)."""
    L, K = cfg.seq_len, cfg.slots
    stmt = tokenizer.encode(statement)
    headers = [tokenizer.encode(file_header(r.file)) for r in regions]
    codes = [tokenizer.encode(r.buggy_text) for r in regions]
    fixed_cost = 2 + max(len(regions) - 1, 0) + sum(len(h) for h in headers)
    kept_stmt = min(len(stmt), cfg.max_statement_tokens)
    need = sum(len(c) for c in codes)
    if fixed_cost + kept_stmt + need > L:
        floor = min(kept_stmt, cfg.min_statement_tokens)
        kept_stmt = max(floor, L - fixed_cost - need)
    room = L - fixed_cost - kept_stmt
    shown: list[tuple[Region, list[int]]] = []
    cut_any = False
    for region, code in zip(regions, codes, strict=True):
        if len(code) <= room:
            shown.append((region, code))
            room -= len(code)
            continue
        lines = _fit_lines(tokenizer, region, room) if room > 0 else 0
        cut, complete = window(region, lines)
        if not complete or lines == 0:
            return "outside_window"
        cut_any = True
        ids = tokenizer.encode(cut.buggy_text)
        shown.append((cut, ids))
        room -= len(ids)
    inputs = [tokenizer.bos_id] + stmt[:kept_stmt] + [tokenizer.sep_id]
    labels = [IGNORE_INDEX] * len(inputs)
    inserts: list[list[int]] = []
    hunks: list[SequenceHunk] = []
    segments: list[list[int]] = []
    edited = 0
    for k, ((region, code), header) in enumerate(zip(shown, headers, strict=True)):
        if k:
            inputs.append(tokenizer.hunk_id)
            labels.append(IGNORE_INDEX)
        pivot = swap_pivot(tokenizer, code, region.fixed_text, region.buggy_text)
        targets = (pivot_targets(code, pivot, tokenizer.swap_id) if pivot is not None
                   else encode_edits(code, tokenizer.encode(region.fixed_text), K))
        if targets is None:
            return "edit_overflow"
        inputs += header
        labels += [IGNORE_INDEX] * (len(header) - 1)
        anchor = len(inputs) - 1
        inputs += code
        for p, output in enumerate(targets.outputs):
            lab = position_labels(output, inputs[anchor + p], anchor=p == 0,
                                  delete_id=tokenizer.mask_id)
            labels.append(lab.first)
            if lab.rest:
                inserts.append([anchor + p] + rest_labels(lab.rest, K, tokenizer.eos_id,
                                                          IGNORE_INDEX))
        edited += len(targets.edited)
        hunks.append(SequenceHunk(region.file, region.buggy_start, region.buggy_text,
                                  region.fixed_text, region.function))
        segments.append([anchor, len(code)])
    if len(inserts) > cfg.max_insertions:
        return "too_many_insertions"
    if len(inputs) > L:  # the budget above makes this impossible; never write a bad row
        raise AssertionError(f"row of {len(inputs)} tokens for seq_len {L}")
    return Encoded(inputs, labels, inserts, edited, hunks, segments,
                   statement_truncated=kept_stmt < len(stmt), code_truncated=cut_any)


def pack(rows: Sequence[Encoded], cfg: SequencesConfig, pad_id: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs [N, L] int32, labels [N, L] int32, inserts [N, E, K] int32) of encoded rows."""
    L, K, E = cfg.seq_len, cfg.slots, cfg.max_insertions
    inputs = np.full((len(rows), L), pad_id, dtype=np.int32)
    labels = np.full((len(rows), L), IGNORE_INDEX, dtype=np.int32)
    inserts = empty_inserts(len(rows), E, K)
    for i, row in enumerate(rows):
        fill_row(inputs[i], labels[i], inserts[i], row)
    return inputs, labels, inserts


def empty_inserts(n: int, max_insertions: int, slots: int) -> np.ndarray:
    """An `inserts` array with no entry: positions -1, labels ignored."""
    out = np.full((n, max_insertions, slots), IGNORE_INDEX, dtype=np.int32)
    out[:, :, 0] = -1
    return out


def fill_row(inputs: np.ndarray, labels: np.ndarray, inserts: np.ndarray, row: Encoded) -> None:
    """Write one encoded row into preallocated (already padded) rows of the three arrays."""
    n = len(row.inputs)
    inputs[:n] = row.inputs
    labels[:n] = row.labels
    if row.inserts:
        inserts[: len(row.inserts)] = row.inserts


def bug_kind(instance_id: str) -> str:
    from hrm.data.instance import parse_instance_id

    try:
        return parse_instance_id(instance_id).bug_type
    except ValueError:
        return "unknown"


def snapshot_reader(envs: EnvsConfig | None) -> Callable[[str, str], str | None]:
    """`read(repo, path)`: a file of a repository snapshot from its environment's pristine tree
    (built on first use), or None where the repo has no environment or no such file."""
    from hrm.envs import get_environment
    from hrm.envs.errors import EnvironmentUnavailable

    trees: dict[str, Path | None] = {}

    def read(repo: str, path: str) -> str | None:
        if envs is None:
            return None
        if repo not in trees:
            try:
                env = get_environment(repo, envs)
                trees[repo] = getattr(env, "pristine", None)
            except EnvironmentUnavailable:
                trees[repo] = None
        tree = trees[repo]
        if tree is None or ".." in Path(path).parts or Path(path).is_absolute():
            return None
        target = tree / path
        try:
            return target.read_text(encoding="utf-8") if target.is_file() else None
        except UnicodeDecodeError:
            return None

    return read


def _stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {"min": int(arr.min()), "mean": round(float(arr.mean()), 3),
            "p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "max": int(arr.max())}


def _sha256_files(*paths: Path | None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path is not None:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def normalised(code: str) -> str:
    """Code with all whitespace removed: the key that finds a function in two places."""
    return "".join(code.split())


@dataclass
class _Example:
    instance_id: str
    repo: str
    split: str
    kind: str
    statement: str
    regions: list[Region]
    context: str


def instance_examples(instances_path: Path, splits_path: Path, envs: EnvsConfig | None
                      ) -> list[_Example]:
    from hrm.data.instance import read_instances

    instances = read_instances(instances_path)
    splits = load_splits(splits_path)
    check_coverage(instances, splits, splits_path)
    read = snapshot_reader(envs)
    out = []
    for inst in instances:
        regions, context = patch_regions(
            inst.patch, lambda path, repo=inst.repo: read(repo, path), source=inst.instance_id)
        out.append(_Example(inst.instance_id, inst.repo, splits[inst.instance_id],
                            bug_kind(inst.instance_id), inst.problem_statement, regions, context))
    return out


def corpus_examples(corpus_path: Path) -> list[_Example]:
    from hrm.corpus.rows import read_rows

    out = []
    for row in read_rows(corpus_path):
        region = Region(row.file, row.start_line, row.buggy, row.fixed, row.start_line,
                        row.function, _ops(row.fixed, row.buggy))
        out.append(_Example(row.id, row.package, "corpus", f"func_pm_{row.kind}",
                            row.problem_statement, [region], "file"))
    return out


def _ops(fixed: str, buggy: str):
    from hrm.regions import line_opcodes

    return tuple(line_opcodes(split_lines(fixed), split_lines(buggy)))


def build_sequences(
    instances_path: str | Path,
    splits_path: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    cfg: SequencesConfig,
    *,
    corpus_path: str | Path | None = None,
    envs: EnvsConfig | None = None,
    progress: bool = True,
    tracking: Params | None = None,
) -> SequenceMeta:
    """Step: write `{split}.npz` and `{split}.jsonl` for train/val/test/corpus and `meta.json`.

    `envs`: where instances' repository snapshots come from (`hrm.envs`); None (or a repo
    without an environment) gives hunk regions, counted in `meta.context`. Every split file is
    written, empty when the split has no row. With `tracking`, logged (`hrm.step_tracking`).
    Returns the meta.
    """
    started = time.time()
    from tqdm import tqdm

    instances_path, splits_path = Path(instances_path), Path(splits_path)
    if not instances_path.is_file():
        raise InputError("instances file not found", path=str(instances_path))
    tokenizer = load_tokenizer(tokenizer_dir)
    examples = instance_examples(instances_path, splits_path, envs)
    corpus_file = Path(corpus_path) if corpus_path is not None else None
    held_out = {normalised(r.fixed_text) for ex in examples if ex.split in ("val", "test")
                for r in ex.regions}
    dropped = {s: dict.fromkeys(DROP_REASONS, 0) for s in ALL_SPLITS}
    if corpus_file is not None:
        for ex in corpus_examples(corpus_file):
            if normalised(ex.regions[0].fixed_text) in held_out:
                dropped["corpus"]["overlap"] += 1
                continue
            examples.append(ex)
    meta = write_sequences(examples, tokenizer, out_dir, cfg, dropped=dropped,
                           fingerprint=_sha256_files(instances_path, splits_path, corpus_file),
                           progress=progress, desc="sequences", tqdm=tqdm)
    if tracking is not None:
        from hrm.step_tracking import log_sequences

        log_sequences(tracking, meta, started)
    return meta


def write_sequences(examples: Iterable[_Example], tokenizer: HrmTokenizer, out_dir: str | Path,
                    cfg: SequencesConfig, *, dropped: dict[str, dict[str, int]], fingerprint: str,
                    progress: bool, desc: str, tqdm) -> SequenceMeta:
    """Encode examples into a sequences directory (the core of `build_sequences`)."""
    examples = list(examples)
    rows: dict[str, list[Encoded]] = {s: [] for s in ALL_SPLITS}
    records: dict[str, list[SequenceRecord]] = {s: [] for s in ALL_SPLITS}
    lengths: dict[str, dict[str, list[int]]] = {
        s: {"statement": [], "code": [], "edited": [], "inserting": []} for s in ALL_SPLITS}
    for ex in tqdm(examples, desc=desc, unit="row", disable=not progress):
        lengths[ex.split]["statement"].append(len(tokenizer.encode(ex.statement)))
        lengths[ex.split]["code"].append(sum(len(tokenizer.encode(r.buggy_text))
                                             for r in ex.regions))
        enc = encode_example(tokenizer, ex.statement, ex.regions, cfg)
        if isinstance(enc, str):
            dropped[ex.split][enc] += 1
            continue
        lengths[ex.split]["edited"].append(enc.edited)
        lengths[ex.split]["inserting"].append(len(enc.inserts))
        rows[ex.split].append(enc)
        records[ex.split].append(SequenceRecord(
            instance_id=ex.instance_id, repo=ex.repo, split=ex.split, kind=ex.kind,
            statement=ex.statement, hunks=enc.hunks, segments=enc.segments, context=ex.context,
            buggy_code=HUNK_SEPARATOR.join(h.buggy_text for h in enc.hunks),
            fixed_code=HUNK_SEPARATOR.join(h.fixed_text for h in enc.hunks),
            edited_positions=enc.edited, statement_truncated=enc.statement_truncated,
            code_truncated=enc.code_truncated))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ALL_SPLITS:
        inputs, labels, inserts = pack(rows[split], cfg, tokenizer.pad_id)
        np.savez_compressed(out_dir / f"{split}.npz", inputs=inputs, labels=labels, inserts=inserts)
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for rec in records[split]:
                fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    from collections import Counter

    meta = SequenceMeta(
        seq_len=cfg.seq_len, slots=cfg.slots, max_insertions=cfg.max_insertions,
        vocab_size=tokenizer.vocab_size,
        **{f"{name}_id": value for name, value in tokenizer.special_ids.items()},
        ignore_index=IGNORE_INDEX,
        counts={s: len(rows[s]) for s in ALL_SPLITS},
        dropped=dropped,
        context={s: dict(Counter("file" if r.context == "file" else "hunk" for r in records[s]))
                 for s in ALL_SPLITS},
        truncation={s: {"statement_truncated": sum(r.statement_truncated for r in records[s]),
                        "code_truncated": sum(r.code_truncated for r in records[s])}
                    for s in ALL_SPLITS},
        length_stats={s: {k: _stats(v) for k, v in lengths[s].items()} for s in ALL_SPLITS},
        kinds={s: dict(sorted(Counter(r.kind for r in records[s]).items())) for s in ALL_SPLITS},
        tokenizer_fingerprint=tokenizer.fingerprint,
        data_fingerprint=fingerprint,
        config=cfg.model_dump(mode="json"),
    )
    (out_dir / META_FILE).write_text(json.dumps(asdict(meta), indent=1) + "\n")
    return meta


def load_meta(seq_dir: str | Path) -> SequenceMeta:
    """Read `meta.json` of a sequences directory."""
    path = Path(seq_dir) / META_FILE
    doc = read_json_strict(path, missing="sequences meta not found (run `hrm sequences build`)")
    try:
        return SequenceMeta(**doc)
    except TypeError as err:
        raise InputError(f"invalid sequences meta (built by another version? rebuild the "
                         f"sequences): {err}", path=str(path)) from None


def check_tokenizer(seq_dir: str | Path, meta: SequenceMeta, tokenizer_dir: str | Path,
                    fingerprint: str) -> None:
    """Raise InputError unless the sequences in `seq_dir` were built with the tokenizer whose
    fingerprint (`hrm.tokenizer.tokenizer_fingerprint(tokenizer_dir)`) is `fingerprint`."""
    if meta.tokenizer_fingerprint != fingerprint:
        raise InputError(
            f"the sequences were built with another tokenizer: {Path(seq_dir) / META_FILE} records "
            f"tokenizer_fingerprint {meta.tokenizer_fingerprint or '(none)'}, "
            f"{Path(tokenizer_dir) / 'tokenizer.json'} has {fingerprint}; rebuild the sequences with "
            "this tokenizer or pass the tokenizer they were built with", path=str(seq_dir))


def load_split(seq_dir: str | Path, split: str) -> SequenceSplit:
    """Load `{split}.npz`, `{split}.jsonl` and `meta.json`; shapes and counts are checked."""
    if split not in ALL_SPLITS:
        raise InputError(f"unknown split {split!r} (known: {', '.join(ALL_SPLITS)})")
    seq_dir = Path(seq_dir)
    meta = load_meta(seq_dir)
    npz_path, jsonl_path = seq_dir / f"{split}.npz", seq_dir / f"{split}.jsonl"
    for path in (npz_path, jsonl_path):
        if not path.is_file():
            raise InputError("sequences file not found", path=str(path))
    with np.load(npz_path) as data:
        missing = {"inputs", "labels", "inserts"} - set(data.files)
        if missing:
            raise InputError(f"needs arrays {sorted(missing)} (built by another version? rebuild "
                             "the sequences)", path=str(npz_path))
        inputs, labels, inserts = data["inputs"], data["labels"], data["inserts"]
    n = inputs.shape[0]
    if (inputs.shape != labels.shape or inputs.ndim != 2 or inputs.shape[1] != meta.seq_len
            or inserts.shape != (n, meta.max_insertions, meta.slots)):
        raise InputError(
            f"shapes inputs {inputs.shape} / labels {labels.shape} / inserts {inserts.shape} do "
            f"not match seq_len {meta.seq_len}, max_insertions {meta.max_insertions}, slots "
            f"{meta.slots}", path=str(npz_path))
    records: list[SequenceRecord] = []
    with jsonl_path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                records.append(SequenceRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as err:
                raise InputError(str(err), path=str(jsonl_path), line=lineno) from None
    if len(records) != n:
        raise InputError(f"{len(records)} records for {n} rows in {npz_path.name}",
                         path=str(jsonl_path))
    return SequenceSplit(split=split, inputs=inputs, labels=labels, inserts=inserts,
                         records=records, meta=meta)


def label_outputs(inputs: np.ndarray, labels: np.ndarray, inserts: np.ndarray,
                  segments: Sequence[Sequence[int]], *, delete_id: int, end_id: int
                  ) -> dict[int, tuple[int, ...]]:
    """Row position -> output of every position whose labels (or a prediction in that form)
    differ from keeping it: the reference fix of a row as `decode_segments` takes it."""
    from hrm.edits import rest_of

    rests = {int(e[0]): rest_of([t for t in e[1:] if int(t) != IGNORE_INDEX], end_id)
             for e in inserts if int(e[0]) >= 0}
    out: dict[int, tuple[int, ...]] = {}
    for anchor, n in segments:
        for pos in range(anchor, anchor + n + 1):
            is_anchor = pos == anchor
            rest = rests.get(pos, ())
            output = output_of(int(labels[pos]), rest, anchor=is_anchor, delete_id=delete_id)
            own = () if is_anchor else (int(inputs[pos]),)
            if output != own:
                out[pos] = output
    return out


def decode_segments(tokenizer: HrmTokenizer, inputs: np.ndarray, segments: Sequence[Sequence[int]],
                    outputs: dict[int, Sequence[int]]) -> list[str]:
    """Per segment, the code after replacing each position in `outputs` (row position -> output
    tokens; positions not given keep their token). Raises ValueError for an output id outside
    the vocabulary: model output is untrusted."""
    return decode_with_swaps(tokenizer, inputs, segments, outputs)[0]


def decode_with_swaps(tokenizer: HrmTokenizer, inputs: np.ndarray, segments: Sequence[Sequence[int]],
                      outputs: dict[int, Sequence[int]]) -> tuple[list[str], set[int]]:
    """`decode_segments`, and the row positions whose `<|swap|>` was applied as a swap (an edit,
    not a token: `special_tokens_in` leaves them out)."""
    vocab = tokenizer.vocab_size
    texts: list[str] = []
    applied: set[int] = set()
    for anchor, n in segments:
        code = [int(t) for t in inputs[anchor + 1: anchor + 1 + n]]
        local = {}
        for pos, out in outputs.items():
            if anchor <= pos <= anchor + n:
                for t in out:
                    if not 0 <= int(t) < vocab:
                        raise ValueError(f"token id {t} outside the vocabulary [0, {vocab})")
                local[pos - anchor] = out
        swapped = applied_swap(tokenizer, code, local)
        if swapped is not None:
            applied |= {anchor + p for p in local}
        texts.append(swapped if swapped is not None else tokenizer.decode(apply_outputs(code, local)))
    return texts, applied


def applied_swap(tokenizer: HrmTokenizer, code: Sequence[int], local: dict[int, Sequence[int]]
                 ) -> str | None:
    """A segment's text when its only changed position outputs `<|swap|>` and is a swap's pivot
    (`hrm.swaps`: position i + 1 is token i); None otherwise (a marker anywhere else stays a
    special token in the code, which no fix contains)."""
    if len(local) != 1:
        return None
    (pos, out), = local.items()
    if pos < 1 or tuple(int(t) for t in out) != (tokenizer.swap_id,):
        return None
    return swap_text(tokenizer, code, pos - 1)


def special_tokens_in(tokenizer: HrmTokenizer, outputs: dict[int, Sequence[int]],
                      applied: Collection[int] = ()) -> list[str]:
    """Names of special tokens a prediction's outputs hold (a fix never contains one), except at
    `applied` positions, whose swap marker was applied as a swap (`decode_with_swaps`)."""
    names = {v: k for k, v in tokenizer.special_ids.items()}
    return [names[int(t)] for p, out in outputs.items() if p not in applied
            for t in out if int(t) in names]

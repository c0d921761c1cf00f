"""Fixed-length training sequences for a NON-autoregressive repair model, one per instance.

Layout of one row (P = max_prompt_tokens, T = max_target_tokens, seq_len = P + T):

    position   0    1 ..            ..       P-1 | P ..               .. P+T-1
    inputs   [bos statement sep code... pad pad  | mask mask ......... mask ]
    labels   [-100 ........................ -100 | fixed... eos -100 .. -100]

The prompt is bos + problem statement (at most `max_statement_tokens`) + sep + for each hunk
`# file: path` and its buggy text, hunks joined by the hunk separator. The target is each hunk's
fixed text joined by the hunk separator, then eos. The bug patch itself never appears. Every
labelled position holds the mask token in `inputs`, so no label is visible to the model.
See docs/sequences.md for the split and truncation policies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hrm.config import SequencesConfig
from hrm.data.instance import read_instances
from hrm.errors import InputError
from hrm.hunks import parse_patch
from hrm.splits import SPLITS, check_coverage, load_splits
from hrm.tokenizer import HUNK_SEPARATOR, HrmTokenizer, file_header, load_tokenizer

IGNORE_INDEX = -100
META_FILE = "meta.json"


@dataclass(frozen=True)
class SequenceHunk:
    """One region of the buggy repository and its fix (see `hrm.hunks.Hunk`)."""

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
    hunks: list[SequenceHunk]
    buggy_code: str
    """The prompt's code part decoded: `# file:` lines and buggy texts joined by `<|hunk|>`,
    exactly as the model sees it (cut short when `prompt_truncated`)."""
    fixed_code: str
    """Fixed texts joined by `<|hunk|>`: the decoded target without eos (the full truth even
    when `target_truncated`)."""
    target_token_count: int
    """Labelled positions (target tokens + eos, or the kept part when truncated)."""
    prompt_token_count: int
    """Non-pad prompt positions."""
    statement_truncated: bool
    """Some of the problem statement was left out (cap or room for the code)."""
    prompt_truncated: bool
    """Some of the buggy code was left out (the prompt budget is smaller than the code)."""
    target_truncated: bool
    """The target was cut to `max_target_tokens` (no eos); only with `truncation: truncate`."""

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
    prompt_len: int
    """Positions [0, prompt_len) hold the prompt (pad-filled)."""
    target_len: int
    """Positions [prompt_len, seq_len) are the target region (mask in `inputs`)."""
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    sep_id: int
    hunk_id: int
    mask_id: int
    unk_id: int
    ignore_index: int
    counts: dict[str, int]
    """Rows written per split."""
    dropped: dict[str, int]
    """Rows dropped per split because the target did not fit (`truncation: drop`)."""
    truncation: dict[str, dict[str, int]]
    """Per split: statement_capped, statement_cut, prompt_truncated, target_truncated rows."""
    length_stats: dict[str, dict[str, dict[str, float]]]
    """Per split and quantity (statement/code/prompt/target tokens before any cut or drop, over
    every instance of the split): min, mean, p50, p95, max."""
    tokenizer_fingerprint: str
    """`HrmTokenizer.fingerprint` (sha256 of tokenizer.json) of the tokenizer that built these rows."""
    data_fingerprint: str
    """sha256 of the instances file and the splits file."""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def special_ids(self) -> dict[str, int]:
        return {n: getattr(self, f"{n}_id") for n in
                ("pad", "bos", "eos", "sep", "hunk", "mask", "unk")}


@dataclass
class SequenceSplit:
    """One split loaded: arrays, row records and the directory's meta."""

    split: str
    inputs: np.ndarray
    """int32 [N, seq_len]."""
    labels: np.ndarray
    """int64 [N, seq_len], `ignore_index` outside the target."""
    records: list[SequenceRecord]
    meta: SequenceMeta

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class _Row:
    """Internal: one encoded example before it is packed (ids only: packing is done into
    preallocated arrays so memory stays at the arrays' size on large datasets)."""

    prompt: list[int]
    target: list[int]
    record: SequenceRecord
    lengths: dict[str, int]
    statement_capped: bool
    statement_cut: bool


def encode_example(
    tokenizer: HrmTokenizer,
    statement: str,
    hunks: Sequence[SequenceHunk],
    cfg: SequencesConfig,
) -> tuple[list[int], list[int], dict[str, Any]]:
    """Encode one example into (prompt ids, target ids, info). `info["drop"]` is True when the
    target does not fit and `cfg.truncation` is `drop`; `info["lengths"]` are the lengths before
    any cut. Pieces are encoded separately and joined by special ids, so a separator can never
    merge with the text around it."""
    P, T = cfg.max_prompt_tokens, cfg.max_target_tokens
    stmt = tokenizer.encode(statement)
    code: list[int] = []
    fixed: list[int] = []
    for k, hunk in enumerate(hunks):
        if k:
            code.append(tokenizer.hunk_id)
            fixed.append(tokenizer.hunk_id)
        code += tokenizer.encode(file_header(hunk.file) + hunk.buggy_text)
        fixed += tokenizer.encode(hunk.fixed_text)
    target = fixed + [tokenizer.eos_id]
    info: dict[str, Any] = {
        "lengths": {
            "statement": len(stmt),
            "code": len(code),
            "prompt": 2 + len(stmt) + len(code),
            "target": len(target),
        }
    }
    # Prompt: the statement is capped, then shortened further to make room for the code; only
    # when no statement is left is the code cut, from the end.
    kept_stmt = min(len(stmt), cfg.max_statement_tokens)
    info["statement_capped"] = kept_stmt < len(stmt)
    room = P - 2 - len(code)
    if kept_stmt > max(room, 0):
        kept_stmt = max(room, 0)
        info["statement_cut"] = True
    else:
        info["statement_cut"] = False
    kept_code = min(len(code), P - 2 - kept_stmt)
    info["statement_truncated"] = kept_stmt < len(stmt)
    info["prompt_truncated"] = kept_code < len(code)
    info["code_ids"] = code[:kept_code]
    prompt = [tokenizer.bos_id] + stmt[:kept_stmt] + [tokenizer.sep_id] + code[:kept_code]
    info["target_truncated"] = False
    info["drop"] = False
    if len(target) > T:
        if cfg.truncation == "drop":
            info["drop"] = True
        else:
            target = target[:T]
            info["target_truncated"] = True
    return prompt, target, info


def pack_rows(rows: Sequence[tuple[list[int], list[int]]], tokenizer: HrmTokenizer,
              cfg: SequencesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Lay out (prompt, target) pairs: prompt + pad in [0, P); mask in all of [P, P+T) of
    `inputs`; `labels` hold the target from P on and ignore_index everywhere else."""
    P, T = cfg.max_prompt_tokens, cfg.max_target_tokens
    inputs = np.full((len(rows), P + T), tokenizer.pad_id, dtype=np.int32)
    inputs[:, P:] = tokenizer.mask_id
    labels = np.full((len(rows), P + T), IGNORE_INDEX, dtype=np.int64)
    for i, (prompt, target) in enumerate(rows):
        if len(prompt) > P or len(target) > T:
            raise ValueError(f"row {i} does not fit: prompt {len(prompt)}/{P}, "
                             f"target {len(target)}/{T}")
        inputs[i, : len(prompt)] = prompt
        labels[i, P : P + len(target)] = target
    return inputs, labels


def _stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 3),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
    }


def _sha256_files(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_sequences(
    instances_path: str | Path,
    splits_path: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    cfg: SequencesConfig,
    *,
    progress: bool = True,
) -> SequenceMeta:
    """Step: write `{split}.npz`, `{split}.jsonl` for train/val/test and `meta.json`.

    Every split file is written, empty when the split has no row. Returns the meta.
    """
    from tqdm import tqdm

    instances_path, splits_path = Path(instances_path), Path(splits_path)
    if not instances_path.is_file():
        raise InputError("instances file not found", path=str(instances_path))
    instances = read_instances(instances_path)
    splits = load_splits(splits_path)
    check_coverage(instances, splits, splits_path)
    tokenizer = load_tokenizer(tokenizer_dir)

    rows: dict[str, list[_Row]] = {s: [] for s in SPLITS}
    dropped = {s: 0 for s in SPLITS}
    lengths: dict[str, dict[str, list[int]]] = {
        s: {"statement": [], "code": [], "prompt": [], "target": []} for s in SPLITS
    }
    for inst in tqdm(instances, desc="sequences", unit="inst", disable=not progress):
        split = splits[inst.instance_id]
        hunks = [
            SequenceHunk(h.file, h.buggy_start, h.buggy_text, h.fixed_text, h.function)
            for h in parse_patch(inst.patch, source=inst.instance_id)
        ]
        prompt, target, info = encode_example(tokenizer, inst.problem_statement, hunks, cfg)
        for key, value in info["lengths"].items():  # every row, dropped ones included
            lengths[split][key].append(value)
        if info["drop"]:
            dropped[split] += 1
            continue
        buggy_code = tokenizer.decode(info["code_ids"])
        record = SequenceRecord(
            instance_id=inst.instance_id,
            repo=inst.repo,
            split=split,
            hunks=hunks,
            buggy_code=buggy_code,
            fixed_code=HUNK_SEPARATOR.join(h.fixed_text for h in hunks),
            target_token_count=len(target),
            prompt_token_count=len(prompt),
            statement_truncated=info["statement_truncated"],
            prompt_truncated=info["prompt_truncated"],
            target_truncated=info["target_truncated"],
        )
        rows[split].append(
            _Row(prompt, target, record, info["lengths"], info["statement_capped"],
                 info["statement_cut"])
        )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seq_len = cfg.seq_len
    for split in SPLITS:
        split_rows = rows[split]
        inputs, labels = pack_rows([(r.prompt, r.target) for r in split_rows], tokenizer, cfg)
        np.savez_compressed(out_dir / f"{split}.npz", inputs=inputs, labels=labels)
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for r in split_rows:
                fh.write(json.dumps(r.record.to_dict(), ensure_ascii=False) + "\n")

    meta = SequenceMeta(
        seq_len=seq_len,
        prompt_len=cfg.max_prompt_tokens,
        target_len=cfg.max_target_tokens,
        vocab_size=tokenizer.vocab_size,
        **{f"{name}_id": value for name, value in tokenizer.special_ids.items()},
        ignore_index=IGNORE_INDEX,
        counts={s: len(rows[s]) for s in SPLITS},
        dropped=dropped,
        truncation={
            s: {
                "statement_capped": sum(r.statement_capped for r in rows[s]),
                "statement_cut": sum(r.statement_cut for r in rows[s]),
                "prompt_truncated": sum(r.record.prompt_truncated for r in rows[s]),
                "target_truncated": sum(r.record.target_truncated for r in rows[s]),
            }
            for s in SPLITS
        },
        length_stats={s: {k: _stats(v) for k, v in lengths[s].items()} for s in SPLITS},
        tokenizer_fingerprint=tokenizer.fingerprint,
        data_fingerprint=_sha256_files(instances_path, splits_path),
        config=cfg.model_dump(mode="json"),
    )
    (out_dir / META_FILE).write_text(json.dumps(asdict(meta), indent=1) + "\n")
    return meta


def load_meta(seq_dir: str | Path) -> SequenceMeta:
    """Read `meta.json` of a sequences directory."""
    path = Path(seq_dir) / META_FILE
    if not path.is_file():
        raise InputError("sequences meta not found (run `hrm sequences build`)", path=str(path))
    try:
        return SequenceMeta(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as err:
        raise InputError(f"invalid sequences meta: {err}", path=str(path)) from None


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
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    seq_dir = Path(seq_dir)
    meta = load_meta(seq_dir)
    npz_path, jsonl_path = seq_dir / f"{split}.npz", seq_dir / f"{split}.jsonl"
    for path in (npz_path, jsonl_path):
        if not path.is_file():
            raise InputError("sequences file not found", path=str(path))
    with np.load(npz_path) as data:
        if "inputs" not in data or "labels" not in data:
            raise InputError("needs arrays 'inputs' and 'labels'", path=str(npz_path))
        inputs, labels = data["inputs"], data["labels"]
    if inputs.shape != labels.shape or inputs.ndim != 2 or inputs.shape[1] != meta.seq_len:
        raise InputError(
            f"shapes inputs {inputs.shape} / labels {labels.shape} do not match seq_len "
            f"{meta.seq_len}",
            path=str(npz_path),
        )
    records: list[SequenceRecord] = []
    with jsonl_path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                records.append(SequenceRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as err:
                raise InputError(str(err), path=str(jsonl_path), line=lineno) from None
    if len(records) != inputs.shape[0]:
        raise InputError(f"{len(records)} records for {inputs.shape[0]} rows in {npz_path.name}",
                         path=str(jsonl_path))
    return SequenceSplit(split=split, inputs=inputs, labels=labels, records=records, meta=meta)


def decode_target(tokenizer: HrmTokenizer, token_ids: Iterable[int], *,
                  specials_out: list[str] | None = None) -> list[str]:
    """Per-hunk texts of a target (labels or a prediction of the target region).

    Reads until the first eos, splits on the hunk separator, skips `ignore_index` and the other
    special ids (a model may emit pad/mask anywhere; they carry no text). Raises ValueError for
    an id outside the vocabulary: model output is untrusted.

    Skipping hides that the model wrote something that is not code (`return <mask>` decodes to
    `return `): with `specials_out`, the name of every special token skipped INSIDE the target
    is appended to it, so evaluation can fail the row. Inside means before the first eos,
    except a run of pad that reaches the end of the ids with no eos at all (the region after a
    target that ends without its eos, e.g. the unigram baseline's fill).
    """
    specials = set(tokenizer.special_ids.values()) - {tokenizer.hunk_id, tokenizer.eos_id}
    names = {v: k for k, v in tokenizer.special_ids.items()}
    vocab = tokenizer.vocab_size
    parts: list[list[int]] = [[]]
    found: list[str] = []
    pads = 0
    for raw in token_ids:
        tid = int(raw)
        if tid == IGNORE_INDEX:
            continue
        if not 0 <= tid < vocab:
            raise ValueError(f"token id {tid} outside the vocabulary [0, {vocab})")
        if tid == tokenizer.pad_id:
            pads += 1  # inside only if something but the end of the ids follows
            continue
        found += ["pad"] * pads
        pads = 0
        if tid == tokenizer.eos_id:
            break
        if tid == tokenizer.hunk_id:
            parts.append([])
        elif tid in specials:
            found.append(names[tid])
        else:
            parts[-1].append(tid)
    if specials_out is not None:
        specials_out.extend(found)
    return [tokenizer.decode(p) for p in parts]

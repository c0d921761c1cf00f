"""Read the gate's inputs: evaluation metrics per split and the training histories per phase.

Malformed inputs raise `InputError` naming the file (and line or key). A metric that is absent,
null or NaN is NOT an input error: it is a legitimate "not measured" that the gate flags.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from hrm.errors import InputError

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"

# Columns every history.csv must carry; others (e.g. code_tiered_accuracy) are optional.
REQUIRED_HISTORY_COLUMNS = ("phase", "epoch", "step", "loss", "lm_loss", "token_accuracy")


def load_split_metrics(eval_dir: str | Path, split: str) -> dict[str, float | None]:
    """Read `<eval_dir>/<split>/metrics.json`: {name: number | null}.

    Every name in `METRIC_NAMES` (what criteria may use) must be a number or null: a bool,
    string or object there is an error naming the key. NaN/inf are kept as floats (the gate
    reports them as non-finite). Keys outside `METRIC_NAMES` are the producer's diagnostics
    (row counts, nested baselines): numeric ones are kept for the report, others skipped, since
    no criterion can name them.
    """
    from hrm.eval.metric_names import METRIC_NAMES, out_of_range

    path = Path(eval_dir) / split / METRICS_FILE
    raw = _read_metrics(path, split)
    metrics: dict[str, float | None] = {}
    for name, value in raw.items():
        if value is None:
            metrics[name] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            if name in METRIC_NAMES:
                raise InputError(f"metric '{name}' must be a number or null, got {value!r}", path=str(path))
        else:
            metrics[name] = _as_float(value, name, path)
            why = out_of_range(name, metrics[name]) if math.isfinite(metrics[name]) else ""
            if why:
                raise InputError(f"impossible metric: {why}", path=str(path))
    return metrics


def _read_metrics(path: Path, split: str) -> dict:
    from hrm.json_input import read_json_strict

    raw = read_json_strict(path, missing=f"metrics for split '{split}' not found (run `hrm "
                                         f"evaluate --split {split}`)")
    if not isinstance(raw, dict):
        raise InputError("top level must be an object {metric_name: number | null}", path=str(path))
    return raw


def _as_float(value: int | float, name: str, path: Path) -> float:
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"metric '{name}': {str(value)[:20]}... does not fit a float",
                         path=str(path)) from None


@dataclass(frozen=True)
class SplitExtras:
    """What metrics.json carries beside the flat metrics: the baselines' values and the
    bootstrap intervals (`<metric>_ci95`). Empty when the file has none (older evaluations)."""

    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    checkpoint_sha256: str | None = None
    """The sha256 of the checkpoint file these metrics were measured on (`hrm evaluate` writes
    it); None in files of older evaluations, which then cannot promote."""
    not_measured: dict[str, str] = field(default_factory=dict)
    """Metric -> why the evaluation did not measure it (`not_measured` in metrics.json; e.g. no
    reverse-learning control was trained)."""
    paired: dict[str, dict[str, dict]] = field(default_factory=dict)
    """Baseline -> metric -> the model against that baseline on the same rows (`paired` in
    metrics.json, `hrm.eval.paired`): `ci95` (low, high), `model_only`, `baseline_only` and
    `p_value` (recomputed here from the two counts); empty in files of older evaluations."""


def load_split_extras(eval_dir: str | Path, split: str) -> SplitExtras:
    """Baselines (`baselines.<name>.<metric>`, numbers only) and `_ci95` pairs of one split's
    metrics.json (which `load_split_metrics` has already checked is a JSON object)."""
    from hrm.eval.metric_names import out_of_range

    path = Path(eval_dir) / split / METRICS_FILE
    raw = _read_metrics(path, split)
    baselines: dict[str, dict[str, float]] = {}
    for name, values in (raw.get("baselines") or {}).items():
        if isinstance(values, dict):
            baselines[name] = {k: _as_float(v, f"baselines.{name}.{k}", path)
                               for k, v in values.items()
                               if isinstance(v, int | float) and not isinstance(v, bool)}
            for k, v in baselines[name].items():
                why = out_of_range(k, v) if math.isfinite(v) else ""
                if why:
                    raise InputError(f"impossible baseline: {name}: {why}", path=str(path))
    intervals: dict[str, tuple[float, float]] = {}
    for key, value in raw.items():
        if key.endswith("_ci95") and isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            metric = key[: -len("_ci95")]
            low, high = (_as_float(v, key, path) for v in value)
            why = " ".join(out_of_range(metric, v) for v in (low, high)
                           if math.isfinite(v) and out_of_range(metric, v))
            if why or not low <= high:
                raise InputError(f"impossible interval {key} = [{low}, {high}]"
                                 + (f": {why}" if why else ": low above high"), path=str(path))
            intervals[metric] = (low, high)
    sha = raw.get("checkpoint_sha256")
    if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise InputError(f"checkpoint_sha256 must be 64 hex digits, got {sha!r}", path=str(path))
    not_measured = raw.get("not_measured") or {}
    if not isinstance(not_measured, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in not_measured.items()):
        raise InputError("not_measured must map metric names to reasons (strings)", path=str(path))
    return SplitExtras(baselines, intervals, sha, dict(not_measured), _paired_intervals(raw, path))


def _paired_intervals(raw: dict, path: Path) -> dict[str, dict[str, dict]]:
    """`paired.<baseline>.<metric>` of metrics.json: an interval of a difference of two rates
    (within [-1, 1]) and whole discordant counts; the exact test's p-value is recomputed from
    the counts, and a file whose own `p_value` disagrees is refused."""
    from hrm.eval.paired import exact_sign_p

    paired = raw.get("paired", {})
    out: dict[str, dict[str, dict]] = {}
    if not isinstance(paired, dict):
        raise InputError("paired must map baselines to metrics", path=str(path))
    for name, by_metric in paired.items():
        if not isinstance(by_metric, dict):
            raise InputError(f"paired.{name} must map metrics to differences", path=str(path))
        for metric, d in by_metric.items():
            key = f"paired.{name}.{metric}"
            ci = d.get("ci95") if isinstance(d, dict) else None
            if not (isinstance(ci, list) and len(ci) == 2 and all(json_number(v) is not None for v in ci)):
                raise InputError(f"{key}.ci95 must be [low, high], got {ci!r}", path=str(path))
            low, high = float(ci[0]), float(ci[1])
            if not -1.0 <= low <= high <= 1.0:
                raise InputError(f"impossible interval {key}.ci95 = [{low}, {high}]: "
                                 "a difference of two rates lies in [-1, 1], low first", path=str(path))
            counts = discordant_counts(d)
            if counts is None:
                raise InputError(f"{key}: model_only and baseline_only must be whole counts >= 0, "
                                 f"got {d.get('model_only')!r} and {d.get('baseline_only')!r}", path=str(path))
            model_only, baseline_only = counts
            p = exact_sign_p(model_only, baseline_only)
            given = json_number(d.get("p_value"))
            if given is not None and not math.isclose(given, p, rel_tol=1e-9, abs_tol=1e-12):
                raise InputError(f"{key}.p_value {given} is not the exact test's {p} for "
                                 f"{model_only} : {baseline_only} discordant rows", path=str(path))
            out.setdefault(name, {})[metric] = {"ci95": (low, high), "model_only": model_only,
                                                "baseline_only": baseline_only, "p_value": p}
    return out


def json_number(v: object) -> float | None:
    """`v` as a float when it is a JSON number (never a bool or a string), else None."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def discordant_counts(d: object) -> tuple[int, int] | None:
    """A paired entry's (`model_only`, `baseline_only`) when both are whole numbers >= 0."""
    if not isinstance(d, dict):
        return None
    counts = [json_number(d.get(k)) for k in ("model_only", "baseline_only")]
    if not all(c is not None and c >= 0 and c == int(c) for c in counts):
        return None
    return int(counts[0]), int(counts[1])


def load_eval_metrics(eval_dir: str | Path, splits: list[str]) -> dict[str, dict[str, float | None]]:
    """Metrics of each split in `splits` (each must exist)."""
    return {split: load_split_metrics(eval_dir, split) for split in splits}


def available_splits(eval_dir: str | Path) -> list[str]:
    """Splits under `eval_dir` that have a metrics file (for the optional overfitting rule)."""
    root = Path(eval_dir)
    return sorted(p.parent.name for p in root.glob(f"*/{METRICS_FILE}")) if root.is_dir() else []


@dataclass(frozen=True)
class EpochPoint:
    """One epoch of training, averaged over the rows logged during it."""

    phase: str
    epoch: float
    values: dict[str, float]


@dataclass
class History:
    """Training history over all phases, in plan order, one point per (phase, epoch)."""

    points: list[EpochPoint] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def series(self, column: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of `column` over the points where it is finite."""
        xs, ys = [], []
        for p in self.points:
            v = p.values.get(column)
            if v is not None and math.isfinite(v):
                xs.append(p.epoch)
                ys.append(v)
        return xs, ys

    def phase_starts(self) -> list[tuple[str, float]]:
        """(phase, first epoch) for each phase that has points."""
        starts: list[tuple[str, float]] = []
        for p in self.points:
            if not starts or starts[-1][0] != p.phase:
                starts.append((p.phase, p.epoch))
        return starts

    @property
    def last_epoch(self) -> float | None:
        return self.points[-1].epoch if self.points else None


def _parse_float(text: str, path: Path, line: int, column: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"column '{column}' is not a number: {text!r}", path=str(path), line=line) from None


def load_phase_history(path: str | Path) -> list[EpochPoint]:
    """Read one `history.csv` and average its numeric columns per epoch (rows may be per step)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("training history not found (run `hrm train` for this phase)", path=str(path))
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_HISTORY_COLUMNS if c not in header]
        if missing:
            raise InputError(f"missing columns {missing} (has {header})", path=str(path), line=1)
        numeric = [c for c in header if c != "phase"]
        groups: dict[tuple[str, float], list[dict[str, float | None]]] = {}
        for line, row in enumerate(reader, start=2):
            epoch = _parse_float(row["epoch"], path, line, "epoch")
            if epoch is None:
                raise InputError("column 'epoch' is empty", path=str(path), line=line)
            values = {c: _parse_float(row[c] or "", path, line, c) for c in numeric}
            groups.setdefault((row["phase"], epoch), []).append(values)
    points = []
    for (phase, epoch), rows in groups.items():
        means: dict[str, float] = {}
        for c in numeric:
            vals = [r[c] for r in rows if r[c] is not None]
            if vals:
                means[c] = sum(vals) / len(vals)
        points.append(EpochPoint(phase=phase, epoch=epoch, values=means))
    points.sort(key=lambda p: p.epoch)
    return points


def load_history(train_dir: str | Path, phases: list[str]) -> History:
    """Histories of `phases` (plan order) under `train_dir/<phase>/history.csv`, concatenated.

    Epochs are global across phases, so they must increase from one phase to the next.
    """
    history = History(phases=list(phases))
    for phase in phases:
        path = Path(train_dir) / phase / HISTORY_FILE
        pts = load_phase_history(path)
        if not pts:
            raise InputError("training history has no rows", path=str(path))
        if history.points and pts[0].epoch <= history.points[-1].epoch:
            raise InputError(
                f"epochs must be global across phases: phase '{phase}' starts at epoch "
                f"{pts[0].epoch:g}, not after {history.points[-1].epoch:g}",
                path=str(path),
            )
        with path.open(newline="", encoding="utf-8") as fh:
            history.columns.update(next(csv.reader(fh)))
        history.points.extend(pts)
    return history

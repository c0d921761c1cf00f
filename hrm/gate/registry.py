"""Promotion through the MLflow Model Registry (sqlite or a tracking server: whatever
`params.tracking` / MLFLOW_TRACKING_URI points at).

A candidate is ONE checkpoint file (a checkpoints directory resolves to its newest checkpoint,
which must verify against its manifest, else `CorruptCheckpoint` names the file: never an older
one; the same rule evaluation uses). With its manifest, the tokenizer directory and the resolved
params it is saved as an MLflow Model (`hrm.pyfunc`: a python_function flavor with a signature,
an input example and pinned requirements), logged under `model/` of the gate's MLflow run with a
`manifest.json` of sha256 per file, and registered as a version of `gate.model_name` with the
source pointing at `model/`: `mlflow.pyfunc.load_model('models:/NAME@ALIAS')` loads it.

- Idempotent: a version is found by its `checkpoint_sha256` tag (the sha256 of the checkpoint
  file) before one is created, so re-running the gate on the same checkpoint reuses (and
  re-tags) the same version.
- Atomic promotion: the alias moves only after the version's artifacts were downloaded back
  from the registry and every file's hash matched the manifest and the local checkpoint.
- PROMOTE moves `gate.alias` to the version; the previous champion stays registered, tagged
  `champion_status=previous`. FLAG tags the version `gate=flagged` and never touches the alias.
- Guard (`gate.guard_metric`): no promotion when the candidate is worse than the champion on
  that metric (direction and split from the criterion on it); the version is then flagged.
"""

from __future__ import annotations

import json
import math
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from hrm.config import Params
from hrm.errors import HrmError, InputError
from hrm.gate.decide import GateResult, decision_problems

CHECKPOINT_TAG = "checkpoint_sha256"
MODEL_ARTIFACT_DIR = "model"
MANIFEST_FILE = "manifest.json"
MLFLOW_OWNED = frozenset({"registered_model_meta"})
"""Files MLflow itself writes into a registered model directory: loading `models:/NAME@ALIAS`
from a local store records the name and version there, in place. Not the candidate's files, so
the manifest check leaves them out."""

Action = Literal["promoted", "already_champion", "flagged", "guard_blocked"]


class RegistryError(HrmError):
    """The registry refused an operation or holds artifacts that do not match the candidate."""


@dataclass
class RegistryOutcome:
    """What the registry step did; written to `registry.json` and the report."""

    action: Action
    model_name: str
    version: str
    created: bool
    checkpoint_sha256: str
    champion_version: str | None
    previous_champion: str | None = None
    reasons: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        new = "registered as new version" if self.created else "already registered (same checkpoint hash)"
        out = [f"`{self.model_name}` version {self.version}: {new}; checkpoint sha256 `{self.checkpoint_sha256[:16]}…`",
               f"action: **{self.action}**; champion is now version {self.champion_version or 'none'}"]
        if self.previous_champion:
            out.append(f"previous champion: version {self.previous_champion} (kept, tagged champion_status=previous)")
        out += [f"reason: {r}" for r in self.reasons]
        return out

    def to_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------
# hashing
# ------------------------------------------------------------------------------------------
def _file_sha256(path: Path) -> str:
    # The checkpoint module's hash (imported lazily: it pulls in torch), so registry hashes and
    # checkpoint manifests are the same function.
    from hrm.train.checkpoint import sha256_file

    return sha256_file(path)


def tree_manifest(root: Path, prefix: str = "") -> dict[str, str]:
    """{relative posix path: sha256} of every file under `root` (sorted, symlinks followed)."""
    if not root.is_dir():
        raise InputError("expected a directory", path=str(root))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {prefix + p.relative_to(root).as_posix(): _file_sha256(p) for p in files}


def resolve_candidate(checkpoint: Path) -> tuple[Path, str]:
    """(the one checkpoint file `checkpoint` names, its sha256).

    A file is itself, a checkpoints directory its newest checkpoint; either must verify against
    its manifest (`hrm.train.checkpoint.resolve_checkpoint`: raises `CorruptCheckpoint` naming
    the file, never falls back to an older checkpoint).
    """
    from hrm.train.checkpoint import resolve_checkpoint

    file = resolve_checkpoint(checkpoint)
    return file, _file_sha256(file)


def checkpoint_sha256(checkpoint: Path) -> str:
    """The identity of a candidate: sha256 of the one checkpoint file it resolves to."""
    return resolve_candidate(checkpoint)[1]


# ------------------------------------------------------------------------------------------
# MLflow plumbing
# ------------------------------------------------------------------------------------------
def use_experiment(params: Params) -> str:
    """Configure MLflow and make the configured experiment the active one.

    `hrm.tracking.step_run` opens its nested run without an experiment id, and MLflow then
    puts it in the *active* experiment (Default, artifacts under ./mlruns) rather than the
    parent's; selecting the experiment first keeps the step run and its artifacts where
    `params.tracking` says.
    """
    import mlflow

    from hrm.tracking import configure

    experiment_id = configure(params.tracking)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def _run(params: Params, step: str):
    """The active MLflow run if there is one (e.g. `hrm gate`'s), else a new step run."""
    import mlflow

    from hrm.tracking import step_run

    use_experiment(params)
    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    with step_run(params, step) as run:
        yield run


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name, description=(
                "HRM bug-repair model. `hrm gate` registers every candidate it judges: alias "
                "`champion` marks the promoted version, tag gate=flagged the ones it did not "
                "promote (with the failing criteria in gate.failing)."))
        except MlflowException as race:  # created concurrently by another gate run
            if race.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def find_version(client, name: str, sha: str):
    """The version registered for checkpoint hash `sha`, or None (oldest if several)."""
    found = client.search_model_versions(f"name='{name}' and tags.{CHECKPOINT_TAG}='{sha}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def champion(client, name: str, alias: str):
    """The version the alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def register_candidate(params: Params, checkpoint: Path, tokenizer: Path, run_id: str):
    """Find the version of this checkpoint, or log its artifacts to `run_id` and register one.

    Returns (ModelVersion, created, sha).
    """
    checkpoint, tokenizer = Path(checkpoint), Path(tokenizer)
    if not checkpoint.exists():
        raise InputError("checkpoint not found", path=str(checkpoint))
    if not tokenizer.is_dir():
        raise InputError("tokenizer directory not found", path=str(tokenizer))
    file, sha = resolve_candidate(checkpoint)
    client = _client()
    name = params.gate.model_name
    _ensure_registered_model(client, name)
    existing = find_version(client, name, sha)
    if existing is not None:
        return existing, False, sha

    with tempfile.TemporaryDirectory(prefix="hrm-gate-model-") as tmp:
        from hrm.model_dir import artifact_paths
        from hrm.pyfunc import save_model

        staged = Path(tmp) / MODEL_ARTIFACT_DIR
        # An MLflow Model (pyfunc) holding exactly the resolved checkpoint and its own manifest
        # (so the registered copy verifies and loads with `load_for_inference`), the tokenizer
        # and the params.
        save_model(staged, file, tokenizer, params)
        if _file_sha256(artifact_paths(staged)["checkpoint"] / file.name) != sha:
            raise RegistryError(f"{file} changed while it was being staged for registration")
        manifest = tree_manifest(staged)
        (staged / MANIFEST_FILE).write_text(json.dumps(
            {"checkpoint_sha256": sha, "files": manifest}, indent=2), encoding="utf-8")
        client.log_artifacts(run_id, str(staged), MODEL_ARTIFACT_DIR)

    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_DIR}"
    version = client.create_model_version(
        name, source, run_id=run_id,
        tags={CHECKPOINT_TAG: sha, "checkpoint_file": file.name, "hrm.profile": params.profile},
        description=f"checkpoint {file} (sha256 {sha[:16]}…)",
    )
    return version, True, sha


def verify_version(client, name: str, version: str, sha: str) -> None:
    """Download the version's artifacts back and check every hash; raise `RegistryError` if not.

    Checks: the files match the stored manifest exactly (nothing missing, extra or altered),
    `checkpoint/` holds exactly one checkpoint file (plus its manifest), it hashes to `sha`, the
    local candidate's hash, and it verifies against its own manifest.
    """
    import mlflow

    from hrm.train.checkpoint import CorruptCheckpoint, list_checkpoints, verify

    with tempfile.TemporaryDirectory(prefix="hrm-gate-verify-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, version), dst_path=tmp))
        manifest_path = local / MANIFEST_FILE
        if not manifest_path.is_file():
            raise RegistryError(f"{name} v{version}: registered artifacts have no {MANIFEST_FILE}")
        stored = json.loads(manifest_path.read_text(encoding="utf-8"))
        actual = {k: v for k, v in tree_manifest(local).items()
                  if k != MANIFEST_FILE and k not in MLFLOW_OWNED}
        if actual != stored["files"]:
            diff = sorted(set(actual.items()) ^ set(stored["files"].items()))
            raise RegistryError(f"{name} v{version}: downloaded artifacts differ from the manifest: {diff[:5]}")
        from hrm.model_dir import artifact_paths

        try:
            files = list_checkpoints(artifact_paths(local)["checkpoint"])
        except InputError as err:
            raise RegistryError(f"{name} v{version}: not a loadable MLflow Model: {err}") from None
        if len(files) != 1:
            raise RegistryError(f"{name} v{version}: expected exactly one checkpoint file in the registered "
                                f"artifacts, found {[f.name for f in files]}")
        got = _file_sha256(files[0])
        if got != sha or stored.get("checkpoint_sha256") != sha:
            raise RegistryError(f"{name} v{version}: checkpoint {files[0].name} hash {got[:16]}… != "
                                f"candidate {sha[:16]}…")
        try:
            verify(files[0])
        except CorruptCheckpoint as err:
            raise RegistryError(f"{name} v{version}: registered checkpoint does not verify: {err}") from None


def _metric_tags(result: GateResult) -> dict[str, str]:
    tags = {}
    for c in result.criteria:
        value = c.value
        tags[f"metric.{c.split}.{c.metric}"] = "null" if value is None else repr(float(value))
    return tags


def _tag(client, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _failing_text(result: GateResult) -> str:
    return "; ".join(f"{c.key} {c.op} {c.threshold:g}: {c.note}" for c in result.failing)


def _guard(params: Params, result: GateResult, current) -> str | None:
    """Why the guard blocks promotion over `current`, or None when it allows it."""
    metric = params.gate.guard_metric
    if metric is None or current is None:
        return None
    crit = next(c for c in result.criteria if c.metric == metric)
    key = f"metric.{crit.split}.{metric}"
    recorded = current.tags.get(key)
    try:
        champ = float(recorded) if recorded is not None else math.nan
    except ValueError:
        champ = math.nan
    if not math.isfinite(champ):
        # Without a comparable value the guard cannot show the candidate is not worse.
        return f"guard {metric}: champion v{current.version} has no finite recorded value ({key}={recorded!r})"
    cand = crit.value
    lower_is_better = crit.op in ("<", "<=")
    worse = cand > champ if lower_is_better else cand < champ
    if worse:
        return (f"guard {metric}: candidate {cand:.4g} is worse than champion v{current.version} "
                f"{champ:.4g} ({'lower' if lower_is_better else 'higher'} is better)")
    return None


# ------------------------------------------------------------------------------------------
# the two actions
# ------------------------------------------------------------------------------------------
def _check_same_checkpoint(result: GateResult, checkpoint: Path) -> None:
    """The metrics that decided were measured on the candidate itself, not on another model."""
    if not Path(checkpoint).exists():
        raise InputError("checkpoint not found", path=str(checkpoint))
    sha = checkpoint_sha256(Path(checkpoint))
    if result.checkpoint_sha256 is None:
        raise RegistryError("refusing: the decision's metrics do not name the checkpoint "
                            "they were measured on (metrics.json without checkpoint_sha256, from an "
                            "older `hrm evaluate`): evaluate the candidate again")
    if result.checkpoint_sha256 != sha:
        raise RegistryError(f"refusing: the metrics were measured on checkpoint "
                            f"{result.checkpoint_sha256[:16]}…, the candidate {checkpoint} is "
                            f"{sha[:16]}…: evaluate the candidate, then decide")


def promote(params: Params, result: GateResult, checkpoint: Path, tokenizer: Path) -> RegistryOutcome:
    """Register (or find) the candidate, verify it, and move the alias to it.

    Refuses a FLAG decision. With a guard that blocks, the version is flagged instead and the
    outcome's action is `guard_blocked`.
    """
    if result.verdict != "PROMOTE":
        raise RegistryError(f"refusing to promote: the gate decision is {result.verdict} "
                            f"({len(result.failing)} failing criteria)")
    problems = decision_problems(result)
    if problems:
        raise RegistryError("refusing to promote: the decision does not hold: " + "; ".join(problems))
    _check_same_checkpoint(result, checkpoint)
    gate = params.gate
    # The whole promotion under the lock: registering, verifying and moving the alias of two
    # candidates at once would race on the experiment, the registered model and the tags.
    with promotion_lock(params.tracking.resolved_uri), _run(params, "gate-promote") as run:
        client = _client()
        version, created, sha = register_candidate(params, checkpoint, tokenizer, run.info.run_id)
        v = str(version.version)
        verify_version(client, gate.model_name, v, sha)
        return _move_alias(params, result, client, v, created, sha)


def _move_alias(params: Params, result: GateResult, client, v: str, created: bool, sha: str
                ) -> RegistryOutcome:
    """The alias move and the champion tags (under `promotion_lock`)."""
    gate = params.gate
    current = champion(client, gate.model_name, gate.alias)
    base = {"model_name": gate.model_name, "version": v, "created": created, "checkpoint_sha256": sha}
    if current is not None and str(current.version) == v:
        _tag(client, gate.model_name, v, {"gate": "promoted", "gate.verdict": "PROMOTE",
                                           "champion_status": "current", **_metric_tags(result)})
        return RegistryOutcome(action="already_champion", champion_version=v, **base,
                               reasons=[f"version {v} already holds alias '{gate.alias}'"])
    blocked = _guard(params, result, current)
    if blocked:
        _tag(client, gate.model_name, v, {"gate": "flagged", "gate.verdict": "PROMOTE",
                                           "gate.failing": blocked, **_metric_tags(result)})
        return RegistryOutcome(action="guard_blocked", champion_version=str(current.version), **base,
                               reasons=[blocked])
    # `promoting` marks a promotion under way: if the alias move below fails, the version
    # does not claim to be promoted, and a re-run (same version) finishes the job.
    _tag(client, gate.model_name, v, {"gate": "promoting", "gate.verdict": "PROMOTE", "gate.failing": "",
                                       **_metric_tags(result)})
    # The only step that changes what consumers load; everything before it was verified.
    client.set_registered_model_alias(gate.model_name, gate.alias, v)
    _tag(client, gate.model_name, v, {"gate": "promoted", "champion_status": "current"})
    client.update_model_version(gate.model_name, v, description=(
        f"Promoted by the gate to '{gate.alias}': {result.evidence}")[:5000])
    previous = None
    if current is not None:
        previous = str(current.version)
        _tag(client, gate.model_name, previous, {"champion_status": "previous", "superseded_by": v})
    holder = reconcile_champion(client, gate.model_name, gate.alias)
    reasons = [] if holder == v else [f"another promotion moved alias '{gate.alias}' to version "
                                      f"{holder} meanwhile"]
    return RegistryOutcome(action="promoted", champion_version=holder, previous_champion=previous,
                           reasons=reasons, **base)


@contextmanager
def promotion_lock(uri: str):
    """Serialise promotions that share one sqlite registry: an exclusive `flock` on
    `<db>.promote.lock` beside the database, held for the whole promotion (registration,
    verification, alias, tags). A tracking server has no such lock; `reconcile_champion` repairs the tags after a race
    there (the alias itself always has exactly one holder)."""
    import fcntl

    from hrm.sqlite_uri import database_path

    db = database_path(uri)
    if db is None:
        yield
        return
    with open(db.with_name(db.name + ".promote.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def reconcile_champion(client, name: str, alias: str) -> str | None:
    """Make `champion_status=current` true of the alias holder only: any other version still
    tagged current (left by a concurrent promotion) becomes `previous`, superseded by the holder.
    Returns the holder's version."""
    holder = champion(client, name, alias)
    held = str(holder.version) if holder is not None else None
    for version in client.search_model_versions(f"name='{name}' and tags.champion_status='current'"):
        if str(version.version) != held:
            _tag(client, name, str(version.version),
                 {"champion_status": "previous", **({"superseded_by": held} if held else {})})
    return held


def flag(params: Params, result: GateResult, checkpoint: Path, tokenizer: Path) -> RegistryOutcome:
    """Register (or find) the candidate and tag it `gate=flagged` with the failing criteria.

    Never moves the alias. Refuses a PROMOTE decision (use `promote`).
    """
    if result.verdict != "FLAG":
        raise RegistryError("refusing to flag: the gate decision is PROMOTE (use promote)")
    if result.checkpoint_sha256 is not None:  # tags must not carry another model's numbers
        _check_same_checkpoint(result, checkpoint)
    gate = params.gate
    with _run(params, "gate-flag") as run:
        client = _client()
        version, created, sha = register_candidate(params, checkpoint, tokenizer, run.info.run_id)
        v = str(version.version)
        verify_version(client, gate.model_name, v, sha)
        _tag(client, gate.model_name, v, {"gate": "flagged", "gate.verdict": "FLAG",
                                           "gate.failing": _failing_text(result), **_metric_tags(result)})
        client.update_model_version(gate.model_name, v, description=(
            f"Flagged by the gate (not promoted): {_failing_text(result) or result.evidence}")[:5000])
        current = champion(client, gate.model_name, gate.alias)
        reasons = [f"{c.key}: {c.note}" for c in result.failing]
        if current is not None and str(current.version) == v:
            reasons.append(f"this version already holds alias '{gate.alias}'; flagging does not move it")
        return RegistryOutcome(action="flagged", model_name=gate.model_name, version=v, created=created,
                               checkpoint_sha256=sha,
                               champion_version=str(current.version) if current else None, reasons=reasons)


def act(params: Params, result: GateResult, checkpoint: Path, tokenizer: Path) -> RegistryOutcome:
    """Promote on PROMOTE, flag on FLAG."""
    if result.verdict == "PROMOTE":
        return promote(params, result, checkpoint, tokenizer)
    return flag(params, result, checkpoint, tokenizer)

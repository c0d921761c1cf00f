"""`hrm predict` (SWE-bench predictions for instances) and `hrm repair` (a fix for one function
of a file): thin shells over `hrm.predict` and `hrm.repair`."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import typer

from hrm.cli.options import ParamsPath, Profile, load

ModelUri = typer.Option(None, "--model", help="Registered model, e.g. models:/hrm-swe@champion "
                        "(default: gate.model_name@gate.alias of the params).")
CheckpointOpt = typer.Option(None, "--checkpoint", help="Use this checkpoint (file or checkpoints "
                             "directory) instead of the registered model.")
TokenizerOpt = typer.Option(Path("artifacts/tokenizer"), "--tokenizer",
                            help="Tokenizer directory of --checkpoint.")


def _project_registry(params, params_path: Path):
    """`params` with a relative sqlite tracking URI made absolute against the params file's
    directory (the project), so `hrm repair` works from any directory; refuses a database that
    does not exist rather than creating an empty one."""
    from hrm.errors import InputError
    from hrm.sqlite_uri import database_path

    db = None if os.environ.get("MLFLOW_TRACKING_URI") else database_path(params.tracking.resolved_uri)
    if db is None:
        return params
    if not db.is_absolute():
        db = (params_path.resolve().parent / db).resolve()
    if not db.is_file():
        raise InputError("no MLflow registry here (run `make run` or `hrm gate` in the project, "
                         "pass that project's --params, or use --checkpoint)", path=str(db))
    tracking = params.tracking.model_copy(update={"tracking_uri": f"sqlite:///{db}"})
    return params.model_copy(update={"tracking": tracking})


@contextmanager
def _repairer(params, model: str | None, checkpoint: Path | None, tokenizer: Path,
              params_path: Path):
    """The model to use and its name for `model_name_or_path`."""
    from hrm.repairer import Repairer, load_registered

    if checkpoint is not None and model is not None:
        raise typer.BadParameter("pass --model or --checkpoint, not both")
    if checkpoint is not None:
        rep = Repairer.load(checkpoint, tokenizer, params)
        yield rep, f"hrm:{Path(rep.checkpoint).name}@{rep.checkpoint_sha256[:12]}"
        return
    params = _project_registry(params, params_path)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # 100+ files: noise
    uri = model or f"models:/{params.gate.model_name}@{params.gate.alias}"
    with tempfile.TemporaryDirectory(prefix="hrm-model-") as tmp:
        yield load_registered(uri, params, tmp), uri.removeprefix("models:/")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("predict")
    def predict_cmd(
        instances: Path = typer.Option(..., "--instances", help="Instances (JSONL) to predict fixes for."),
        out: Path = typer.Option(Path("artifacts/predictions/preds.jsonl"), "--out",
                                 help="Predictions file (SWE-bench format, JSONL)."),
        model: str | None = ModelUri,
        checkpoint: Path | None = CheckpointOpt,
        tokenizer: Path = TokenizerOpt,
        params_path: Path = ParamsPath,
        profile: str | None = Profile,
    ) -> None:
        """Predict a fix for each instance: one SWE-bench prediction per line (instance_id,
        model_name_or_path, model_patch against the buggy tree)."""
        from hrm.predict import predict_instances

        params = load(params_path, profile)
        with _repairer(params, model, checkpoint, tokenizer, params_path) as (rep, name):
            summary = predict_instances(rep, instances, out, model_name=name, envs=params.envs)
        empty = ", ".join(f"{k}: {v}" for k, v in summary.reasons.items())
        typer.echo(f"predict: {summary.with_patch}/{summary.instances} instances with a patch"
                   + (f" (empty: {empty})" if empty else "") + f" -> {out}")

    @app.command("repair")
    def repair_cmd(
        path: Path = typer.Argument(..., help="Python file holding the buggy function."),
        function: str | None = typer.Option(None, "--function", help="func or Class.method "
                                            "(default: the function the model is surest is buggy)."),
        issue: str | None = typer.Option(None, "--issue", help="Issue text, or a file holding it."),
        apply: bool = typer.Option(False, "--apply", help="Write the fix into PATH."),
        model: str | None = ModelUri,
        checkpoint: Path | None = CheckpointOpt,
        tokenizer: Path = TokenizerOpt,
        params_path: Path = ParamsPath,
        profile: str | None = Profile,
    ) -> None:
        """Propose a fix for one function of a file; print it as a unified diff."""
        from hrm.errors import InputError
        from hrm.repair import repair_source
        from hrm.repo_paths import repository_path

        source = _read_text(path)
        text = _issue_text(issue)
        params = load(params_path, profile)
        with _repairer(params, model, checkpoint, tokenizer, params_path) as (rep, name):
            name_in_diff, applies_from = repository_path(path)
            try:
                fix = repair_source(rep, name_in_diff, source, function=function, issue=text)
            except InputError as err:  # name the file as the user gave it
                if err.path != name_in_diff:
                    raise
                raise InputError(err.message, path=str(path), line=err.line) from None
        where = f"{fix.function} (line {fix.start_line})"
        picked = f", picked among {fix.candidates} functions" if fix.candidates > 1 else ""
        typer.echo(f"# {name}: {where}{picked}; change probability {fix.change_probability:.3f}, "
                   f"q_halt {fix.q_halt:.3f}" + ("; only its first lines were read" if fix.truncated
                                                 else ""), err=True)
        if fix.rank:
            typer.echo(f"# the model's output ranked {fix.rank + 1}: every better one does not "
                       "parse", err=True)
        if fix.patch:
            typer.echo(f"# the diff applies from {applies_from} (git apply / patch -p1)", err=True)
        typer.echo(fix.patch, nl=False)
        if fix.reason or not fix.patch:
            typer.secho(f"no usable fix: {fix.reason or 'the model changes nothing'}",
                        fg=typer.colors.YELLOW, err=True)
            sys.exit(1)
        if apply:
            _write_in_place(path, fix.fixed_source)
            typer.echo(f"# applied to {path}", err=True)


ISSUE_FILE_SUFFIXES = (".txt", ".md", ".rst")


def _read_text(path: Path) -> str:
    """A UTF-8 text file's content; a missing file, a directory or other bytes are input errors."""
    from hrm.errors import InputError

    if path.is_dir():
        raise InputError("is a directory, not a file", path=str(path))
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text: {err}", path=str(path)) from None


def _issue_text(issue: str | None) -> str:
    """`--issue`: the text itself, or a file holding it. A value that names no file but reads as
    a file name (one word with a path separator or a .txt/.md/.rst suffix) is an error, not the
    issue: a mistyped file name must not become the issue text."""
    from hrm.errors import InputError

    if not issue:
        return ""
    if len(issue) < 4096 and "\n" not in issue and Path(issue).exists():
        return _read_text(Path(issue))
    one_word = not any(c.isspace() for c in issue)
    if one_word and ("/" in issue or os.sep in issue or issue.lower().endswith(ISSUE_FILE_SUFFIXES)):
        raise InputError("--issue names a file that does not exist (pass the issue text in quotes, "
                         "or an existing file)", path=issue)
    return issue


def _write_in_place(path: Path, text: str) -> None:
    """Replace the file's content atomically, keeping its mode; through a symlink, the file it
    points to is written and the link stays."""
    import stat

    target = path.resolve()
    tmp = target.with_name(target.name + ".hrm-tmp")
    tmp.write_bytes(text.encode("utf-8"))
    os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
    tmp.replace(target)

"""`hrm gate`: the convergence gate (decide + report + registry), and its parts for KFP.

- `hrm gate [--eval --train --out --checkpoint --tokenizer --fail-on-flag --no-registry]`:
  the DVC stage, everything in one process.
- `hrm gate decide`: `gate.json` + `report.md` + `plots/` (no registry).
- `hrm gate promote --decision gate.json` / `hrm gate flag --decision gate.json`: the registry
  action on a decision written by `decide` (KFP: gate -> dsl.If promote / Else flag).
- `hrm gate summary`: the few lines `make run` ends with.
"""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli.options import ParamsPath, Profile, load

EvalDir = typer.Option(Path("artifacts/eval"), "--eval", help="Directory with <split>/metrics.json.")
TrainDir = typer.Option(Path("artifacts/train"), "--train", help="Directory with <phase>/history.csv.")
OutDir = typer.Option(Path("artifacts/gate"), "--out", help="Output directory (gate.json, report.md, plots/).")
Checkpoint = typer.Option(None, "--checkpoint", help="Checkpoint dir (default: <train>/<last phase>/checkpoints).")
Tokenizer = typer.Option(None, "--tokenizer", help="Tokenizer dir (default: <artifacts_dir>/tokenizer).")
FailOnFlag = typer.Option(False, "--fail-on-flag", help="Exit 1 on a FLAG verdict (default: a FLAG exits 0).")
Decision = typer.Option(Path("artifacts/gate/gate.json"), "--decision", help="gate.json written by `hrm gate decide`.")

gate_app = typer.Typer(help="Convergence gate: decide PROMOTE/FLAG, write the convergence report, "
                            "promote or flag the model in the MLflow registry.")


def _echo_verdict(result) -> None:
    colour = typer.colors.GREEN if result.verdict == "PROMOTE" else typer.colors.YELLOW
    counts = result.counts()
    typer.secho(f"gate: {result.verdict} ({counts['passed']}/{counts['total']} criteria met)", fg=colour)
    for line in result.to_json()["failing"]:
        typer.echo(f"  failing: {line}")


def _exit_for(result, fail_on_flag: bool, registry_action: str | None = None) -> None:
    """With --fail-on-flag, exit 1 on FLAG and on a PROMOTE the champion guard blocked."""
    if fail_on_flag and (result.verdict == "FLAG" or registry_action == "guard_blocked"):
        raise typer.Exit(1)


@gate_app.callback(invoke_without_command=True)
def gate(
    ctx: typer.Context,
    eval_dir: Path = EvalDir,
    train_dir: Path = TrainDir,
    out: Path = OutDir,
    checkpoint: Path | None = Checkpoint,
    tokenizer: Path | None = Tokenizer,
    fail_on_flag: bool = FailOnFlag,
    no_registry: bool = typer.Option(False, "--no-registry", help="Decide and report, leave the registry alone."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Decide, write the report, and promote or flag the checkpoint (the DVC stage)."""
    if ctx.invoked_subcommand is not None:
        return
    from hrm.gate.step import run_gate

    params = load(params_path, profile)
    outcome = run_gate(params, eval_dir, train_dir, out, checkpoint=checkpoint, tokenizer=tokenizer,
                       use_registry=not no_registry)
    _echo_verdict(outcome.result)
    if outcome.registry is not None:
        for line in outcome.registry.lines():
            typer.echo(f"  registry: {line}")
    typer.echo(f"  report: {out / 'report.md'}")
    _exit_for(outcome.result, fail_on_flag, outcome.registry.action if outcome.registry else None)


@gate_app.command("decide")
def decide_cmd(
    eval_dir: Path = EvalDir,
    train_dir: Path = TrainDir,
    out: Path = OutDir,
    fail_on_flag: bool = FailOnFlag,
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Write gate.json, report.md and plots/ (logged to MLflow); no registry action."""
    from hrm.gate.step import run_gate

    params = load(params_path, profile)
    outcome = run_gate(params, eval_dir, train_dir, out, use_registry=False)
    _echo_verdict(outcome.result)
    _exit_for(outcome.result, fail_on_flag)


def _registry_cmd(action: str, decision: Path, train_dir: Path, checkpoint: Path | None,
                  tokenizer: Path | None, out: Path | None, params_path: Path, profile: str | None) -> None:
    from hrm.gate.decide import read_gate_json
    from hrm.gate.step import act_on_decision, default_checkpoint

    params = load(params_path, profile)
    result = read_gate_json(decision)
    ckpt = checkpoint or default_checkpoint(params, train_dir)
    tok = tokenizer or Path(params.artifacts_dir) / "tokenizer"
    outcome = act_on_decision(params, result, ckpt, tok, out or decision.parent, action=action)
    for line in outcome.lines():
        typer.echo(f"registry: {line}")


@gate_app.command("promote")
def promote_cmd(
    decision: Path = Decision,
    train_dir: Path = TrainDir,
    checkpoint: Path | None = Checkpoint,
    tokenizer: Path | None = Tokenizer,
    out: Path | None = typer.Option(None, "--out", help="Where registry.json goes (default: next to --decision)."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Register, verify and move the alias to the checkpoint of a PROMOTE decision."""
    _registry_cmd("promote", decision, train_dir, checkpoint, tokenizer, out, params_path, profile)


@gate_app.command("flag")
def flag_cmd(
    decision: Path = Decision,
    train_dir: Path = TrainDir,
    checkpoint: Path | None = Checkpoint,
    tokenizer: Path | None = Tokenizer,
    out: Path | None = typer.Option(None, "--out", help="Where registry.json goes (default: next to --decision)."),
    params_path: Path = ParamsPath,
    profile: str | None = Profile,
) -> None:
    """Register the checkpoint of a FLAG decision and tag it gate=flagged (alias untouched)."""
    _registry_cmd("flag", decision, train_dir, checkpoint, tokenizer, out, params_path, profile)


@gate_app.command("summary")
def summary_cmd(
    gate_dir: Path = typer.Option(Path("artifacts/gate"), "--gate", help="Directory with gate.json."),
    eval_dir: Path = EvalDir,
) -> None:
    """A few lines: the verdict, the primary metric against copying, each split's headline
    metrics beside the copy and unigram baselines (what `make run` ends with)."""
    from hrm.gate.summary import summary_lines

    for line in summary_lines(gate_dir, eval_dir):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(gate_app, name="gate")

"""`hrm sequences split` and `hrm sequences build`: thin shells over hrm.splits / hrm.sequences."""

from __future__ import annotations

from pathlib import Path

import typer

from hrm.cli import options

Track = typer.Option(True, "--track/--no-track", help="Log params and stats to MLflow.")


def split(
    instances: Path = typer.Option(..., "--instances", help="Validated instances JSONL."),
    out: Path = typer.Option(Path("artifacts/splits"), "--out", help="Output directory."),
    params_path: Path = options.ParamsPath,
    profile: str | None = options.Profile,
    track: bool = Track,
) -> None:
    """Assign instances to train/val/test, grouped by edited (repo, file, function)."""
    from hrm.splits import build_splits

    params = options.load(params_path, profile)
    stats = build_splits(instances, out, params.sequences)
    typer.echo(
        f"splits: train {stats['count_train']}, val {stats['count_val']}, test "
        f"{stats['count_test']} ({stats['groups']} groups, largest {stats['largest_group']}) "
        f"-> {out}"
    )
    for warning in stats["warnings"]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if track:
        import mlflow

        from hrm.tracking import step_run

        with step_run(params, "split"):
            mlflow.log_params({f"sequences.{k}": getattr(params.sequences, k)
                               for k in ("split_seed", "val_fraction", "test_fraction")})
            mlflow.log_metrics({k: v for k, v in stats.items() if isinstance(v, int)})


def build(
    instances: Path = typer.Option(..., "--instances", help="Validated instances JSONL."),
    splits: Path = typer.Option(..., "--splits", help="splits.json from `hrm sequences split`."),
    tokenizer: Path = typer.Option(..., "--tokenizer", help="Tokenizer directory."),
    out: Path = typer.Option(Path("artifacts/sequences"), "--out", help="Output directory."),
    params_path: Path = options.ParamsPath,
    profile: str | None = options.Profile,
    track: bool = Track,
) -> None:
    """Encode one fixed-length example per instance into {split}.npz/.jsonl and meta.json."""
    from hrm.sequences import build_sequences

    params = options.load(params_path, profile)
    meta = build_sequences(instances, splits, tokenizer, out, params.sequences)
    typer.echo(f"sequences: seq_len {meta.seq_len} (prompt {meta.prompt_len} + target "
               f"{meta.target_len}), vocab {meta.vocab_size} -> {out}")
    for s, n in meta.counts.items():
        t = meta.truncation[s]
        line = (f"  {s}: {n} rows, dropped {meta.dropped[s]} (target too long), "
                f"statement capped {t['statement_capped']} / cut {t['statement_cut']}, "
                f"code truncated {t['prompt_truncated']}, target truncated "
                f"{t['target_truncated']}")
        lossy = meta.dropped[s] or t["prompt_truncated"] or t["target_truncated"]
        typer.secho(line, fg=typer.colors.YELLOW if lossy else None)
    if track:
        import mlflow

        from hrm.tracking import step_run

        with step_run(params, "sequences"):
            mlflow.log_params({f"sequences.{k}": v for k, v in meta.config.items()})
            metrics = {f"rows_{s}": n for s, n in meta.counts.items()}
            metrics |= {f"dropped_{s}": n for s, n in meta.dropped.items()}
            for s, t in meta.truncation.items():
                metrics |= {f"{k}_{s}": v for k, v in t.items()}
            mlflow.log_metrics(metrics)


def register(app: typer.Typer) -> None:
    """Add `hrm sequences split|build` to the root app."""
    sub = typer.Typer(help="Train/val/test splits and fixed-length training sequences.",
                      no_args_is_help=True)
    sub.command("split")(split)
    sub.command("build")(build)
    app.add_typer(sub, name="sequences")

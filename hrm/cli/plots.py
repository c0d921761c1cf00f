"""`hrm plots offline`: make `dvc plots show` render without network (a thin shell over
hrm.offline_plots)."""

from __future__ import annotations

from pathlib import Path

import typer

plots_app = typer.Typer(help="DVC plots that render offline.", no_args_is_help=True)


@plots_app.command("offline")
def offline_command(
    repo: Path = typer.Option(Path("."), "--repo", help="The DVC repository (its root)."),
) -> None:
    """Write DVC's HTML template with the Vega libraries inlined and point the repository's
    machine-local DVC config at it: `dvc plots show` then renders with no network."""
    from hrm.data.materialise import dvc_executable
    from hrm.offline_plots import install_template

    path, kept = install_template(repo, dvc_executable())
    if kept:
        typer.secho(f"plots: the repository already names its own template ({kept}); kept it, so "
                    "`dvc plots show` renders offline only if that one does", fg=typer.colors.YELLOW)
        return
    typer.echo(f"plots: `dvc plots show` now uses {path} (Vega inlined; set in .dvc/config.local)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(plots_app, name="plots")

"""`llmtui runs [DIR]`: the runs in a folder, with their status (the list the wizard's Welcome screen shows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import user_errors

cli = typer.Typer()


@cli.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List runs: name, status (running, finished, failed, interrupted), step, best validation loss, started,
    duration. A run is running while its process holds the run folder's lock."""
    with user_errors():
        from llmtui.errors import LlmtuiError
        from llmtui.runs import COLUMNS, list_runs, table_rows

        if not folder.is_dir():
            raise LlmtuiError(f"no folder {folder}", hint="give the folder that holds your runs (default: runs)")
        found = list_runs(folder)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "name": r.name,
                            "path": str(r.path),
                            "status": r.status,
                            "step": r.step,
                            "total_steps": r.total_steps,
                            "best_val_loss": r.best_val_loss,
                            "started": r.started,
                            "seconds": r.seconds,
                            "error": r.error,
                            "pid": r.pid,
                        }
                        for r in found
                    ],
                    indent=2,
                )
            )
            return
        if not found:
            typer.echo(f"no runs in {folder}")
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(*COLUMNS, title=f"runs in {folder}")
        colour = {"running": "yellow", "finished": "green", "failed": "red", "interrupted": "magenta"}
        for run, row in zip(found, table_rows(found)):
            table.add_row(row[0], f"[{colour[run.status]}]{row[1]}[/]", *row[2:])
        Console().print(table)

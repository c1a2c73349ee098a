"""The wizard: `llmtui` with no command, and `llmtui web` (the same app in a browser)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""


def open_wizard() -> None:
    """Open the Textual wizard in this terminal."""
    typer.echo("The wizard is not built yet; see llmtui --help for the commands.")

"""`llmtui eval` and `llmtui compare`: held-out metrics and reports of trained runs."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

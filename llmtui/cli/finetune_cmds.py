"""`llmtui finetune`, `llmtui classify` and `llmtui export`: adapt a trained model and put it to use."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

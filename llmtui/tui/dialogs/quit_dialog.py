"""Quitting while a run or a search goes on: stop it first, or leave it running (it is its own process)."""

from __future__ import annotations

from llmtui.tui.dialogs.choice import ChoiceDialog


def quit_dialog(what: str, folder: str) -> ChoiceDialog:
    """Answers "stop", "leave" or "cancel" (None on escape). `what`: "training run" or "search"; `folder`: where
    it runs, as the person sees it."""
    return ChoiceDialog(
        f"The {what} in {folder} is going.\n"
        "Stop it (training leaves a checkpoint: running it again resumes), or leave it running and quit? "
        f"Reopen it later with: llmtui wizard {folder}",
        [("stop", "Stop and quit", "s"), ("leave", "Leave running, quit", "l"), ("cancel", "Cancel", "c")],
    )

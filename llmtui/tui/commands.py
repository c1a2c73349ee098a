"""The wizard's own entries in the command palette (ctrl+p): every step, the templates, open, save, run."""

from __future__ import annotations

from collections.abc import Iterator

from textual.app import SystemCommand

from llmtui.tui.steps import STEPS


def wizard_commands(app) -> Iterator[SystemCommand]:
    for index, (name, label) in enumerate(STEPS, start=1):
        yield SystemCommand(
            f"Go to {label}", f"Step {index} of the wizard (F{index})", lambda name=name: app.goto_step(name)
        )
    yield SystemCommand("New tiny run", "Start over from the tiny template", lambda: app.new_from_template("tiny"))
    yield SystemCommand(
        "New quickstart run", "Start over from recipes/quickstart.toml", lambda: app.new_from_template("quickstart")
    )
    yield SystemCommand("Open recipe…", "Edit a recipe file", app.action_open_recipe)
    yield SystemCommand("Open run…", "Look at an existing run folder", app.action_open_run)
    yield SystemCommand(
        "Compare runs",
        "Evaluated runs side by side, curves overlaid (c on Welcome)",
        lambda: app.switch_screen("compare"),
    )
    yield SystemCommand("Fine-tune a run", "A fine-tune recipe of a trained run (f on Welcome)", app.new_finetune)
    yield SystemCommand("Save recipe", "Write the recipe (Review step)", app.action_save)
    yield SystemCommand("Run / resume", "Run the recipe; continues from its last checkpoint", app.action_run_pipeline)
    if app.controller.running:
        yield SystemCommand("Pause / resume training", "Hold training after the current step", app.action_toggle_pause)
        yield SystemCommand("Stop training", "Write a checkpoint and stop", app.action_stop_training)

"""Review: name the run, read the recipe exactly as it will be saved, save it, run it."""

from __future__ import annotations

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Static

from llmtui.errors import LlmtuiError
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm
from llmtui.tui.widgets.text_entry import InTurnInput


class ReviewScreen(StepScreen):
    STEP = "review"
    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("ctrl+r", "run", "Save and run")]

    def body(self) -> ComposeResult:
        yield SectionForm("run", primary=("name", "out_dir", "seed", "backend"))
        with Horizontal(classes="field"):
            yield Label("save as", classes="field-label")
            yield InTurnInput(id="save-path", compact=True)
        with Horizontal(classes="buttons"):
            yield Button("Save (ctrl+s)", id="save", compact=True)
            yield Button("Save and run (ctrl+r)", id="run", variant="primary", compact=True)
        yield Static("", id="saved")
        yield Static("", id="toml")

    def recipe_loaded(self) -> None:
        self.query_one("#save-path", Input).value = self.wizard.document.default_save_path()

    def refresh_view(self) -> None:
        self.query_one("#toml", Static).update(
            Syntax(self.wizard.state.toml(), "toml", theme="ansi_dark", line_numbers=True, word_wrap=True)
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        elif event.button.id == "run":
            self.action_run()

    def action_save(self) -> bool:
        if self.wizard.held_by_problems(limit=5):
            return False
        try:
            path = self.wizard.document.save(self.query_one("#save-path", Input).value.strip())
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error")
            return False
        self.query_one("#saved", Static).update(f"Saved to [b]{path}[/b].  Headless: llmtui run {path}")
        return True

    def action_run(self) -> None:
        if self.action_save() and self.wizard.start_pipeline():
            self.wizard.goto_step("train")

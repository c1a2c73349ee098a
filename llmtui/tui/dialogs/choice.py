"""A question with several answers, each with its key (the dialog returns the answer's id, or None)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ChoiceDialog(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, str]]):
        """`choices`: (id, label, key) in order; the first is focused."""
        super().__init__()
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                for index, (answer, label, key) in enumerate(self.choices):
                    yield Button(f"{label} ({key})", id=answer, variant="warning" if index == 0 else "default")

    def on_key(self, event) -> None:
        for answer, _, key in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(answer)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

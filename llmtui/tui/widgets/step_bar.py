"""The step bar: every step of the wizard, where you are, and a click (or F1–F9) to go to any of them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from llmtui.tui.steps import STEPS
from llmtui.tui.wizard_access import wizard_of


class StepLink(Static):
    """One step's name; clicking it goes there."""

    def __init__(self, step: str, label: str, current: bool):
        super().__init__(label, classes="step -current" if current else "step", id=f"step-{step}")
        self.step = step

    def on_click(self) -> None:
        wizard_of(self).goto_step(self.step)


class StepBar(Horizontal):
    def __init__(self, current: str | None, **kwargs):
        super().__init__(**kwargs)
        self.current = current

    def compose(self) -> ComposeResult:
        for step, label in STEPS:
            yield StepLink(step, label, step == self.current)

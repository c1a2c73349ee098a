"""Model: the architecture family, its sizes and the token encoding, with what they cost as you type."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.cost_panel import CostPanel
from llmtui.tui.widgets.section_form import SectionForm


class ModelScreen(StepScreen):
    STEP = "model"

    def body(self) -> ComposeResult:
        with Horizontal(classes="with-side"):
            with Vertical(classes="main"):
                yield SectionForm(
                    "model",
                    primary=("arch", "layers", "dim", "heads", "context", "dropout", "embedding"),
                    more_title="More: attention, encoding, dropouts",
                )
            yield CostPanel(with_duration=False, classes="side")

    def refresh_view(self) -> None:
        self.query_one(CostPanel).update_cost()

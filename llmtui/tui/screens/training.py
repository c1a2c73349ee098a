"""Training: optimizer, learning rate and schedule, batch, steps, regularisation, precision; its duration."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.cost_panel import CostPanel
from llmtui.tui.widgets.section_form import SectionForm


class TrainingScreen(StepScreen):
    STEP = "training"

    def body(self) -> ComposeResult:
        with Horizontal(classes="with-side"):
            with Vertical(classes="main"):
                yield SectionForm(
                    "train",
                    primary=(
                        "steps",
                        "batch_size",
                        "optimizer",
                        "lr",
                        "schedule",
                        "warmup_steps",
                        "weight_decay",
                        "grad_clip",
                        "precision",
                        "eval_every",
                        "checkpoint_every",
                    ),
                )
                yield SectionForm(
                    "eval",
                    primary=("max_batches", "batch_size"),
                    title="[b]Evaluation[/b] after training, on the validation split",
                )
            yield CostPanel(classes="side")

    def refresh_view(self) -> None:
        self.query_one(CostPanel).update_cost()

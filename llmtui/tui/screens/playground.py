"""Playground: generate text with the trained model and sampling controls; classify text for task runs."""

from __future__ import annotations

import json

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm


def classification_task(run_root) -> dict | None:
    """The task description of a run fine-tuned for classification (data/task.json), else None."""
    try:
        task = json.loads((run_root / "data" / "task.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return task if isinstance(task, dict) and task.get("kind") == "classification" else None


class PlaygroundScreen(StepScreen):
    STEP = "playground"
    BINDINGS = [Binding("ctrl+g", "generate", "Generate")]

    def body(self) -> ComposeResult:
        yield Static("", id="model-line")
        with Horizontal(classes="field"):
            yield Input(placeholder="prompt, then Enter", id="prompt", compact=True)
            yield Button("Generate (ctrl+g)", id="generate", variant="primary", compact=True)
        yield Static("", id="output")
        yield SectionForm("generate", primary=("max_tokens", "temperature", "top_k", "top_p", "seed"),
                          more_title="Recipe only: prompts, beams, stop and cache of the samples written after training")
        with Vertical(id="classify-box"):
            yield Static("", id="classify-line")
            with Horizontal(classes="field", id="classify-row"):
                yield Input(placeholder="text to classify, then Enter", id="classify-text", compact=True)
                yield Button("Classify", id="classify", compact=True)
            yield Static("", id="classify-out")

    def recipe_loaded(self) -> None:
        prompts = self.app.state.recipe.generate.prompts
        self.query_one("#prompt", Input).value = prompts[0] if prompts else ""

    def refresh_view(self) -> None:
        state = self.app.state
        run = state.run
        line = self.query_one("#model-line", Static)
        if run.final_model_path.is_file():
            line.update(f"Model: [b]{escape(state.shown(run.final_model_path))}[/b]")
        else:
            line.update(f"[yellow]No trained model in {escape(state.shown(run.root))} yet: train it on the Train step.[/]")
        task = classification_task(run.root)
        self.query_one("#classify-row").display = task is not None
        self.query_one("#classify-line", Static).update(
            f"[b]Classify[/b]  labels: {', '.join(map(str, task.get('labels', [])))}" if task else
            "[dim]Classify: available for runs fine-tuned on a classification task (llmtui finetune); "
            "this run has none.[/]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "prompt":
            self.action_generate()
        elif event.input.id == "classify-text":
            self._classify(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "generate":
            self.action_generate()
        elif event.button.id == "classify":
            self._classify(self.query_one("#classify-text", Input).value)

    def action_generate(self) -> None:
        if self.app.controller.running:
            self.notify("Training is running: generate when it has finished.", severity="warning")
            return
        if self.problems():
            self.notify("Fix the highlighted sampling settings first.", severity="error")
            return
        if not self.app.state.run.final_model_path.is_file():
            self.notify("No trained model yet: train it on the Train step.", severity="warning")
            return
        if classification_task(self.app.state.run.root) is not None:
            self.notify("This run is a classifier: classify text below instead.", severity="warning")
            return
        self.query_one("#output", Static).update("[dim]generating…[/]")
        self._generate(self.query_one("#prompt", Input).value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="playground")
    def _generate(self, prompt: str) -> None:
        g = self.app.state.recipe.generate
        try:
            generator = self.app.results.generator()
            text = generator.generate(prompt, max_tokens=g.max_tokens, temperature=g.temperature, top_k=g.top_k,
                                      top_p=g.top_p, seed=g.seed)
        except Exception as exc:  # shown in the app; the details go to the error log
            self.app.call_from_thread(self._show_output, f"[red]{escape(self.app.describe_error(exc))}[/]")
            return
        self.last_output = text
        self.app.call_from_thread(self._show_output, f"[b]{escape(prompt)}[/b]{escape(text)}")

    def _show_output(self, markup: str) -> None:
        self.query_one("#output", Static).update(markup)

    @work(thread=True, exclusive=True, exit_on_error=False, group="classify")
    def _classify(self, text: str) -> None:
        try:
            from llmtui.finetune.use import load_classifier
        except ImportError:
            self.app.call_from_thread(self._show_classes, "[yellow]Classification is not available in this "
                                                          "installation.[/]")
            return
        try:
            probabilities = load_classifier(self.app.state.run.root).predict([text])[0]
        except Exception as exc:
            self.app.call_from_thread(self._show_classes, f"[red]{escape(self.app.describe_error(exc))}[/]")
            return
        ranked = sorted(probabilities.items(), key=lambda item: -item[1])
        lines = [f"{escape(str(label)):<20} {prob:6.1%} {'█' * round(prob * 30)}" for label, prob in ranked]
        self.app.call_from_thread(self._show_classes, "\n".join(lines))

    def _show_classes(self, markup: str) -> None:
        self.query_one("#classify-out", Static).update(markup)

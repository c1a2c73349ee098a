"""Vocabulary: the tokenizer's kind and size; train it, read its report, and see how text splits into tokens."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Static

from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm
from llmtui.tui.widgets.text_entry import InTurnInput

_PALETTE = ("on dark_blue", "on dark_green", "on dark_red", "on purple4")


class VocabularyScreen(StepScreen):
    STEP = "vocabulary"
    BINDINGS = [Binding("ctrl+t", "train_vocabulary", "Train vocabulary")]

    def body(self) -> ComposeResult:
        yield SectionForm("tokenizer", primary=("kind", "vocab_size", "min_frequency"))
        with Horizontal(classes="buttons"):
            yield Button("Prepare data and train the vocabulary (ctrl+t)", id="train-vocab", compact=True)
        yield Static("", id="vocab-status")
        yield Static("", id="vocab-report")
        yield Static("[b]Try it[/b]  type text to see its tokens", classes="heading")
        yield InTurnInput(placeholder="text to split into tokens", id="try-text", compact=True)
        yield Static("", id="tokens")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "train-vocab":
            self.action_train_vocabulary()

    def action_train_vocabulary(self) -> None:
        if self.problems():
            self.notify("Fix the highlighted fields first.", severity="error")
            return
        if self.wizard.start_pipeline(until="tokenizer"):
            self.query_one("#vocab-status", Static).update("[dim]preparing the data and training the vocabulary…[/]")

    def refresh_view(self) -> None:
        report_view = self.query_one("#vocab-report", Static)
        report = self.wizard.state.run.vocabulary_report()
        if report is None:
            report_view.update("[dim]No vocabulary trained for this run yet.[/]")
            self._tokenizer = None
            return
        from llmtui.tokenizers.report import report_lines

        trained = self.wizard.results.trained_tokenizer_settings()
        stale = (
            ""
            if trained == self.wizard.state.recipe.tokenizer.model_dump(mode="json")
            else "\n[yellow]The settings above differ from the trained vocabulary: train it again to see theirs.[/]"
        )
        report_view.update(
            "[b]Vocabulary report[/b]\n" + "\n".join(escape(line) for line in report_lines(report)) + stale
        )
        self._show_tokens(self.query_one("#try-text", Input).value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "try-text":
            self._show_tokens(event.value)

    def _show_tokens(self, text: str) -> None:
        out = self.query_one("#tokens", Static)
        tokenizer = self.wizard.results.tokenizer()
        if tokenizer is None:
            out.update("[dim]Train the vocabulary first.[/]")
            return
        if not text:
            out.update("")
            return
        pieces = tokenizer.pieces(text)
        shown = Text()
        for index, (_, _, (start, end)) in enumerate(pieces):
            shown.append(text[start:end].replace("\n", "⏎"), style=_PALETTE[index % len(_PALETTE)])
        shown.append(f"\n{len(pieces)} tokens: ", style="dim")
        shown.append(" ".join(str(token_id) for token_id, _, _ in pieces), style="dim")
        out.update(shown)

    def on_screen_resume(self) -> None:  # StepScreen's handler runs too (Textual calls each class's)
        self.run_changed()

    def run_changed(self) -> None:
        self.query_one("#vocab-status", Static).update(self.wizard.controller.status_line())

"""Compare: the evaluated runs of the runs folder side by side (as `llmtui compare`, the best of each row
highlighted) and their validation curves overlaid. Space ticks a run in or out; escape goes back."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, SelectionList, Static

from llmtui.runfolder import RunFolder
from llmtui.tui.widgets.line_chart import LineChart
from llmtui.tui.widgets.step_bar import StepBar
from llmtui.tui.wizard_access import wizard_of

COLOURS = ("dodger_blue2", "orange1", "green3", "magenta", "cyan", "yellow", "orchid", "red")


class CompareScreen(Screen):
    BINDINGS = [Binding("escape", "app.goto_step('welcome')", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepBar(None)
        with VerticalScroll(id="body"):
            yield Static(
                "[b]Compare runs[/b]  the evaluated runs in the runs folder; space ticks one in or out",
                id="compare-intro",
            )
            yield SelectionList(id="compare-runs")
            yield Static("", id="compare-table")
            yield LineChart("validation loss", id="compare-chart")
        yield Static("", id="help")
        yield Footer()

    def on_screen_resume(self) -> None:
        from llmtui.runs import list_runs

        state = wizard_of(self).state
        evaluated = [
            r
            for r in list_runs(state.base_dir / state.recipe.run.out_dir)
            if RunFolder(r.path).eval_report_path.is_file()
        ]
        choices = self.query_one("#compare-runs", SelectionList)
        before = set(choices.selected) if choices.option_count else None
        choices.clear_options()
        for run in evaluated:
            chosen = before is None or str(run.path) in before
            choices.add_option((f"{run.name}  [dim]{run.status}[/]", str(run.path), chosen))
        if choices.option_count:
            choices.highlighted = 0  # space ticks the first at once
        choices.focus()
        self.show_comparison()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.show_comparison()

    def show_comparison(self) -> None:
        from pathlib import Path

        from llmtui.errors import LlmtuiError
        from llmtui.evaluation.compare import compare_runs, comparison_table
        from llmtui.runs import validation_curve

        chosen = list(self.query_one("#compare-runs", SelectionList).selected)
        out = self.query_one("#compare-table", Static)
        chart = self.query_one("#compare-chart", LineChart)
        chart.clear()
        if not chosen:
            out.update("[dim]No evaluated run is ticked: train and evaluate runs, then compare them here.[/]")
            return
        try:
            out.update(comparison_table(compare_runs(chosen)))
        except LlmtuiError as exc:
            out.update(f"[red]{escape(str(exc))}[/]")
            return
        for index, path in enumerate(chosen):
            chart.set_series(
                Path(path).name,
                COLOURS[index % len(COLOURS)],
                [(float(step), loss) for step, loss in validation_curve(Path(path))],
            )

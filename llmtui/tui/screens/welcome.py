"""Welcome: start a new run from a template, open a recipe, or open one of the runs listed (as `llmtui runs`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Static

from llmtui.runfolder import RunFolder
from llmtui.tui.widgets.step_bar import StepBar
from llmtui.tui.wizard_access import wizard_of

if TYPE_CHECKING:
    from llmtui.tui.app import WizardApp

INTRO = """[b]From raw text to a language model you can use.[/b]
Each step edits one part of a recipe (a TOML file `llmtui run` also reads); the Review step shows it whole.
Keys: [b]ctrl+n[/b] next step, [b]esc[/b] back, [b]F1[/b]–[b]F9[/b] go to a step, [b]ctrl+p[/b] all actions, \
[b]ctrl+q[/b] quit."""


class WelcomeScreen(Screen):
    BINDINGS = [
        Binding("t", "template('tiny')", "Tiny run"),
        Binding("q", "template('quickstart')", "Quickstart"),
        Binding("o", "app.open_recipe", "Open recipe"),
        Binding("r", "app.open_run", "Open run"),
        Binding("f", "finetune", "Fine-tune"),
        Binding("c", "app.goto_step('compare')", "Compare"),
        Binding("ctrl+n", "app.goto_step('data')", "Next"),
    ]

    @property
    def wizard(self) -> WizardApp:
        return wizard_of(self)

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepBar(None)
        with VerticalScroll(id="body"):
            yield Static(INTRO, id="intro")
            with Vertical(id="choices"):
                yield Button("Tiny run: characters, a 2-layer GPT, about a minute  (t)", id="tiny", compact=True)
                yield Button("Quickstart: BPE, a 4-layer GPT, a few minutes  (q)", id="quickstart", compact=True)
                yield Button("Open a recipe…  (o)", id="open-recipe", compact=True)
                yield Button("Open an existing run…  (r)", id="open-run", compact=True)
                yield Button("Fine-tune a trained run (the one selected below)  (f)", id="finetune", compact=True)
                yield Button("Compare evaluated runs  (c)", id="compare", compact=True)
            yield Static("", id="current")
            yield Static(
                "[b]Runs[/b]  enter opens one; a running run is followed live", classes="heading", id="runs-heading"
            )
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="help")
        yield Footer()

    def on_mount(self) -> None:
        from llmtui.runs import COLUMNS

        self.query_one("#runs", DataTable).add_columns(*COLUMNS)
        self.set_interval(2.0, self.show_runs)  # statuses change while runs go on in other processes

    def on_screen_resume(self) -> None:
        state = self.wizard.state
        where = f"from {state.recipe_path}" if state.recipe_path else "not saved yet"
        self.query_one("#current", Static).update(
            f"Editing [b]{state.recipe.run.name}[/b] ({where}); its run folder is {state.shown(state.run.root)}."
        )
        self.show_runs()

    def runs_folder(self) -> Path:
        return self.wizard.state.base_dir / self.wizard.state.recipe.run.out_dir

    def show_runs(self) -> None:
        from llmtui.runs import list_runs, table_rows

        if not self.is_current:
            return
        runs = list_runs(self.runs_folder())
        table = self.query_one("#runs", DataTable)
        rows = table_rows(runs)
        if getattr(self, "_rows", None) == rows:
            return
        self._rows = rows
        cursor = table.cursor_row
        table.clear()
        for run, row in zip(runs, rows):
            table.add_row(*row, key=str(run.path))
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self.query_one("#runs-heading").display = table.display = bool(rows)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        path = event.row_key.value
        assert path is not None  # every row is added with its run folder as key
        self.wizard.open_run_folder(Path(path))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button in ("tiny", "quickstart"):
            self.action_template(button)
        elif button == "open-recipe":
            self.wizard.action_open_recipe()
        elif button == "open-run":
            self.wizard.action_open_run()
        elif button == "finetune":
            self.action_finetune()
        elif button == "compare":
            self.wizard.goto_step("compare")

    def action_finetune(self) -> None:
        """Fine-tune the run selected in the list when it is finished, else choose the base on the next screen."""
        from llmtui.runs import run_info

        table = self.query_one("#runs", DataTable)
        base = ""
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            assert key is not None  # every row is added with its run folder as key
            info = run_info(Path(key))
            if info.status == "finished" and RunFolder(info.path).final_model_path.is_file():
                base = info.name
        self.wizard.new_finetune(base)

    def action_template(self, name: str) -> None:
        self.wizard.new_from_template(name)

"""Tuning (optional): the search method and the space of recipe fields to search; run the search here (its own
`llmtui tune` process), follow its trials and best-so-far curve, and take the best values into the recipe."""

from __future__ import annotations

import tomli_w
import tomllib
from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Static, TextArea

from llmtui.errors import LlmtuiError
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.tune_controller import best_row, best_so_far
from llmtui.tui.widgets.line_chart import LineChart
from llmtui.tui.widgets.section_form import SectionForm
from llmtui.tui.widgets.text_entry import InTurnTextArea

_CURVE_COLOURS = ("green3", "magenta", "cyan", "yellow", "orchid")

SPACE_HELP = """[b]Search space[/b]  one line per searched field, by its key path, e.g.
[dim]"train.lr" = { low = 1e-4, high = 1e-2, log = true }
"model.arch" = { choices = ["lstm", "gpt"] }[/]
Leave it empty to skip tuning. A search runs many trainings, in its own process (as [b]llmtui tune RECIPE[/b]): \
it goes on if you quit, and starting it again resumes it."""


def space_to_text(space: dict) -> str:
    return "".join(tomli_w.dumps({key: value}) for key, value in space.items())


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


class TuningScreen(StepScreen):
    STEP = "tuning"
    BINDINGS = [
        Binding("ctrl+t", "start_search", "Search / resume"),
        Binding("ctrl+o", "stop_search", "Stop search"),
        Binding("ctrl+b", "use_best", "Use best"),
    ]

    def body(self) -> ComposeResult:
        yield SectionForm(
            "tune",
            primary=("method", "trials", "objective", "direction", "steps", "seconds", "pruner"),
            skip=("space",),
        )
        yield Static(SPACE_HELP, classes="heading")
        yield InTurnTextArea("", id="space", compact=True, soft_wrap=False)
        yield Static("", classes="form-error", id="space-error")
        with Horizontal(classes="buttons"):
            yield Button("Search / resume (ctrl+t)", id="start-search", variant="primary", compact=True)
            yield Button("Stop (ctrl+o)", id="stop-search", variant="error", compact=True)
            yield Button("Use best (ctrl+b)", id="use-best", compact=True)
        yield Static("", id="search-status")
        yield Static("", id="best-line")
        yield DataTable(id="trials", zebra_stripes=True, cursor_type="row")
        with Horizontal(id="tune-charts"):
            yield LineChart("best so far", id="best-chart")
            yield LineChart("running trials", id="trial-curves")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        action = {
            "start-search": self.action_start_search,
            "stop-search": self.action_stop_search,
            "use-best": self.action_use_best,
        }.get(event.button.id or "")
        if action is not None:
            action()

    def action_start_search(self) -> None:
        """Start (or resume) the search of the recipe as it stands, unless a field or a training run holds it."""
        app = self.wizard
        if app.held_by_problems():
            return
        if app.controller.running:
            self.notify("A training run is going in this run folder: wait for it or stop it first.", severity="warning")
            return
        why = app.tuner.start(app.state.recipe, app.state.base_dir)
        if why:
            self.notify(why, severity="error", title="Cannot start the search")
            return
        root = app.tuner.root
        assert root is not None  # a search started is a search shown
        self.notify("Search started (its output: " + app.state.shown(root / "tune.log") + ").")
        self.run_changed()

    def action_stop_search(self) -> None:
        self.wizard.tuner.stop()

    def action_use_best(self) -> None:
        """Write the best trial's values into the recipe being edited (every step's fields show them)."""
        best = best_row(self.wizard.tuner.rows, self.wizard.state.recipe.tune.direction)
        if best is None:
            self.notify("No finished trial yet.", severity="warning")
            return
        try:
            self.wizard.document.use_trial(best)
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", title="Cannot use these values")
            return
        self.wizard.recipe_replaced(same_run=True)
        values = ", ".join(
            f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}"
            for key, value in best["params"].items()
        )
        self.notify(f"Recipe updated from trial {best['number']}: {values}", title="Best trial used")

    def refresh_view(self) -> None:
        self.run_changed()

    def run_changed(self) -> None:
        tuner = self.wizard.tuner
        tune = self.wizard.state.recipe.tune
        self.query_one("#search-status", Static).update(tuner.status_line())
        best = best_row(tuner.rows, tune.direction)
        self.query_one("#best-line", Static).update(
            f"[b]best[/b] trial {best['number']}: {tune.objective} {best['value']:.4f}  "
            + "  ".join(f"{k} = {escape(_value(v))}" for k, v in best["params"].items())
            if best
            else ""
        )
        self.query_one("#start-search", Button).disabled = tuner.running
        self.query_one("#stop-search", Button).disabled = not tuner.running
        self.query_one("#use-best", Button).disabled = best is None
        self._show_trials(tuner.rows, list(tune.space))
        chart = self.query_one("#best-chart", LineChart)
        chart.x_max = float(tune.trials - 1)
        chart.set_series(tune.objective, "orange1", best_so_far(tuner.rows, tune.direction))
        curves = self.query_one("#trial-curves", LineChart)
        curves.clear()
        for index, (number, points) in enumerate(sorted(tuner.curves.items())[-len(_CURVE_COLOURS) :]):
            curves.set_series(f"trial {number}", _CURVE_COLOURS[index], points)

    def _show_trials(self, rows: list[dict], params: list[str]) -> None:
        table = self.query_one("#trials", DataTable)
        columns = ("#", *params, self.wizard.state.recipe.tune.objective, "state", "step", "time")
        shown = [
            (
                str(r["number"]),
                *(_value(r["params"].get(p)) for p in params),
                _value(r["value"])
                if r["value"] is not None
                else (f"({r['last_intermediate']:.4f})" if r["last_intermediate"] is not None else ""),
                r["state"],
                _value(r["step"]),
                f"{r['seconds']:.1f}s" if r["seconds"] is not None else "",
            )
            for r in sorted(rows, key=lambda r: r["number"])
        ]
        if getattr(self, "_shown", None) == (columns, shown):
            return
        if getattr(self, "_columns", None) != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
            self._columns = columns
        else:
            table.clear()
        for row in shown:
            table.add_row(*row)
        self._shown = (columns, shown)
        table.display = bool(shown)

    def recipe_loaded(self) -> None:
        space = self.wizard.state.recipe.tune.model_dump(mode="json")["space"]
        area = self.query_one("#space", TextArea)
        with area.prevent(TextArea.Changed):
            area.load_text(space_to_text(space))
        self._space_error("")

    def write_fields(self, data: dict) -> None:
        super().write_fields(data)
        data["tune"]["space"] = tomllib.loads(self.query_one("#space", TextArea).text)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id != "space":
            return
        try:
            space = tomllib.loads(event.text_area.text)
        except tomllib.TOMLDecodeError as exc:
            self._space_error(f"tune.space: not valid TOML: {exc}")
            return
        errors = self.wizard.state.try_update("tune", {"space": space})
        self._space_error("\n".join(f"{k}: {v}" for k, v in errors.items()))
        if not errors:
            self.wizard.recipe_edited()

    def _space_error(self, text: str) -> None:
        label = self.query_one("#space-error", Static)
        label.update(text)
        label.display = bool(text)
        self.space_problem = text

    def problems(self) -> list[str]:
        return super().problems() + ([self.space_problem] if getattr(self, "space_problem", "") else [])

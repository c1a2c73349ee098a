"""Welcome: start a new run from a template, open a recipe, or open an existing run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from llmtui.tui.widgets.step_bar import StepBar

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
        Binding("ctrl+n", "app.goto_step('data')", "Next"),
    ]

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
            yield Static("", id="current")
        yield Static("", id="help")
        yield Footer()

    def on_screen_resume(self) -> None:
        state = self.app.state
        where = f"from {state.recipe_path}" if state.recipe_path else "not saved yet"
        self.query_one("#current", Static).update(
            f"Editing [b]{state.recipe.run.name}[/b] ({where}); its run folder is {state.shown(state.run.root)}.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button in ("tiny", "quickstart"):
            self.action_template(button)
        elif button == "open-recipe":
            self.app.action_open_recipe()
        elif button == "open-run":
            self.app.action_open_run()

    def action_template(self, name: str) -> None:
        self.app.new_from_template(name)

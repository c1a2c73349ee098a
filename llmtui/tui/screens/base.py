"""What every step screen shares: the header, the step bar, a scrolling body, a help line and the footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from llmtui.tui.steps import STEP_NAMES
from llmtui.tui.widgets.section_form import SectionForm
from llmtui.tui.widgets.step_bar import StepBar
from llmtui.tui.wizard_access import wizard_of

if TYPE_CHECKING:
    from llmtui.tui.app import WizardApp


class StepScreen(Screen):
    STEP = ""
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
    ]

    def __init__(self) -> None:
        super().__init__(name=self.STEP)
        self._generation = -1  # the app's recipe_generation the forms show

    def compose(self) -> ComposeResult:
        yield Header()
        yield StepBar(self.STEP)
        with VerticalScroll(id="body"):
            yield from self.body()
        yield Static("", id="help")
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    @property
    def wizard(self) -> WizardApp:
        """The app, typed as the wizard it is (Textual's `self.app` is a plain `App`)."""
        return wizard_of(self)

    @property
    def forms(self) -> list[SectionForm]:
        return list(self.query(SectionForm))

    def on_mount(self) -> None:
        # The screen redraws itself from what the app says moved (a screen off view catches up when shown).
        self.watch(self.app, "recipe_generation", self._recipe_replaced, init=False)
        self.watch(self.app, "run_version", self.run_changed, init=False)
        self.watch(self.app, "runs_ended", self._run_ended, init=False)

    def on_screen_resume(self) -> None:
        self.show_recipe()

    def show_recipe(self) -> None:
        """Show the recipe: its values in the forms when it was replaced since they were loaded, and what
        depends on it."""
        if self._generation != self.wizard.recipe_generation:
            self._generation = self.wizard.recipe_generation
            for form in self.forms:
                form.load(self.wizard.state.recipe)
            self.recipe_loaded()
        self.refresh_view()

    def _recipe_replaced(self) -> None:
        if self.is_current:
            self.show_recipe()

    def _run_ended(self) -> None:
        if self.is_current:
            self.refresh_view()

    def recipe_loaded(self) -> None:
        """A new recipe was opened: show its values in the parts forms do not cover."""

    def refresh_view(self) -> None:
        """Update what depends on the recipe or the run folder (called on every visit)."""

    def run_changed(self) -> None:
        """The run moved on (new events, or it ended): update what shows it."""

    def on_section_form_changed(self, event: SectionForm.Changed) -> None:
        if event.valid:
            self.wizard.recipe_edited()
            self.refresh_view()

    def on_section_form_field_focused(self, event: SectionForm.FieldFocused) -> None:
        self.query_one("#help", Static).update(event.help)

    def write_fields(self, data: dict[str, Any]) -> None:
        """Write this step's fields, as shown, into `data` (a recipe as the loader reads it from TOML)."""
        for form in self.forms:
            for key, value in form.values().items():
                node = data[form.section]
                *parents, last = key.split(".")
                for part in parents:
                    node = node[part]
                node[last] = value

    def problems(self) -> list[str]:
        """Messages of fields that hold the wizard on this step."""
        return [
            text if key == form.section else f"{key}: {text}"
            for form in self.forms
            for key, text in form.errors.items()
        ]

    def action_next(self) -> None:
        index = STEP_NAMES.index(self.STEP)
        if index + 1 < len(STEP_NAMES):
            self.wizard.goto_step(STEP_NAMES[index + 1])

    def action_back(self) -> None:
        index = STEP_NAMES.index(self.STEP)
        self.wizard.goto_step(STEP_NAMES[index - 1] if index else "welcome")

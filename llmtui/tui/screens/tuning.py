"""Tuning (optional): the search method and the space of recipe fields to search."""

from __future__ import annotations

import tomli_w
import tomllib
from textual.app import ComposeResult
from textual.widgets import Static, TextArea

from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm

SPACE_HELP = """[b]Search space[/b]  one line per searched field, by its key path, e.g.
[dim]"train.lr" = { low = 1e-4, high = 1e-2, log = true }
"model.arch" = { choices = ["lstm", "gpt"] }[/]
Leave it empty to skip tuning. A search runs many trainings: start it with [b]llmtui tune RECIPE[/b] \
after saving the recipe on Review."""


def space_to_text(space: dict) -> str:
    return "".join(tomli_w.dumps({key: value}) for key, value in space.items())


class TuningScreen(StepScreen):
    STEP = "tuning"

    def body(self) -> ComposeResult:
        yield SectionForm("tune", primary=("method", "trials", "objective", "direction", "steps", "seconds",
                                           "pruner"), skip=("space",))
        yield Static(SPACE_HELP, classes="heading")
        yield TextArea("", id="space", compact=True, soft_wrap=False)
        yield Static("", classes="form-error", id="space-error")

    def recipe_loaded(self) -> None:
        space = self.app.state.recipe.tune.model_dump(mode="json")["space"]
        area = self.query_one("#space", TextArea)
        with area.prevent(TextArea.Changed):
            area.load_text(space_to_text(space))
        self._space_error("")

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id != "space":
            return
        try:
            space = tomllib.loads(event.text_area.text)
        except tomllib.TOMLDecodeError as exc:
            self._space_error(f"tune.space: not valid TOML: {exc}")
            return
        errors = self.app.state.try_update("tune", {"space": space})
        self._space_error("\n".join(f"{k}: {v}" for k, v in errors.items()))
        if not errors:
            self.app.recipe_edited()

    def _space_error(self, text: str) -> None:
        label = self.query_one("#space-error", Static)
        label.update(text)
        label.display = bool(text)
        self.space_problem = text

    def problems(self) -> list[str]:
        return super().problems() + ([self.space_problem] if getattr(self, "space_problem", "") else [])

"""The wizard app: navigation between the steps, and the wiring of what the steps share.

Each shared thing has its owner: the recipe being edited belongs to the `RecipeDocument` (new, open, save, the
recipe as the forms show it); a run to the run controller (its own `llmtui run` process, followed through its
event log) and a search to the tune controller (`llmtui tune`); what a finished run left (tokenizer, generator)
to `RunResults`; TensorBoard to its server. The app hands the controllers' messages to them, says what happened,
and moves three counters the screens watch to redraw themselves: it never reaches into a screen's widgets.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen

from llmtui.config.recipe import Recipe
from llmtui.errors import LlmtuiError
from llmtui.tui.commands import wizard_commands
from llmtui.tui.dialogs.path_dialog import PathDialog
from llmtui.tui.dialogs.quit_dialog import quit_dialog
from llmtui.tui.messages import RunEnded, RunEvents
from llmtui.tui.recipe_document import RecipeDocument
from llmtui.tui.run_controller import RunController, stages_for
from llmtui.tui.run_results import RunResults
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.screens.registry import FORM_SCREENS, SCREEN_CLASSES
from llmtui.tui.screens.review import ReviewScreen
from llmtui.tui.screens.welcome import WelcomeScreen
from llmtui.tui.steps import STEP_NAMES, STEPS
from llmtui.tui.tensorboard import TensorBoardServer
from llmtui.tui.tune_controller import TuneController, TuneEnded, TuneProgress


class WizardApp(App):
    """`llmtui`: from raw text to a trained, evaluated, usable language model."""

    CSS_PATH = "wizard.tcss"
    TITLE = "llmtui"
    SCREENS = SCREEN_CLASSES
    BINDINGS = [
        Binding(f"f{index}", f"goto_step('{name}')", label, show=False)
        for index, (name, label) in enumerate(STEPS, start=1)
    ]

    # What the step screens watch (counters that only go up) to redraw themselves.
    recipe_generation = var(0)  # another recipe replaced the one edited: every form shows the new one
    run_version = var(0)  # the run or the search shown moved on (events, a start, an end, a pause)
    runs_ended = var(0)  # a run ended: the reports, vocabulary and model it wrote may be new

    def __init__(
        self,
        recipe: Path | None = None,
        run: Path | None = None,
        base_dir: Path | None = None,
        start: str | None = None,
    ):
        super().__init__()
        self.document = RecipeDocument(base_dir or Path.cwd())
        self.state = self.document.state  # what the screens read: the recipe, its file, its run folder
        self.controller = RunController(self)
        self.tuner = TuneController(self)
        self.tensorboard = TensorBoardServer()
        self.results = RunResults(self.state)
        self._quit_when_stopped = False
        self._initial = (recipe, run, start)

    # Start -------------------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        recipe, run, start = self._initial
        try:
            if run is not None:
                self.document.open_run(run)
            elif recipe is not None:
                self.document.open_recipe(recipe)
            else:
                self.document.new_from_template("tiny")
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", timeout=15)
        self.recipe_replaced()
        self._warm_up(self.state.recipe.run.backend)
        self.push_screen("welcome")
        if start is None and run is not None:
            start = self.step_for_run()
        if start is not None:
            self.goto_step(start)

    @work(thread=True, exit_on_error=False, group="warm-up")
    def _warm_up(self, backend: str) -> None:
        """Import Keras (through the cost estimate's package) off the UI thread, on the recipe's backend."""
        from llmtui.backend import configure_backend

        try:
            configure_backend(backend)
            import llmtui.models.cost  # noqa: F401
        except Exception:  # the same error comes back, shown, when a step needs the library
            pass

    def recipe_replaced(self, same_run: bool = False) -> None:
        """The document holds another recipe: the title, the run shown (unless `same_run`) and the forms follow."""
        self.sub_title = self.state.recipe.run.name
        if not same_run:
            recipe = self.state.recipe
            self.controller.show(self.state.run.root, stages_for(recipe), recipe.train.steps)
            self.tuner.show(recipe, self.state.base_dir)
            self.results.forget()
            self.run_version += 1
        self.recipe_generation += 1

    def recipe_edited(self) -> None:
        self.sub_title = self.state.recipe.run.name

    # Navigation --------------------------------------------------------------------------------------------
    def goto_step(self, step: str) -> None:
        current = self.screen
        if isinstance(current, WelcomeScreen) and step == "welcome":
            return
        if (
            step in STEP_NAMES
            and isinstance(current, StepScreen)
            and current.name in STEP_NAMES
            and STEP_NAMES.index(step) > STEP_NAMES.index(current.name)
        ):
            problems = current.problems()
            if problems:
                self.notify("Fix this first:\n" + "\n".join(problems[:4]), severity="error", title="Invalid field")
                return
        if current.name == step:
            return
        self.switch_screen(step)

    def action_goto_step(self, step: str) -> None:
        self.goto_step(step)

    def visited_steps(self) -> list[StepScreen]:
        """The screens with recipe fields shown so far: their fields are what the recipe is."""
        steps: list[StepScreen] = []
        for name in FORM_SCREENS:
            if self.is_screen_installed(name):
                screen = self.get_screen(name)
                assert isinstance(screen, StepScreen), f"{name} is in FORM_SCREENS but not a StepScreen"
                if screen.is_mounted:
                    steps.append(screen)
        return steps

    def all_problems(self) -> list[str]:
        """Invalid fields on any step visited so far."""
        return [problem for screen in self.visited_steps() for problem in screen.problems()]

    def held_by_problems(self, limit: int = 4) -> bool:
        """Whether an invalid field holds the wizard back (then a notice lists them)."""
        problems = self.all_problems()
        if problems:
            self.notify("Fix these first:\n" + "\n".join(problems[:limit]), severity="error")
        return bool(problems)

    def step_for_run(self) -> str:
        """Where an opened run is worth looking at: training while it runs, else its evaluation if it has one."""
        if not self.controller.running and (self.state.run.eval_dir / "report.json").is_file():
            return "evaluate"
        return "train"

    # The recipe (the document does the work; the app says so and goes where it is worth going) -------------
    def new_from_template(self, name: str) -> None:
        warning = self.document.new_from_template(name)
        if warning:
            self.notify(warning, severity="warning")
        self.recipe_replaced()
        self.notify(f"New run '{self.state.recipe.run.name}' from the {name} template.")
        self.goto_step("data")

    def new_finetune(self, base: str = "") -> None:
        """A new fine-tune recipe (of `base`, a run name, when given) and its setup screen."""
        self.document.new_finetune(base)
        self.recipe_replaced()
        self.notify(f"New fine-tune '{self.state.recipe.run.name}'" + (f" of {base}." if base else "."))
        self.switch_screen("finetune")

    def action_open_recipe(self) -> None:
        self.push_screen(
            PathDialog("Open a recipe (TOML)", "recipes/quickstart.toml"),
            lambda path: self.open_recipe_file(Path(path)) if path else None,
        )

    def open_recipe_file(self, path: Path) -> None:
        if self._opened(lambda: self.document.open_recipe(path), "recipe"):
            self.notify(f"Opened {path}.")
            self.goto_step("data")

    def action_open_run(self) -> None:
        self.push_screen(
            PathDialog("Open a run folder", "runs/quickstart"),
            lambda path: self.open_run_folder(Path(path)) if path else None,
        )

    def open_run_folder(self, path: Path) -> None:
        if self._opened(lambda: self.document.open_run(path), "run"):
            self.notify(
                f"Opened run {self.state.shown(path)}"
                + (" (running: following it)." if self.controller.running else ".")
            )
            self.goto_step(self.step_for_run())

    def _opened(self, open_it, what: str) -> bool:
        """Open a recipe or a run through the document; False, and a notice saying why, when it cannot."""
        try:
            open_it()
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", title=f"Cannot open the {what}", timeout=15)
            return False
        self.recipe_replaced()
        return True

    def recipe_from_forms(self) -> Recipe:
        """The recipe as the forms show it (the defaults, and every visited step's fields)."""
        return self.document.recipe_from_forms(self.visited_steps())

    def action_save(self) -> None:
        self.goto_step("review")
        if isinstance(self.screen, ReviewScreen):
            self.screen.action_save()

    # Runs and searches (each its own process, owned by its controller) -------------------------------------
    def start_pipeline(self, until: str | None = None) -> bool:
        """Run the recipe (up to the `until` stage); False, with a notice saying why, when it cannot start."""
        if self.controller.running:
            self.notify("A run is already going.", severity="warning")
            return False
        started = not self.held_by_problems() and self.controller.start(self.state.recipe, self.state.base_dir, until)
        self.run_version += 1
        return started

    def on_run_events(self, message: RunEvents) -> None:
        self.controller.consume(message.events)
        self.run_version += 1

    def on_run_ended(self, message: RunEnded) -> None:
        self.controller.ended(message)
        self.results.forget()
        if not self._exit_once_stopped():
            self.run_version += 1
            self.runs_ended += 1

    def on_tune_progress(self, message: TuneProgress) -> None:
        self.tuner.progress(message)
        self.run_version += 1

    def on_tune_ended(self, message: TuneEnded) -> None:
        self.tuner.ended(message)
        if not self._exit_once_stopped():
            self.run_version += 1

    def action_run_pipeline(self) -> None:
        if self.start_pipeline():
            self.goto_step("train")

    def action_toggle_pause(self) -> None:
        if self.controller.running:
            self.notify("Pausing after the current step." if self.controller.toggle_pause() else "Resumed.")
            self.run_version += 1

    def action_stop_training(self) -> None:
        self.controller.stop()

    # Quitting ----------------------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        if not (self.controller.running or self.tuner.running):
            self.exit()
            return

        def answer(choice: str | None) -> None:
            if choice == "stop":  # the wizard quits once both have stopped
                self._quit_when_stopped = True
                self.controller.stop()
                self.tuner.stop()
            elif choice == "leave":
                self.controller.detach()
                self.tuner.detach()
                self.exit()

        going = self.controller.root if self.controller.running else self.tuner.root
        assert going is not None  # what is going is shown
        what = "training run" if self.controller.running else "search"
        self.push_screen(quit_dialog(what, self.state.shown(going)), answer)

    def _exit_once_stopped(self) -> bool:
        """After "Stop and quit": exit when neither the run nor the search is going any more."""
        if self._quit_when_stopped and not (self.controller.running or self.tuner.running):
            self.exit()
            return True
        return False

    def on_unmount(self) -> None:
        self.tensorboard.stop()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from wizard_commands(self)

"""The wizard app: one recipe edited step by step; navigation, opening and saving.

Runs belong to the run controller (each is its own `llmtui run` process, followed through its event log);
what a finished run left (tokenizer, generator) to `RunResults`; the screens draw from both.
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from llmtui.config.loader import load_recipe, save_recipe
from llmtui.config.recipe import Recipe
from llmtui.errors import LlmtuiError
from llmtui.tui.dialogs.choice import ChoiceDialog
from llmtui.tui.dialogs.path_dialog import PathDialog
from llmtui.tui.messages import RunEnded, RunEvents
from llmtui.tui.run_controller import RunController, stages_for
from llmtui.tui.run_results import RunResults
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.screens.compare import CompareScreen
from llmtui.tui.screens.data import DataScreen
from llmtui.tui.screens.evaluate import EvaluateScreen
from llmtui.tui.screens.finetune import FinetuneScreen
from llmtui.tui.screens.model import ModelScreen
from llmtui.tui.screens.playground import PlaygroundScreen
from llmtui.tui.screens.review import ReviewScreen
from llmtui.tui.screens.train import TrainScreen
from llmtui.tui.screens.training import TrainingScreen
from llmtui.tui.screens.tuning import TuningScreen
from llmtui.tui.screens.vocabulary import VocabularyScreen
from llmtui.tui.screens.welcome import WelcomeScreen
from llmtui.tui.state import WizardState, quickstart_path, tiny_template
from llmtui.tui.steps import STEP_NAMES, STEPS
from llmtui.tui.tensorboard import TensorBoardServer
from llmtui.tui.tune_controller import TuneController, TuneEnded, TuneProgress, best_row

ERROR_LOG = Path(tempfile.gettempdir()) / "llmtui-error.log"
FORM_SCREENS = ("finetune", *STEP_NAMES)  # every screen with recipe fields


class WizardApp(App):
    """`llmtui`: from raw text to a trained, evaluated, usable language model."""

    CSS_PATH = "wizard.tcss"
    TITLE = "llmtui"
    SCREENS = {"welcome": WelcomeScreen, "finetune": FinetuneScreen, "compare": CompareScreen, "data": DataScreen, "vocabulary": VocabularyScreen, "model": ModelScreen,
               "training": TrainingScreen, "tuning": TuningScreen, "review": ReviewScreen, "train": TrainScreen,
               "evaluate": EvaluateScreen, "playground": PlaygroundScreen}
    BINDINGS = [Binding(f"f{index}", f"goto_step('{name}')", label, show=False)
                for index, (name, label) in enumerate(STEPS, start=1)]

    def __init__(self, recipe: Path | None = None, run: Path | None = None, base_dir: Path | None = None,
                 start: str | None = None):
        super().__init__()
        self.state = WizardState(base_dir=base_dir or Path.cwd())
        self.recipe_generation = 0
        self.controller = RunController(self)
        self.tuner = TuneController(self)
        self.tensorboard = TensorBoardServer()
        self.results = RunResults(self.state)
        self._quit_when_stopped = False
        self._initial = (recipe, run, start)

    # Start -------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        recipe, run, start = self._initial
        try:
            if run is not None:
                self.state.open_run(run)
            elif recipe is not None:
                self.state.open_recipe(recipe)
            else:
                self.state.new_recipe(tiny_template())
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", timeout=15)
        self._recipe_replaced()
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

    def _recipe_replaced(self) -> None:
        self.recipe_generation += 1
        self.sub_title = self.state.recipe.run.name
        self.show_current_run()

    def recipe_edited(self) -> None:
        self.sub_title = self.state.recipe.run.name

    # Navigation --------------------------------------------------------------------------------
    def goto_step(self, step: str) -> None:
        current = self.screen
        if isinstance(current, WelcomeScreen) and step == "welcome":
            return
        if step in STEP_NAMES and current.name in STEP_NAMES and STEP_NAMES.index(step) > STEP_NAMES.index(current.name):
            problems = current.problems()
            if problems:
                self.notify("Fix this first:\n" + "\n".join(problems[:4]), severity="error", title="Invalid field")
                return
        if current.name == step:
            return
        self.switch_screen(step)

    def action_goto_step(self, step: str) -> None:
        self.goto_step(step)

    def all_problems(self) -> list[str]:
        """Invalid fields on any step visited so far."""
        problems: list[str] = []
        for name in FORM_SCREENS:
            if self.is_screen_installed(name):
                screen = self.get_screen(name)
                if screen.is_mounted:
                    problems += screen.problems()
        return problems

    # Recipes -----------------------------------------------------------------------------------
    def new_from_template(self, name: str) -> None:
        if name == "quickstart":
            path = quickstart_path()
            if path is None:
                self.notify("recipes/quickstart.toml is not here; starting from the recipe defaults.",
                            severity="warning")
            # A template: saving writes a new file, and its run gets a folder of its own.
            self.state.new_recipe({"run": {"name": "quickstart"}} if path is None else
                                  load_recipe(path).model_dump(mode="json"))
        else:
            self.state.new_recipe(tiny_template())
        self._recipe_replaced()
        self.notify(f"New run '{self.state.recipe.run.name}' from the {name} template.")
        self.goto_step("data")

    def new_finetune(self, base: str = "") -> None:
        """A new fine-tune recipe (of `base`, a run name, when given) and its setup screen."""
        data = tiny_template()
        data["run"]["name"] = f"{base}-finetune" if base else "finetune"
        data["train"].update(steps=100, lr=1e-3)
        data["finetune"] = {"base": base}
        self.state.new_recipe(data)
        self.adopt_base_architecture()
        self._recipe_replaced()
        self.notify(f"New fine-tune '{self.state.recipe.run.name}'" + (f" of {base}." if base else "."))
        self.switch_screen("finetune")

    def adopt_base_architecture(self) -> bool:
        """Take the fine-tune base's model and tokenizer sections into the recipe (the base decides them when the
        fine-tune runs; taken now, the Model step and the costs show the base's own). False when no base reads."""
        from llmtui.finetune.pipeline import base_run_folder
        from llmtui.interop.base import HUB_PREFIXES, is_pretrained_source, read_base_spec

        name, base_dir = self.state.recipe.finetune.base, self.state.base_dir
        try:
            if is_pretrained_source(name, base_dir):
                if name.startswith(HUB_PREFIXES):  # not downloaded from the wizard: the run fetches it
                    return False
                # A pretrained base: its architecture from its config alone; its own tokenizer comes with it.
                spec = read_base_spec(name, base_dir)
                self.state.try_update("model", spec.model_config(self.state.recipe.model.context).model_dump(mode="json"))
                return True
            base = load_recipe(base_run_folder(self.state.recipe, base_dir).recipe_path)
        except LlmtuiError:
            return False
        for section in ("model", "tokenizer"):
            self.state.try_update(section, getattr(base, section).model_dump(mode="json"))
        return True

    def action_open_recipe(self) -> None:
        self.push_screen(PathDialog("Open a recipe (TOML)", "recipes/quickstart.toml"), self._open_recipe)

    def _open_recipe(self, path: str | None) -> None:
        if not path:
            return
        try:
            self.state.open_recipe(Path(path))
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", title="Cannot open the recipe", timeout=15)
            return
        self._recipe_replaced()
        self.notify(f"Opened {path}.")
        self.goto_step("data")

    def action_open_run(self) -> None:
        self.push_screen(PathDialog("Open a run folder", "runs/quickstart"), self._open_run)

    def _open_run(self, path: str | None) -> None:
        if path:
            self.open_run_folder(Path(path))

    def open_run_folder(self, path: Path) -> None:
        try:
            self.state.open_run(path)
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", title="Cannot open the run", timeout=15)
            return
        self._recipe_replaced()
        self.notify(f"Opened run {self.state.shown(path)}" + (" (running: following it)." if self.controller.running
                                                              else "."))
        self.goto_step(self.step_for_run())

    def step_for_run(self) -> str:
        """Where an opened run is worth looking at: training while it runs, else its evaluation if it has one."""
        if not self.controller.running and (self.state.run.eval_dir / "report.json").is_file():
            return "evaluate"
        return "train"

    def default_save_path(self) -> str:
        if self.state.recipe_path is not None:
            return str(self.state.recipe_path)
        return f"{self.state.recipe.run.name}.toml"

    def save_recipe(self, path_text: str) -> Path | None:
        path = Path(path_text or self.default_save_path())
        target = path if path.is_absolute() else self.state.base_dir / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            save_recipe(self.state.recipe, target)
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror or exc}", severity="error")
            return None
        self.state.recipe_path = path
        return path

    def recipe_from_forms(self) -> Recipe:
        """The recipe as the forms show it (built from the defaults and every visited step's fields)."""
        import tomllib

        from llmtui.config.loader import recipe_from_dict
        from llmtui.tui.widgets.section_form import SectionForm

        data = Recipe().model_dump(mode="json")
        data["data"]["sources"] = [s.model_dump(mode="json") for s in self.state.recipe.data.sources]
        for name in FORM_SCREENS:
            if not (self.is_screen_installed(name) and self.get_screen(name).is_mounted):
                continue
            screen = self.get_screen(name)
            for form in screen.query(SectionForm):
                for key, value in form.values().items():
                    node = data[form.section]
                    *parents, last = key.split(".")
                    for part in parents:
                        node = node[part]
                    node[last] = value
            if isinstance(screen, TuningScreen):
                data["tune"]["space"] = tomllib.loads(screen.query_one("#space").text)
        return recipe_from_dict(data)

    def action_save(self) -> None:
        self.goto_step("review")
        screen = self.screen
        if isinstance(screen, ReviewScreen):
            screen.action_save()

    # Runs (each its own process, through the controller) --------------------------------------------
    def show_current_run(self) -> None:
        """Show the run folder of the recipe being edited: its history, and live if it is running."""
        recipe = self.state.recipe
        self.controller.show(self.state.run.root, stages_for(recipe), recipe.train.steps)
        self.tuner.show(recipe, self.state.base_dir)
        self.results.forget()
        self.run_changed()

    def start_pipeline(self, until: str | None = None) -> bool:
        if self.controller.running:
            self.notify("A run is already going.", severity="warning")
            return False
        problems = self.all_problems()
        if problems:
            self.notify("Fix these first:\n" + "\n".join(problems[:4]), severity="error")
            return False
        why = self.controller.start(self.state.recipe, self.state.base_dir, until)
        if why:
            self.notify(why, severity="error", title="Cannot start the run")
            self.run_changed()
            return False
        self.run_changed()
        return True

    def on_run_events(self, message: RunEvents) -> None:
        self.controller.monitor.consume_all(message.events)
        self.run_changed()

    def on_run_ended(self, message: RunEnded) -> None:
        self.controller.ended(message)
        self.results.forget()
        log = self.controller.monitor.log
        if message.outcome == "failed":
            if not log or message.text not in log[-1]:
                log.append(f"error: {message.text}")
            self.notify(message.text, severity="error", title="The run failed", timeout=20)
        elif message.outcome == "interrupted":
            if not log or not log[-1].startswith("stopped"):  # the run's own RunInterrupted said it already
                log.append(message.text)
            self.notify(message.text, title="Training stopped")
        else:
            what = "Vocabulary trained" if message.until == "tokenizer" else "Run finished"
            log.append(what)
            self.notify(what + ".", title="Done")
        if self._quit_when_stopped and not self.tuner.running:
            self.exit()
            return
        self.run_changed()
        for name in STEP_NAMES:
            if self.is_screen_installed(name) and self.get_screen(name).is_current:
                self.get_screen(name).refresh_view()

    def run_changed(self) -> None:
        """Every step screen that shows the run redraws what it shows of it."""
        for name in STEP_NAMES:
            if self.is_screen_installed(name):
                screen = self.get_screen(name)
                if screen.is_mounted:
                    screen.run_changed()

    def action_run_pipeline(self) -> None:
        if self.start_pipeline():
            self.goto_step("train")

    def action_toggle_pause(self) -> None:
        if not self.controller.running:
            return
        paused = self.controller.toggle_pause()
        self.notify("Pausing after the current step." if paused else "Resumed.")
        self.run_changed()

    def action_stop_training(self) -> None:
        if not self.controller.running:
            return
        self.controller.stop()
        self.notify("Stopping at the next training step, with a checkpoint…")

    # The search (its own process, through the tune controller) --------------------------------------
    def start_search(self) -> bool:
        problems = self.all_problems()
        if problems:
            self.notify("Fix these first:\n" + "\n".join(problems[:4]), severity="error")
            return False
        if self.controller.running:
            self.notify("A training run is going in this run folder: wait for it or stop it first.",
                        severity="warning")
            return False
        why = self.tuner.start(self.state.recipe, self.state.base_dir)
        if why:
            self.notify(why, severity="error", title="Cannot start the search")
            return False
        self.notify("Search started (its output: " + self.state.shown(self.tuner.root / "tune.log") + ").")
        return True

    def stop_search(self) -> None:
        if self.tuner.running:
            self.tuner.stop()
            self.notify("Stopping the search (the running trial is queued again for a resume)…")

    def use_best_trial(self) -> None:
        """Write the best trial's values into the recipe being edited (every step's fields show them)."""
        from llmtui.tuning.space import apply_values

        best = best_row(self.tuner.rows, self.state.recipe.tune.direction)
        if best is None:
            self.notify("No finished trial yet.", severity="warning")
            return
        try:
            recipe = apply_values(self.state.recipe, best["params"], where=f"trial {best['number']}")
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", title="Cannot use these values")
            return
        self.state.recipe = recipe
        self.recipe_generation += 1
        self.recipe_edited()
        if isinstance(self.screen, StepScreen):  # the forms on screen show the new values now
            self.screen.on_screen_resume()
        values = ", ".join(f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}"
                           for key, value in best["params"].items())
        self.notify(f"Recipe updated from trial {best['number']}: {values}", title="Best trial used")

    def on_tune_progress(self, message: TuneProgress) -> None:
        self.tuner.progress(message)
        self.run_changed()

    def on_tune_ended(self, message: TuneEnded) -> None:
        self.tuner.ended(message)
        if message.outcome == "failed":
            self.notify(message.text, severity="error", title="The search failed", timeout=20)
        else:
            self.notify("Search finished." if message.outcome == "finished" else message.text, title="Search")
        if self._quit_when_stopped and not self.controller.running:
            self.exit()
            return
        self.run_changed()

    async def action_quit(self) -> None:
        if not (self.controller.running or self.tuner.running):
            self.exit()
            return

        def answer(choice: str | None) -> None:
            if choice == "stop":
                self._quit_when_stopped = True
                self.action_stop_training()
                self.stop_search()
            elif choice == "leave":
                self.controller.detach()
                self.tuner.detach()
                self.exit()

        going = self.controller.root if self.controller.running else self.tuner.root
        what = "training run" if self.controller.running else "search"
        self.push_screen(ChoiceDialog(
            f"The {what} in {self.state.shown(going)} is going.\n"
            "Stop it (training leaves a checkpoint: running it again resumes), or leave it running and quit? "
            f"Reopen it later with: llmtui wizard {self.state.shown(going)}",
            [("stop", "Stop and quit", "s"), ("leave", "Leave running, quit", "l"), ("cancel", "Cancel", "c")]),
            answer)

    def describe_error(self, exc: BaseException) -> str:
        """One message for the person; an unexpected error keeps its traceback in a file."""
        if isinstance(exc, LlmtuiError):
            return str(exc)
        ERROR_LOG.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        return f"internal error: {type(exc).__name__}: {exc} (details: {ERROR_LOG})"

    # TensorBoard --------------------------------------------------------------------------------------
    def start_tensorboard(self) -> str:
        """Serve the current run's logs; returns the address, or "" when the run has no logs yet."""
        run = self.state.run
        if not run.logs_dir.is_dir():
            self.notify("This run has no TensorBoard logs yet: train it first.", severity="warning")
            return ""
        address = self.tensorboard.serve(run.root, run.logs_dir, self.state.base_dir)
        self.notify(f"TensorBoard at {address}", title="TensorBoard", timeout=15)
        return address

    def on_unmount(self) -> None:
        self.tensorboard.stop()

    # Command palette ---------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for index, (name, label) in enumerate(STEPS, start=1):
            yield SystemCommand(f"Go to {label}", f"Step {index} of the wizard (F{index})",
                                lambda name=name: self.goto_step(name))
        yield SystemCommand("New tiny run", "Start over from the tiny template",
                            lambda: self.new_from_template("tiny"))
        yield SystemCommand("New quickstart run", "Start over from recipes/quickstart.toml",
                            lambda: self.new_from_template("quickstart"))
        yield SystemCommand("Open recipe…", "Edit a recipe file", self.action_open_recipe)
        yield SystemCommand("Open run…", "Look at an existing run folder", self.action_open_run)
        yield SystemCommand("Compare runs", "Evaluated runs side by side, curves overlaid (c on Welcome)",
                            lambda: self.switch_screen("compare"))
        yield SystemCommand("Fine-tune a run", "A fine-tune recipe of a trained run (f on Welcome)",
                            self.new_finetune)
        yield SystemCommand("Save recipe", "Write the recipe (Review step)", self.action_save)
        yield SystemCommand("Run / resume", "Run the recipe; continues from its last checkpoint",
                            self.action_run_pipeline)
        if self.controller.running:
            yield SystemCommand("Pause / resume training", "Hold training after the current step",
                                self.action_toggle_pause)
            yield SystemCommand("Stop training", "Write a checkpoint and stop", self.action_stop_training)

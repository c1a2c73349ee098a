"""The wizard app: one recipe edited step by step, run in a thread worker, results shown as they come."""

from __future__ import annotations

import json
import tempfile
import threading
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
from llmtui.tui.dialogs.confirm import ConfirmDialog
from llmtui.tui.dialogs.path_dialog import PathDialog
from llmtui.tui.messages import PipelineEvent, RunEnded
from llmtui.tui.run_monitor import RunMonitor
from llmtui.tui.screens.data import DataScreen
from llmtui.tui.screens.evaluate import EvaluateScreen
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

ERROR_LOG = Path(tempfile.gettempdir()) / "llmtui-error.log"


class WizardApp(App):
    """`llmtui`: from raw text to a trained, evaluated, usable language model."""

    CSS_PATH = "wizard.tcss"
    TITLE = "llmtui"
    SCREENS = {"welcome": WelcomeScreen, "data": DataScreen, "vocabulary": VocabularyScreen, "model": ModelScreen,
               "training": TrainingScreen, "tuning": TuningScreen, "review": ReviewScreen, "train": TrainScreen,
               "evaluate": EvaluateScreen, "playground": PlaygroundScreen}
    BINDINGS = [Binding(f"f{index}", f"goto_step('{name}')", label, show=False)
                for index, (name, label) in enumerate(STEPS, start=1)]

    def __init__(self, recipe: Path | None = None, run: Path | None = None, base_dir: Path | None = None,
                 start: str | None = None):
        super().__init__()
        self.state = WizardState(base_dir=base_dir or Path.cwd())
        self.recipe_generation = 0
        self.monitor = RunMonitor()
        self.pipeline_running = False
        self.paused = False
        self.run_outcome = ""
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._quit_when_stopped = False
        self._tokenizer_cache: tuple | None = None
        self._generator_cache: tuple | None = None
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
            start = "evaluate" if (self.state.run.eval_dir / "report.json").is_file() else "train"
        if start is not None:
            self.goto_step(start)

    @work(thread=True, exit_on_error=False, group="warm-up")
    def _warm_up(self, backend: str) -> None:
        """Import Keras (through the cost estimate's package) off the UI thread, on the recipe's backend."""
        from llmtui.backend import configure_backend

        try:
            configure_backend(backend)
            import llmtui.models.cost  # noqa: F401
            import llmtui.pipeline  # noqa: F401
        except Exception:  # the same error comes back, shown, when a step needs the library
            pass

    def _recipe_replaced(self) -> None:
        self.recipe_generation += 1
        self.sub_title = self.state.recipe.run.name
        self._monitor_from_logs()

    def _monitor_from_logs(self) -> None:
        """Start the Train screen from what the run folder already logged (nothing for a new run)."""
        self.monitor.reset()
        try:
            self.monitor.load_history(self.state.run.root, self.state.recipe.train.steps)
        except Exception:  # unreadable logs only cost the history; the run itself is unaffected
            self.monitor.reset()

    def recipe_edited(self) -> None:
        self.sub_title = self.state.recipe.run.name

    # Navigation --------------------------------------------------------------------------------
    def goto_step(self, step: str) -> None:
        current = self.screen
        if isinstance(current, WelcomeScreen) and step == "welcome":
            return
        if step != "welcome" and current.name in STEP_NAMES and STEP_NAMES.index(step) > STEP_NAMES.index(current.name):
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
        for name in STEP_NAMES:
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
        if not path:
            return
        try:
            self.state.open_run(Path(path))
        except LlmtuiError as exc:
            self.notify(str(exc), severity="error", title="Cannot open the run", timeout=15)
            return
        self._recipe_replaced()
        self.notify(f"Opened run {path}.")
        self.goto_step("evaluate" if (self.state.run.eval_dir / "report.json").is_file() else "train")

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
        for name in STEP_NAMES:
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

    # The pipeline worker -----------------------------------------------------------------------
    def start_pipeline(self, until: str | None = None) -> bool:
        if self.pipeline_running:
            self.notify("A run is already going.", severity="warning")
            return False
        problems = self.all_problems()
        if problems:
            self.notify("Fix these first:\n" + "\n".join(problems[:4]), severity="error")
            return False
        self._monitor_from_logs()  # a resumed run continues its earlier curves
        self.pipeline_running, self.paused, self.run_outcome = True, False, ""
        self._stop.clear()
        self._resume.set()
        self._run_pipeline(self.state.recipe, until)
        self._refresh_run_views()
        return True

    def _stop_requested(self) -> bool:
        # Called by the trainer after every optimizer step: a pause waits here.
        while not self._resume.wait(0.2):
            if self._stop.is_set():
                break
        return self._stop.is_set()

    @work(thread=True, exclusive=True, exit_on_error=False, group="pipeline")
    def _run_pipeline(self, recipe, until: str | None) -> None:
        from llmtui.pipeline import pipeline_for
        from llmtui.training.trainer import TrainingInterrupted

        def sink(event) -> None:
            self.post_message(PipelineEvent(event))

        try:  # a recipe with [finetune] base runs as a fine-tune, as with llmtui run
            pipeline = pipeline_for(recipe, base_dir=self.state.base_dir, sinks=[sink])
            pipeline.stop_requested = self._stop_requested
            pipeline.execute(until=until)
        except TrainingInterrupted as exc:
            where = f"; checkpoint {exc.checkpoint}" if exc.checkpoint else ""
            self.post_message(RunEnded("interrupted", f"stopped at step {exc.step}{where}. Run again to resume.",
                                       until))
        except Exception as exc:
            self.post_message(RunEnded("failed", self.describe_error(exc), until))
        else:
            self.post_message(RunEnded("finished", "", until))

    def describe_error(self, exc: BaseException) -> str:
        """One message for the person; an unexpected error keeps its traceback in a file."""
        if isinstance(exc, LlmtuiError):
            return str(exc)
        ERROR_LOG.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        return f"internal error: {type(exc).__name__}: {exc} (details: {ERROR_LOG})"

    def on_pipeline_event(self, message: PipelineEvent) -> None:
        self.monitor.consume(message.event)
        self._refresh_run_views()

    def on_run_ended(self, message: RunEnded) -> None:
        self.pipeline_running, self.paused = False, False
        self.run_outcome = message.outcome
        self._tokenizer_cache = self._generator_cache = None
        if message.outcome == "failed":
            self.monitor.log.append(f"error: {message.text}")
            self.notify(message.text, severity="error", title="The run failed", timeout=20)
        elif message.outcome == "interrupted":
            self.monitor.log.append(message.text)
            self.notify(message.text, title="Training stopped")
        else:
            what = "Vocabulary trained" if message.until == "tokenizer" else "Run finished"
            self.monitor.log.append(what)
            self.notify(what + ".", title="Done")
        self.run_message = message.text
        if self._quit_when_stopped:
            self.exit()
            return
        self._refresh_run_views()
        for name in STEP_NAMES:
            if self.is_screen_installed(name) and self.get_screen(name).is_current:
                self.get_screen(name).refresh_view()

    def _refresh_run_views(self) -> None:
        if self.is_screen_installed("train"):
            screen = self.get_screen("train")
            if screen.is_mounted:
                screen.show_monitor()
        if isinstance(self.screen, VocabularyScreen):
            self.screen.query_one("#vocab-status").update(self.run_status_line())

    def run_status_line(self) -> str:
        if self.pipeline_running:
            running = [stage for stage, status in self.monitor.stages.items() if status == "running"]
            doing = f"running: {running[0]}" if running else "starting"
            return f"[yellow]{'paused' if self.paused else doing}[/]"
        if self.run_outcome == "failed":
            return f"[red]failed:[/] {getattr(self, 'run_message', '')}"
        if self.run_outcome == "interrupted":
            return f"[yellow]{getattr(self, 'run_message', '')}[/]"
        if self.run_outcome == "finished":
            return "[green]finished[/]"
        return "[dim]not running[/]"

    def action_run_pipeline(self) -> None:
        if self.start_pipeline():
            self.goto_step("train")

    def action_toggle_pause(self) -> None:
        if not self.pipeline_running:
            return
        self.paused = not self.paused
        (self._resume.clear if self.paused else self._resume.set)()
        self.notify("Paused after the current step." if self.paused else "Resumed.")
        self._refresh_run_views()

    def action_stop_training(self) -> None:
        if not self.pipeline_running:
            return
        self._stop.set()
        self._resume.set()
        self.paused = False
        self.notify("Stopping at the next training step, with a checkpoint…")

    async def action_quit(self) -> None:
        if not self.pipeline_running:
            self.exit()
            return

        def answer(stop: bool | None) -> None:
            if stop:
                self._quit_when_stopped = True
                self.action_stop_training()

        self.push_screen(ConfirmDialog("Training is running. Stop it with a checkpoint and quit?\n"
                                       "Running the recipe again resumes from that checkpoint.",
                                       yes="Stop and quit", no="Keep training"), answer)

    # Results -----------------------------------------------------------------------------------
    def trained_tokenizer_settings(self) -> dict | None:
        try:
            manifest = json.loads(self.state.run.manifest_path.read_text(encoding="utf-8"))
            return manifest["recipe"]["tokenizer"]
        except (OSError, ValueError, KeyError):
            return None

    def tokenizer(self):
        """The run's trained tokenizer (cached), or None."""
        folder = self.state.run.tokenizer_dir
        if not (folder / "tokenizer.json").is_file():
            return None
        key = (folder, (folder / "tokenizer.json").stat().st_mtime_ns)
        if self._tokenizer_cache is None or self._tokenizer_cache[0] != key:
            from llmtui.tokenizers import TextTokenizer

            self._tokenizer_cache = (key, TextTokenizer.load(folder))
        return self._tokenizer_cache[1]

    def generator(self):
        """A Generator over the run's final model (loaded once per model file). Call from a worker thread."""
        from llmtui.backend import configure_backend

        run = self.state.run
        key = (run.root, run.final_model_path.stat().st_mtime_ns)
        if self._generator_cache is None or self._generator_cache[0] != key:
            configure_backend(self.state.recipe.run.backend)
            from llmtui.generation.sampler import Generator
            from llmtui.pipeline import load_final_model
            from llmtui.tokenizers import TextTokenizer

            model = load_final_model(run)
            self._generator_cache = (key, Generator(model, TextTokenizer.load(run.tokenizer_dir),
                                                    self.state.recipe.model.context))
        return self._generator_cache[1]

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
        yield SystemCommand("Save recipe", "Write the recipe (Review step)", self.action_save)
        yield SystemCommand("Run / resume", "Run the recipe; continues from its last checkpoint",
                            self.action_run_pipeline)
        if self.pipeline_running:
            yield SystemCommand("Pause / resume training", "Hold training after the current step",
                                self.action_toggle_pause)
            yield SystemCommand("Stop training", "Write a checkpoint and stop", self.action_stop_training)

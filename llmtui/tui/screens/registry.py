"""Every screen of the wizard by name (the step names of `steps.py`, and the screens off the step bar)."""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen

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
from llmtui.tui.steps import STEP_NAMES

SCREEN_CLASSES: dict[str, Callable[[], Screen]] = {  # as `App.SCREENS` takes them
    "welcome": WelcomeScreen,
    "finetune": FinetuneScreen,
    "compare": CompareScreen,
    "data": DataScreen,
    "vocabulary": VocabularyScreen,
    "model": ModelScreen,
    "training": TrainingScreen,
    "tuning": TuningScreen,
    "review": ReviewScreen,
    "train": TrainScreen,
    "evaluate": EvaluateScreen,
    "playground": PlaygroundScreen,
}
FORM_SCREENS = ("finetune", *STEP_NAMES)  # every screen with recipe fields (a StepScreen)

"""Hyperparameter search over recipe fields (`llmtui tune`): Optuna samplers, pruners and a resumable study."""

from llmtui.tuning.space import Param, search_space
from llmtui.tuning.study import PruningSink, Tuner, TuneResult

__all__ = ["Param", "PruningSink", "TuneResult", "Tuner", "search_space"]

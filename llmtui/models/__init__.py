"""Backbones by name (`[model] arch`): gpt, lstm, gru, rnn."""

from llmtui.models.build import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]

"""The architecture registry: `[model] arch` -> a builder returning a functional Keras model.

Every builder maps token ids (batch, time) to next-token logits (batch, time, vocab). Sequence length is
left free so generation can feed shorter prompts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from llmtui.config.recipe import ModelConfig
from llmtui.models.gpt import build_gpt
from llmtui.models.llama import build_llama
from llmtui.models.recurrent import build_recurrent

BUILDERS: dict[str, Callable[..., Any]] = {  # arch -> (config, vocab_size, seed, **options) -> keras.Model
    "gpt": build_gpt,
    "llama": build_llama,
    "lstm": build_recurrent,
    "gru": build_recurrent,
    "rnn": build_recurrent,
}


def build_model(config: ModelConfig, vocab_size: int, seed: int = 0):
    """Build the model for `config.arch`."""
    return BUILDERS[config.arch](config, vocab_size, seed)


def count_parameters(model) -> int:
    """Trainable parameters."""
    return int(sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights))

"""Learning-rate schedules: linear warmup, then constant, cosine, linear, or warmup-stable-decay (wsd).

`plateau` is no function of the step: the optimizer's learning rate is a variable that the training loop
multiplies by `train.plateau_factor` when the validation loss stalls (it is checkpointed with the optimizer).

`lr_at` is the plain-Python definition (for logs and tests); `keras_schedule.WarmupDecay` computes the
same values in-graph for the optimizer.
"""

from __future__ import annotations

import math


def decay_factor(kind: str, step: float, total_steps: int, warmup_steps: int, decay_fraction: float) -> float:
    """1.0 at the start of decay, falling to 0.0 at the end of training (plain Python)."""
    if kind == "constant":
        return 1.0
    if kind == "wsd":
        decay_steps = max(1.0, decay_fraction * total_steps)
        decay_start = total_steps - decay_steps
        return 1.0 - min(1.0, max(0.0, (step - decay_start) / decay_steps))
    progress = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress  # linear


def lr_at(
    step: int,
    peak: float,
    total_steps: int,
    warmup_steps: int,
    kind: str,
    min_ratio: float,
    decay_fraction: float = 0.2,
) -> float:
    """The learning rate used for optimizer step `step` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if kind in ("constant", "plateau"):  # plateau: its start; the loop lowers it
        return peak
    factor = decay_factor(kind, step, total_steps, warmup_steps, decay_fraction)
    return peak * (min_ratio + (1.0 - min_ratio) * factor)


def make_schedule(config, micro_steps_per_update: int = 1):
    """The recipe's schedule as a serialisable Keras LearningRateSchedule."""
    if config.schedule == "plateau":
        return float(config.lr)  # a plain variable the training loop lowers
    from llmtui.training.keras_schedule import WarmupDecay

    return WarmupDecay(
        config.lr,
        config.steps,
        config.warmup_steps,
        config.schedule,
        config.min_lr_ratio,
        config.decay_fraction,
        micro_steps_per_update,
    )

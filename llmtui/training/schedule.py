"""Learning-rate schedules: linear warmup, then constant, cosine or linear decay to `min_lr_ratio * lr`."""

from __future__ import annotations

import math


def lr_at(step: int, peak: float, total_steps: int, warmup_steps: int, kind: str, min_ratio: float) -> float:
    """The learning rate used for optimizer step `step` (0-based), as plain Python (for logs and tests)."""
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if kind == "constant":
        return peak
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if kind == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # linear
        factor = 1.0 - progress
    return peak * (min_ratio + (1.0 - min_ratio) * factor)


def make_schedule(peak: float, total_steps: int, warmup_steps: int, kind: str, min_ratio: float):
    """The same schedule as a serialisable Keras LearningRateSchedule (computed in-graph)."""
    from llmtui.training.keras_schedule import WarmupDecay

    return WarmupDecay(peak, total_steps, warmup_steps, kind, min_ratio)

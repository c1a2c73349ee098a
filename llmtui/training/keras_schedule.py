"""`lr_at` of schedule.py as a Keras LearningRateSchedule (kept apart so schedule.py needs no Keras)."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="llmtui")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak`, then constant, cosine or linear decay to `min_ratio * peak`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, kind: str, min_ratio: float):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.kind, self.min_ratio = kind, float(min_ratio)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.kind == "constant":
            decayed = self.peak * ops.ones_like(step)
        else:
            decay_steps = float(max(1, self.total_steps - self.warmup_steps))
            progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            if self.kind == "cosine":
                factor = 0.5 * (1.0 + ops.cos(math.pi * progress))
            else:
                factor = 1.0 - progress
            decayed = self.peak * (self.min_ratio + (1.0 - self.min_ratio) * factor)
        if not self.warmup_steps:
            return decayed
        warmup = self.peak * (step + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "kind": self.kind, "min_ratio": self.min_ratio}

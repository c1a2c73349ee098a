"""`schedule.lr_at` as a Keras LearningRateSchedule (kept apart so schedule.py needs no Keras)."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="llmtui")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak`, then constant, cosine, linear or wsd decay to `min_ratio * peak`.

    With gradient accumulation the optimizer counts micro-batches; `micro_steps_per_update` converts them
    back to optimizer steps so the schedule is the same whatever the accumulation.
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int,
        kind: str,
        min_ratio: float,
        decay_fraction: float = 0.2,
        micro_steps_per_update: int = 1,
    ):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.kind, self.min_ratio, self.decay_fraction = kind, float(min_ratio), float(decay_fraction)
        self.micro_steps_per_update = int(micro_steps_per_update)

    def __call__(self, step):
        step = ops.floor(ops.cast(step, "float32") / float(self.micro_steps_per_update))
        if self.kind == "constant":
            decayed = self.peak * ops.ones_like(step)
        else:
            if self.kind == "wsd":
                decay_steps = max(1.0, self.decay_fraction * self.total_steps)
                factor = 1.0 - ops.clip((step - (self.total_steps - decay_steps)) / decay_steps, 0.0, 1.0)
            else:
                span = float(max(1, self.total_steps - self.warmup_steps))
                progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
                factor = 0.5 * (1.0 + ops.cos(math.pi * progress)) if self.kind == "cosine" else 1.0 - progress
            decayed = self.peak * (self.min_ratio + (1.0 - self.min_ratio) * factor)
        if not self.warmup_steps:
            return decayed
        warmup = self.peak * (step + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
            "min_ratio": self.min_ratio,
            "decay_fraction": self.decay_fraction,
            "micro_steps_per_update": self.micro_steps_per_update,
        }

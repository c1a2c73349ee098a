"""Optimizers from `[train]`.

Decoupled weight decay never touches biases or normalisation scales, and touches embeddings only when
`decay_embeddings` is set. Every optimizer also records the global norm of the gradients it applies
(before clipping) in a variable, so the trainer can log it on any backend.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from llmtui.config.recipe import TrainConfig
from llmtui.training.schedule import make_schedule

# Variable-name pieces that weight decay leaves alone: biases, LayerNorm gamma/beta, RMSNorm scale.
NO_DECAY = ["bias", "gamma", "beta", "scale"]
EMBEDDINGS = ["embeddings"]

_CLASSES = {
    "adamw": keras.optimizers.AdamW,
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "adagrad": keras.optimizers.Adagrad,
    "rmsprop": keras.optimizers.RMSprop,
    "lion": keras.optimizers.Lion,
    "muon": keras.optimizers.Muon,
}
_TRACKED: dict[str, type] = {}


def _tracked_class(base: Any) -> Any:  # a Keras optimizer class
    """`base` plus a `grad_norm` variable updated at every optimizer update (part of the optimizer's state):
    the global norm of the gradients applied, before clipping (under accumulation, of their average)."""
    if base.__name__ in _TRACKED:
        return _TRACKED[base.__name__]

    def build(self, variables):
        if self.built:
            return
        base.build(self, variables)
        self.grad_norm = self.add_variable(shape=(), dtype="float32", initializer="zeros", name="grad_norm")

    def _clip_gradients(self, grads):
        # The norm is computed once, for the log and for `global_clipnorm` (Keras' own clipping would compute
        # it again: a second pass over every gradient, each step), with Keras' arithmetic.
        present = [g for g in grads if g is not None]
        if not present or not hasattr(self, "grad_norm") or self.clipnorm or self.clipvalue:
            return base._clip_gradients(self, grads)
        norm = ops.sqrt(ops.sum(ops.stack([ops.sum(ops.square(ops.cast(g, "float32"))) for g in present])))
        self.grad_norm.assign(norm)
        if not (self.global_clipnorm and self.global_clipnorm > 0):
            return grads
        clip = self.global_clipnorm
        scale = clip * ops.minimum(1.0 / norm, 1.0 / clip) + (norm - norm)  # NaN/inf norms give NaN, as Keras
        return [None if g is None else g * ops.cast(scale, g.dtype) for g in grads]

    cls = type(f"GradNorm{base.__name__}", (base,), {"build": build, "_clip_gradients": _clip_gradients})
    cls = keras.saving.register_keras_serializable(package="llmtui")(cls)
    _TRACKED[base.__name__] = cls
    return cls


def make_optimizer(config: TrainConfig):
    accum = config.grad_accum_steps
    common = {"learning_rate": make_schedule(config, accum)}
    if config.grad_clip > 0:
        common["global_clipnorm"] = config.grad_clip
    if accum > 1:
        common["gradient_accumulation_steps"] = accum
    kind = config.optimizer
    options: dict[str, dict[str, Any]] = {  # optimizer -> its own options
        "adamw": {"weight_decay": config.weight_decay, "beta_1": config.beta1, "beta_2": config.beta2},
        "adam": {"beta_1": config.beta1, "beta_2": config.beta2},
        "sgd": {"momentum": config.momentum, "nesterov": config.nesterov},
        "adagrad": {},
        "rmsprop": {"momentum": config.momentum},
        "lion": {"weight_decay": config.weight_decay or None, "beta_1": config.beta1, "beta_2": config.beta2},
        # Muon orthogonalises 2-D weight updates; embeddings, norms and biases go through its Adam part.
        "muon": {
            "weight_decay": config.weight_decay,
            "adam_weight_decay": config.weight_decay,
            "adam_beta_1": config.beta1,
            "adam_beta_2": config.beta2,
            "momentum": config.momentum,
            "nesterov": config.nesterov,
            "exclude_embeddings": True,
        },
    }
    specific = options[kind]
    optimizer = _tracked_class(_CLASSES[kind])(**common, **specific)
    if getattr(optimizer, "weight_decay", None):
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY + ([] if config.decay_embeddings else EMBEDDINGS))
    return optimizer

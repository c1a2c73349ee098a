"""Optimizers from `[train]`: decoupled weight decay that skips biases and normalisation scales."""

from __future__ import annotations

from llmtui.config.recipe import TrainConfig
from llmtui.training.schedule import make_schedule

# Substrings of variable names that weight decay leaves alone (biases, LayerNorm gamma/beta, RMSNorm scale).
NO_DECAY = ["bias", "gamma", "beta", "scale"]


def make_optimizer(config: TrainConfig):
    import keras

    lr = make_schedule(config.lr, config.steps, config.warmup_steps, config.schedule, config.min_lr_ratio)
    clip = {"global_clipnorm": config.grad_clip} if config.grad_clip > 0 else {}
    kind = config.optimizer
    if kind == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, beta_2=0.95, **clip)
    elif kind == "adam":
        opt = keras.optimizers.Adam(learning_rate=lr, **clip)
    elif kind == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True, **clip)
    elif kind == "adagrad":
        opt = keras.optimizers.Adagrad(learning_rate=lr, **clip)
    elif kind == "rmsprop":
        opt = keras.optimizers.RMSprop(learning_rate=lr, **clip)
    elif kind == "lion":
        opt = keras.optimizers.Lion(learning_rate=lr, weight_decay=config.weight_decay or None, **clip)
    else:  # unreachable through the recipe's Literal
        raise ValueError(f"unknown optimizer {kind!r}")
    if getattr(opt, "weight_decay", None):
        opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt

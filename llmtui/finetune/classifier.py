"""A classification head on a language model's backbone.

The backbone is the trained model up to its last hidden states (B, T, C), before the output projection.
A text becomes one vector (the last real token's state, which in a causal model has read the whole text, or
the mean over real tokens), and a dense layer maps it to one logit per label.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="llmtui")
class SequencePooling(keras.layers.Layer):
    """(hidden (B, T, C), lengths (B,)) -> (B, C): the state at position length-1, or the mean over 0..length-1.

    Args:
        mode: "last" or "mean".
    """

    def __init__(self, mode: str = "last", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, hidden, lengths):
        lengths = ops.cast(lengths, "int32")
        if self.mode == "last":
            index = ops.maximum(lengths - 1, 0)[:, None, None]  # (B, 1, 1)
            return ops.take_along_axis(hidden, index, axis=1)[:, 0, :]
        positions = ops.arange(ops.shape(hidden)[1])[None, :]  # (1, T)
        mask = ops.cast(positions < lengths[:, None], hidden.dtype)[..., None]  # (B, T, 1)
        return ops.sum(hidden * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, hidden_shape, lengths_shape=None):
        return (hidden_shape[0], hidden_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def backbone_output(model):
    """The symbolic tensor of `model`'s last hidden states (the input of its output projection)."""
    for name in ("final_norm",):
        try:
            return model.get_layer(name).output
        except ValueError:
            pass
    # Recurrent models: the dropout after the last recurrent layer feeds the output projection.
    dropouts = [layer for layer in model.layers if layer.name.startswith("dropout_")]
    if dropouts:
        return dropouts[-1].output
    raise ValueError(f"cannot find the hidden states of model {model.name!r}")


def build_classifier(language_model, labels: int, pooling: str, seed: int):
    """A model (token ids (B, T), lengths (B,)) -> label logits (B, labels) sharing `language_model`'s layers."""
    ids = language_model.inputs[0]
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    pooled = SequencePooling(pooling, name="pooling")(backbone_output(language_model), lengths)
    logits = keras.layers.Dense(
        labels,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02, seed=seed),
        dtype="float32",
        name="classifier",
    )(pooled)
    return keras.Model([ids, lengths], logits, name=f"{language_model.name}_classifier")

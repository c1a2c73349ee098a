"""Stacked recurrent language models (simple RNN, LSTM, GRU) with dropout between layers."""

from __future__ import annotations

import math

from llmtui.config.recipe import ModelConfig
from llmtui.models.embedding import output_logits, token_embedding


def embedding_limit(config: ModelConfig) -> float:
    """The bound of the token embedding's uniform initialisation.

    With tied embeddings the logits are h·e over `dim` units with |h| < 1, so a table that starts too small
    starts every prediction near uniform and learns slowly *with Adam at a small learning rate*; ±8/sqrt(dim)
    reached a validation loss in 500 steps that smaller bounds needed 750 to 1750 for, and with plain SGD
    on words it also beat PyTorch's ±0.1 (figures: bench/README.md, "Embedding initialisation").
    """
    return config.embedding_init or 8.0 / math.sqrt(config.dim)


def _initializers(config: ModelConfig, seed: int) -> dict:
    """Keyword arguments of recurrent layer i (seeded with `seed` = run seed + i)."""
    import keras

    if config.recurrent_init == "uniform":  # PyTorch's recurrent layers: everything U(±1/sqrt(hidden))
        bound = 1.0 / math.sqrt(config.dim)
        uniform = lambda offset: keras.initializers.RandomUniform(-bound, bound, seed=seed + offset)  # noqa: E731
        options = {
            "kernel_initializer": uniform(100),
            "recurrent_initializer": uniform(200),
            "bias_initializer": uniform(300),
        }
        if config.arch == "lstm":
            options["unit_forget_bias"] = False
        return options
    return {
        "kernel_initializer": keras.initializers.GlorotUniform(seed=seed + 100),
        "recurrent_initializer": keras.initializers.Orthogonal(seed=seed + 200),
    }


def build_recurrent(config: ModelConfig, vocab_size: int, seed: int, token_lookup: bool = True):
    """The model; with `token_lookup` (and a learned embedding, no embedding dropout) the first recurrent layer
    projects the token ids through the embedding table (`read_tokens_from`: same result, less work)."""
    import keras
    import keras_hub

    from llmtui.models.recurrent_layers import RECURRENT_LAYERS

    cell = config.arch
    layer_cls = RECURRENT_LAYERS[cell]
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    limit = embedding_limit(config)
    embedding = token_embedding(
        config, vocab_size, seed, initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed)
    )
    x = embedding(ids)  # (B, T, C)
    x = keras.layers.Dropout(config.embedding_dropout, seed=seed, name="embedding_dropout")(x)
    plain_table = isinstance(embedding, keras_hub.layers.ReversibleEmbedding)  # not a one-hot or projected encoding
    lookup = token_lookup and plain_table and not config.embedding_dropout
    for i in range(config.layers):
        layer = layer_cls(config.dim, return_sequences=True, **_initializers(config, seed + i), name=f"{cell}_{i}")
        if i == 0 and lookup:
            layer.read_tokens_from(embedding)
            x = layer(x, token_ids=ids)
        else:
            x = layer(x)
        x = keras.layers.Dropout(config.dropout, seed=seed + i + 1, name=f"dropout_{i}")(x)
    logits = output_logits(x, embedding, config, vocab_size, seed)  # (B, T, V)
    return keras.Model(ids, logits, name=cell)


def stateful_twin(model, config: ModelConfig, batch_size: int, reset_id: int):
    """A model sharing `model`'s layers (and so its weights) that carries the recurrent state between calls.

    Inputs: token ids (batch_size, T) and `reset` (batch_size,) float, 1 where a lane starts afresh; output:
    the logits. Each lane (row) continues where the same row of the previous call stopped (truncated
    backpropagation through time: no gradient reaches back into the previous call). Within a window the
    state is zeroed before the model reads `reset_id` (the end-of-text token), so each document starts
    from the same zero state as a fresh lane. The carried states are variables of the twin, saved with
    its checkpoints; `zero_states(twin)` clears them.
    """
    import keras

    from llmtui.models.recurrent_layers import CarriedStates

    ids = keras.Input(batch_shape=(batch_size, None), dtype="int32", name="token_ids")
    reset = keras.Input(batch_shape=(batch_size,), dtype="float32", name="reset")
    embedding = model.get_layer("token_embedding")
    x = model.get_layer("embedding_dropout")(embedding(ids))
    pairs = [(model.get_layer(f"{config.arch}_{i}"), model.get_layer(f"dropout_{i}")) for i in range(config.layers)]
    x = CarriedStates(pairs, batch_size, reset_id, name="carried_states")(x, ids, reset)
    logits = embedding(x, reverse=True)
    if any(layer.name == "output_bias" for layer in model.layers):
        logits = model.get_layer("output_bias")(logits)
    logits = model.get_layer("logits")(logits)
    return keras.Model([ids, reset], logits, name=f"{model.name}_stateful")


def zero_states(twin) -> None:
    """Start every lane of a `stateful_twin` from a zero state."""
    twin.get_layer("carried_states").zero()

"""Stacked recurrent language models (simple RNN, LSTM, GRU) with dropout between layers."""

from __future__ import annotations

import math

from llmtui.config.recipe import ModelConfig
from llmtui.models.embedding import output_logits, token_embedding


def build_recurrent(config: ModelConfig, vocab_size: int, seed: int):
    import keras

    from llmtui.models.recurrent_layers import RECURRENT_LAYERS

    cell = config.arch
    layer_cls = RECURRENT_LAYERS[cell]
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    # With tied embeddings the logits are h·e over `dim` units with |h| < 1, so a table that starts too small
    # starts every prediction near uniform and learns slowly. ±8/sqrt(dim) (±0.5 at 256 wide) reached
    # validation loss 1.88 on tinyshakespeare (2×256 LSTM, bench/bench_train.py) in 500 steps; ±0.25 took
    # 750, ±0.1 1250 and the former ±0.05 1750.
    limit = 8.0 / math.sqrt(config.dim)
    embedding = token_embedding(config, vocab_size, seed,
                                initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed))
    x = embedding(ids)  # (B, T, C)
    x = keras.layers.Dropout(config.embedding_dropout, seed=seed, name="embedding_dropout")(x)
    for i in range(config.layers):
        x = layer_cls(config.dim, return_sequences=True,
                      kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100 + i),
                      recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 200 + i),
                      name=f"{cell}_{i}")(x)
        x = keras.layers.Dropout(config.dropout, seed=seed + i + 1, name=f"dropout_{i}")(x)
    logits = output_logits(x, embedding, config, vocab_size, seed)  # (B, T, V)
    return keras.Model(ids, logits, name=cell)

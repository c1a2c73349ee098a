"""Stacked recurrent language models (simple RNN, LSTM, GRU) with dropout between layers."""

from __future__ import annotations

from llmtui.config.recipe import ModelConfig
from llmtui.models.embedding import output_logits, token_embedding


def build_recurrent(config: ModelConfig, vocab_size: int, seed: int):
    import keras

    cell = config.arch
    layer_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}[cell]
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = token_embedding(config, vocab_size, seed,
                                initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seed))
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

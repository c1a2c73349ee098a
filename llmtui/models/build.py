"""Language-model backbones chosen by `[model] arch`, built from keras-hub and Keras layers.

Each builder returns a functional Keras model: token ids (batch, time) -> next-token logits
(batch, time, vocab). Sequence length is left free so generation can feed shorter prompts.
"""

from __future__ import annotations

from typing import Callable

from llmtui.config.recipe import ModelConfig

_BUILDERS: dict[str, Callable] = {}


def register(arch: str):
    def wrap(fn: Callable) -> Callable:
        _BUILDERS[arch] = fn
        return fn
    return wrap


def build_model(config: ModelConfig, vocab_size: int, seed: int = 0):
    """Build the model for `config.arch`."""
    return _BUILDERS[config.arch](config, vocab_size, seed)


def _init(seed: int, stddev: float = 0.02):
    """A fresh, seeded initializer for one layer (a shared unseeded one would repeat weights across layers)."""
    import keras

    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


@register("gpt")
def build_gpt(config: ModelConfig, vocab_size: int, seed: int):
    """GPT-2 style decoder: learned positions, pre-LayerNorm blocks, GELU MLP, tied output embedding."""
    import keras
    import keras_hub

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = keras_hub.layers.ReversibleEmbedding(
        vocab_size, config.dim, tie_weights=config.tie_embeddings,
        embeddings_initializer=_init(seed), name="token_embedding")
    x = embedding(ids)  # (B, T, C)
    positions = keras_hub.layers.PositionEmbedding(
        sequence_length=config.context, initializer=_init(seed + 1), name="position_embedding")(x)
    x = keras.layers.Add(name="embeddings_add")([x, positions])
    x = keras.layers.Dropout(config.dropout, seed=seed, name="embedding_dropout")(x)
    for i in range(config.layers):
        x = keras_hub.layers.TransformerDecoder(
            intermediate_dim=int(config.dim * config.mlp_ratio), num_heads=config.heads, dropout=config.dropout,
            activation="gelu", normalize_first=True, layer_norm_epsilon=1e-5,
            kernel_initializer=_init(seed + 100 + i), name=f"block_{i}")(x)  # causal mask by default
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = _output_logits(x, embedding, config, vocab_size, seed)
    return keras.Model(ids, logits, name="gpt")


def _output_logits(x, embedding, config: ModelConfig, vocab_size: int, seed: int):
    import keras

    if config.tie_embeddings:
        logits = embedding(x, reverse=True)
    else:
        logits = keras.layers.Dense(vocab_size, kernel_initializer=_init(seed + 2), name="lm_head")(x)
    # Logits in float32 keep the loss stable under mixed precision.
    return keras.layers.Activation("linear", dtype="float32", name="logits")(logits)


def _recurrent(cell: str):
    def build(config: ModelConfig, vocab_size: int, seed: int):
        """Stacked recurrent language model with dropout between layers."""
        import keras
        import keras_hub

        layer_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}[cell]
        ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        embedding = keras_hub.layers.ReversibleEmbedding(
            vocab_size, config.dim, tie_weights=config.tie_embeddings,
            embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seed), name="token_embedding")
        x = embedding(ids)
        x = keras.layers.Dropout(config.dropout, seed=seed, name="embedding_dropout")(x)
        for i in range(config.layers):
            x = layer_cls(config.dim, return_sequences=True,
                          kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100 + i),
                          recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 200 + i),
                          name=f"{cell}_{i}")(x)
            x = keras.layers.Dropout(config.dropout, seed=seed + i + 1, name=f"dropout_{i}")(x)
        logits = _output_logits(x, embedding, config, vocab_size, seed)
        return keras.Model(ids, logits, name=cell)
    return build


for _cell in ("lstm", "gru", "rnn"):
    register(_cell)(_recurrent(_cell))


def count_parameters(model) -> int:
    """Trainable parameters."""
    import math

    return int(sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights))

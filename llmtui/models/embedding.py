"""Token encoding shared by every backbone: ids -> vectors on the way in, vectors -> logits on the way out."""

from __future__ import annotations

from llmtui.config.recipe import ModelConfig


def init_normal(seed: int, stddev: float = 0.02):
    """A fresh, seeded initializer for one layer (a shared unseeded one would repeat weights across layers)."""
    import keras

    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


def token_embedding(config: ModelConfig, vocab_size: int, seed: int, initializer=None):
    """The input embedding layer (reversible, so it can also serve as the tied output projection)."""
    import keras_hub

    return keras_hub.layers.ReversibleEmbedding(
        vocab_size, config.dim, tie_weights=config.tie_embeddings,
        embeddings_initializer=initializer or init_normal(seed), name="token_embedding")


def output_logits(x, embedding, config: ModelConfig, vocab_size: int, seed: int):
    """Next-token logits (B, T, V) in float32 (stable loss under mixed precision)."""
    import keras

    # Untied, the reversible embedding holds a separate (dim, vocab) output matrix; tied, it reuses its own.
    logits = embedding(x, reverse=True)
    return keras.layers.Activation("linear", dtype="float32", name="logits")(logits)

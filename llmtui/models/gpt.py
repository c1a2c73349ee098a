"""GPT-2 style decoder: learned positions, pre-LayerNorm blocks, GELU MLP, biases (or none: `model.bias`), tied
output embedding."""

from __future__ import annotations

import math

from llmtui.config.recipe import ModelConfig
from llmtui.models.embedding import init_normal, output_logits, token_embedding


def build_gpt(config: ModelConfig, vocab_size: int, seed: int, norm_epsilon: float = 1e-5):
    """The GPT model; `norm_epsilon` other than GPT-2's 1e-5 only for imported checkpoints that use another."""
    import keras
    import keras_hub

    from llmtui.models.transformer import DecoderBlock

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = token_embedding(config, vocab_size, seed)
    x = embedding(ids)  # (B, T, C)
    positions = keras_hub.layers.PositionEmbedding(
        sequence_length=config.context, initializer=init_normal(seed + 1), name="position_embedding"
    )(x)
    x = keras.layers.Add(name="embeddings_add")([x, positions])
    x = keras.layers.Dropout(config.embedding_dropout, seed=seed, name="embedding_dropout")(x)
    for i in range(config.layers):
        x = DecoderBlock(
            heads=config.heads,
            mlp_dim=int(config.dim * config.mlp_ratio),
            norm="layer",
            mlp="gelu",
            use_bias=config.bias,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            norm_epsilon=norm_epsilon,
            init_seed=seed + 100 + 10 * i,
            # GPT-2: projections into the residual stream scaled down with depth.
            output_stddev=0.02 / math.sqrt(2 * config.layers),
            name=f"block_{i}",
        )(x)
    x = keras.layers.LayerNormalization(epsilon=norm_epsilon, center=config.bias, name="final_norm")(x)
    logits = output_logits(x, embedding, config, vocab_size, seed)  # (B, T, V)
    return keras.Model(ids, logits, name="gpt")

"""GPT-2 style decoder: learned positions, pre-LayerNorm blocks, GELU MLP, tied output embedding."""

from __future__ import annotations

from llmtui.config.recipe import ModelConfig
from llmtui.models.embedding import init_normal, output_logits, token_embedding


def build_gpt(config: ModelConfig, vocab_size: int, seed: int):
    import keras
    import keras_hub

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = token_embedding(config, vocab_size, seed)
    x = embedding(ids)  # (B, T, C)
    positions = keras_hub.layers.PositionEmbedding(
        sequence_length=config.context, initializer=init_normal(seed + 1), name="position_embedding")(x)
    x = keras.layers.Add(name="embeddings_add")([x, positions])
    x = keras.layers.Dropout(config.dropout, seed=seed, name="embedding_dropout")(x)
    for i in range(config.layers):
        x = keras_hub.layers.TransformerDecoder(
            intermediate_dim=int(config.dim * config.mlp_ratio), num_heads=config.heads, dropout=config.dropout,
            activation="gelu", normalize_first=True, layer_norm_epsilon=1e-5,
            kernel_initializer=init_normal(seed + 100 + i), name=f"block_{i}")(x)  # causal mask by default
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = output_logits(x, embedding, config, vocab_size, seed)  # (B, T, V)
    return keras.Model(ids, logits, name="gpt")

"""A modern decoder in the Llama manner: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention,
no biases."""

from __future__ import annotations

import math

from llmtui.config.recipe import ModelConfig
from llmtui.models.embedding import output_logits, token_embedding


def swiglu_width(dim: int, mlp_ratio: float) -> int:
    """Two thirds of the GELU MLP's width (same parameter count with three projections), a multiple of 32."""
    width = int(2 * mlp_ratio * dim / 3)
    return max(32, 32 * math.ceil(width / 32))


def build_llama(config: ModelConfig, vocab_size: int, seed: int, norm_epsilon: float = 1e-6):
    """The Llama-style model; `norm_epsilon` is the RMSNorms' (1e-6 here; Llama 2/3 and Mistral checkpoints use
    1e-5, which their import passes)."""
    import keras

    from llmtui.models.transformer import DecoderBlock

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = token_embedding(config, vocab_size, seed)
    x = embedding(ids)  # (B, T, C); positions enter through rotary embeddings inside attention
    x = keras.layers.Dropout(config.embedding_dropout, seed=seed, name="embedding_dropout")(x)
    for i in range(config.layers):
        x = DecoderBlock(
            heads=config.heads,
            kv_heads=config.kv_heads or config.heads,
            mlp_dim=swiglu_width(config.dim, config.mlp_ratio),
            norm="rms",
            mlp="swiglu",
            use_bias=False,
            rotary=True,
            rotary_base=config.rope_base,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            norm_epsilon=norm_epsilon,
            init_seed=seed + 100 + 10 * i,
            output_stddev=0.02 / math.sqrt(2 * config.layers),
            name=f"block_{i}",
        )(x)
    x = keras.layers.RMSNormalization(epsilon=norm_epsilon, name="final_norm")(x)
    logits = output_logits(x, embedding, config, vocab_size, seed)  # (B, T, V)
    return keras.Model(ids, logits, name="llama")

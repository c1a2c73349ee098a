"""Token encoding shared by every backbone: ids -> vectors on the way in, vectors -> logits on the way out.

`model.embedding` chooses the encoding: `learned` (keras-hub's `ReversibleEmbedding`), `onehot` (one-hot
vectors times a learned matrix) or `pretrained` (a table initialised from Word2Vec/GloVe vectors, see
`llmtui.models.pretrained`, scaled by one factor to the backbone's initial spread); `model.freeze_steps` and
`model.projection` go with them (`TokenEncoding`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from llmtui.config.recipe import ModelConfig
from llmtui.errors import RecipeError

# Above this, a one-hot batch (batch x context x vocab floats) costs more than it teaches.
ONEHOT_MAX_VOCAB = 2048

# The pretrained table for the model being built (set by `pretrained_table`, read by `token_embedding`), so
# backbones need not know where their embedding comes from.
_PRETRAINED: ContextVar = ContextVar("llmtui_pretrained_table", default=None)


@contextlib.contextmanager
def pretrained_table(matrix) -> Iterator[None]:
    """Build models inside this block to start their token embedding from `matrix` (vocab_size, dim)."""
    token = _PRETRAINED.set(matrix)
    try:
        yield
    finally:
        _PRETRAINED.reset(token)


def init_normal(seed: int, stddev: float = 0.02):
    """A fresh, seeded initializer for one layer (a shared unseeded one would repeat weights across layers)."""
    import keras

    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


def token_embedding(config: ModelConfig, vocab_size: int, seed: int, initializer=None):
    """The input embedding layer (reversible, so it can also serve as the tied output projection)."""
    initializer = initializer or init_normal(seed)
    if config.embedding == "learned" and config.freeze_steps == 0:
        import keras_hub

        return keras_hub.layers.ReversibleEmbedding(
            vocab_size,
            config.dim,
            tie_weights=config.tie_embeddings,
            embeddings_initializer=initializer,
            name="token_embedding",
        )

    from llmtui.models.token_encoding import TokenEncoding

    table = _PRETRAINED.get() if config.embedding == "pretrained" else None
    if config.embedding == "pretrained" and table is None:
        raise RecipeError(
            "model.embedding = 'pretrained': no vectors were loaded for this model",
            hint="build it through the pipeline (llmtui run RECIPE), which reads model.pretrained_path",
        )
    if config.embedding == "onehot" and vocab_size > ONEHOT_MAX_VOCAB:
        raise RecipeError(
            f"model.embedding = 'onehot' needs a vocabulary of at most {ONEHOT_MAX_VOCAB:,} tokens; this one has "
            f"{vocab_size:,} (each token would be a vector of {vocab_size:,} numbers, batch × context × vocabulary "
            f"per step)",
            hint=f"use tokenizer.kind = 'char' or 'byte', tokenizer.vocab_size <= {ONEHOT_MAX_VOCAB}, "
            "or model.embedding = 'learned'",
        )
    embedding_dim = config.dim
    if table is not None:
        if table.shape[0] != vocab_size:
            raise RecipeError(f"the pretrained table has {table.shape[0]} rows for a vocabulary of {vocab_size}")
        embedding_dim = int(table.shape[1])
        if embedding_dim != config.dim and not config.projection:
            raise RecipeError(
                f"model.pretrained_path holds {embedding_dim}-dimensional vectors but model.dim is {config.dim}",
                hint=f"set model.dim = {embedding_dim}, or model.projection = true to learn a projection "
                f"from {embedding_dim} to {config.dim}",
            )
    layer = TokenEncoding(
        vocab_size,
        config.dim,
        embedding_dim=embedding_dim,
        one_hot=config.embedding == "onehot",
        tie_weights=config.tie_embeddings,
        freeze_steps=config.freeze_steps,
        embeddings_initializer=initializer,
        seed=seed + 3,
        name="token_embedding",
    )
    if table is not None:
        layer.build((None, None))
        layer.embeddings.assign(_at_initial_scale(table, initializer))
    return layer


def _at_initial_scale(table, initializer):
    """The table times one factor, so its spread matches what the backbone's own initializer would give.

    Word vectors are often 10-50 times larger than a language model's initial embeddings; at that size a tied
    output projection starts with huge logits. One common factor keeps every angle and length ratio between
    the vectors, which is what they carry.
    """
    import keras
    import numpy as np

    reference = float(np.std(keras.ops.convert_to_numpy(initializer((256, table.shape[1])))))
    spread = float(np.sqrt(np.mean(np.square(table))))
    return table * (reference / spread) if spread > 0 and reference > 0 else table


def output_logits(x, embedding, config: ModelConfig, vocab_size: int, seed: int):
    """Next-token logits (B, T, V) in float32 (stable loss under mixed precision)."""
    import keras

    # Untied, the reversible embedding holds a separate (dim, vocab) output matrix; tied, it reuses its own.
    logits = embedding(x, reverse=True)
    if config.output_bias and config.arch in ("rnn", "lstm", "gru"):
        from llmtui.models.recurrent_layers import OutputBias

        logits = OutputBias(name="output_bias")(logits)
    return keras.layers.Activation("linear", dtype="float32", name="logits")(logits)

"""`TokenEncoding`: the token embedding layer for one-hot inputs, pretrained vectors, projections and freezing.

Plain learned embeddings use keras-hub's `ReversibleEmbedding`; this layer covers what it does not:
one-hot inputs multiplied by the embedding matrix, an embedding narrower or wider than the model with a
learned projection to the model's width, and an embedding kept fixed for the first N training steps
(or for good). Like `ReversibleEmbedding`, `layer(x, reverse=True)` is the output projection to logits.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="llmtui")
class TokenEncoding(keras.layers.Layer):
    """Token ids (B, T) -> vectors (B, T, output_dim); with `reverse=True`, vectors -> logits (B, T, input_dim).

    Args:
        input_dim: vocabulary size.
        output_dim: the model's width.
        embedding_dim: width of the embedding table (default `output_dim`); when it differs, a learned
            (embedding_dim, output_dim) projection follows the lookup (and its transpose precedes the tied
            output projection).
        one_hot: encode ids as one-hot vectors multiplied by the table (the textbook form; same result as a
            lookup, with the cost of a (B, T, vocab) tensor).
        tie_weights: the output projection reuses the table; otherwise it has its own (output_dim, input_dim).
        freeze_steps: keep the table fixed for this many training calls (0 = never, -1 = for good). While
            frozen no gradient reaches it, so Adam-style moments stay zero and the table does not move.
        embeddings_initializer: initializer of the table (a pretrained table is assigned after building).
        seed: seed of the projection's initializer.

    Example:
        layer = TokenEncoding(300, 64, embedding_dim=50, freeze_steps=100)
        x = layer(ids)                    # (B, T, 64)
        logits = layer(x, reverse=True)   # (B, T, 300)
    """

    built: bool  # Keras' Layer keeps it; declared for the type checker

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embedding_dim: int | None = None,
        one_hot: bool = False,
        tie_weights: bool = True,
        freeze_steps: int = 0,
        embeddings_initializer="uniform",
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embedding_dim = int(embedding_dim or output_dim)
        self.one_hot = bool(one_hot)
        self.tie_weights = bool(tie_weights)
        self.freeze_steps = int(freeze_steps)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.seed = int(seed)

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.embedding_dim),
            initializer=self.embeddings_initializer,
            name="embeddings",
            trainable=self.freeze_steps != -1,
        )
        self.projection = None
        if self.embedding_dim != self.output_dim:
            self.projection = self.add_weight(
                shape=(self.embedding_dim, self.output_dim),
                name="projection",
                initializer=keras.initializers.GlorotUniform(seed=self.seed),
            )
        self.reverse_embeddings = None
        if not self.tie_weights:
            self.reverse_embeddings = self.add_weight(
                shape=(self.output_dim, self.input_dim),
                initializer=self.embeddings_initializer,
                name="reverse_embeddings",
            )
        self.steps_seen = None
        if self.freeze_steps > 0:
            self.steps_seen = self.add_weight(
                shape=(), dtype="int32", initializer="zeros", trainable=False, name="steps_seen"
            )
        self.built = True

    def _seen(self):
        return ops.convert_to_tensor(self.steps_seen)

    def _table(self, still_frozen):
        table = ops.convert_to_tensor(self.embeddings)
        if still_frozen is None:
            return table
        return ops.where(still_frozen, ops.stop_gradient(table), table)

    def call(self, inputs, reverse: bool = False, training=None):
        if reverse:
            if self.reverse_embeddings is not None:
                return ops.matmul(inputs, ops.cast(self.reverse_embeddings, inputs.dtype))  # (B, T, V)
            # The forward call of this step already counted it, hence <=.
            frozen = None if self.steps_seen is None else ops.less_equal(self._seen(), self.freeze_steps)
            table = ops.cast(self._table(frozen), inputs.dtype)
            if self.projection is not None:
                inputs = ops.matmul(inputs, ops.transpose(ops.cast(self.projection, inputs.dtype)))  # (B, T, E)
            return ops.matmul(inputs, ops.transpose(table))  # (B, T, V)
        frozen = None
        if self.steps_seen is not None:
            seen = self._seen()
            frozen = ops.less(seen, self.freeze_steps)
            if training:
                self.steps_seen.assign(seen + 1)
        table = ops.cast(self._table(frozen), self.compute_dtype)
        ids = ops.cast(inputs, "int32")
        if self.one_hot:
            x = ops.matmul(ops.one_hot(ids, self.input_dim, dtype=self.compute_dtype), table)  # (B, T, V) @ (V, E)
        else:
            x = ops.take(table, ids, axis=0)  # (B, T, E)
        if self.projection is not None:
            x = ops.matmul(x, ops.cast(self.projection, self.compute_dtype))  # (B, T, C)
        return x

    def compute_output_shape(self, input_shape, reverse: bool = False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return (*input_shape, self.output_dim)

    def compute_output_spec(self, inputs, reverse: bool = False, training=None):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embedding_dim": self.embedding_dim,
                "one_hot": self.one_hot,
                "tie_weights": self.tie_weights,
                "freeze_steps": self.freeze_steps,
                "seed": self.seed,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config

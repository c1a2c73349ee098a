"""Causal transformer layers shared by the GPT and Llama families.

One block class covers both: GPT-2 style (LayerNorm, GELU MLP, biases, learned positions outside the
block) and Llama style (RMSNorm, SwiGLU MLP, rotary positions, grouped-query attention, no biases).
Attention goes through `keras.ops.dot_product_attention` (a fused kernel where the backend has one)
unless attention dropout is on, which needs the explicit softmax.
"""

from __future__ import annotations

import math

import keras
import keras_hub
from keras import ops


def _normal(stddev: float, seed: int | None):
    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


@keras.saving.register_keras_serializable(package="llmtui")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention with optional grouped-query heads and rotary positions.

    Args:
        heads: query heads.
        kv_heads: key/value heads (a divisor of `heads`; fewer than `heads` is grouped-query attention).
        use_bias: biases in the projections.
        rotary: apply rotary position embeddings to queries and keys.
        rotary_base: the rotary embedding's maximum wavelength.
        attention_dropout: dropout on the attention probabilities.
        init_seed: seed of the projections' initializers.
        output_stddev: standard deviation of the output projection's initializer.
    """

    def __init__(
        self,
        heads: int,
        kv_heads: int | None = None,
        use_bias: bool = True,
        rotary: bool = False,
        rotary_base: float = 10000.0,
        attention_dropout: float = 0.0,
        init_seed: int | None = None,
        output_stddev: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.heads = heads
        self.kv_heads = kv_heads or heads
        self.use_bias = use_bias
        self.rotary = rotary
        self.rotary_base = rotary_base
        self.attention_dropout = attention_dropout
        self.init_seed = init_seed
        self.output_stddev = output_stddev

    def build(self, input_shape):
        dim = input_shape[-1]
        self.head_dim = dim // self.heads
        seed = self.init_seed
        qkv_width = (self.heads + 2 * self.kv_heads) * self.head_dim
        self.qkv = keras.layers.Dense(
            qkv_width,
            use_bias=self.use_bias,
            kernel_initializer=_normal(0.02, seed),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(input_shape)
        self.out = keras.layers.Dense(
            dim,
            use_bias=self.use_bias,
            kernel_initializer=_normal(self.output_stddev, None if seed is None else seed + 1),
            dtype=self.dtype_policy,
            name="out",
        )
        self.out.build((*input_shape[:-1], self.heads * self.head_dim))
        if self.rotary:
            self.rope = keras_hub.layers.RotaryEmbedding(
                max_wavelength=self.rotary_base, dtype=self.dtype_policy, name="rotary"
            )
        self.dropout = keras.layers.Dropout(
            self.attention_dropout, seed=seed, dtype=self.dtype_policy, name="attention_dropout"
        )
        super().build(input_shape)

    def _project(self, x, batch, time):
        """Queries (B, T, H, D), keys and values (B, T, K, D) from one fused projection."""
        qkv = self.qkv(x)  # (B, T, (H + 2K) * D)
        q_width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
        # One split rather than three slices: its gradient is a single concatenation instead of three padded
        # copies summed.
        q, k, v = ops.split(qkv, [q_width, q_width + kv_width], axis=-1)
        return (
            ops.reshape(q, (batch, time, self.heads, self.head_dim)),
            ops.reshape(k, (batch, time, self.kv_heads, self.head_dim)),
            ops.reshape(v, (batch, time, self.kv_heads, self.head_dim)),
        )

    def call(self, x, training=None):
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        q, k, v = self._project(x, batch, time)
        if self.rotary:
            q, k = self.rope(q), self.rope(k)
        if self.kv_heads != self.heads:  # grouped-query: each key/value head serves heads // kv_heads queries
            repeat = self.heads // self.kv_heads
            k, v = ops.repeat(k, repeat, axis=2), ops.repeat(v, repeat, axis=2)
        if self.attention_dropout > 0 and training:
            scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_dim)  # (B, H, T, T)
            causal = ops.tril(ops.ones((time, time), dtype="bool"))
            scores = ops.where(causal[None, None], ops.cast(scores, "float32"), -1e9)
            probs = ops.cast(ops.softmax(scores, axis=-1), q.dtype)
            out = ops.einsum("bhqk,bkhd->bqhd", self.dropout(probs, training=training), v)
        else:
            out = ops.dot_product_attention(q, k, v, is_causal=True)  # (B, T, H, D)
        return self.out(ops.reshape(out, (batch, time, self.heads * self.head_dim)))

    def call_with_cache(self, x, cache, index):
        """Attention for `x` at positions `index .. index + T - 1`, reading and extending a key/value cache.

        Generation only (no dropout). `cache` is (B, 2, S, K, D): keys then values for the S positions of the
        window; this call writes its own keys/values at `index` and attends to every cached position up to
        its own, so whatever sits beyond (padding, stale entries) is never read. Returns (output, cache).
        """
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        q, k, v = self._project(x, batch, time)
        if self.rotary:
            q, k = self.rope(q, start_index=index), self.rope(k, start_index=index)
        zero = ops.zeros((), dtype="int32")
        start = (zero, ops.cast(index, "int32"), zero, zero)
        keys = ops.slice_update(cache[:, 0], start, ops.cast(k, cache.dtype))  # (B, S, K, D)
        values = ops.slice_update(cache[:, 1], start, ops.cast(v, cache.dtype))
        cache = ops.stack([keys, values], axis=1)
        span = ops.shape(keys)[1]
        group = self.heads // self.kv_heads  # query heads per key/value head (h = k * group + g)
        q = ops.reshape(q, (batch, time, self.kv_heads, group, self.head_dim))
        scores = ops.einsum("btkgd,bskd->bkgts", ops.cast(q, "float32"), ops.cast(keys, "float32"))
        scores = scores / math.sqrt(self.head_dim)  # (B, K, G, T, S)
        query_positions = ops.cast(index, "int32") + ops.arange(time, dtype="int32")
        visible = ops.arange(span, dtype="int32")[None, :] <= query_positions[:, None]  # (T, S)
        scores = ops.where(visible[None, None, None], scores, -1e9)
        probs = ops.softmax(scores, axis=-1)
        out = ops.einsum("bkgts,bskd->btkgd", probs, ops.cast(values, "float32"))  # (B, T, K, G, D)
        out = ops.cast(ops.reshape(out, (batch, time, self.heads * self.head_dim)), x.dtype)
        return self.out(out), cache

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "heads": self.heads,
                "kv_heads": self.kv_heads,
                "use_bias": self.use_bias,
                "rotary": self.rotary,
                "rotary_base": self.rotary_base,
                "attention_dropout": self.attention_dropout,
                "init_seed": self.init_seed,
                "output_stddev": self.output_stddev,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="llmtui")
class DecoderBlock(keras.layers.Layer):
    """Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(x)).

    Args:
        heads, kv_heads, rotary, rotary_base, attention_dropout: see `CausalSelfAttention`.
        mlp_dim: hidden width of the MLP.
        norm: "layer" (LayerNorm) or "rms" (RMSNorm).
        mlp: "gelu" (two projections) or "swiglu" (gated, three projections).
        use_bias: biases in every projection and LayerNorm offsets (RMSNorm has none).
        dropout: residual dropout after attention and after the MLP.
        init_seed: seed of the block's initializers.
        output_stddev: initializer scale of the projections that write into the residual stream.
    """

    def __init__(
        self,
        heads: int,
        mlp_dim: int,
        kv_heads: int | None = None,
        norm: str = "layer",
        mlp: str = "gelu",
        use_bias: bool = True,
        rotary: bool = False,
        rotary_base: float = 10000.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        norm_epsilon: float = 1e-5,
        init_seed: int | None = None,
        output_stddev: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.heads, self.mlp_dim, self.kv_heads = heads, mlp_dim, kv_heads or heads
        self.norm, self.mlp, self.use_bias = norm, mlp, use_bias
        self.rotary, self.rotary_base = rotary, rotary_base
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        self.norm_epsilon, self.init_seed, self.output_stddev = norm_epsilon, init_seed, output_stddev

    def _make_norm(self, name: str):
        if self.norm == "rms":
            return keras.layers.RMSNormalization(epsilon=self.norm_epsilon, dtype=self.dtype_policy, name=name)
        return keras.layers.LayerNormalization(
            epsilon=self.norm_epsilon, center=self.use_bias, dtype=self.dtype_policy, name=name
        )

    def build(self, input_shape):
        dim = input_shape[-1]
        seed = self.init_seed
        step = (lambda k: None) if seed is None else (lambda k: seed + k)
        self.attention_norm = self._make_norm("attention_norm")
        self.attention_norm.build(input_shape)
        self.attention = CausalSelfAttention(
            self.heads,
            self.kv_heads,
            self.use_bias,
            self.rotary,
            self.rotary_base,
            self.attention_dropout,
            init_seed=step(0),
            output_stddev=self.output_stddev,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention.build(input_shape)
        self.mlp_norm = self._make_norm("mlp_norm")
        self.mlp_norm.build(input_shape)
        inner = self.mlp_dim * (2 if self.mlp == "swiglu" else 1)  # gate and value in one projection
        self.mlp_in = keras.layers.Dense(
            inner,
            use_bias=self.use_bias,
            kernel_initializer=_normal(0.02, step(2)),
            dtype=self.dtype_policy,
            name="mlp_in",
        )
        self.mlp_in.build(input_shape)
        self.mlp_out = keras.layers.Dense(
            dim,
            use_bias=self.use_bias,
            kernel_initializer=_normal(self.output_stddev, step(3)),
            dtype=self.dtype_policy,
            name="mlp_out",
        )
        self.mlp_out.build((*input_shape[:-1], self.mlp_dim))
        self.residual_dropout = keras.layers.Dropout(
            self.dropout_rate, seed=step(4), dtype=self.dtype_policy, name="residual_dropout"
        )
        super().build(input_shape)

    def _feed_forward(self, x):
        h = self.mlp_in(self.mlp_norm(x))
        if self.mlp == "swiglu":
            gate, value = ops.split(h, 2, axis=-1)
            h = ops.silu(gate) * value
        else:
            h = ops.gelu(h, approximate=True)
        return self.mlp_out(h)

    def call(self, x, training=None):
        x = x + self.residual_dropout(self.attention(self.attention_norm(x), training=training), training=training)
        return x + self.residual_dropout(self._feed_forward(x), training=training)

    def call_with_cache(self, x, cache, index):
        """The block for `x` at positions `index ..` with a key/value cache (see
        `CausalSelfAttention.call_with_cache`); generation only. Returns (output, cache)."""
        attended, cache = self.attention.call_with_cache(self.attention_norm(x), cache, index)
        x = x + attended
        return x + self._feed_forward(x), cache

    def cache_shape(self, batch: int, length: int) -> tuple[int, ...]:
        """Shape of this block's key/value cache: (batch, 2, length, kv_heads, head_dim)."""
        return (batch, 2, length, self.kv_heads, self.attention.head_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "heads": self.heads,
                "mlp_dim": self.mlp_dim,
                "kv_heads": self.kv_heads,
                "norm": self.norm,
                "mlp": self.mlp,
                "use_bias": self.use_bias,
                "rotary": self.rotary,
                "rotary_base": self.rotary_base,
                "dropout": self.dropout_rate,
                "attention_dropout": self.attention_dropout,
                "norm_epsilon": self.norm_epsilon,
                "init_seed": self.init_seed,
                "output_stddev": self.output_stddev,
            }
        )
        return config

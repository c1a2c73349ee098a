"""Incremental decoding that reuses a trained model's own layers: a key/value cache for the transformers
(gpt, llama), carried state for the recurrent models (lstm, gru, rnn).

A decoder holds no weights of its own: it walks the model's layers by name (`token_embedding`,
`position_embedding`, `block_i`, `final_norm`; `lstm_i` / `gru_i` / `rnn_i`) and calls them. Its state
(cache or recurrent state) covers one window of `context` positions with static shapes, so every call runs
one compiled program: `forward(ids, state, index, last)` feeds `ids` (B, T) at window positions
`index .. index + T - 1` and returns the float32 logits (B, V) at offset `last` within `ids`, and the new
state. Prefilling a prompt is one call with T = context (right-padded); each new token is one call with
T = 1.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from llmtui.generation.compiled import compile_function

RECURRENT = ("lstm", "gru", "rnn")


class IncrementalDecoder:
    """Base: compiled `forward` plus helpers to start a state and reorder it (beam search)."""

    def __init__(self, model, context: int):
        self.model = model
        self.context = int(context)
        self.embedding = model.get_layer("token_embedding")
        names = {layer.name for layer in model.layers}
        self.output_bias = model.get_layer("output_bias") if "output_bias" in names else None
        self._forward = compile_function(self.forward, model.variables)
        self._reorder = compile_function(self.reorder, [])

    def initial_state(self, batch: int):
        raise NotImplementedError

    def forward(self, ids, state, index, last):
        raise NotImplementedError

    def reorder(self, state, parents):
        """The state with its batch rows picked by `parents` (B,)."""
        from keras import ops

        return tuple(ops.take(s, parents, axis=0) for s in state)

    def logits(self, x, last):
        """Float32 logits (B, V) of the hidden states `x` (B, T, C) at offset `last`."""
        from keras import ops

        x = ops.take(x, last, axis=1)[:, None, :]  # (B, 1, C)
        logits = self.embedding(x, reverse=True)
        if self.output_bias is not None:
            logits = self.output_bias(logits)
        return ops.cast(logits, "float32")[:, 0]

    def step(self, ids: np.ndarray, state, index: int, last: int):
        """Run the compiled forward; returns (logits as numpy (B, V), new state)."""
        # 0-d arrays, not numpy scalars: a scalar would be traced as a constant (one program per position).
        logits, state = self._forward(
            np.asarray(ids, dtype="int32"), state, np.asarray(index, dtype="int32"), np.asarray(last, dtype="int32")
        )
        return np.asarray(logits), state

    def take(self, state, parents: np.ndarray):
        return self._reorder(state, np.asarray(parents, dtype="int32"))

    def sampling_loop(self):
        """The compiled batch-1 sampling loop over this decoder (`loop.CompiledSampling`), built once: a new
        `Generator` of the same model (one per sample during training) reuses its compiled programs."""
        if getattr(self, "_sampling", None) is None:
            from llmtui.generation.loop import CompiledSampling

            self._sampling = CompiledSampling(self)
        return self._sampling


class TransformerDecoder(IncrementalDecoder):
    """gpt / llama with a fixed-size key/value cache of `context` positions per block."""

    def __init__(self, model, context: int):
        self.blocks: list[Any] = []
        while True:
            try:
                self.blocks.append(model.get_layer(f"block_{len(self.blocks)}"))
            except ValueError:
                break
        self.final_norm = model.get_layer("final_norm")
        try:
            self.positions = model.get_layer("position_embedding")
        except ValueError:
            self.positions = None  # rotary positions live inside attention
        super().__init__(model, context)

    def initial_state(self, batch: int):
        from keras import ops

        dtype = self.blocks[0].compute_dtype
        return tuple(ops.zeros(block.cache_shape(batch, self.context), dtype=dtype) for block in self.blocks)

    def forward(self, ids, state, index, last):
        from keras import ops

        x = self.embedding(ids)  # (B, T, C)
        if self.positions is not None:
            # The layer's own table, gathered at index .. index + T - 1. (Calling the layer with a traced
            # start_index slices, which XLA on TensorFlow recompiles for every index.)
            where = ops.cast(index, "int32") + ops.arange(ops.shape(ids)[1], dtype="int32")
            table = ops.convert_to_tensor(self.positions.position_embeddings)
            x = x + ops.cast(ops.take(table, where, axis=0), x.dtype)[None]
        caches = []
        for block, cache in zip(self.blocks, state):
            x, cache = block.call_with_cache(x, cache, index)
            caches.append(cache)
        return self.logits(self.final_norm(x), last), tuple(caches)


class RecurrentDecoder(IncrementalDecoder):
    """lstm / gru / rnn: the trained layers' cells run from a carried state."""

    def __init__(self, model, context: int):
        self.layers: list[Any] = []
        arch = model.name
        while True:
            try:
                self.layers.append(model.get_layer(f"{arch}_{len(self.layers)}"))
            except ValueError:
                break
        self.states_per_layer = 2 if arch == "lstm" else 1
        super().__init__(model, context)

    def initial_state(self, batch: int):
        from keras import ops

        return tuple(
            ops.zeros((batch, layer.cell.units), dtype=layer.compute_dtype)
            for layer in self.layers
            for _ in range(self.states_per_layer)
        )

    def forward(self, ids, state, index, last):
        from keras import ops

        x = self.embedding(ids)  # (B, T, C)
        # Steps after `last` (right padding of a prefill) leave the state as it was at `last`.
        mask = ops.broadcast_to(ops.arange(ops.shape(ids)[1]) <= last, ops.shape(ids))
        new_state: list[Any] = []
        for i, layer in enumerate(self.layers):
            initial = list(state[i * self.states_per_layer : (i + 1) * self.states_per_layer])
            _, x, states = layer.inner_loop(ops.cast(x, layer.compute_dtype), initial_state=initial, mask=mask)
            new_state.extend(states if isinstance(states, (list, tuple)) else [states])
        return self.logits(x, last), tuple(new_state)


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decoder_for(model, context: int) -> IncrementalDecoder | None:
    """The incremental decoder of `model` (built once per model and context), or None for an architecture
    without one (generation then recomputes the whole window)."""
    cached = _DECODERS.get(model)
    if cached is not None and cached.context == context:
        return cached
    names = {layer.name for layer in model.layers}
    if "token_embedding" not in names:
        return None
    decoder: IncrementalDecoder
    if "block_0" in names and "final_norm" in names:
        decoder = TransformerDecoder(model, context)
    elif model.name in RECURRENT and f"{model.name}_0" in names:
        decoder = RecurrentDecoder(model, context)
    else:
        return None
    _DECODERS[model] = decoder
    return decoder

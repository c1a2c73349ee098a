"""Batch-1 cached sampling with the whole token loop compiled: one program call per chunk of tokens.

Per token, the host-side loop pays a compiled call, a device-to-host copy of the logits and a NumPy
sampling step; on a CPU that costs more than the small model's own step. Here one compiled program
(`tf.function(jit_compile=True)` / `jax.jit`) runs a loop of up to `CHUNK` tokens: pick the token from the
logits, feed it through the decoder (one cached position), repeat. The host only checks the chunk for the
end-of-text token and stop strings, and streams its text.

The picks are the host sampler's (`search.sample_next`) exactly: temperature, then top-k, then top-p, in
float64, and one uniform draw per sampled token taken from the same NumPy generator in the same order
(`Generator.choice` with probabilities draws one uniform and inverts the cumulative distribution), so a seed
gives the same text through this loop as through the per-token loop.
"""

from __future__ import annotations

import numpy as np

from llmtui.generation.compiled import compile_function

CHUNK = 32  # tokens per compiled call: more means fewer calls, but more wasted work past an EOS or stop


class CompiledSampling:
    """The sampling loop of one decoder, compiled once per (greedy, top_k, top_p) setting."""

    def __init__(self, decoder):
        self.decoder = decoder
        self._programs: dict = {}

    def run(
        self, state, logits, index: int, count: int, uniforms: np.ndarray, temperature: float, top_k: int, top_p: float
    ):
        """Sample `count` (<= CHUNK) tokens starting from `logits` (1, V) with the cache `state` holding
        positions up to `index`; returns (tokens as a list, the logits after the last one, the new state)."""
        greedy = temperature <= 0
        key = (greedy, int(top_k) if not greedy else 0, float(top_p) if not greedy else 1.0)
        if key not in self._programs:
            self._programs[key] = compile_function(self._loop(*key), self.decoder.model.variables)
        draws = np.zeros(CHUNK, dtype="float64")
        draws[: len(uniforms)] = uniforms
        tokens, logits, state = self._programs[key](
            state,
            logits,
            np.asarray(index, dtype="int32"),
            np.asarray(count, dtype="int32"),
            draws,
            np.asarray(max(temperature, 1e-9), dtype="float64"),
        )
        return [int(t) for t in np.asarray(tokens)[:count]], logits, state

    def _loop(self, greedy: bool, top_k: int, top_p: float):
        from keras import ops

        decoder = self.decoder

        def pick(logits, uniform, temperature):
            if greedy:
                return ops.cast(ops.argmax(logits[0]), "int32")
            scaled = ops.cast(logits[0], "float64") / temperature
            vocab = scaled.shape[0]
            if 0 < top_k < vocab:
                cutoff = ops.top_k(scaled, top_k, sorted=True)[0][top_k - 1]
                scaled = ops.where(scaled < cutoff, -np.inf, scaled)
            probs = ops.exp(scaled - ops.max(scaled))
            probs = probs / ops.sum(probs)
            if top_p < 1.0:
                ranked = ops.flip(ops.sort(probs))  # descending
                keep = ops.sum(ops.cast(ops.cumsum(ranked) < top_p, "int32")) + 1
                threshold = ops.take(ranked, keep - 1)
                probs = ops.where(probs >= threshold, probs, 0.0)
                probs = probs / ops.sum(probs)
            cdf = ops.cumsum(probs)
            cdf = cdf / cdf[-1]
            return ops.cast(ops.sum(ops.cast(cdf <= uniform, "int32")), "int32")  # searchsorted(side="right")

        def loop(state, logits, index, count, uniforms, temperature):
            def body(i, carry):
                tokens, logits, state = carry
                token = pick(logits, uniforms[i], temperature)
                tokens = ops.slice_update(tokens, [i], ops.reshape(token, (1,)))
                logits, state = decoder.forward(ops.reshape(token, (1, 1)), state, index + i, ops.zeros((), "int32"))
                return tokens, logits, state

            tokens = ops.zeros((CHUNK,), "int32")
            return ops.fori_loop(0, count, body, (tokens, logits, state))

        return loop

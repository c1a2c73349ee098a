"""Recurrent layers of the rnn / lstm / gru models.

The layers are Keras' own (same weights, same cells and options) with one change to how a whole
sequence is run: the input projection `x @ kernel + bias` of every time step is computed up front as one
large matrix product, and only the recurrent product `h @ recurrent_kernel` stays inside the time loop.
Keras' generic loop multiplies each step's input separately, 64 small products where one large one does.
The loop body also takes its weights as tensors read once before the loop (see `inner_loop`). Measured on
2 CPU cores for the 2×256 LSTM of `bench/bench_train.py`, a training step on TensorFlow: Keras' layer
193 ms, the input projected up front 137 ms, the weights read once 96–100 ms (JAX: 102–106 ms).
Cell dropout, masks and reversed sequences fall back to Keras' loop.
"""

from __future__ import annotations

import keras
from keras import ops


class _HoistedInputProjection:
    """Mixin for a Keras RNN layer: project the whole input sequence once, then loop over time."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if mask is not None or self.go_backwards or (training and (cell.dropout or cell.recurrent_dropout)):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        projected = ops.matmul(sequences, cell.kernel)  # (B, T, gates * units)
        if cell.use_bias:
            projected = projected + self._input_bias()
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        # The weights the loop body uses are read once, here. Read inside the body, each step's read is a new
        # tensor that TensorFlow's while-loop gradient stacks for the backward pass: a (T, units, 4 * units)
        # copy of the recurrent kernel per layer, which cost about a third of the 2×256 LSTM's step.
        # `ops.copy` reads the variable; on TensorFlow `convert_to_tensor` hands back the variable itself.
        weights = {name: ops.copy(weight) for name, weight in self._loop_weights().items()}

        def step(inputs, states):
            return self._recurrence(inputs, states, **weights)

        # Keras' own per-backend time loop (tf.while_loop / lax.scan), the one its RNN layers use; in timing
        # it timed the same as `keras.ops.scan` on JAX, and `ops.scan` on TensorFlow rejects a list carry.
        return keras.src.backend.rnn(step, projected, states, unroll=self.unroll,
                                     input_length=sequences.shape[1], return_all_outputs=self.return_sequences)

    def _loop_weights(self) -> dict:
        return {"kernel": self.cell.recurrent_kernel}

    def _input_bias(self):
        return self.cell.bias


@keras.saving.register_keras_serializable(package="llmtui")
class LSTM(_HoistedInputProjection, keras.layers.LSTM):
    """`keras.layers.LSTM` with the input projection outside the time loop."""

    def _recurrence(self, projected, states, kernel):
        cell = self.cell
        h, c = states
        # One split, not four slices: the gradient is one concatenation rather than four padded copies summed.
        i, f, g, o = ops.split(projected + ops.matmul(h, kernel), 4, axis=-1)
        c = cell.recurrent_activation(f) * c + cell.recurrent_activation(i) * cell.activation(g)
        h = cell.recurrent_activation(o) * cell.activation(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="llmtui")
class GRU(_HoistedInputProjection, keras.layers.GRU):
    """`keras.layers.GRU` with the input projection outside the time loop."""

    def _input_bias(self):
        return self.cell.bias[0] if self.cell.reset_after else self.cell.bias

    def _loop_weights(self) -> dict:
        cell, units = self.cell, self.cell.units
        weights = {"gates_kernel": cell.recurrent_kernel[:, :2 * units],
                   "candidate_kernel": cell.recurrent_kernel[:, 2 * units:]}
        if cell.reset_after and cell.use_bias:
            weights.update(gates_bias=cell.bias[1][:2 * units], candidate_bias=cell.bias[1][2 * units:])
        return weights

    def _recurrence(self, projected, states, gates_kernel, candidate_kernel, gates_bias=None, candidate_bias=None):
        cell = self.cell
        h = states[0]
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        recurrent = ops.matmul(h, gates_kernel)
        if gates_bias is not None:
            recurrent = recurrent + gates_bias
        recurrent_z, recurrent_r = ops.split(recurrent, 2, axis=-1)
        z = cell.recurrent_activation(x_z + recurrent_z)
        r = cell.recurrent_activation(x_r + recurrent_r)
        if cell.reset_after:
            candidate = ops.matmul(h, candidate_kernel)
            if candidate_bias is not None:
                candidate = candidate + candidate_bias
            candidate = r * candidate
        else:
            candidate = ops.matmul(r * h, candidate_kernel)
        h = z * h + (1 - z) * cell.activation(x_h + candidate)
        return h, [h]


@keras.saving.register_keras_serializable(package="llmtui")
class SimpleRNN(_HoistedInputProjection, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` with the input projection outside the time loop."""

    def _recurrence(self, projected, states, kernel):
        cell = self.cell
        h = projected + ops.matmul(states[0], kernel)
        if cell.activation is not None:
            h = cell.activation(h)
        return h, [h]


RECURRENT_LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}

"""Recurrent layers of the rnn / lstm / gru models.

The layers are Keras' own (same weights, same cells and options) with one change to how a whole
sequence is run: the input projection `x @ kernel + bias` of every time step is computed up front as one
large matrix product, and only the recurrent product `h @ recurrent_kernel` stays inside the time loop.
Keras' generic loop multiplies each step's input separately, 64 small products where one large one does;
measured on 2 CPU cores for the 2×256 LSTM of `bench/bench_train.py`: 193 → 137 ms a training step on
TensorFlow, 89 ms on JAX. Cell dropout, masks and reversed sequences fall back to Keras' loop.
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
        # Keras' own per-backend time loop (tf.while_loop / lax.scan), the one its RNN layers use; in timing
        # it timed the same as `keras.ops.scan` on JAX, and `ops.scan` on TensorFlow rejects a list carry.
        return keras.src.backend.rnn(self._recurrence, projected, states, unroll=self.unroll,
                                     input_length=sequences.shape[1], return_all_outputs=self.return_sequences)

    def _input_bias(self):
        return self.cell.bias


@keras.saving.register_keras_serializable(package="llmtui")
class LSTM(_HoistedInputProjection, keras.layers.LSTM):
    """`keras.layers.LSTM` with the input projection outside the time loop."""

    def _recurrence(self, projected, states):
        cell, units = self.cell, self.cell.units
        h, c = states
        z = projected + ops.matmul(h, cell.recurrent_kernel)
        i = cell.recurrent_activation(z[:, :units])
        f = cell.recurrent_activation(z[:, units:2 * units])
        c = f * c + i * cell.activation(z[:, 2 * units:3 * units])
        h = cell.recurrent_activation(z[:, 3 * units:]) * cell.activation(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="llmtui")
class GRU(_HoistedInputProjection, keras.layers.GRU):
    """`keras.layers.GRU` with the input projection outside the time loop."""

    def _input_bias(self):
        return self.cell.bias[0] if self.cell.reset_after else self.cell.bias

    def _recurrence(self, projected, states):
        cell, units = self.cell, self.cell.units
        h = states[0]
        x_z, x_r, x_h = projected[:, :units], projected[:, units:2 * units], projected[:, 2 * units:]
        kernel = cell.recurrent_kernel
        recurrent = ops.matmul(h, kernel[:, :2 * units])
        if cell.reset_after and cell.use_bias:
            recurrent = recurrent + cell.bias[1][:2 * units]
        z = cell.recurrent_activation(x_z + recurrent[:, :units])
        r = cell.recurrent_activation(x_r + recurrent[:, units:])
        if cell.reset_after:
            candidate = ops.matmul(h, kernel[:, 2 * units:])
            if cell.use_bias:
                candidate = candidate + cell.bias[1][2 * units:]
            candidate = r * candidate
        else:
            candidate = ops.matmul(r * h, kernel[:, 2 * units:])
        h = z * h + (1 - z) * cell.activation(x_h + candidate)
        return h, [h]


@keras.saving.register_keras_serializable(package="llmtui")
class SimpleRNN(_HoistedInputProjection, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` with the input projection outside the time loop."""

    def _recurrence(self, projected, states):
        cell = self.cell
        h = projected + ops.matmul(states[0], cell.recurrent_kernel)
        if cell.activation is not None:
            h = cell.activation(h)
        return h, [h]


RECURRENT_LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}

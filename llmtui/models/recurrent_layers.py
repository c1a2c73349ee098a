"""Recurrent layers of the rnn / lstm / gru models.

The layers are Keras' own (same weights, same cells and options) with one change to how a whole
sequence is run: the input projection `x @ kernel + bias` of every time step is computed up front as one
large matrix product, and only the recurrent product `h @ recurrent_kernel` stays inside the time loop.
Keras' generic loop multiplies each step's input separately, 64 small products where one large one does.
The loop body also takes its weights as tensors read once before the loop (see `inner_loop`), and the LSTM
has a hand-written backward pass (`lstm_sequence`); together they more than halve the step of Keras' own
layer (measured: bench/README.md, "Recurrent layers").
Cell dropout, masks and reversed sequences fall back to Keras' loop.

`run_carried` runs a layer from a given state and returns its final state, zeroing the state before every
step whose `keep` is 0: stateful training (`train.stateful`) carries the state from one batch to the next
and starts each document afresh where its end-of-text token is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops


class _HoistedInputProjection:
    """Mixin for a Keras RNN layer: project the whole input sequence once, then loop over time."""

    # What the Keras RNN layer this mixes into provides (declared for the type checker).
    cell: Any
    go_backwards: bool
    unroll: bool
    return_sequences: bool
    _recurrence: Callable[..., Any]

    def _uses_keras_loop(self, mask, training) -> bool:
        cell = self.cell
        return mask is not None or self.go_backwards or bool(training and (cell.dropout or cell.recurrent_dropout))

    def _project(self, sequences):
        projected = ops.matmul(sequences, self.cell.kernel)  # (B, T, gates * units)
        return projected + self._input_bias() if self.cell.use_bias else projected

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self._uses_keras_loop(mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)  # type: ignore[misc]  # the Keras layer after this mixin has it
        projected = self._project(sequences)
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
        return keras.src.backend.rnn(
            step,
            projected,
            states,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            return_all_outputs=self.return_sequences,
        )

    def run_carried(self, sequences, initial_state: list, keep):
        """Every step's output (B, T, U) and the final states, from `initial_state`; the states are zeroed
        before each step t where keep[:, t] (B, T, 1) is 0."""
        if self.cell.dropout or self.cell.recurrent_dropout or self.go_backwards:
            raise ValueError("a carried state needs a forward recurrent layer without cell dropout")
        projected = self._project(sequences)
        stepped = ops.concatenate([projected, ops.cast(keep, projected.dtype)], axis=-1)  # keep as a last channel
        weights = {name: ops.copy(weight) for name, weight in self._loop_weights().items()}

        def step(inputs, states):
            kept = inputs[..., -1:]
            return self._recurrence(inputs[..., :-1], [state * kept for state in states], **weights)

        _, outputs, states = keras.src.backend.rnn(step, stepped, list(initial_state), input_length=sequences.shape[1])
        return outputs, list(states)

    def _loop_weights(self) -> dict:
        return {"kernel": self.cell.recurrent_kernel}

    def _input_bias(self):
        return self.cell.bias


@keras.saving.register_keras_serializable(package="llmtui")
class LSTM(_HoistedInputProjection, keras.layers.LSTM):
    """`keras.layers.LSTM` with the input projection outside the time loop and, for the standard gates
    (sigmoid and tanh), a hand-written backward pass (`lstm_sequence`)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if (
            self._uses_keras_loop(mask, training)
            or self.unroll
            or cell.activation is not keras.activations.tanh
            or cell.recurrent_activation is not keras.activations.sigmoid
        ):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0, c0 = initial_state
        hs, c_last = lstm_sequence(self._project(_time_major(sequences)), h0, c0, ops.copy(cell.recurrent_kernel))
        return hs[-1], _time_major(hs), [hs[-1], c_last]

    def run_carried(self, sequences, initial_state: list, keep):
        cell = self.cell
        if (
            self.unroll
            or cell.activation is not keras.activations.tanh
            or cell.recurrent_activation is not keras.activations.sigmoid
        ):
            return super().run_carried(sequences, initial_state, keep)
        if cell.dropout or cell.recurrent_dropout or self.go_backwards:
            raise ValueError("a carried state needs a forward recurrent layer without cell dropout")
        h0, c0 = initial_state
        projected = self._project(_time_major(sequences))
        hs, c_last = lstm_sequence(
            projected, h0, c0, ops.copy(cell.recurrent_kernel), _time_major(ops.cast(keep, projected.dtype))
        )
        return _time_major(hs), [hs[-1], c_last]

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
        weights = {
            "gates_kernel": cell.recurrent_kernel[:, : 2 * units],
            "candidate_kernel": cell.recurrent_kernel[:, 2 * units :],
        }
        if cell.reset_after and cell.use_bias:
            weights.update(gates_bias=cell.bias[1][: 2 * units], candidate_bias=cell.bias[1][2 * units :])
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


@keras.saving.register_keras_serializable(package="llmtui")
class OutputBias(keras.layers.Layer):
    """Logits (B, T, V) plus a learned bias per vocabulary entry, zeros at the start (`model.output_bias`)."""

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, logits):
        return logits + ops.cast(self.bias, logits.dtype)


class CarriedStates(keras.layers.Layer):
    """Stacked recurrent layers (each followed by its dropout) whose final states are kept in variables and
    start the next call: the core of `recurrent.stateful_twin`. Not serialised: it lives only during training
    and evaluation, around layers owned by the saved model."""

    def __init__(self, pairs, batch_size: int, reset_id: int, **kwargs):
        super().__init__(**kwargs)
        self.pairs = list(pairs)  # [(recurrent layer, dropout layer)], tracked as sublayers
        self.batch_size = int(batch_size)
        self.reset_id = int(reset_id)
        self.states = []
        for index, (layer, _) in enumerate(self.pairs):
            count = 2 if isinstance(layer, keras.layers.LSTM) else 1
            self.states.append(
                [
                    self.add_weight(
                        shape=(self.batch_size, layer.cell.units),
                        initializer="zeros",
                        trainable=False,
                        dtype="float32",
                        name=f"state_{index}_{k}",
                    )
                    for k in range(count)
                ]
            )
        self.built = True

    def call(self, x, ids, reset, training=None):
        keep = ops.expand_dims(ops.cast(ops.not_equal(ids, self.reset_id), x.dtype), -1)  # (B, T, 1)
        lane = ops.expand_dims(1.0 - ops.cast(reset, "float32"), -1)  # (B, 1)
        for (layer, dropout), variables in zip(self.pairs, self.states):
            initial = [ops.cast(ops.convert_to_tensor(v) * lane, x.dtype) for v in variables]
            x, final = layer.run_carried(x, initial, keep)
            for variable, value in zip(variables, final):
                variable.assign(ops.cast(ops.stop_gradient(value), "float32"))
            x = dropout(x, training=training)
        return x

    def zero(self) -> None:
        for variables in self.states:
            for variable in variables:
                variable.assign(ops.zeros(variable.shape, variable.dtype))

    def compute_output_shape(self, x_shape, ids_shape=None, reset_shape=None):
        return (*x_shape[:-1], self.pairs[-1][0].cell.units)


def lstm_sequence(projected, h0, c0, kernel, keep=None):
    """An LSTM with sigmoid gates and tanh activations over a whole sequence, with its own backward pass.

    Time-major: `projected` is the input projection plus bias (T, B, 4U) in Keras' gate order (input, forget,
    candidate, output); `kernel` the recurrent kernel (U, 4U). Returns every step's h (T, B, U) and the last
    cell state. With `keep` (T, B, 1), h and c are multiplied by keep[t] before step t (0 = start afresh there).

    Autodiff through the time loop multiplies out the recurrent kernel's gradient one step at a time, a small
    product and a (U, 4U) sum per step. Here the backward loop only carries dh and dc back, and the kernel's
    gradient is one product over the whole sequence afterwards. For the 2×256 LSTM's two recurrences alone
    (forward and backward) this measured 67–71 → 56–58 ms on TensorFlow and no change on JAX; in the whole
    training step, 98 → 77 ms on TensorFlow and 104 → 83 ms on JAX.

    The loop bodies are shaped for XLA's CPU code generator, which emits scalar code for an elementwise kernel
    that reads a slice of the step's input (the loop's dynamic slice) and vectorizes one that reads it whole:
    the gates are activated in one kernel over all 4U columns (`_gate_activations`), and the backward loop reads
    each saved quantity as a sequence of its own rather than slices of one (B, T, 8U) block. Measured on one
    layer's forward loop body: 28–33 → 7–8 µs a step (bench/README.md, "Recurrent layers"). Time-major from
    end to end (the caller transposes the layer's (B, T, C) input before projecting it, 4× smaller than the
    projection), so no (B, T, 4U) or (B, T, 6U) array is transposed on the way into or out of either loop.
    """
    kept = keep is not None

    @ops.custom_gradient
    def run(projected, h0, c0, kernel, keep):
        units = kernel.shape[0]
        activation_constants = _gate_constants(units, projected.dtype)

        def forward_step(inputs, states):
            h, c = states
            if kept:
                h, c = h * inputs[1], c * inputs[1]
            act = _gate_activations(inputs[0] + ops.matmul(h, kernel), *activation_constants)
            i, f, g, o = ops.split(act, 4, axis=-1)
            c = f * c + i * g
            h = o * ops.tanh(c)
            return ops.concatenate([h, c, act], axis=-1), [h, c]

        # Each step's h, c and gate activations (i, f, g, o), kept for the backward pass: (T, B, 6U).
        saved, (_, c_last) = _scan(forward_step, (projected, keep) if kept else (projected,), [h0, c0])
        hs = saved[..., :units]

        def grad(*upstream, **kwargs):
            # TensorFlow passes one gradient per output; JAX one tuple of them.
            d_hs, d_c_last = upstream[0] if len(upstream) == 1 else upstream
            # The state each step started from (after its keep factor).
            c_before = ops.concatenate([c0[None], saved[:-1, :, units : 2 * units]], axis=0)
            h_before = ops.concatenate([h0[None], hs[:-1]], axis=0)
            if kept:
                c_before, h_before = c_before * keep, h_before * keep
            kernel_t = ops.transpose(kernel)

            def backward_step(inputs, states):
                dh, dc = states
                d_h_out, c, i, f, g, o, c_prev = inputs[:7]
                dh = dh + d_h_out
                tanh_c = ops.tanh(c)
                dc = dc + dh * o * (1 - tanh_c * tanh_c)
                dz = ops.concatenate(
                    [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
                    axis=-1,
                )
                dh, dc = ops.matmul(dz, kernel_t), dc * f
                if kept:  # the gradient reaching a step's incoming state passes through its keep factor
                    dh, dc = dh * inputs[7], dc * inputs[7]
                return dz, [dh, dc]

            # One sequence per saved quantity (see the docstring): d_out, c, i, f, g, o, c_prev [, keep].
            sequences = (d_hs, *(saved[..., k * units : (k + 1) * units] for k in range(1, 6)), c_before)
            dz, (dh0, dc0) = _scan(
                backward_step, (*sequences, keep) if kept else sequences, [ops.zeros_like(h0), d_c_last], True
            )
            d_kernel = ops.einsum("tbu,tbg->ug", h_before, dz)
            return dz, dh0, dc0, d_kernel, ops.zeros_like(keep)

        return (hs, c_last), grad

    # Without `keep` a (1, B, 1) stand-in keeps one signature; the loops never read it.
    return run(projected, h0, c0, kernel, keep if kept else ops.ones_like(projected[:1, :, :1]))


def _time_major(x):
    """(B, T, ...) <-> (T, B, ...)."""
    return ops.transpose(x, (1, 0, *range(2, len(x.shape))))


def _scan(step, sequences: tuple, initial_states: list, reverse: bool = False):
    """A loop over time-major sequences (T, B, ...), last step first with `reverse`: `step(inputs, states)` gets
    a tuple of the sequences' slices at one step and returns (output, new states). Returns the outputs in time
    order (T, B, ...), whichever way the loop ran, and the final states.

    Why not Keras' loop alone: run backwards it reverses every input sequence and its outputs (copies of the
    whole (T, B, 4U) gradient and the 6 saved (T, B, U) sequences per layer), and on TensorFlow it copies its
    inputs into TensorArrays first. Here TensorFlow's loop reads step t of each sequence in place and JAX's
    `lax.scan` runs in reverse itself. Other backends, and a length TensorFlow traces as unknown, use Keras'."""
    steps = sequences[0].shape[0]
    backend = keras.backend.backend()
    if steps is not None and backend == "jax":
        from jax import lax

        def scan_step(carry, inputs):
            output, new_states = step(inputs, list(carry))
            return tuple(new_states), output

        carry, outputs = lax.scan(scan_step, tuple(initial_states), tuple(sequences), reverse=reverse)
        return outputs, list(carry)
    if steps is not None and backend == "tensorflow":
        import tensorflow as tf

        def at(index):
            return tuple(sequence[index] for sequence in sequences)

        probe, _ = step(at(0), list(initial_states))  # the output's shape and type (dead code once traced)

        def body(t, outputs, *states):
            index = steps - 1 - t if reverse else t
            output, new_states = step(at(index), list(states))
            return (t + 1, outputs.write(index, output), *new_states)

        written = tf.TensorArray(probe.dtype, size=steps, element_shape=probe.shape)
        _, written, *states = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), written, *initial_states), maximum_iterations=steps
        )
        return written.stack(), states
    _, outputs, states = _time_loop(step, sequences, initial_states, reverse)
    return (ops.flip(outputs, axis=0) if reverse else outputs), list(states)


def _time_loop(step, sequences: tuple, initial_states: list, go_backwards: bool = False):
    """Keras' time loop (`keras.src.backend.rnn`) over several time-major (T, B, ...) sequences; `step` gets a
    tuple of their slices at one step, and the outputs are time-major too (last step first with go_backwards).
    With a static length each is a sequence of its own (why: `lstm_sequence`); with a dynamic one (TensorFlow
    tracing `None` steps) Keras' loop takes no nested inputs, so they are joined along the last axis and split
    again in the step."""
    steps = sequences[0].shape[0]
    if steps is not None:
        return keras.src.backend.rnn(
            step, sequences, initial_states, go_backwards=go_backwards, input_length=steps, time_major=True
        )
    ends = [int(end) for end in np.cumsum([sequence.shape[-1] for sequence in sequences])[:-1]]

    def joined_step(inputs, states):
        return step(tuple(ops.split(inputs, ends, axis=-1)) if ends else (inputs,), states)

    # Batch-major here: with time_major Keras' TensorFlow loop takes the batch size for the length.
    last, outputs, states = keras.src.backend.rnn(
        joined_step, _time_major(ops.concatenate(sequences, -1)), initial_states, go_backwards=go_backwards
    )
    return last, _time_major(outputs), states


def _gate_constants(units: int, dtype) -> tuple:
    """Per-column factors of `_gate_activations` over the gates i, f, g, o: (scale, offset)."""
    scale = [1.0] * (2 * units) + [2.0] * units + [1.0] * units
    offset = [0.0] * (2 * units) + [-1.0] * units + [0.0] * units
    return ops.convert_to_tensor(scale, dtype), ops.convert_to_tensor(offset, dtype)


def _gate_activations(z, scale, offset):
    """sigmoid of the i, f and o columns of z (B, 4U) and tanh of the g columns, as one elementwise kernel:
    tanh(x) = 2·sigmoid(2x) - 1, so all four are sigmoid(z·scale)·scale + offset (i, f, o exactly sigmoid)."""
    return ops.sigmoid(z * scale) * scale + offset


RECURRENT_LAYERS: dict[str, Any] = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}  # name -> Keras layer class

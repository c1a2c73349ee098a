"""Recurrent layers of the rnn / lstm / gru models.

The layers are Keras' own (same weights, same cells and options) with one change to how a whole
sequence is run: the input projection `x @ kernel + bias` of every time step is computed up front as one
large matrix product, and only the recurrent product `h @ recurrent_kernel` stays inside the time loop.
Keras' generic loop multiplies each step's input separately, 64 small products where one large one does.
The loop body also takes its weights as tensors read once before the loop (see `inner_loop`), and with their
standard activations the layers have a hand-written backward pass (`lstm_sequence`, `gru_sequence`,
`simple_rnn_sequence`); together they more than halve the LSTM's step against Keras' own layer (measured:
bench/README.md, "Recurrent layers"). Cell dropout, masks and reversed sequences fall back to Keras' loop.
A first layer that reads the token embedding directly projects the token ids instead (`read_tokens_from`).

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

    # The token embedding this layer reads directly (`read_tokens_from`) and, during a call, the token ids.
    _token_table: Any = None
    _token_ids: Any = None

    def read_tokens_from(self, embedding) -> None:
        """Take this layer's input projection from `embedding` (a Keras `Embedding`, whose output this layer
        reads with nothing between) when called with `token_ids=` (B, T): a lookup into embedding @ kernel
        + bias, exact in math, instead of the product of every step's looked-up vector with the kernel.

        With a small vocabulary the (V, C)·(C, gates·U) product is far smaller than the (B·T, C)·(C, gates·U)
        one, and its gradient too (the two large backward products become a scatter-add and two small ones):
        one-thread CPU time of the 2×256 LSTM's step, bench/README.md ("Recurrent layers"). Not saved: a loaded
        model projects its input as usual (same result); only the hand-written loops use it."""
        object.__setattr__(self, "_token_table", embedding)  # not tracked: the embedding's weights are its own

    def call(self, sequences, initial_state=None, mask=None, training=False, token_ids=None):
        object.__setattr__(self, "_token_ids", token_ids)  # read by inner_loop, during this call only
        try:
            return super().call(sequences, initial_state=initial_state, mask=mask, training=training)  # type: ignore[misc]  # the Keras layer after this mixin has it
        finally:
            object.__setattr__(self, "_token_ids", None)

    def _project(self, sequences):
        projected = ops.matmul(sequences, self.cell.kernel)  # (B, T, gates * units)
        return projected + self._input_bias() if self.cell.use_bias else projected

    def _project_time_major(self, sequences, token_ids=None):
        """The input projection (T, B, gates * units) of `sequences` (B, T, C), or of `token_ids` (B, T)
        through `read_tokens_from`'s embedding."""
        if token_ids is None or self._token_table is None:
            return self._project(_time_major(sequences))
        table = ops.cast(self._token_table.embeddings, sequences.dtype)
        return ops.take(self._project(table), ops.transpose(token_ids), axis=0)

    def _hand_written(self) -> bool:
        """Whether `_sequence` (the hand-written backward pass) runs this layer: its cell's standard activations."""
        return False

    def _sequence(self, projected, states: list, keep):
        """Every step's h (T, B, U) and the final states, from the time-major projection (T, B, gates * U) and
        `states`, through the layer's hand-written backward pass; `keep` (T, B, 1) or None as `run_carried`'s."""
        raise NotImplementedError

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self._uses_keras_loop(mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)  # type: ignore[misc]  # the Keras layer after this mixin has it
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if self._hand_written():
            hs, states = self._sequence(self._project_time_major(sequences, self._token_ids), states, None)
            return hs[-1], _time_major(hs), states
        projected = self._project(sequences)
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

    def run_carried(self, sequences, initial_state: list, keep, token_ids=None):
        """Every step's output (B, T, U) and the final states, from `initial_state`; the states are zeroed
        before each step t where keep[:, t] (B, T, 1) is 0. `token_ids`: see `read_tokens_from`."""
        if self.cell.dropout or self.cell.recurrent_dropout or self.go_backwards:
            raise ValueError("a carried state needs a forward recurrent layer without cell dropout")
        if not self._hand_written():
            return self._carried_loop(sequences, initial_state, keep)
        projected = self._project_time_major(sequences, token_ids)
        hs, states = self._sequence(projected, list(initial_state), _time_major(ops.cast(keep, projected.dtype)))
        return _time_major(hs), states

    def _carried_loop(self, sequences, initial_state: list, keep):
        """`run_carried` through Keras' loop and autodiff (any cell options but dropout)."""
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

    def _hand_written(self) -> bool:
        cell = self.cell
        return (
            not self.unroll
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
        )

    def _sequence(self, projected, states: list, keep):
        h0, c0 = states
        hs, c_last = lstm_sequence(projected, h0, c0, ops.copy(self.cell.recurrent_kernel), keep)
        return hs, [hs[-1], c_last]

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
    """`keras.layers.GRU` with the input projection outside the time loop and, for Keras' default cell (sigmoid
    gates, tanh, `reset_after`), a hand-written backward pass (`gru_sequence`)."""

    def _hand_written(self) -> bool:
        cell = self.cell
        return (
            not self.unroll
            and cell.reset_after
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
        )

    def _sequence(self, projected, states: list, keep):
        cell = self.cell
        bias = ops.copy(cell.bias[1]) if cell.use_bias else None
        hs = gru_sequence(projected, states[0], ops.copy(cell.recurrent_kernel), bias, keep)
        return hs, [hs[-1]]

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
    """`keras.layers.SimpleRNN` with the input projection outside the time loop and, with tanh, a hand-written
    backward pass (`simple_rnn_sequence`)."""

    def _hand_written(self) -> bool:
        return not self.unroll and self.cell.activation is keras.activations.tanh

    def _sequence(self, projected, states: list, keep):
        hs = simple_rnn_sequence(projected, states[0], ops.copy(self.cell.recurrent_kernel), keep)
        return hs, [hs[-1]]

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
        for index, ((layer, dropout), variables) in enumerate(zip(self.pairs, self.states)):
            initial = [ops.cast(ops.convert_to_tensor(v) * lane, x.dtype) for v in variables]
            x, final = layer.run_carried(x, initial, keep, ids if index == 0 else None)
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
    hs, c_last = _recurrent_sequence(_LstmMath, projected, [h0, c0], kernel, None, keep)
    return hs, c_last


def gru_sequence(projected, h0, kernel, bias=None, keep=None):
    """Keras' GRU with `reset_after` (its default: the recurrent bias inside the reset product), sigmoid gates
    and tanh, over a whole sequence, with its own backward pass; every step's h (T, B, U).

    Time-major as `lstm_sequence`: `projected` is the input projection plus the input bias (T, B, 3U) in Keras'
    gate order (update z, reset r, candidate); `kernel` the recurrent kernel (U, 3U), `bias` the recurrent bias
    (3U,) or None; `keep` as `lstm_sequence`'s. Per step: z, r = sigmoid(x_zr + (h·kernel + bias)_zr),
    n = tanh(x_n + r * (h·kernel + bias)_n), h = z * h + (1 - z) * n.
    """
    return _recurrent_sequence(_GruMath, projected, [h0], kernel, bias, keep)[0]


def simple_rnn_sequence(projected, h0, kernel, keep=None):
    """A tanh RNN, h = tanh(x + h·kernel), over a whole sequence with its own backward pass; every step's h
    (T, B, U). Time-major, `projected` (T, B, U) the input projection plus bias, `keep` as `lstm_sequence`'s."""
    return _recurrent_sequence(_SimpleRnnMath, projected, [h0], kernel, None, keep)[0]


def _recurrent_sequence(math: type[_CellMath], projected, initial_states: list, kernel, bias, keep):
    """The loops and backward pass `lstm_sequence`, `gru_sequence` and `simple_rnn_sequence` share; `math` is
    the cell's arithmetic (`_LstmMath`, `_GruMath`, `_SimpleRnnMath`). Returns every step's h (T, B, U) and the
    final states after h (the last h is the last step's).

    The forward loop keeps what the cell's backward step needs (a (T, B, kU) sequence whose first blocks are
    the states, h first); the backward loop carries only the states' gradients back, and the recurrent kernel's
    (and bias') gradient is one product over the whole sequence afterwards. With `keep`, the states are
    multiplied by keep[t] before step t, and so are the gradients reaching a step's incoming states.
    """
    kept, biased = keep is not None, bias is not None

    @ops.custom_gradient
    def run(projected, kernel, keep, *rest):
        bias, states0 = (rest[0], list(rest[1:])) if biased else (None, list(rest))
        units = kernel.shape[0]
        cell = math(units, projected.dtype)

        def forward_step(inputs, states):
            if kept:
                states = [state * inputs[1] for state in states]
            recurrent = ops.matmul(states[0], kernel)
            return cell.forward(inputs[0], states, recurrent + bias if biased else recurrent)

        saved, finals = _scan(forward_step, (projected, keep) if kept else (projected,), states0)
        blocks = [saved[..., k * units : (k + 1) * units] for k in range(saved.shape[-1] // units)]

        def grad(*upstream, **kwargs):
            # TensorFlow passes one gradient per output; JAX one tuple of them.
            if len(upstream) == 1 and isinstance(upstream[0], (tuple, list)):
                upstream = tuple(upstream[0])
            d_hs, *d_finals = upstream
            # The states each step started from (after its keep factor).
            befores = [ops.concatenate([s0[None], block[:-1]], axis=0) for s0, block in zip(states0, blocks)]
            if kept:
                befores = [before * keep for before in befores]
            kernel_t = ops.transpose(kernel)

            def backward_step(inputs, d_states):
                d_states = [d_states[0] + inputs[0], *d_states[1:]]
                d_projected, d_recurrent, d_states = cell.backward(inputs[1 : len(inputs) - kept], d_states)
                through = ops.matmul(d_recurrent, kernel_t)
                d_states = [through if d_states[0] is None else d_states[0] + through, *d_states[1:]]
                if kept:  # the gradient reaching a step's incoming state passes through its keep factor
                    d_states = [d_state * inputs[-1] for d_state in d_states]
                return d_projected, d_states

            # One sequence per saved quantity (see `lstm_sequence`): d_out, the cell's inputs [, keep].
            sequences = (d_hs, *cell.backward_inputs(blocks, befores))
            d_projected, d_states0 = _scan(
                backward_step,
                (*sequences, keep) if kept else sequences,
                [ops.zeros_like(states0[0]), *d_finals],
                True,
            )
            d_recurrent = cell.recurrent_gradients(d_projected, blocks)
            d_kernel = ops.einsum("tbu,tbg->ug", befores[0], d_recurrent)
            d_bias = [ops.sum(d_recurrent, axis=(0, 1))] if biased else []
            return (d_projected, d_kernel, ops.zeros_like(keep), *d_bias, *d_states0)

        return (blocks[0], *finals[1:]), grad

    # Without `keep` a (1, B, 1) stand-in keeps one signature; the loops never read it.
    stand_in = keep if kept else ops.ones_like(projected[:1, :, :1])
    return run(projected, kernel, stand_in, *([bias] if biased else []), *initial_states)


class _CellMath:
    """A cell's arithmetic for `_recurrent_sequence`: what its loops read and keep, one step forward and back."""

    def __init__(self, units: int, dtype):
        pass

    def forward(self, x, states, recurrent):
        """(what the backward pass keeps of the step, its outgoing states) from the step's input projection x,
        its incoming states and its recurrent product h·kernel (+ bias)."""
        raise NotImplementedError

    @staticmethod
    def backward_inputs(blocks, befores) -> tuple:
        """The sequences the backward loop reads, from the kept blocks (T, B, U) each and the incoming states."""
        raise NotImplementedError

    @staticmethod
    def backward(inputs, d_states):
        """(gradient of the step's input, of its recurrent product, of its incoming states not through the
        kernel (None: none)) from the gradients of its outgoing states."""
        raise NotImplementedError

    @staticmethod
    def recurrent_gradients(d_projected, blocks):
        """The gradient of every step's recurrent product (h·kernel + bias) from that of its input."""
        return d_projected


class _LstmMath(_CellMath):
    """The LSTM cell for `_recurrent_sequence`: sigmoid gates and tanh in Keras' gate order (input, forget,
    candidate, output); states h, c; kept per step: h, c and the four gate activations."""

    def __init__(self, units: int, dtype):
        self.constants = _gate_constants(units, dtype)

    def forward(self, x, states, recurrent):
        _, c = states
        act = _gate_activations(x + recurrent, *self.constants)
        i, f, g, o = ops.split(act, 4, axis=-1)
        c = f * c + i * g
        h = o * ops.tanh(c)
        return ops.concatenate([h, c, act], axis=-1), [h, c]

    @staticmethod
    def backward_inputs(blocks, befores) -> tuple:
        return (*blocks[1:6], befores[1])  # c, i, f, g, o, the incoming c

    @staticmethod
    def backward(inputs, d_states):
        dh, dc = d_states
        c, i, f, g, o, c_prev = inputs
        tanh_c = ops.tanh(c)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz = ops.concatenate(
            [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
            axis=-1,
        )
        return dz, dz, [None, dc * f]


class _GruMath(_CellMath):
    """The GRU cell with `reset_after` for `_recurrent_sequence` (see `gru_sequence`); kept per step: h, z, r,
    n and the candidate's recurrent part (h·kernel + bias)_n."""

    @staticmethod
    def forward(x, states, recurrent):
        (h,) = states
        # The gates' sigmoid in one kernel over the whole row (its last third unused; see `lstm_sequence`). Reading
        # the candidate's input columns as a sequence of their own rather than a slice of x timed the same.
        z, r, _ = ops.split(ops.sigmoid(x + recurrent), 3, axis=-1)
        recurrent_n = ops.split(recurrent, 3, axis=-1)[2]
        n = ops.tanh(ops.split(x, 3, axis=-1)[2] + r * recurrent_n)
        h = z * h + (1 - z) * n
        return ops.concatenate([h, z, r, n, recurrent_n], axis=-1), [h]

    @staticmethod
    def backward_inputs(blocks, befores) -> tuple:
        return (*blocks[1:5], befores[0])  # z, r, n, (h·kernel + bias)_n, the incoming h

    @staticmethod
    def backward(inputs, d_states):
        (dh,) = d_states
        z, r, n, recurrent_n, h_prev = inputs
        d_n = dh * (1 - z) * (1 - n * n)
        d_z = dh * (h_prev - n) * z * (1 - z)
        d_r = d_n * recurrent_n * r * (1 - r)
        return (
            ops.concatenate([d_z, d_r, d_n], axis=-1),
            ops.concatenate([d_z, d_r, d_n * r], axis=-1),
            [dh * z],
        )

    @staticmethod
    def recurrent_gradients(d_projected, blocks):
        d_zr, d_n = ops.split(d_projected, [2 * blocks[0].shape[-1]], axis=-1)
        return ops.concatenate([d_zr, d_n * blocks[2]], axis=-1)


class _SimpleRnnMath(_CellMath):
    """The tanh RNN cell for `_recurrent_sequence`; kept per step: h."""

    @staticmethod
    def forward(x, states, recurrent):
        h = ops.tanh(x + recurrent)
        return h, [h]

    @staticmethod
    def backward_inputs(blocks, befores) -> tuple:
        return (blocks[0],)

    @staticmethod
    def backward(inputs, d_states):
        (h,) = inputs
        d = d_states[0] * (1 - h * h)
        return d, d, [None]


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

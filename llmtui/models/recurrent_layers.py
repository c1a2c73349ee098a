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
        outputs, c_last = lstm_sequence(self._project(sequences), h0, c0, ops.copy(cell.recurrent_kernel))
        h_last = outputs[:, -1]
        return h_last, outputs, [h_last, c_last]

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
        projected = self._project(sequences)
        outputs, c_last = lstm_sequence(
            projected, h0, c0, ops.copy(cell.recurrent_kernel), ops.cast(keep, projected.dtype)
        )
        return outputs, [outputs[:, -1], c_last]

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

    `projected` is the input projection plus bias (B, T, 4U) in Keras' gate order (input, forget, candidate,
    output); `kernel` the recurrent kernel (U, 4U). Returns every step's h (B, T, U) and the last cell state.
    With `keep` (B, T, 1), h and c are multiplied by keep[:, t] before step t (0 = start afresh there).

    Autodiff through the time loop multiplies out the recurrent kernel's gradient one step at a time, a small
    product and a (U, 4U) sum per step. Here the backward loop only carries dh and dc back, and the kernel's
    gradient is one product over the whole sequence afterwards. For the 2×256 LSTM's two recurrences alone
    (forward and backward) this measured 67–71 → 56–58 ms on TensorFlow and no change on JAX; in the whole
    training step, 98 → 77 ms on TensorFlow and 104 → 83 ms on JAX.
    """
    if keep is not None:
        return _lstm_sequence_kept(projected, h0, c0, kernel, keep)

    @ops.custom_gradient
    def run(projected, h0, c0, kernel):
        units = ops.shape(h0)[-1]

        def forward_step(z_input, states):
            h, c = states
            i, f, g, o = ops.split(z_input + ops.matmul(h, kernel), 4, axis=-1)
            i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
            c = f * c + i * g
            h = o * ops.tanh(c)
            return ops.concatenate([h, c, i, f, g, o], axis=-1), [h, c]

        # Each step's h, c and gate activations, kept for the backward pass: (B, T, 6U).
        _, saved, (_, c_last) = keras.src.backend.rnn(
            forward_step, projected, [h0, c0], input_length=projected.shape[1]
        )
        hs = saved[..., :units]

        def grad(*upstream, **kwargs):
            # TensorFlow passes one gradient per output; JAX one tuple of them.
            d_hs, d_c_last = upstream[0] if len(upstream) == 1 else upstream
            c_before = ops.concatenate([c0[:, None], saved[:, :-1, units : 2 * units]], axis=1)
            kernel_t = ops.transpose(kernel)

            def backward_step(step_inputs, states):
                dh, dc = states
                d_h_out, h, c, i, f, g, o, c_prev = ops.split(step_inputs, 8, axis=-1)
                dh = dh + d_h_out
                tanh_c = ops.tanh(c)
                dc = dc + dh * o * (1 - tanh_c * tanh_c)
                dz = ops.concatenate(
                    [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
                    axis=-1,
                )
                return dz, [ops.matmul(dz, kernel_t), dc * f]

            step_inputs = ops.concatenate([d_hs, saved, c_before], axis=-1)  # (B, T, 8U)
            _, dz, (dh0, dc0) = keras.src.backend.rnn(
                backward_step,
                step_inputs,
                [ops.zeros_like(h0), d_c_last],
                go_backwards=True,
                input_length=step_inputs.shape[1],
            )
            dz = ops.flip(dz, axis=1)  # produced last step first
            h_before = ops.concatenate([h0[:, None], hs[:, :-1]], axis=1)
            d_kernel = ops.einsum("btu,btg->ug", h_before, dz)
            return dz, dh0, dc0, d_kernel

        return (hs, c_last), grad

    return run(projected, h0, c0, kernel)


def _lstm_sequence_kept(projected, h0, c0, kernel, keep):
    """`lstm_sequence` with the state multiplied by `keep` (B, T, 1) before each step; the same backward pass,
    where the gradients reaching a step's incoming state pass through the same factor."""

    @ops.custom_gradient
    def run(projected, h0, c0, kernel, keep):
        units = ops.shape(h0)[-1]

        def forward_step(z_and_keep, states):
            kept = z_and_keep[..., -1:]
            h, c = states[0] * kept, states[1] * kept
            i, f, g, o = ops.split(z_and_keep[..., :-1] + ops.matmul(h, kernel), 4, axis=-1)
            i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
            c = f * c + i * g
            h = o * ops.tanh(c)
            return ops.concatenate([h, c, i, f, g, o], axis=-1), [h, c]

        _, saved, (_, c_last) = keras.src.backend.rnn(
            forward_step, ops.concatenate([projected, keep], axis=-1), [h0, c0], input_length=projected.shape[1]
        )
        hs = saved[..., :units]

        def grad(*upstream, **kwargs):
            d_hs, d_c_last = upstream[0] if len(upstream) == 1 else upstream
            # The state each step started from, after its keep factor.
            c_before = ops.concatenate([c0[:, None], saved[:, :-1, units : 2 * units]], axis=1) * keep
            h_before = ops.concatenate([h0[:, None], hs[:, :-1]], axis=1) * keep
            kernel_t = ops.transpose(kernel)

            def backward_step(step_inputs, states):
                dh, dc = states
                d_h_out, h, c, i, f, g, o, c_prev = ops.split(step_inputs[..., :-1], 8, axis=-1)
                kept = step_inputs[..., -1:]
                dh = dh + d_h_out
                tanh_c = ops.tanh(c)
                dc = dc + dh * o * (1 - tanh_c * tanh_c)
                dz = ops.concatenate(
                    [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
                    axis=-1,
                )
                return dz, [ops.matmul(dz, kernel_t) * kept, dc * f * kept]

            step_inputs = ops.concatenate([d_hs, saved, c_before, keep], axis=-1)  # (B, T, 8U + 1)
            _, dz, (dh0, dc0) = keras.src.backend.rnn(
                backward_step,
                step_inputs,
                [ops.zeros_like(h0), d_c_last],
                go_backwards=True,
                input_length=step_inputs.shape[1],
            )
            dz = ops.flip(dz, axis=1)
            d_kernel = ops.einsum("btu,btg->ug", h_before, dz)
            return dz, dh0, dc0, d_kernel, ops.zeros_like(keep)

        return (hs, c_last), grad

    return run(projected, h0, c0, kernel, keep)


RECURRENT_LAYERS: dict[str, Any] = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}  # name -> Keras layer class


def lstm_pair_sequence(projected, kernel_a, input_kernel_b, bias_b, kernel_b, between=None):
    """Two stacked LSTM layers (sigmoid gates, tanh activations, zero initial states) over a whole sequence,
    run as a wavefront, with a hand-written backward pass. Returns the upper layer's h at every step (B, T, U).

    `projected` is the lower layer's input projection plus bias (B, T, 4U, Keras' gate order i, f, g, o);
    `kernel_a` its recurrent kernel (U, 4U); the upper layer reads the lower one's h through `input_kernel_b`
    (U, 4U) and `bias_b` (4U,), and has recurrent kernel `kernel_b`. `between` (B, T, U), when given,
    multiplies the lower layer's h before the upper layer reads it (an inter-layer dropout mask, drawn up front).

    Why a wavefront: a stacked LSTM's step is bound by its 2·T sequential steps, each a small product
    (B×U by U×4U) and a few small elementwise kernels whose fixed cost is as large as their work. Iteration j
    of one loop runs the lower layer's step j and the upper layer's step j-1, which do not depend on each
    other: T+1 iterations instead of 2·T, each with one product of the lower h by both layers' kernels, one
    gate kernel over both layers' gates and one cell-state kernel over both layers' states. The backward loop
    runs the same iterations in reverse. The upper layer's state is held at zero in iteration 0 (its step -1)
    by `live`, and the lower layer's step T reads a zero input and reaches nothing, so its gradient is zero.
    Gate activations are one tanh per gate: sigmoid(x) = (1 + tanh(x/2)) / 2, the same function (differences
    of float32 rounding) as one kernel instead of separate sigmoid and tanh kernels.
    The math is that of two `lstm_sequence` calls (gradients within 3e-7, TensorFlow and JAX).

    PROTOTYPE, NOT WIRED IN: measured slower than two `lstm_sequence` calls on TensorFlow/XLA CPU (2×256,
    B 12, T 64, forward and backward, one thread, CPU time: 36.2 against 33.8 ms): XLA's CPU backend runs
    every concatenate and most slices in a loop body as separate kernels, so the combined gate and state
    kernels became 26 and 33 kernels per iteration against 11 and 13 per layer-step (bench/README.md).
    """
    units = kernel_a.shape[0]
    dropout = between is not None
    # Per-column constants of the gate activation act = tanh(z * scale) * scale + offset over [lower | upper]:
    # scale 0.5 and offset 0.5 for the sigmoid gates (i, f, o), 1 and 0 for the candidate g.
    gate_scale = ops.convert_to_tensor(([0.5] * (2 * units) + [1.0] * units + [0.5] * units) * 2, projected.dtype)
    gate_offset = ops.convert_to_tensor(([0.5] * (2 * units) + [0.0] * units + [0.5] * units) * 2, projected.dtype)

    def per_gate(act):
        """(B, 8U) activations of both layers -> i, f, g, o, each (B, 2U) as [lower | upper]."""
        lower, upper = ops.split(act, 2, axis=-1)
        return [ops.concatenate(pair, axis=-1) for pair in zip(ops.split(lower, 4, -1), ops.split(upper, 4, -1))]

    @ops.custom_gradient
    def run(projected, kernel_a, input_kernel_b, bias_b, kernel_b, between):
        batch, steps = ops.shape(projected)[0], projected.shape[1]
        zeros_state = ops.zeros((batch, 2 * units), projected.dtype)
        # Iteration j reads the lower layer's input of step j (zero for the step T that is not there), the
        # factor on the lower h that the upper layer's step j-1 reads, and `live` (0 on the upper half at j=0).
        inputs_a = ops.pad(projected, [[0, 0], [0, 1], [0, 0]])
        scales = ops.pad(between, [[0, 0], [1, 0], [0, 0]], constant_values=1.0)
        live = ops.concatenate(
            [ops.ones((batch, steps + 1, units), projected.dtype), ops.pad(ops.ones_like(between), [[0, 0], [1, 0], [0, 0]])],
            axis=-1,
        )
        lower_kernels = ops.concatenate([kernel_a, input_kernel_b], axis=-1)  # (U, 8U): h_a -> z_a, z_b
        upper_bias = ops.concatenate([ops.zeros_like(bias_b), bias_b], axis=-1)

        def forward_step(step_inputs, states):
            h, c = states
            z_input, scale, alive = ops.split(step_inputs, [4 * units, 5 * units], axis=-1)
            h_a, h_b = h[:, :units], h[:, units:]
            from_a = ops.matmul(h_a, kernel_a if dropout else lower_kernels)
            if dropout:
                from_a = ops.concatenate([from_a, ops.matmul(h_a * scale, input_kernel_b)], axis=-1)
            z = from_a + ops.concatenate([z_input, ops.matmul(h_b, kernel_b)], axis=-1) + upper_bias
            act = ops.tanh(z * gate_scale) * gate_scale + gate_offset
            i, f, g, o = per_gate(act)
            c = (f * c + i * g) * alive
            h = o * ops.tanh(c)
            return ops.concatenate([act, c, h], axis=-1), [h, c]

        _, saved, _ = keras.src.backend.rnn(
            forward_step,
            ops.concatenate([inputs_a, scales, live], axis=-1),
            [zeros_state, zeros_state],
            input_length=steps + 1,
        )
        # saved[:, j]: iteration j's gate activations (8U), cell states (2U) and h (2U), each [lower | upper].
        hs = saved[..., 10 * units :]
        outputs = hs[:, 1:, units:]  # upper layer's h of steps 0..T-1

        def grad(*upstream, **kwargs):
            d_out = ops.pad(upstream[0], [[0, 0], [1, 0], [0, 0]])  # iteration j holds the upper step j-1
            cs = saved[..., 8 * units : 10 * units]
            c_before = ops.pad(cs[:, :-1], [[0, 0], [1, 0], [0, 0]])
            back_lower = ops.transpose(kernel_a if dropout else lower_kernels)  # (4U or 8U, U)
            input_kernel_b_t, kernel_b_t = ops.transpose(input_kernel_b), ops.transpose(kernel_b)

            def backward_step(step_inputs, states):
                dh, dc = states
                act, c, c_prev, d_h_out, alive, scale = ops.split(
                    step_inputs, [8 * units, 10 * units, 12 * units, 13 * units, 15 * units], axis=-1
                )
                i, f, g, o = per_gate(act)
                dh = (dh + ops.concatenate([ops.zeros_like(d_h_out), d_h_out], axis=-1)) * alive
                tanh_c = ops.tanh(c)
                dc = (dc * alive + dh * o * (1 - tanh_c * tanh_c)) * alive
                parts = [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)]
                halves = [ops.split(part, 2, axis=-1) for part in parts]
                dz = ops.concatenate([half[0] for half in halves] + [half[1] for half in halves], axis=-1)
                dz_a, dz_b = dz[:, : 4 * units], dz[:, 4 * units :]
                if dropout:
                    dh_a = ops.matmul(dz_a, back_lower) + ops.matmul(dz_b, input_kernel_b_t) * scale
                else:
                    dh_a = ops.matmul(dz, back_lower)
                return dz, [ops.concatenate([dh_a, ops.matmul(dz_b, kernel_b_t)], axis=-1), dc * f]

            step_inputs = ops.concatenate([saved[..., : 10 * units], c_before, d_out, live, scales], axis=-1)
            _, dz, _ = keras.src.backend.rnn(
                backward_step,
                step_inputs,
                [zeros_state, zeros_state],
                go_backwards=True,
                input_length=steps + 1,
            )
            dz = ops.flip(dz, axis=1)  # produced last iteration first
            dz_a = dz[:, :-1, : 4 * units]  # lower steps 0..T-1
            dz_b = dz[:, 1:, 4 * units :]  # upper steps 0..T-1
            hs_a, hs_b = hs[:, :-1, :units], hs[:, 1:, units:]
            h_before_a = ops.pad(hs_a[:, :-1], [[0, 0], [1, 0], [0, 0]])
            h_before_b = ops.pad(hs_b[:, :-1], [[0, 0], [1, 0], [0, 0]])
            return (
                dz_a,
                ops.einsum("btu,btg->ug", h_before_a, dz_a),
                ops.einsum("btu,btg->ug", hs_a * between, dz_b),
                ops.sum(dz_b, axis=(0, 1)),
                ops.einsum("btu,btg->ug", h_before_b, dz_b),
                ops.zeros_like(between),
            )

        return outputs, grad

    if between is None:
        between = ops.ones_like(projected[..., :units])
    return run(projected, kernel_a, input_kernel_b, bias_b, kernel_b, between)

"""Fused GPU kernels measured by `bench_gpu.py`'s variants: what they would save, before any becomes an engine path.

Each `use_*` function reroutes one operation of every model built afterwards in this process, for the
variants that name it. On a machine without a GPU the kernels run in Pallas' interpreter, which is how the
tests check that they compute what the engine computes (`tests/test_bench_gpu_kernels.py`).

- `use_pallas_layer_norm`: every Keras LayerNormalization through JAX's own fused Pallas (Triton) kernels,
  forward and backward (`jax.experimental.pallas.ops.gpu.layer_norm`).
- `use_pallas_loss`: the engine's next-token loss (`next_token_nll`) with its logsumexp in one pass over each
  row of logits (a running maximum and sum of exponentials), and its gradient, softmax minus one-hot, in one
  more pass. XLA takes two passes for the logsumexp (the maximum, then the sum), one for the gradient.
"""

from __future__ import annotations

import functools

BLOCK = 4096  # logits per step of a row's loop: a power of two, as Triton's blocks must be
_FAR_BELOW = -1e30  # a running maximum's start: finite, so exp(start - start) is never exp(inf - inf)


def _interpret() -> bool:
    import jax

    return jax.devices()[0].platform != "gpu"


def _row_logsumexp_kernel(logits_ref, lse_ref, *, block: int):
    """logsumexp of one row, in one pass: per lane a running maximum and a sum of exponentials below it."""
    import jax.numpy as jnp
    from jax import lax
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    width = logits_ref.shape[0]

    def body(i, carry):
        top, total = carry
        index = i * block + jnp.arange(block)
        x = plgpu.load(logits_ref.at[index], mask=index < width, other=-jnp.inf).astype(jnp.float32)
        new_top = jnp.maximum(top, x)
        return new_top, total * jnp.exp(top - new_top) + jnp.exp(x - new_top)

    start = (jnp.full(block, _FAR_BELOW, jnp.float32), jnp.zeros(block, jnp.float32))
    top, total = lax.fori_loop(0, pl.cdiv(width, block), body, start)
    peak = top.max()
    lse_ref[...] = peak + jnp.log((total * jnp.exp(top - peak)).sum())


def _row_gradient_kernel(logits_ref, lse_ref, target_ref, upstream_ref, grad_ref, *, block: int):
    """(softmax - one-hot) x upstream for one row, written in the logits' dtype."""
    import jax.numpy as jnp
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    width = logits_ref.shape[0]
    lse, target, upstream = lse_ref[...], target_ref[...], upstream_ref[...]

    @pl.loop(0, pl.cdiv(width, block))
    def _(i):
        index = i * block + jnp.arange(block)
        mask = index < width
        x = plgpu.load(logits_ref.at[index], mask=mask, other=0.0).astype(jnp.float32)
        grad = (jnp.exp(x - lse) - (index == target).astype(jnp.float32)) * upstream
        plgpu.store(grad_ref.at[index], grad.astype(grad_ref.dtype), mask=mask)


def _per_row(kernel, out_shape, rows_in_axes, interpret: bool, name: str):
    """`kernel` (one row) as a `pallas_call` mapped over the rows: a grid of one program per row."""
    import jax
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    call = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(),
        compiler_params=plgpu.CompilerParams(num_warps=8),
        interpret=interpret,
        name=name,
    )
    return jax.vmap(call, in_axes=rows_in_axes)


def fused_next_token_nll(targets, logits, interpret: bool | None = None):
    """What `llmtui.training.trainer.next_token_nll` computes (per position, float32), with the fused kernels."""
    import jax
    import jax.numpy as jnp

    interpret = _interpret() if interpret is None else interpret
    if targets.ndim == logits.ndim:
        targets = targets[..., 0]
    shape, width = logits.shape[:-1], logits.shape[-1]
    rows = logits.reshape(-1, width)
    ids = targets.reshape(-1).astype(jnp.int32)

    logsumexp = _per_row(
        functools.partial(_row_logsumexp_kernel, block=BLOCK),
        jax.ShapeDtypeStruct((), jnp.float32),
        0,
        interpret,
        "next_token_logsumexp",
    )
    gradient = _per_row(
        functools.partial(_row_gradient_kernel, block=BLOCK),
        jax.ShapeDtypeStruct((width,), rows.dtype),
        (0, 0, 0, 0),
        interpret,
        "next_token_gradient",
    )

    def picked(rows, ids):
        return jnp.take_along_axis(rows, ids[:, None], axis=-1)[:, 0].astype(jnp.float32)

    @jax.custom_vjp
    def nll(rows, ids):
        return logsumexp(rows) - picked(rows, ids)

    def forward(rows, ids):
        lse = logsumexp(rows)
        return lse - picked(rows, ids), (rows, lse, ids)

    def backward(saved, upstream):
        rows, lse, ids = saved
        return gradient(rows, lse, ids, upstream.astype(jnp.float32)), None  # no gradient for the targets

    nll.defvjp(forward, backward)
    return nll(rows, ids).reshape(shape)


def use_pallas_loss() -> None:
    """The engine's next-token loss through `fused_next_token_nll` in this process (JAX backend)."""
    from llmtui.training import trainer

    trainer.next_token_nll = fused_next_token_nll


def use_pallas_layer_norm() -> None:
    """Every Keras LayerNormalization in this process through JAX's fused Pallas LayerNorm kernels."""
    import keras
    from jax.experimental.pallas.ops.gpu.layer_norm import layer_norm

    interpret = _interpret()

    def call(self, inputs):
        x = keras.ops.convert_to_tensor(inputs)
        gamma = keras.ops.convert_to_tensor(self.gamma)
        beta = keras.ops.zeros_like(gamma) if self.beta is None else keras.ops.convert_to_tensor(self.beta)
        rows = x.reshape(-1, x.shape[-2], x.shape[-1])  # the kernel takes (batch, time, features)
        # layer_norm(x, weight, bias, num_warps, num_stages, eps, backward_pass_impl, interpret)
        out = layer_norm(rows, gamma, beta, None, 3, self.epsilon, "triton", interpret)
        return keras.ops.cast(out.reshape(x.shape), self.compute_dtype)

    keras.layers.LayerNormalization.call = call

"""Compile a function that calls Keras layers, on whichever backend Keras runs.

TensorFlow: `tf.function(jit_compile=True)` (variables are read by reference, so later weight updates are
seen). JAX: `jax.jit` over a stateless version that receives the variables' current values as arguments
(read at every call, so a model still training is sampled with its current weights). Torch runs eagerly.
"""

from __future__ import annotations

from collections.abc import Callable


def compile_function(fn: Callable, variables) -> Callable:
    """`fn(*arrays)` compiled with XLA where the backend allows; `variables` are the Keras variables it reads."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend == "jax":
        import jax

        variables = list(variables)

        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*args)

        jitted = jax.jit(stateless)
        return lambda *args: jitted([v.value for v in variables], *args)
    return fn

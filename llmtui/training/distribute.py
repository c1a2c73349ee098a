"""Data parallel training over every local device, per backend.

JAX: `keras.distribution.DataParallel` (a mesh over the devices; each batch is split along its first
axis). TensorFlow: `tf.distribute.MirroredStrategy` (the model is built and compiled in its scope).
On a CPU-only machine, `XLA_FLAGS=--xla_force_host_platform_device_count=N` gives N virtual devices on
both backends (TensorFlow gets N logical CPUs), which is how the tests exercise this path. Several hosts:
JAX joins them when JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES, JAX_PROCESS_ID) is set; TensorFlow
uses MultiWorkerMirroredStrategy when TF_CONFIG is set (neither is exercised by the tests).
"""

from __future__ import annotations

import contextlib
import os
import re

from llmtui.errors import LlmtuiError


def virtual_device_count() -> int:
    match = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(match.group(1)) if match else 0


def split_tensorflow_cpu() -> None:
    """Give TensorFlow the virtual CPUs asked for in XLA_FLAGS (must run before TensorFlow starts)."""
    count = virtual_device_count()
    if count < 2:
        return
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    if not tf.config.list_physical_devices("GPU") and cpus:
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # TensorFlow already started: keep what it has
            pass


@contextlib.contextmanager
def data_parallel(backend: str, batch_size: int):
    """Set up data parallelism for the block's model building and training; yields the device count."""
    if backend == "jax":
        import keras

        if os.environ.get("JAX_COORDINATOR_ADDRESS"):  # several hosts: join them before listing devices
            import jax

            jax.distributed.initialize()
        devices = keras.distribution.list_devices()
        _check_batch(batch_size, len(devices))
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        split_tensorflow_cpu()
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        _check_batch(batch_size, len(devices))
        if os.environ.get("TF_CONFIG"):  # several workers, as TF_CONFIG describes them
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    else:
        raise LlmtuiError(f"train.distribute = 'data_parallel' is not supported on the {backend} backend",
                          hint="use the jax or tensorflow backend")


def _check_batch(batch_size: int, devices: int) -> None:
    if batch_size % devices:
        raise LlmtuiError(f"train.batch_size ({batch_size}) must be a multiple of the {devices} devices for data "
                          "parallel training", hint=f"e.g. train.batch_size={devices * max(1, batch_size // devices)}")

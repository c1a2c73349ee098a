"""Training over several devices, per backend: data parallel, and (JAX) model parallel.

JAX: `keras.distribution.DataParallel` (a mesh over the devices; each batch is split along its first
axis). TensorFlow: `tf.distribute.MirroredStrategy` (the model is built and compiled in its scope).
On a CPU-only machine, `XLA_FLAGS=--xla_force_host_platform_device_count=N` gives N virtual devices on
both backends (TensorFlow gets N logical CPUs), which is how the tests exercise this path. Several
processes: JAX joins them when JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES, JAX_PROCESS_ID) is set,
TensorFlow (MultiWorkerMirroredStrategy) when TF_CONFIG is (see llmtui.training.cluster; both tested with two
local processes).

Model parallel (JAX): `keras.distribution.ModelParallel` over a 2-D device mesh (`batch`, `model`). Each
batch is split along the `batch` axis; the gpt/llama weights named in MODEL_PARALLEL_RULES are split along
the `model` axis, Megatron style (input projections by their output columns, output projections by their
input rows, embeddings by their feature columns), and everything else (norms, output biases) is replicated.
The optimizer's slots take their variables' layouts, so parameters, gradients and optimizer state all take
1/model of the memory on each device; XLA inserts the collectives the layouts imply.
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

        from llmtui.training import cluster

        cluster.join(backend)  # several processes: join them before listing devices
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

        from llmtui.training import cluster

        cluster.join(backend)  # several processes (TF_CONFIG): their strategy is made when they join
        strategy = cluster.tensorflow_strategy()
        if strategy is None:
            split_tensorflow_cpu()
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        _check_batch(batch_size, strategy.num_replicas_in_sync)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    else:
        raise LlmtuiError(
            f"train.distribute = 'data_parallel' is not supported on the {backend} backend",
            hint="use the jax or tensorflow backend",
        )


# (variable path pattern, the axis split over the mesh's `model` axis); any other variable is replicated.
# Patterns match whole paths (keras.distribution.LayoutMap uses re.fullmatch).
MODEL_PARALLEL_RULES = (
    (r"(.*/)?token_embedding/embeddings", 1),
    (r"(.*/)?token_embedding/reverse_embeddings", 0),  # the untied output projection (dim, vocab)
    (r"(.*/)?position_embedding/embeddings", 1),
    (r".*attention/qkv/kernel", 1),
    (r".*attention/qkv/bias", 0),
    (r".*attention/out/kernel", 0),
    (r".*mlp_in/kernel", 1),
    (r".*mlp_in/bias", 0),
    (r".*mlp_out/kernel", 0),
)


def sharded_axis(path: str) -> int | None:
    """The axis of the variable at `path` that model parallelism splits, or None (replicated)."""
    for pattern, axis in MODEL_PARALLEL_RULES:
        if re.fullmatch(pattern, path):
            return axis
    return None


def mesh_shape(mesh: list[int], devices: int) -> tuple[int, int]:
    """(data, model) device counts: `train.mesh`, or every device on the model axis."""
    if not mesh:
        return 1, devices
    data, model = mesh
    if data * model != devices:
        raise LlmtuiError(
            f"train.mesh = {list(mesh)} needs {data * model} devices, but there are {devices}",
            hint=f"e.g. train.mesh = [1, {devices}] (all model parallel) or [{devices}, 1]",
        )
    return data, model


def check_model_parallel_shapes(shapes: dict[str, tuple[int, ...]], model_axis: int) -> None:
    """Every split axis must divide evenly over the model axis (JAX shards only even splits)."""
    for path, shape in shapes.items():
        axis = sharded_axis(path)
        if axis is not None and shape[axis] % model_axis:
            raise LlmtuiError(
                f"model parallel over {model_axis} devices cannot split {path} {tuple(shape)} "
                f"along its axis {axis} ({shape[axis]} is not a multiple of {model_axis})",
                hint="choose model.dim (and model.mlp_ratio) so these sizes divide, or another train.mesh",
            )


@contextlib.contextmanager
def model_parallel(backend: str, batch_size: int, mesh: list[int], shapes: dict[str, tuple[int, ...]]):
    """Set up a (batch, model) mesh with the layouts of MODEL_PARALLEL_RULES for a model of these weight
    shapes (see `llmtui.models.cost.weight_shapes`); yields the (data, model) sizes."""
    if backend != "jax":
        raise LlmtuiError(
            f"train.distribute = 'model_parallel' is not supported on the {backend} backend",
            hint="set run.backend = 'jax' (keras.distribution shards variables on JAX only)",
        )
    import keras

    from llmtui.training import cluster

    cluster.join(backend)
    devices = keras.distribution.list_devices()
    data, model = mesh_shape(mesh, len(devices))
    _check_batch(batch_size, data)
    check_model_parallel_shapes(shapes, model)
    device_mesh = keras.distribution.DeviceMesh(shape=(data, model), axis_names=("batch", "model"), devices=devices)
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axis in MODEL_PARALLEL_RULES:
        spec: list[str | None] = [None] * (1 if pattern.endswith("bias") else 2)
        spec[axis] = "model"
        layout_map[pattern] = tuple(spec)
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
    try:
        yield data, model
    finally:
        keras.distribution.set_distribution(previous)


def _check_batch(batch_size: int, devices: int) -> None:
    if batch_size % devices:
        raise LlmtuiError(
            f"train.batch_size ({batch_size}) must be a multiple of the {devices} devices for data parallel training",
            hint=f"e.g. train.batch_size={devices * max(1, batch_size // devices)}",
        )

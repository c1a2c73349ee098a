"""Which process of a multi-process training job this one is, from the standard environment variables.

JAX's multi-controller runtime: every process runs the same program, with `JAX_COORDINATOR_ADDRESS`
(host:port of process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`; `join()` calls
`jax.distributed.initialize` with them, after which `keras.distribution.list_devices()` lists every process's
devices and a data-parallel step spans them (each process hands in its own rows of the global batch).

TensorFlow: `TF_CONFIG` (`{"cluster": {"worker": ["host0:port", ...]}, "task": {"type": "worker", "index": i}}`;
a "chief" entry counts as worker 0); `join()` creates the `MultiWorkerMirroredStrategy` at once, before
TensorFlow starts its devices (collectives must be set up first) and while every process is starting (its
constructor waits for all workers). Each process hands `train_on_batch` its own rows; every replica's loss is
scaled by 1/replicas and the gradients are summed across workers (ring all-reduce over gRPC).

Who writes what: process 0, the leader, owns the run folder (its lock, the data, tokenizer and model stages,
TensorBoard logs, checkpoints, evaluation and samples). The other processes read the stages' outputs once the
leader's manifest lists them, train in lockstep, and write nothing; they resume from the leader's checkpoints,
which hold every variable whole (the variables are replicated, so process 0 has them all), so the run folder
must be on a filesystem every process reads (one machine, or a shared mount).

Only the environment is read here (no JAX import), so the CLI can ask cheaply.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from llmtui.errors import LlmtuiError


@dataclass(frozen=True)
class Cluster:
    index: int = 0
    count: int = 1
    coordinator: str = ""
    runtime: str = ""  # "jax" (JAX_* variables) or "tensorflow" (TF_CONFIG)

    @property
    def variables(self) -> str:
        """The environment variables that describe the job (for messages)."""
        return "TF_CONFIG" if self.runtime == "tensorflow" else "JAX_NUM_PROCESSES"

    @property
    def leader(self) -> bool:
        return self.index == 0

    @property
    def multi(self) -> bool:
        return self.count > 1

    def batch_rows(self, batch_size: int) -> slice:
        """This process's rows of every global batch (the whole batch in a single process)."""
        if batch_size % self.count:
            raise LlmtuiError(
                f"train.batch_size ({batch_size}) must be a multiple of the {self.count} processes",
                hint=f"e.g. train.batch_size={self.count * max(1, batch_size // self.count)}",
            )
        share = batch_size // self.count
        return slice(self.index * share, (self.index + 1) * share)


def current() -> Cluster:
    """This process's place in the job: JAX's variables when JAX_COORDINATOR_ADDRESS is set, TensorFlow's when
    TF_CONFIG is, else one process."""
    coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    if coordinator and os.environ.get("TF_CONFIG"):
        raise LlmtuiError(
            "both JAX_COORDINATOR_ADDRESS and TF_CONFIG are set: which job should this process join?",
            hint="unset TF_CONFIG for a JAX job, or the JAX_* variables for a TensorFlow one",
        )
    if os.environ.get("TF_CONFIG"):
        return _from_tf_config(os.environ["TF_CONFIG"])
    if not coordinator:
        return Cluster()
    try:
        count = int(os.environ.get("JAX_NUM_PROCESSES", ""))
        index = int(os.environ.get("JAX_PROCESS_ID", ""))
    except ValueError:
        raise LlmtuiError(
            "JAX_COORDINATOR_ADDRESS is set but JAX_NUM_PROCESSES or JAX_PROCESS_ID is missing or not a number",
            hint="set all three on every process, JAX_PROCESS_ID from 0",
        ) from None
    if count < 1 or not 0 <= index < count:
        raise LlmtuiError(f"JAX_PROCESS_ID={index} is not between 0 and JAX_NUM_PROCESSES-1 ({count - 1})")
    return Cluster(index, count, coordinator, "jax")


def _from_tf_config(text: str) -> Cluster:
    try:
        spec = json.loads(text)
        cluster, task = spec.get("cluster") or {}, spec.get("task") or {}
        kind, index = task.get("type", ""), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError):
        raise LlmtuiError(
            "TF_CONFIG is not a JSON object with 'cluster' and 'task'",
            hint='e.g. {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}',
        ) from None
    others = sorted(set(cluster) - {"chief", "worker"})
    if others or kind not in ("chief", "worker"):
        raise LlmtuiError(
            f"TF_CONFIG: llmtui trains with workers only (MultiWorkerMirroredStrategy), not "
            f"{', '.join(others) or repr(kind)}",
            hint="list every process under cluster.worker",
        )
    chief, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    addresses = chief + workers
    position = index if kind == "chief" else len(chief) + index
    if not addresses or not 0 <= position < len(addresses) or (kind == "chief" and index != 0):
        raise LlmtuiError(f"TF_CONFIG: task {kind} {index} is not in its cluster ({len(addresses)} processes)")
    return Cluster(position, len(addresses), addresses[0], "tensorflow")


_joined = False
_strategy = None  # TensorFlow's MultiWorkerMirroredStrategy, made once by join()


def tensorflow_strategy():
    """The MultiWorkerMirroredStrategy of the TensorFlow job this process joined (None otherwise)."""
    return _strategy


def joined() -> bool:
    """Whether this process joined a multi-process job."""
    return _joined


def join(backend: str) -> Cluster:
    """Join the job the environment describes (once per process); returns this process's place in it."""
    global _joined
    cluster = current()
    if not cluster.multi or _joined:
        return cluster
    if cluster.runtime == "tensorflow":
        return _join_tensorflow(cluster, backend)
    if backend != "jax":
        raise LlmtuiError(
            f"JAX_COORDINATOR_ADDRESS describes a {cluster.count}-process job, but the backend is {backend}",
            hint="set run.backend = 'jax' (or KERAS_BACKEND=jax)",
        )
    import jax

    # CPU devices talk through Gloo (GPUs and TPUs use their own collectives); a dead peer is noticed within
    # the heartbeat timeout and stops the others.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.count,
            process_id=cluster.index,
            initialization_timeout=300,
            heartbeat_timeout_seconds=30,
        )
        # Every process starts its devices now, together: starting them exchanges the device topology, which
        # would time out if process 0 did it alone (in its model stage) while the others wait for its files.
        jax.devices()
    except Exception as exc:  # XLA's errors: coordinator unreachable, a process missing
        raise LlmtuiError(
            f"process {cluster.index} of {cluster.count} could not join the job at "
            f"{cluster.coordinator}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
            hint="start every process with the same JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES",
        ) from None
    _joined = True
    return cluster


def _join_tensorflow(cluster: Cluster, backend: str) -> Cluster:
    global _joined, _strategy
    if backend != "tensorflow":
        raise LlmtuiError(
            f"TF_CONFIG describes a {cluster.count}-process TensorFlow job, but the backend is {backend}",
            hint="set run.backend = 'tensorflow' (or KERAS_BACKEND=tensorflow), or unset TF_CONFIG "
            "and use JAX's variables",
        )
    from llmtui.backend import configure_backend

    configure_backend(backend)  # the environment, and the virtual CPUs asked for, before TensorFlow starts
    import tensorflow as tf

    try:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        _strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except Exception as exc:  # TensorFlow's errors: a bad address, a port in use, a worker missing
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LlmtuiError(
            f"process {cluster.index} of {cluster.count} could not join the TensorFlow job "
            f"({cluster.coordinator} first): {text}",
            hint="start every process with the same TF_CONFIG cluster, each with its own task index",
        ) from None
    _joined = True
    return cluster

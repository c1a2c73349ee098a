"""Which process of a multi-process training job this one is, from the standard environment variables.

JAX's multi-controller runtime: every process runs the same program, with `JAX_COORDINATOR_ADDRESS`
(host:port of process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`; `join()` calls
`jax.distributed.initialize` with them, after which `keras.distribution.list_devices()` lists every process's
devices and a data-parallel step spans them (each process hands in its own rows of the global batch).

Who writes what: process 0, the leader, owns the run folder (its lock, the data, tokenizer and model stages,
TensorBoard logs, checkpoints, evaluation and samples). The other processes read the stages' outputs once the
leader's manifest lists them, train in lockstep, and write nothing; they resume from the leader's checkpoints,
which hold every variable whole (the variables are replicated, so process 0 has them all), so the run folder
must be on a filesystem every process reads (one machine, or a shared mount).

Only the environment is read here (no JAX import), so the CLI can ask cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from llmtui.errors import LlmtuiError


@dataclass(frozen=True)
class Cluster:
    index: int = 0
    count: int = 1
    coordinator: str = ""

    @property
    def leader(self) -> bool:
        return self.index == 0

    @property
    def multi(self) -> bool:
        return self.count > 1

    def batch_rows(self, batch_size: int) -> slice:
        """This process's rows of every global batch (the whole batch in a single process)."""
        if batch_size % self.count:
            raise LlmtuiError(f"train.batch_size ({batch_size}) must be a multiple of the {self.count} processes",
                              hint=f"e.g. train.batch_size={self.count * max(1, batch_size // self.count)}")
        share = batch_size // self.count
        return slice(self.index * share, (self.index + 1) * share)


def current() -> Cluster:
    """This process's place in the job: JAX's variables when JAX_COORDINATOR_ADDRESS is set, else one process."""
    coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    if not coordinator:
        return Cluster()
    try:
        count = int(os.environ.get("JAX_NUM_PROCESSES", ""))
        index = int(os.environ.get("JAX_PROCESS_ID", ""))
    except ValueError:
        raise LlmtuiError("JAX_COORDINATOR_ADDRESS is set but JAX_NUM_PROCESSES or JAX_PROCESS_ID is missing or "
                          "not a number", hint="set all three on every process, JAX_PROCESS_ID from 0") from None
    if count < 1 or not 0 <= index < count:
        raise LlmtuiError(f"JAX_PROCESS_ID={index} is not between 0 and JAX_NUM_PROCESSES-1 ({count - 1})")
    return Cluster(index, count, coordinator)


_joined = False


def joined() -> bool:
    """Whether this process joined a multi-process job."""
    return _joined


def join(backend: str) -> Cluster:
    """Join the job the environment describes (once per process); returns this process's place in it."""
    global _joined
    cluster = current()
    if not cluster.multi or _joined:
        return cluster
    if backend != "jax":
        raise LlmtuiError(f"JAX_COORDINATOR_ADDRESS describes a {cluster.count}-process job, but the backend is "
                          f"{backend}", hint="set run.backend = 'jax' (or KERAS_BACKEND=jax)")
    import jax

    # CPU devices talk through Gloo (GPUs and TPUs use their own collectives); a dead peer is noticed within
    # the heartbeat timeout and stops the others.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.count,
                                   process_id=cluster.index, initialization_timeout=300,
                                   heartbeat_timeout_seconds=30)
        # Every process starts its devices now, together: starting them exchanges the device topology, which
        # would time out if process 0 did it alone (in its model stage) while the others wait for its files.
        jax.devices()
    except Exception as exc:  # XLA's errors: coordinator unreachable, a process missing
        raise LlmtuiError(f"process {cluster.index} of {cluster.count} could not join the job at "
                          f"{cluster.coordinator}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                          hint="start every process with the same JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES") \
            from None
    _joined = True
    return cluster

"""Batches prepared ahead of the training step, on a background thread, without losing exact resume.

The training step runs compiled code that releases the GIL, so a thread that samples the next batches
(random windows gathered from a memory-mapped token file, or encoded fine-tuning examples) works while
the step runs and the step never waits on the data.

Exact resume needs the sampler's random state *as of the batches the model has actually consumed*, not
as of the ones waiting in the queue. So each queued batch carries the sampler state from just after it
was drawn, and `state()` answers with the state after the last batch the trainer took: a checkpoint
written at any step resumes on exactly the batch that would have come next.

Why a thread rather than `tf.data`: the same feed must serve the JAX backend, the windows come from a
NumPy memory map, and a `tf.data` pipeline fed from Python (`from_generator`) can be neither
checkpointed nor faster than this.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any


class BatchFeed:
    """Wraps a training task (anything with `next_batch()`, `state()`, `set_state()`) with a prefetch queue.

    Use as a context manager; the producer thread starts on entry and stops on exit. Everything else the
    task offers (`validate`, `loss`, `tokens_per_batch`) is reached through the task itself.
    """

    def __init__(self, task: Any, depth: int = 4):
        self.task = task
        self.depth = max(1, depth)
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumed_state: Any = None  # the sampler state just after the last batch the trainer took
        self.wait_seconds = 0.0  # time the trainer spent blocked on an empty queue

    def __enter__(self) -> BatchFeed:
        self._consumed_state = self.task.state()
        self._thread = threading.Thread(target=self._produce, name="llmtui-batch-feed", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._thread is not None and self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
        # Leave the task where the trainer stopped, not where the producer got to.
        self.task.set_state(self._consumed_state)

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.task.next_batch()
                item: tuple[Any, Any, BaseException | None] = (batch, self.task.state(), None)
            except BaseException as exc:  # handed to the trainer, which raises it in its own thread
                item = (None, None, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    def next_batch(self) -> tuple:
        started = time.perf_counter()
        while True:
            try:
                batch, state_after, error = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError("the batch feed is not running") from None
        self.wait_seconds += time.perf_counter() - started
        if error is not None:
            raise error
        self._consumed_state = state_after
        return batch

    def state(self) -> Any:
        """The sampler state that resumes on the next batch the trainer would take."""
        return self._consumed_state

    def set_state(self, state: Any) -> None:
        raise RuntimeError("restore the task before starting its feed")

"""The batch feed (batches drawn ahead on a thread, exact resume kept) and host-memory reuse while training."""

from __future__ import annotations

import ctypes
import resource
import threading

import numpy as np
import pytest

from llmtui.data.tokens import WindowSampler
from llmtui.training.feed import BatchFeed
from llmtui.training.host_memory import _glibc, reuse_freed_memory


def sampler(seed=3):
    return WindowSampler(np.arange(5000, dtype=np.uint16), context=16, batch_size=4, seed=seed)


def test_feed_gives_the_samplers_batches_in_order_and_the_state_of_what_was_consumed():
    plain, fed = sampler(), sampler()
    with BatchFeed(fed, depth=3) as feed:
        for _ in range(5):
            expected = plain.next_batch()
            got = feed.next_batch()
            assert all(np.array_equal(a, b) for a, b in zip(expected, got))
            # The producer has run ahead, yet the state is that after the batches actually taken.
            assert feed.state() == plain.state()
    # Leaving the feed puts the task back where the trainer stopped, so nothing is skipped afterwards.
    assert fed.state() == plain.state()
    assert all(np.array_equal(a, b) for a, b in zip(plain.next_batch(), fed.next_batch()))


def test_a_checkpointed_feed_state_resumes_on_the_next_batch():
    first = sampler()
    with BatchFeed(first) as feed:
        for _ in range(7):
            feed.next_batch()
        saved = feed.state()
        eighth = feed.next_batch()
    resumed = sampler(seed=99)
    resumed.set_state(saved)
    with BatchFeed(resumed) as feed:
        assert all(np.array_equal(a, b) for a, b in zip(eighth, feed.next_batch()))


class Failing:
    def __init__(self):
        self.calls = 0

    def next_batch(self):
        self.calls += 1
        if self.calls == 3:
            raise ValueError("token file vanished")
        return (np.zeros(2), np.zeros(2))

    def state(self):
        return {"calls": self.calls}

    def set_state(self, state):
        self.calls = state["calls"]


def test_an_error_while_drawing_a_batch_reaches_the_trainer_in_order():
    with BatchFeed(Failing()) as feed:
        feed.next_batch()
        feed.next_batch()
        with pytest.raises(ValueError, match="token file vanished"):
            feed.next_batch()
    assert not any(t.name == "llmtui-batch-feed" for t in threading.enumerate())


@pytest.mark.skipif(_glibc() is None, reason="mallopt settings are glibc's")
def test_large_freed_buffers_are_reused_while_training():
    """A 64 MB buffer freed and allocated again comes back already mapped (no fresh page faults) inside
    `reuse_freed_memory`; outside it glibc maps new, zero-filled pages each time."""
    libc = _glibc()
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 << 20

    def faults_of_second_allocation() -> int:
        first = libc.malloc(size)
        ctypes.memset(first, 1, size)
        libc.free(first)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        second = libc.malloc(size)
        ctypes.memset(second, 1, size)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        libc.free(second)
        return faults

    with reuse_freed_memory() as applied:
        assert applied
        reused = faults_of_second_allocation()
    fresh = faults_of_second_allocation()
    assert reused < 100  # 64 MB of new 4 kB pages would be ~16,000 faults (fewer with huge pages)
    assert fresh > 10 * max(reused, 1)

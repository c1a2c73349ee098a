"""An order-keeping process pool with bounded work in flight.

`ordered_map` sends batches to worker processes and yields the results in input order. At most
`2 × workers` batches are in flight, so a fast reader never piles a whole corpus up in memory (the
standard `Pool.imap` reads its input ahead without limit). Small inputs never start a pool: the first
`inline_bytes` are processed in this process, which keeps short runs and tests quick.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from llmtui.errors import DataError

_STATE: Any = None


def _init_worker(factory: Callable[..., Any], args: tuple) -> None:
    global _STATE
    _STATE = factory(*args)


def _call(method: str, payload: Any) -> tuple[Any, float]:
    started = time.process_time()
    result = getattr(_STATE, method)(payload)
    return result, time.process_time() - started


def ordered_map(
    factory: Callable[..., Any],
    args: tuple,
    method: str,
    batches: Iterable[tuple[Any, Any, int]],
    workers: int,
    inline_bytes: int,
) -> Iterator[tuple[Any, Any, float]]:
    """For each `(meta, payload, size)` yield `(meta, factory(*args).method(payload), cpu_seconds)` in order."""
    local = None
    pool: ProcessPoolExecutor | None = None
    pending: deque = deque()
    processed = 0
    try:
        for meta, payload, size in batches:
            if pool is None and (workers <= 1 or processed < inline_bytes):
                if local is None:
                    local = factory(*args)
                started = time.process_time()
                result = getattr(local, method)(payload)
                processed += size
                yield meta, result, time.process_time() - started
                continue
            if pool is None:
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
                pool = ProcessPoolExecutor(
                    workers, mp_context=context, initializer=_init_worker, initargs=(factory, args)
                )
            pending.append((meta, pool.submit(_call, method, payload)))
            while len(pending) >= 2 * workers:
                meta_done, future = pending.popleft()
                yield (meta_done, *future.result())
        while pending:
            meta_done, future = pending.popleft()
            yield (meta_done, *future.result())
    except BrokenProcessPool:
        raise DataError(
            "a data worker process died (out of memory?)",
            hint="set data.workers = 1 to prepare the data in one process",
        ) from None
    finally:
        if pool is not None:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

"""Keep freed host memory for reuse while training on the CPU (glibc only; elsewhere a no-op).

An XLA-compiled training step allocates its scratch buffer (every activation kept for the backward pass)
on each call and frees it on return. glibc serves any allocation above its mmap threshold (at most 32 MB)
with a fresh `mmap`, so a step whose scratch is larger gets brand-new pages every time and the kernel
zero-fills them page by page: a sizeable share of a small model's step (measured: bench/README.md,
"Page faults of the training step").

While training, `reuse_freed_memory()` turns `mmap` allocations off and raises the trim threshold, so a
freed scratch buffer stays in the heap and the next step reuses the same, already-mapped pages. On leaving
it puts glibc's defaults back for later allocations (what the heap holds stays with the process, which is
about to exit or to train again).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

# mallopt(3) parameter numbers and glibc's defaults.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
TRAINING_TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt takes: keep up to 2 GB free at the heap's top


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # glibc has gnu_get_libc_version; musl and others do not take these mallopt settings.
    return libc if hasattr(libc, "gnu_get_libc_version") else None


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[bool]:
    """Within the block, large freed buffers stay mapped for reuse. Yields whether the setting applied."""
    libc = _glibc()
    applied = bool(libc and libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, TRAINING_TRIM_THRESHOLD))
    try:
        yield applied
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)

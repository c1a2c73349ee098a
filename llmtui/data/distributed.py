"""The data stage on a Dask cluster (`data.engine = "dask"`): the same work as the local engine, spread out.

Why Dask (`distributed`) rather than Ray: it is a pip-installable pure-Python scheduler that starts in about a
second with a few small processes (a 2-core CI machine can host a `LocalCluster`), it runs our own functions
as tasks without an actor layer, and the same code reaches a real cluster by the scheduler's address.

What runs where. This process (the client) reads the sources in order (`SourceReader`, as locally) and cuts
the documents into partitions of about `data.engine_partition_mb`. On the workers:
  1. each partition is cleaned, filtered, hashed, MinHashed and chunked by `DocumentWorker.process`, the very
     code the local engine's process pool runs; the results stay on the workers;
  2. exact dedup: every kept document's (hash, global number) is routed by hash to one of R reducers, which
     mark every document but the first of each hash as an exact duplicate;
  3. near dedup: the LSH band keys of the remaining documents (`dedup.band_keys`, from the signatures the
     workers computed) are routed by band key to R reducers, which return the band keys that two or more
     documents share, with their members: the candidate pairs, found across all partitions;
then this process fetches the signatures of those candidates only, and applies the local engine's keep rule
(`NearDuplicateIndex`: a document is a near duplicate when it is similar to the first kept document that had
one of its band keys) in reading order, and writes the splits from the partitions, in order, as the local
engine does. The report is therefore the same, number for number (`tests/test_data_engine.py`).

Not on the cluster: reading (this process reads and sends the text, so the files need not be visible to the
workers), writing the splits and the contamination check. In the tokenizer stage, training the vocabulary
stays here; encoding the splits into token ids runs on the cluster (`encode`, from `tokens.encode_split`).
Dask is imported only here, only when the engine is used.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import numpy as np

from llmtui.config.recipe import DataConfig
from llmtui.data.dedup import band_keys, lsh_shape, similar
from llmtui.errors import DataError

if TYPE_CHECKING:
    import distributed

EXACT, NEAR = "exact_duplicates", "near_duplicates"
CONNECT_SECONDS = 10  # a running scheduler answers at once; an unreachable one fails this fast


class DaskEngine:
    """A connection to a Dask cluster for one data stage (a `LocalCluster` of `data.workers` processes when
    `data.engine_address` is empty); use as a context manager."""

    def __init__(self, config: DataConfig):
        self.config = config
        self.partition_bytes = max(1, int(config.engine_partition_mb * 1_000_000))
        self.client: distributed.Client | None = None
        self._cluster: distributed.LocalCluster | None = None
        self.workers = 1

    def __enter__(self) -> DaskEngine:
        try:
            import distributed
        except ImportError:
            raise DataError(
                "data.engine = 'dask' needs Dask's distributed scheduler, which is not installed",
                hint="pip install 'llmtui[cluster]' (or set data.engine = 'local')",
            ) from None
        import logging
        import os

        address = self.config.engine_address
        try:
            if address:
                self.client = distributed.Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
            else:
                self._cluster = distributed.LocalCluster(
                    n_workers=self.config.workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self.client = distributed.Client(self._cluster, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:  # unreachable, timed out, not an address
            self.__exit__()
            raise DataError(
                f"data.engine_address: cannot reach the Dask scheduler at {address!r} ({exc})",
                hint="start one (dask scheduler; dask worker ADDRESS on each machine), or leave "
                "data.engine_address empty to start a cluster on this machine",
            ) from None
        self.workers = max(1, sum(self.connected.nthreads().values()))
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    @property
    def connected(self) -> distributed.Client:
        """The client, inside the `with` block (the only place the engine's work runs)."""
        assert self.client is not None, "DaskEngine is used inside `with DaskEngine(config) as engine:`"
        return self.client

    # A plain ordered map (the boilerplate pass) ---------------------------------------------------------
    def ordered_map(
        self,
        factory: Callable[..., Any],
        args: tuple,
        method: str,
        batches: Iterable[tuple[Any, Any, int]],
        workers: int = 0,
        inline_bytes: int = 0,
    ) -> Iterator[tuple[Any, Any, float]]:
        """`parallel.ordered_map` on the cluster: results in input order, at most 2 x workers tasks in flight."""
        submitted = (
            (meta, self.connected.submit(_run, factory, args, method, self._send(payload), pure=False))
            for meta, payload, _ in batches
        )
        for meta, future in self._in_order(submitted):
            yield (meta, *self._result(future))

    # The tokenizer stage's encoding -----------------------------------------------------------------------
    def encode(self, tokenizer, dtype: np.dtype, batches: Iterable[list[str]]) -> Iterator[np.ndarray]:
        """`tokens.encode_documents` of each batch of documents on the workers, in input order. The tokenizer
        (it pickles: a `tokenizers.Tokenizer` travels as its JSON) goes to every worker once, not per task."""
        from llmtui.data.tokens import encode_documents

        [shared] = self.connected.scatter([tokenizer], broadcast=True, hash=False)
        submitted = (
            (None, self.connected.submit(encode_documents, shared, dtype, self._send(batch), pure=False))
            for batch in batches
        )
        try:
            for _, future in self._in_order(submitted):
                yield self._result(future, "tokenizer")
        finally:
            shared.release()

    def _in_order(self, submitted: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """(meta, future) pairs as submitted, each once it is the oldest, with at most 2 x workers in flight
        (reading runs no further ahead of the cluster than its workers can take)."""
        pending: collections.deque = collections.deque()
        try:
            for item in submitted:
                pending.append(item)
                while len(pending) >= 2 * self.workers:
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:
            for _, future in pending:
                future.cancel()

    # The main pass, with dedup on the cluster -----------------------------------------------------------
    def process(
        self,
        factory: Callable[..., Any],
        args: tuple,
        batches: Iterable[tuple[list, list, int]],
        seconds: MutableMapping[str, float],
    ) -> Iterator[tuple[list, list, float, list]]:
        """For each partition, in order: (metas, outcomes of `factory(*args).process`, CPU seconds, verdicts),
        a verdict per document: None (kept), EXACT or NEAR (the order of `_take`'s checks)."""
        import distributed

        config = self.config
        parts: list[tuple[list, Any, int]] = []  # (metas, future of (outcomes, cpu), number of its first document)
        unfinished: collections.deque = collections.deque()
        first = 0
        for metas, payload, _ in batches:
            future = self.connected.submit(_run, factory, args, "process", self._send(payload), pure=False)
            parts.append((metas, future, first))
            first += len(payload)
            unfinished.append(future)
            # Read no further ahead of the cluster than its workers can take (the text waits here, not there).
            while len(unfinished) > 2 * self.workers:
                with self.connected.as_current():
                    distributed.wait(unfinished.popleft())
        began = time.perf_counter()
        exact, near = (
            self._duplicates([(future, first) for _, future, first in parts])
            if config.dedup != "none"
            else (set(), set())
        )
        seconds["dedup"] += time.perf_counter() - began
        for metas, future, first in parts:
            outcomes, cpu = self._result(future)
            future.release()
            verdicts = [
                EXACT if first + i in exact else NEAR if first + i in near else None for i in range(len(outcomes))
            ]
            yield metas, outcomes, cpu, verdicts

    def _duplicates(self, parts: list[tuple[Any, int]]) -> tuple[set[int], set[int]]:
        """The global numbers of the exact and of the near duplicates."""
        config, submit = self.config, self.connected.submit
        if not parts:
            return set(), set()
        routes = max(1, min(2 * self.workers, len(parts)))
        shape = lsh_shape(config.near_threshold, config.minhash_perms) if config.dedup == "near" else None
        pieces = [submit(_route, future, first, routes, shape, pure=False) for future, first in parts]
        # Reducer r takes piece r of every partition: an all-to-all shuffle of the keys.
        exact_reducers = [
            submit(_exact_duplicates, [submit(_piece, p, r, 0, pure=False) for p in pieces], pure=False)
            for r in range(routes)
        ]
        exact = set(np.concatenate(self.connected.gather(exact_reducers)).tolist())
        if shape is None:
            return exact, set()
        band_reducers = [
            submit(_shared_bands, [submit(_piece, p, r, 1, pure=False) for p in pieces], exact_reducers, pure=False)
            for r in range(routes)
        ]
        buckets = self.connected.gather(band_reducers)
        keys = np.concatenate([b[0] for b in buckets])
        members = np.concatenate([b[1] for b in buckets])
        if not len(keys):
            return exact, set()
        candidates = np.unique(members)
        firsts = np.array([first for _, first in parts], dtype=np.int64)
        owner = np.searchsorted(firsts, candidates, side="right") - 1  # the partition of each candidate
        requests = [
            submit(_signatures, parts[p][0], parts[p][1], candidates[owner == p], pure=False)
            for p in np.unique(owner).tolist()
        ]
        signatures = dict(zip(candidates.tolist(), np.concatenate(self.connected.gather(requests))))
        return exact, _near_duplicates(keys, members, signatures, config.near_threshold)

    def _send(self, payload):
        """The partition's text straight to a worker (not inside the task graph, through the scheduler)."""
        [sent] = self.connected.scatter([payload], hash=False)
        return sent

    def _result(self, future, stage: str = "data"):
        try:
            return future.result()
        except DataError:
            raise
        except Exception as exc:  # a worker lost, a task's own error: name it, with the scheduler
            raise DataError(
                f"a task of the {stage} stage failed on the Dask cluster: {type(exc).__name__}: {exc}",
                hint="see the workers' logs, or set data.engine = 'local'",
            ) from None


def _near_duplicates(
    keys: np.ndarray, members: np.ndarray, signatures: dict[int, np.ndarray], threshold: float
) -> set[int]:
    """The local index's keep rule over the shared band keys, in reading order: a document is a near duplicate
    when it is similar to the first kept document that had one of its keys; else it takes the keys still free.
    (Keys no other document has never name a candidate, so only the shared ones are needed.)"""
    order = np.argsort(members, kind="stable")
    by_doc: dict[int, list[int]] = {}
    for doc, key in zip(members[order].tolist(), keys[order].tolist()):
        by_doc.setdefault(doc, []).append(key)
    first_kept: dict[int, int] = {}
    near = set()
    for doc, doc_keys in by_doc.items():  # ascending document numbers: reading order
        signature = signatures[doc]
        if any(similar(signatures[first_kept[k]], signature, threshold) for k in doc_keys if k in first_kept):
            near.add(doc)
            continue
        for key in doc_keys:
            first_kept.setdefault(key, doc)
    return near


# Tasks (run on the workers) ------------------------------------------------------------------------------
_instances: dict = {}
_instances_lock = threading.Lock()


def _instance(factory: Callable[..., Any], args: tuple):
    """One `factory(*args)` per worker thread (a `DocumentWorker` compiles its patterns once, not per task)."""
    import pickle

    key = (threading.get_ident(), factory.__module__, factory.__qualname__, pickle.dumps(args))
    with _instances_lock:
        if key not in _instances:
            if len(_instances) > 64:
                _instances.clear()
            _instances[key] = factory(*args)
        return _instances[key]


def _run(factory: Callable[..., Any], args: tuple, method: str, payload: Any) -> tuple[Any, float]:
    started = time.thread_time()
    result = getattr(_instance(factory, args), method)(payload)
    return result, time.thread_time() - started


def _route(done: tuple, first: int, routes: int, shape: tuple[int, int] | None) -> list[tuple]:
    """Split one partition's dedup keys by reducer: for each, (exact hashes, their document numbers) and
    (band keys, their document numbers), from each `DocumentOutcome`'s filter verdict, exact key and MinHash
    signature."""
    outcomes = done[0]
    kept = [i for i, outcome in enumerate(outcomes) if outcome.dropped_by is None]
    numbers = np.array(kept, dtype=np.int64) + first
    hashes = np.array([outcomes[i].exact_key for i in kept], dtype="S16")
    exact_route = (
        np.frombuffer(hashes.tobytes(), dtype=np.uint64)[::2] % np.uint64(routes)
        if len(kept)
        else np.empty(0, dtype=np.uint64)
    ).astype(np.int64)
    band_route = np.empty(0, dtype=np.int64)
    band_docs = np.empty(0, dtype=np.int64)
    bands = np.empty(0, dtype=np.uint64)
    if shape is not None and kept:
        keys = band_keys(np.stack([outcomes[i].signature for i in kept]), *shape)  # (documents, bands)
        bands = keys.reshape(-1)
        band_docs = np.repeat(numbers, keys.shape[1])
        band_route = (bands % np.uint64(routes)).astype(np.int64)
    return [
        ((hashes[exact_route == r], numbers[exact_route == r]), (bands[band_route == r], band_docs[band_route == r]))
        for r in range(routes)
    ]


def _piece(routed: list[tuple], route: int, kind: int) -> tuple[np.ndarray, np.ndarray]:
    return routed[route][kind]


def _exact_duplicates(pieces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Document numbers of every document but the first of each exact hash."""
    hashes = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, dtype="S16")
    numbers = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, dtype=np.int64)
    order = np.lexsort((numbers, hashes))
    hashes, numbers = hashes[order], numbers[order]
    later = np.zeros(len(hashes), dtype=bool)
    later[1:] = hashes[1:] == hashes[:-1]
    return numbers[later]


def _shared_bands(
    pieces: list[tuple[np.ndarray, np.ndarray]], exact: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(band key, document number) of every band key two or more documents share, exact duplicates left out."""
    keys = np.concatenate([p[0] for p in pieces])
    numbers = np.concatenate([p[1] for p in pieces])
    if exact:
        keep = ~np.isin(numbers, np.concatenate(exact))
        keys, numbers = keys[keep], numbers[keep]
    order = np.lexsort((numbers, keys))
    keys, numbers = keys[order], numbers[order]
    shared = np.zeros(len(keys), dtype=bool)
    same = keys[1:] == keys[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    return keys[shared], numbers[shared]


def _signatures(done: tuple, first: int, wanted: np.ndarray) -> np.ndarray:
    """The signatures (16-bit, as the local index keeps them) of some of a partition's documents."""
    outcomes = done[0]
    if not len(wanted):
        return np.empty((0, 0), dtype=np.uint16)
    return np.stack([outcomes[i - first].signature.astype(np.uint16) for i in wanted.tolist()])

"""The data stage on a Dask cluster (`data.engine = "dask"`): the same work as the local engine, spread out.

Why Dask (`distributed`) rather than Ray: it is a pip-installable pure-Python scheduler that starts in about a
second with a few small processes (a 2-core CI machine can host a `LocalCluster`), it runs our own functions
as tasks without an actor layer, and the same code reaches a real cluster by the scheduler's address.

What runs where.
  1. This process (the client) lists the sources' files (`resolve_files`: names and sizes, nothing is read) and
     cuts them into read tasks (`read_tasks`) of about `data.engine_partition_mb`: a run of small files of one
     source, or a byte range of a large text or JSON Lines file, plain or gzipped (`readers.read_range`:
     whole text pieces, or the lines that begin in the range; a gzip file's ranges are of its decompressed
     bytes); a file of another compression is one task.
  2. A worker reads its task's files with the local readers (`readers.read_file` / `read_range`) and, in the
     same task, cleans, filters, hashes, MinHashes and chunks the documents (`DocumentWorker.process`, the
     code the local process pool runs). It keeps each kept document's dedup keys (`_dedup_keys`: hash, LSH
     band keys, 16-bit signature) and sends back what the client needs: per file, the documents, bytes and
     problems; per document, the outcome without its signature (the chunks as JSON lines, counts).
  3. The client takes the tasks' results in reading order (at most 2 x workers tasks in flight), counts the
     reading as `SourceReader.documents` does (`_Accounts`: limits, skips in order, a ranged file's record
     problems merged into the file's), numbers documents by (task, position in task), and appends each task's
     outcomes to a spool file on its disk: nobody holds the corpus in memory.
  4. Exact dedup: every counted document's (hash, number) is routed by hash to one of R reducers, which mark
     every document but the first of each hash. Near dedup: the band keys of the rest are routed by key to R
     reducers, which return the keys two or more documents share, with their members: the candidates, found
     across all tasks. The client fetches the candidates' signatures and applies the local index's keep rule
     (`NearDuplicateIndex`: a near duplicate is similar to the first kept document that had one of its band
     keys) in reading order.
  5. The client replays the spool task by task with the verdicts and writes the splits as the local engine
     does. The report and the files are therefore the same, number for number (`tests/test_data_engine.py`).

Rule: every file must be at the same path on every worker (a shared filesystem). A worker that cannot open a
file the client can read is an error naming the file and the worker; a file neither can read is skipped, as
locally. Read by the client and sent to the workers: URL sources (the fetcher's cache and politeness live in
one process), `hf:` datasets and the `builtin:` corpus (the client's Python installation); the client lets the
earlier tasks finish before reading one, so counts and skips keep their order. With boilerplate removal the
first pass (`run`, "clean_only") reads on the workers too, and its spool of cleaned documents (the client's,
as locally) is sent back for the second. Not on the cluster: writing the splits and the contamination check;
in the tokenizer stage, training the vocabulary (encoding the splits runs here, `encode`). Dask is imported
only here, only when the engine is used.
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from llmtui.config.recipe import DataConfig
from llmtui.data import readers
from llmtui.data.dedup import band_keys, lsh_shape, similar
from llmtui.data.readers import detect
from llmtui.data.sources import Document, SourceReader, resolve_files, source_kind
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
        self._accounts: _Accounts | None = None  # the reading being counted (`_run_tasks`)

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

    # Reading and processing the sources on the workers ----------------------------------------------------
    def run(
        self,
        factory: Callable[..., Any],
        args: tuple,
        method: str,
        reader: SourceReader,
        tally: Any,
    ) -> Iterator[tuple[list, list, float]]:
        """`factory(*args).method` over every document of the sources, read on the workers (the boilerplate
        pass: "clean_only"): (metas, results, CPU seconds) per task, in reading order, reading counted into
        `reader` and `tally` as `SourceReader.documents` and the local engine count them."""
        for task, (_, _, results, read_s, cpu), _keys, upto in self._run_tasks(
            factory, args, method, self.read_tasks(reader), _Accounts(reader, tally), None, keep_keys=False
        ):
            tally.seconds["read"] += read_s
            yield [(task.source, "")] * upto, results[:upto], cpu

    def process(
        self,
        factory: Callable[..., Any],
        args: tuple,
        documents: SourceReader | Iterable[Document],
        tally: Any,
        spool: Path,
    ) -> Iterator[tuple[list, list, float, list]]:
        """For each task, in reading order: (metas, outcomes of `factory(*args).process`, CPU seconds,
        verdicts), a verdict per document: None (kept), EXACT or NEAR (the order of `_take`'s checks).
        `documents`: the sources (read on the workers), or documents read here (the boilerplate pass's spool).
        The outcomes wait in `spool` (this process's disk, one task at a time in memory) until dedup is
        decided; the workers keep only each document's dedup keys."""
        config = self.config
        shape = lsh_shape(config.near_threshold, config.minhash_perms) if config.dedup == "near" else None
        if isinstance(documents, SourceReader):
            plan, accounts = self.read_tasks(documents), _Accounts(documents, tally)
        else:
            plan, accounts = self._payloads(documents, already_clean=True), None
        parts: list[tuple[Any, int, int]] = []  # (future of a task's dedup keys, its first number, documents)
        first = 0
        with open(spool, "wb") as out:
            for task, (_, _, outcomes, read_s, cpu), keys, upto in self._run_tasks(
                factory, args, "process", plan, accounts, shape, keep_keys=config.dedup != "none"
            ):
                tally.seconds["read"] += read_s
                pickle.dump((task.source, outcomes[:upto], cpu), out, protocol=pickle.HIGHEST_PROTOCOL)
                if upto and keys is not None:
                    parts.append((keys, first, upto))
                elif keys is not None:
                    keys.release()
                first += upto
        began = time.perf_counter()
        exact, near = self._duplicates(parts, shape) if config.dedup != "none" else (set(), set())
        for keys, _, _ in parts:
            keys.release()
        tally.seconds["dedup"] += time.perf_counter() - began
        number = 0
        with open(spool, "rb") as handle:
            while True:
                try:
                    source, outcomes, cpu = pickle.load(handle)
                except EOFError:
                    break
                verdicts = [
                    EXACT if number + i in exact else NEAR if number + i in near else None for i in range(len(outcomes))
                ]
                number += len(outcomes)
                yield [(source, "")] * len(outcomes), outcomes, cpu, verdicts

    def read_tasks(self, reader: SourceReader) -> Iterator[Any]:
        """The read tasks of the sources, in reading order: runs of small files, or a byte range of a large
        text or JSON Lines file (plain or gzip), read by a worker; documents of the sources only this process
        can read (URLs, Hugging Face datasets, the builtin corpus), read here and sent. `_BARRIER`: let every
        earlier task be counted first (before reading here, so skips keep their order; and before every
        source when data.max_documents may stop the reading)."""
        config = self.config
        for index, source in enumerate(config.sources):
            kind = source_kind(source.path)
            if kind != "files" or config.max_documents:
                yield _BARRIER
                if self._accounts is not None and self._accounts.stopped:
                    return
            stats = reader.per_source.setdefault(source.path, collections.Counter())
            if kind != "files":
                yield from self._driver_read(reader, source, index, stats)
                continue
            group: list[FilePart] = []
            group_bytes = 0
            for path in resolve_files(source, reader.base, reader.ignored):
                if self._accounts is not None and index in self._accounts.done:
                    break
                fmt, compression = detect(path, source.format)
                try:
                    size = path.stat().st_size
                    visible = path.is_file() and os.access(path, os.R_OK)
                except OSError:  # gone, a dangling link: the worker's reader reports it as the local one does
                    size, visible = 0, False
                whole = FilePart(str(path), fmt, compression, source.text_field, source.encoding, visible=visible)
                step = self.partition_bytes
                if fmt != "jsonl":
                    step = -(-step // readers.TEXT_PIECE_BYTES) * readers.TEXT_PIECE_BYTES
                span = size  # the bytes that ranges cut
                if compression == "gzip" and visible:
                    # Ranges of the decompressed bytes. Each range decompresses from the file's start, so a big
                    # file gets at most _GZIP_RANGES of them; one task of it all would hold the whole file's
                    # documents in one worker (4 GB for a 96 MB JSON Lines file in bench_data_engine.py).
                    span = readers.gzip_size(path)
                    step = max(step, -(-span // (_GZIP_RANGES * step)) * step)
                elif compression is not None:
                    span = 0  # no size to cut by: one task
                if not (visible and fmt in readers.RANGE_FORMATS and span > step):
                    if group and group_bytes + size > self.partition_bytes:
                        yield ReadTask(source.path, group, index)
                        group, group_bytes = [], 0
                    group.append(whole)
                    group_bytes += size
                    continue
                if group:
                    yield ReadTask(source.path, group, index)
                    group, group_bytes = [], 0
                for begin in range(0, span, step):
                    last = begin + step >= span
                    ranged = replace(whole, start=begin, end=sys.maxsize if last else begin + step, last=last)
                    yield ReadTask(source.path, [ranged], index)
            if group:
                yield ReadTask(source.path, group, index)

    def _driver_read(
        self, reader: SourceReader, source: Any, index: int, stats: collections.Counter
    ) -> Iterator[ReadTask]:
        """A source only this process reads (as `SourceReader.documents` does, to the same limits)."""
        config = self.config
        total = self._accounts.total if self._accounts is not None else 0
        left = [n for n in (source.limit, config.max_documents and config.max_documents - total) if n]
        documents = cast(Generator[Document, None, None], reader._iter_source(source, stats))
        batch: list[Document] = []
        size = count = 0
        for doc in documents:
            batch.append(doc)
            size += len(doc.text)
            count += 1
            if left and count >= min(left):
                break
            if size >= self.partition_bytes:
                yield from self._payloads(batch, already_clean=False, index=index)
                batch, size = [], 0
        documents.close()
        yield from self._payloads(batch, already_clean=False, index=index)

    def _payloads(self, documents: Iterable[Document], already_clean: bool, index: int = -1) -> Iterator[ReadTask]:
        """Tasks for documents read in this process, about `partition_bytes` of text each."""
        batch: list[tuple] = []
        size = 0
        source = ""
        for doc in documents:
            if batch and (size >= self.partition_bytes or doc.source != source):
                yield ReadTask(source, None, index, self._send(batch))
                batch, size = [], 0
            source = doc.source
            batch.append((doc.text, doc.repaired, already_clean))
            size += len(doc.text)
        if batch:
            yield ReadTask(source, None, index, self._send(batch))

    def _run_tasks(
        self,
        factory: Callable[..., Any],
        args: tuple,
        method: str,
        plan: Iterator[Any],
        accounts: _Accounts | None,
        shape: tuple[int, int] | None,
        keep_keys: bool,
    ) -> Iterator[tuple[ReadTask, tuple, Any, int]]:
        """Submit each planned task (at most 2 x workers in flight) and, in order, bring back what this process
        needs; yields (task, that, the future of its dedup keys or None, its documents counted in)."""
        submit = self.connected.submit
        self._accounts = accounts
        pending: collections.deque = collections.deque()

        def oldest() -> tuple[ReadTask, tuple, Any, int]:
            task, here, keys = pending.popleft()
            result = self._result(here)
            here.release()
            infos, sizes = result[0], result[1]
            upto = accounts.count(task, infos, sizes) if accounts is not None else len(result[2])
            return task, result, keys, upto

        try:
            for task in plan:
                if task is _BARRIER:
                    while pending:
                        yield oldest()
                    continue
                # the documents sent with a task go as their own argument (Dask finds futures there, not in a dataclass)
                done = submit(
                    _read_task,
                    factory,
                    args,
                    method,
                    replace(task, payload=None),
                    task.payload,
                    shape,
                    keep_keys,
                    pure=False,
                )
                here = submit(_pick, done, 0, pure=False)
                keys = submit(_pick, done, 1, pure=False) if keep_keys else None
                del done  # its text goes when both parts are taken
                pending.append((task, here, keys))
                while len(pending) >= 2 * self.workers:
                    yield oldest()
            while pending:
                yield oldest()
        finally:
            self._accounts = None
            for _, here, keys in pending:
                here.cancel()
                if keys is not None:
                    keys.cancel()

    def _duplicates(
        self, parts: list[tuple[Any, int, int]], shape: tuple[int, int] | None
    ) -> tuple[set[int], set[int]]:
        """The global numbers of the exact and of the near duplicates."""
        config, submit = self.config, self.connected.submit
        if not parts:
            return set(), set()
        routes = max(1, min(2 * self.workers, len(parts)))
        pieces = [submit(_route, keys, first, upto, routes, pure=False) for keys, first, upto in parts]
        # Reducer r takes piece r of every task: an all-to-all shuffle of the keys.
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
        firsts = np.array([first for _, first, _ in parts], dtype=np.int64)
        owner = np.searchsorted(firsts, candidates, side="right") - 1  # the task of each candidate
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


def _read_task(
    factory: Callable[..., Any],
    args: tuple,
    method: str,
    task: ReadTask,
    payload: list | None,
    shape: tuple[int, int] | None,
    keep_keys: bool,
) -> tuple[tuple, Any]:
    """Read a task's files (or take the documents sent with it), run `method` of `factory(*args)` on them, and
    split the result: (for the client: what each file gave, each document's bytes, the results without the
    MinHash signatures, read seconds, CPU seconds; for dedup: `_dedup_keys`, kept on the worker)."""
    started = time.thread_time()
    infos: list[PartRead] = []
    texts: list[tuple[str, bool]] = []
    items: list[tuple]
    if task.parts is None:
        assert payload is not None  # a task without files carries its documents
        items = payload if method == "process" else [(text, repaired) for text, repaired, _ in payload]
        infos.append(PartRead(len(items)))
        sizes = [len(item[0].encode("utf-8", errors="surrogatepass")) for item in items]
    else:
        for part in task.parts:
            before = len(texts)
            info = _read_part(part, texts)
            info.documents = len(texts) - before
            infos.append(info)
            if info.unreadable:
                break
        sizes = [len(text.encode("utf-8", errors="surrogatepass")) for text, _ in texts]
        items = [(text, repaired, False) for text, repaired in texts] if method == "process" else texts
        del texts
    read_s = time.thread_time() - started
    results = getattr(_instance(factory, args), method)(items)
    del items
    keys = _dedup_keys(results, shape) if keep_keys else None
    return (infos, np.array(sizes, dtype=np.int64), results, read_s, time.thread_time() - started - read_s), keys


def _read_part(part: FilePart, texts: list[tuple[str, bool]]) -> PartRead:
    """Append a file's (or a range's) documents to `texts`, as the local `SourceReader` reads them."""
    path = Path(part.path)
    if part.visible:  # the client could read it: this worker must too (else it is not on a shared filesystem)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            import distributed

            return PartRead(unreadable=(distributed.get_worker().address, readers._os_reason(exc)))
    if part.end is None:
        problems: list[str] = []
        texts.extend(
            (text, repaired)
            for _, text, repaired in readers.read_file(
                path, part.fmt, part.compression, part.text_field, part.encoding, problems.append
            )
        )
        return PartRead(problems=problems)
    record = readers.RecordProblems()
    failure = None
    try:
        texts.extend(
            readers.read_range(
                path, part.fmt, part.text_field, part.encoding, part.start, part.end, record, part.compression
            )
        )
    except readers.FileProblem as exc:
        failure = str(exc)
    except OSError as exc:
        failure = readers._os_reason(exc)
    return PartRead(problems=[failure] if failure else [], record=record, ended=failure is not None)


def _skip_or_fail(source: str, part: FilePart, unreadable: tuple[str, str]) -> PartRead:
    """A worker could not open a file this process listed. If this process cannot open it now either (deleted
    since), the file is skipped with the reason the local reader gives; else the workers do not see this
    process's files, which the engine needs."""
    try:
        with open(part.path, "rb"):
            pass
    except OSError as exc:
        ranged = part.end is not None
        return PartRead(
            problems=[readers._os_reason(exc)], record=readers.RecordProblems() if ranged else None, ended=ranged
        )
    worker, reason = unreadable
    raise DataError(
        f"data source {source!r}: the Dask worker {worker} cannot open {part.path} ({reason}), "
        "which this process can read",
        hint="with data.engine = 'dask' the workers read the files themselves: every file must be at "
        "the same path on every worker (a shared filesystem)",
    )


def _pick(value: tuple, index: int) -> Any:
    return value[index]


def _dedup_keys(outcomes: list, shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What dedup needs of a task's kept documents (their positions in the task, 16-byte hashes, LSH band keys,
    16-bit signatures as the local index keeps them); the signatures leave the outcomes (the client has no
    use for them)."""
    kept = np.array([i for i, outcome in enumerate(outcomes) if outcome.dropped_by is None], dtype=np.int64)
    hashes = np.array([outcomes[i].exact_key for i in kept.tolist()], dtype="S16")
    bands = np.empty((len(kept), 0), dtype=np.uint64)
    signatures = np.empty((len(kept), 0), dtype=np.uint16)
    if shape is not None and len(kept):
        full = np.stack([outcomes[i].signature for i in kept.tolist()])
        bands = band_keys(full, *shape)
        signatures = full.astype(np.uint16)
    for outcome in outcomes:
        outcome.signature = None
    return kept, hashes, bands, signatures


def _route(keys: tuple, first: int, upto: int, routes: int) -> list[tuple]:
    """Split one task's dedup keys (of its first `upto` documents, those counted in) by reducer: for each,
    (exact hashes, their document numbers) and (band keys, their document numbers)."""
    kept, hashes, bands, _ = keys
    counted = kept < upto
    kept, hashes, bands = kept[counted], hashes[counted], bands[counted]
    numbers = kept + first
    exact_route = (
        np.frombuffer(hashes.tobytes(), dtype=np.uint64)[::2] % np.uint64(routes)
        if len(kept)
        else np.empty(0, dtype=np.uint64)
    ).astype(np.int64)
    flat = bands.reshape(-1)
    band_docs = np.repeat(numbers, bands.shape[1])
    band_route = (flat % np.uint64(routes)).astype(np.int64)
    return [
        ((hashes[exact_route == r], numbers[exact_route == r]), (flat[band_route == r], band_docs[band_route == r]))
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


def _signatures(keys: tuple, first: int, wanted: np.ndarray) -> np.ndarray:
    """The (16-bit) signatures of some of a task's documents, by global number."""
    kept, _, _, signatures = keys
    if not len(wanted):
        return np.empty((0, 0), dtype=np.uint16)
    return signatures[np.searchsorted(kept, wanted - first)]


# What runs where ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilePart:
    """A file (`end` None) or the byte range [start, end) of one, read by a worker."""

    path: str
    fmt: str
    compression: str | None
    text_field: str
    encoding: str
    start: int = 0
    end: int | None = None
    last: bool = True  # the file's last range
    visible: bool = True  # the client can read it: a worker that cannot is an error, not a skip


@dataclass
class ReadTask:
    """One task: files (or ranges) of one source read by a worker, or documents this process read."""

    source: str
    parts: list[FilePart] | None
    index: int = -1  # the source's place in data.sources (a path may be named twice)
    payload: Any = None  # with no parts: the documents, (text, repaired, already_clean), sent to a worker


@dataclass
class PartRead:
    """What a worker found in one `FilePart` (the documents themselves travel apart)."""

    documents: int = 0
    problems: list[str] = field(default_factory=list)  # as read_file reports them; a range: its file problem
    record: readers.RecordProblems | None = None  # a range: its record problems, to merge with the file's
    ended: bool = False  # a range met a file problem: the file's later ranges are not read
    unreadable: tuple[str, str] | None = None  # (worker, reason): the worker cannot open a file the client can


_BARRIER = object()
_GZIP_RANGES = 16  # the most ranges a gzip file is cut into (each decompresses the file up to its start)


class _Accounts:
    """Counts what the workers read, task by task in reading order, exactly as `SourceReader.documents` and the
    local engine do: documents and bytes read, per-source counts, limits (the documents past them are left
    out: `count` returns how many of a task's documents are in), and skips in order (a large file's ranges'
    record problems merged into one per file)."""

    def __init__(self, reader: SourceReader, tally: Any):
        self.reader, self.tally = reader, tally
        self.config = reader.config
        self.read: collections.Counter = collections.Counter()  # per source (its index)
        self.total = 0
        self.stopped = False  # data.max_documents reached
        self.done: set[int] = set()  # sources whose limit is reached
        self.files: dict[str, tuple[readers.RecordProblems, int, bool]] = {}  # ranged file: (problems, lines, ended)

    def count(self, task: ReadTask, infos: list[PartRead], sizes: np.ndarray) -> int:
        source, index = task.source, task.index
        limit = self.config.sources[index].limit
        stats = self.reader.per_source.setdefault(source, collections.Counter())
        counted = 0
        parts: list[FilePart | None] = list(task.parts) if task.parts is not None else [None]
        for part, info in zip(parts, infos):
            if self.stopped or index in self.done:
                break
            path = part.path if part is not None else ""
            if part is not None and part.end is not None:
                if part.start == 0:  # a file's first range (the file may be read again by a later source)
                    self.files[path] = (readers.RecordProblems(), 0, False)
                if self.files[path][2]:
                    break  # an earlier range of this file ended it
            if info.unreadable and part is not None:
                info = _skip_or_fail(source, part, info.unreadable)
            room = min(
                (
                    n
                    for n in (
                        limit and limit - self.read[index],
                        self.config.max_documents and self.config.max_documents - self.total,
                    )
                    if n
                ),
                default=None,
            )
            taken = info.documents if room is None else min(info.documents, room)
            stats["documents_read"] += taken
            self.tally.counts["documents_read"] += taken
            self.tally.counts["bytes_read"] += int(sizes[counted : counted + taken].sum())
            self.read[index] += taken
            self.total += taken
            counted += taken
            if room is not None and taken == room:  # reading stops at this document: its file reports nothing
                if self.config.max_documents and self.total >= self.config.max_documents:
                    self.stopped = True
                self.done.add(index)
                break
            if part is None:
                continue
            if part.end is None:
                for reason in info.problems:
                    self.reader._skip(self.config.sources[index], part.path, reason)
                continue
            assert info.record is not None  # a range always brings its record problems
            merged, lines, _ = self.files[path]
            merged.merge(info.record, lines)
            self.files[path] = (merged, lines + info.record.lines, info.ended)
            for reason in info.problems if info.ended else merged.reasons() if part.last else []:
                self.reader._skip(self.config.sources[index], part.path, reason)
        return counted

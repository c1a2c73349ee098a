"""The data stage: read sources, clean, filter, remove duplicates, split, chunk, check contamination, report.

Output in `<run>/data/`: `train.jsonl`, `val.jsonl` (and `test.jsonl` when `test_fraction` > 0), one
`{"text": ..., "doc": n}` chunk a line, and `report.json`. Documents stream through in batches: worker
processes clean, filter and hash them (`parallel.ordered_map`, bounded work in flight); this process reads
sources, removes duplicates (a set of 16-byte hashes, and for near dedup an LSH index of signatures), and
writes the splits. With `filters.boilerplate_min_docs` the cleaned documents are first spooled to disk
while a fixed-size sketch counts their lines, then read back through the filters. With `data.engine = "dask"`
the workers are a Dask cluster's: they read the files themselves, and duplicates are found there too
(`llmtui.data.distributed`); the counting and writing in this module are the same for both engines.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import numpy as np

from llmtui.config.recipe import DataConfig
from llmtui.data.cleaning import Cleaned, Cleaner, document_line_hashes, new_sketch, sketch_add
from llmtui.data.dedup import NearDuplicateIndex, exact_key, minhash_signatures
from llmtui.data.parallel import ordered_map
from llmtui.data.sources import Document, SourceReader
from llmtui.errors import DataError
from llmtui.runfolder import DATA_REPORT, DataReport, SplitCounts, write_data_report

PARALLEL_AFTER_BYTES = 8 << 20  # smaller corpora are prepared in this process alone
BATCH_BYTES = 1 << 20
BATCH_DOCS = 512
LONG_DOCUMENT_CHUNKS = 64  # in split_by = "document", longer documents are split chunk by chunk
SPLITS = ("train", "val", "test")
T = TypeVar("T")


def clean_text(text: str, lowercase: bool = False) -> str:
    """The default cleaning of one text (NFC, line ends, control characters, whitespace)."""
    cleaner = Cleaner(DataConfig(lowercase=lowercase))
    return cleaner.clean(text).text


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    """Split at line breaks into pieces of about `chunk_chars` (a longer line is cut at spaces, else hard)."""
    if len(text) <= chunk_chars:
        return [text]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in _short_lines(text.split("\n"), chunk_chars):
        if size and size + len(line) + 1 > chunk_chars:
            chunks.append("\n".join(current).strip())
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("\n".join(current).strip())
    return [c for c in chunks if c]


def _short_lines(lines: list[str], limit: int) -> Iterator[str]:
    for line in lines:
        while len(line) > limit:
            cut = line.rfind(" ", limit // 2, limit)
            cut = cut if cut > 0 else limit
            yield line[:cut]
            line = line[cut:].lstrip(" ")
        yield line


# Work done in worker processes -------------------------------------------------------------------
class KeptDocument(NamedTuple):
    """A document that passed the filters, as the split writer needs it."""

    characters: int  # of the cleaned text
    lines: list[str]  # its chunks as JSON lines, each without its closing `, "doc": n}`
    buckets: list[float] | None  # a split bucket per chunk (split_by = "chunk", or a long document), else None
    lengths: list[int]  # characters per chunk


@dataclass
class DocumentOutcome:
    """What a worker made of one document (sent back to the main process, so plain picklable fields)."""

    kept: KeptDocument | None  # None when a filter dropped it
    dropped_by: str | None  # the filter that dropped it
    repaired: bool  # its encoding was repaired
    pii: dict[str, int]  # PII kind → matches scrubbed
    lines_removed: dict[str, int]  # line filter → lines removed
    exact_key: bytes | None = None  # the exact-duplicate key of a kept document
    signature: np.ndarray | None = None  # its MinHash signature, for near dedup


class DocumentWorker:
    """Cleans, filters, hashes and chunks batches of documents (one instance per worker process)."""

    def __init__(self, config: DataConfig, sketch_path: str | None, seed: int = 0):
        sketch = np.load(sketch_path, mmap_mode="r") if sketch_path else None
        self.cleaner = Cleaner(config, boilerplate_sketch=sketch)
        self.config = config
        self.near = config.dedup == "near"
        self.perms = config.minhash_perms
        self.seed_key = seed.to_bytes(8, "little")

    def clean_only(self, items: list[tuple[str, bool]]) -> list[tuple]:
        """Pass 1 with boilerplate removal: cleaned text and its distinct line hashes."""
        out = []
        for text, repaired in items:
            result = self.cleaner.clean(text, repaired)
            out.append((result.text, result.repaired, dict(result.pii), document_line_hashes(result.text)))
        return out

    def clean_and_filter(self, text: str, repaired: bool, already_clean: bool = False) -> tuple[Cleaned, str | None]:
        result = Cleaned(text, repaired) if already_clean else self.cleaner.clean(text, repaired)
        self.cleaner.filter_lines(result)
        return result, self.cleaner.rejected_by(result.text)

    def process(self, items: list[tuple[str, bool, bool]]) -> list[DocumentOutcome]:
        """What became of each document: dropped by a filter, or kept (chunked, hashed, and signed for near dedup)."""
        out, kept_texts = [], []
        for text, repaired, already_clean in items:
            result, dropped = self.clean_and_filter(text, repaired, already_clean)
            if dropped:
                out.append(
                    DocumentOutcome(None, dropped, result.repaired, dict(result.pii), dict(result.lines_removed))
                )
                continue
            chunks = chunk_text(result.text, self.config.chunk_chars)
            lines = [json.dumps({"text": chunk}, ensure_ascii=False)[:-1] for chunk in chunks]
            buckets = None
            if self.config.split_by == "chunk" or (
                self.config.split_by == "document" and len(chunks) > LONG_DOCUMENT_CHUNKS
            ):
                buckets = [
                    split_bucket(chunk.encode("utf-8", errors="surrogatepass"), self.seed_key) for chunk in chunks
                ]
            kept = KeptDocument(len(result.text), lines, buckets, [len(chunk) for chunk in chunks])
            out.append(
                DocumentOutcome(
                    kept, None, result.repaired, dict(result.pii), dict(result.lines_removed), exact_key(result.text)
                )
            )
            kept_texts.append((len(out) - 1, result.text))
        if self.near and kept_texts:
            signatures = minhash_signatures([text for _, text in kept_texts], self.perms)
            for (index, _), signature in zip(kept_texts, signatures):
                out[index].signature = signature
        return out


def split_bucket(data: bytes, seed_key: bytes) -> float:
    """A number in [0, 1) fixed by the content and the seed: the split does not depend on reading order."""
    digest = hashlib.blake2b(data, digest_size=8, key=seed_key).digest()
    return int.from_bytes(digest, "little") / 2**64


# The stage ------------------------------------------------------------------------------------------
@dataclass
class _Counts:
    counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    lines_removed: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    histogram: Counter = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # phase → seconds


class _Timed(Generic[T]):
    """Wraps an iterator, adding the time spent inside `next()` to `seconds[name]`."""

    def __init__(self, iterator: Iterable[T], seconds: MutableMapping[str, float], name: str):
        self.iterator = iter(iterator)
        self.seconds = seconds
        self.name = name

    def __iter__(self) -> _Timed[T]:
        return self

    def __next__(self) -> T:
        started = time.perf_counter()
        try:
            return next(self.iterator)
        finally:
            self.seconds[self.name] += time.perf_counter() - started


def prepare_data(
    config: DataConfig, seed: int, out_dir: Path, base: Path, parallel_after_bytes: int = PARALLEL_AFTER_BYTES
) -> DataReport:
    """Run the data stage; returns the report (also written to `out_dir/report.json`)."""
    if config.engine == "local":
        return _prepare(config, seed, out_dir, base, parallel_after_bytes, None)
    from llmtui.data.distributed import DaskEngine

    with DaskEngine(config) as engine:  # the same stage, its per-document work and dedup on a Dask cluster
        return _prepare(config, seed, out_dir, base, parallel_after_bytes, engine)


def _prepare(config: DataConfig, seed: int, out_dir: Path, base: Path, parallel_after_bytes: int, engine) -> DataReport:
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("train.jsonl", "val.jsonl", "test.jsonl", DATA_REPORT):
        (out_dir / stale).unlink(missing_ok=True)
    workers = engine.workers if engine else config.workers or os.cpu_count() or 1
    reader = SourceReader(config, base)
    tally = _Counts()
    eval_paths = [_eval_path(p, base) for p in config.eval_files]
    # The local engine reads here; the Dask engine's workers read the files themselves (`engine.run`/`process`).
    docs: Iterator[Document] = _Timed(_count_read(reader.documents(), tally), tally.seconds, "read")

    sketch_path = None
    spool = out_dir / "clean.spool.jsonl"
    dedup_spool = out_dir / "outcomes.spool"
    if config.filters.boilerplate_min_docs:
        sketch_path = str(out_dir / "boilerplate.sketch.npy")
        try:
            docs = _spool_cleaned(
                engine.run(DocumentWorker, (config, None), "clean_only", reader, tally)
                if engine
                else ordered_map(
                    DocumentWorker, (config, None), "clean_only", _clean_batches(docs), workers, parallel_after_bytes
                ),
                spool,
                sketch_path,
                tally,
            )
        except BaseException:
            spool.unlink(missing_ok=True)
            Path(sketch_path).unlink(missing_ok=True)
            raise

    splits = _SplitWriter(out_dir, config, seed)
    exact_seen: set[bytes] = set()
    near_index = (
        NearDuplicateIndex(config.near_threshold, config.minhash_perms)
        if config.dedup == "near" and not engine
        else None
    )
    per_source = reader.per_source
    try:
        if engine:  # duplicates are found on the cluster: each outcome comes with its verdict
            results = engine.process(
                DocumentWorker, (config, sketch_path, seed), docs if sketch_path else reader, tally, dedup_spool
            )
        else:
            results = (
                (metas, outcomes, cpu, None)
                for metas, outcomes, cpu in ordered_map(
                    DocumentWorker,
                    (config, sketch_path, seed),
                    "process",
                    _batches(docs, already_clean=sketch_path is not None),
                    workers,
                    parallel_after_bytes,
                )
            )
        for metas, outcomes, cpu, verdicts in results:
            tally.seconds["clean"] += cpu
            for index, ((source, origin), outcome) in enumerate(zip(metas, outcomes)):
                _take(
                    outcome,
                    source,
                    origin,
                    tally,
                    per_source,
                    exact_seen,
                    near_index,
                    splits,
                    config,
                    verdicts[index] if verdicts is not None else UNDECIDED,
                )
    except BaseException:
        splits.discard()
        raise
    finally:
        spool.unlink(missing_ok=True)
        dedup_spool.unlink(missing_ok=True)
        if sketch_path:
            Path(sketch_path).unlink(missing_ok=True)
    del exact_seen, near_index  # the contamination index gets their memory
    counts = tally.counts
    if counts["documents_kept"] == 0:
        splits.discard()
        raise DataError(_empty_corpus_message(counts, tally.dropped, reader.skips))
    splits.finish()

    contamination = None
    if config.contamination_ngram:
        began = time.perf_counter()
        targets: dict[str, Iterable[str]] = {
            name: read_split(splits.path(name)) for name in ("val", "test") if splits.chunks[name]
        }
        for path in eval_paths:
            from llmtui.data.contamination import read_eval_file

            targets[f"eval:{path.name}"] = read_eval_file(path)
        from llmtui.data.contamination import check_contamination

        contamination = check_contamination(
            read_split(splits.path("train")),
            targets,
            config.contamination_ngram,
            out_dir,
            workers,
            parallel_after_bytes,
        )
        tally.seconds["contamination"] += time.perf_counter() - began

    total_seconds = time.perf_counter() - started
    report = DataReport(
        documents_read=counts["documents_read"],
        documents_kept=counts["documents_kept"],
        exact_duplicates=counts["exact_duplicates"],
        near_duplicates=counts["near_duplicates"],
        dropped_by_filter=dict(tally.dropped),
        lines_removed=dict(tally.lines_removed),
        skipped=[{"source": s.source, "path": s.path, "reason": s.reason} for s in reader.skips],
        ignored=reader.ignored_report(),
        repaired_encoding=counts["repaired_encoding"],
        pii_scrubbed=dict(tally.pii),
        bytes_read=counts["bytes_read"],
        characters_kept=counts["characters_kept"],
        splits={
            name: SplitCounts(splits.documents[name], splits.chunks[name], splits.characters[name])
            for name in SPLITS
            if name != "test" or config.test_fraction > 0
        },
        per_source={name: dict(c) for name, c in per_source.items()},
        document_length_histogram=dict(sorted(tally.histogram.items(), key=lambda kv: int(kv[0].split("-")[0]))),
        contamination=contamination,
        web=reader.web_counts(),
        timings={
            "total_s": round(total_seconds, 3),
            "workers": workers,
            **{f"{k}_s": round(v, 3) for k, v in tally.seconds.items()},
        },
    )
    write_data_report(out_dir, report)
    return report


def _eval_path(name: str, base: Path) -> Path:
    path = Path(os.path.expanduser(name))
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise DataError(f"data.eval_files: no such file {name!r} ({path})")
    return path


def _count_read(docs: Iterator[Document], tally: _Counts) -> Iterator[Document]:
    for doc in docs:
        tally.counts["documents_read"] += 1
        tally.counts["bytes_read"] += len(doc.text.encode("utf-8", errors="surrogatepass"))
        yield doc


def _batches(
    docs: Iterable[Document],
    already_clean: bool = False,
    batch_bytes: int = BATCH_BYTES,
    batch_docs: int | None = BATCH_DOCS,
) -> Iterator[tuple[list, list, int]]:
    metas, payload, size = [], [], 0
    for doc in docs:
        metas.append((doc.source, doc.origin))
        payload.append((doc.text, doc.repaired, already_clean))
        size += len(doc.text)
        if size >= batch_bytes or (batch_docs and len(payload) >= batch_docs):
            yield metas, payload, size
            metas, payload, size = [], [], 0
    if payload:
        yield metas, payload, size


def _clean_batches(docs: Iterable[Document]) -> Iterator[tuple[list, list, int]]:
    for metas, payload, size in _batches(docs):
        yield metas, [(text, repaired) for text, repaired, _ in payload], size


def _spool_cleaned(
    cleaned: Iterable[tuple[list, list, float]], spool: Path, sketch_path: str, tally: _Counts
) -> Iterator[Document]:
    """Pass 1 of boilerplate removal: write the cleaned documents (`DocumentWorker.clean_only`'s, in reading
    order) to a spool file while counting their lines in a sketch."""
    sketch = new_sketch()
    with open(spool, "w", encoding="utf-8") as out:
        for metas, outcomes, cpu in cleaned:
            tally.seconds["clean"] += cpu
            for (source, origin), (text, repaired, pii, hashes) in zip(metas, outcomes):
                sketch_add(sketch, hashes)
                tally.pii.update(pii)
                out.write(json.dumps({"s": source, "o": origin, "t": text, "r": repaired}, ensure_ascii=False) + "\n")
    np.save(sketch_path, sketch)
    del sketch

    def read_back() -> Iterator[Document]:
        with open(spool, encoding="utf-8") as handle:
            for line in handle:
                item = json.loads(line)
                yield Document(item["s"], item["o"], item["t"], item["r"])

    return read_back()


UNDECIDED = "undecided"  # a document whose duplicate check `_take` makes itself (the local engine)


def _take(
    outcome: DocumentOutcome,
    source: str,
    origin: str,
    tally: _Counts,
    per_source: dict,
    exact_seen: set,
    near_index: NearDuplicateIndex | None,
    splits: _SplitWriter,
    config: DataConfig,
    verdict: str | None = UNDECIDED,
) -> None:
    """Count one document and write it to its split unless it is a duplicate. `verdict`: decided elsewhere (a
    cluster's dedup): None, "exact_duplicates" or "near_duplicates"."""
    counts = tally.counts
    stats = per_source.setdefault(source, Counter())
    if outcome.repaired:
        counts["repaired_encoding"] += 1
    tally.pii.update(outcome.pii)
    tally.lines_removed.update(outcome.lines_removed)
    if outcome.dropped_by:
        tally.dropped[outcome.dropped_by] += 1
        stats["dropped_by_filter"] += 1
        return
    kept, key = outcome.kept, outcome.exact_key
    assert kept is not None and key is not None  # the worker fills both for every document it keeps
    began = time.perf_counter()
    duplicate = None if verdict == UNDECIDED else verdict
    if config.dedup != "none" and verdict == UNDECIDED:
        if key in exact_seen:
            duplicate = "exact_duplicates"
        else:
            exact_seen.add(key)
            if near_index is not None:
                assert outcome.signature is not None  # the worker signs every kept document when dedup is near
                if near_index.seen_similar(outcome.signature):
                    duplicate = "near_duplicates"
    tally.seconds["dedup"] += time.perf_counter() - began
    if duplicate:
        counts[duplicate] += 1
        stats[duplicate] += 1
        return
    characters = kept.characters
    counts["documents_kept"] += 1
    counts["characters_kept"] += characters
    stats["documents_kept"] += 1
    stats["characters_kept"] += characters
    tally.histogram[_length_bucket(characters)] += 1
    began = time.perf_counter()
    splits.add(kept, key)
    tally.seconds["write"] += time.perf_counter() - began


def _length_bucket(n: int) -> str:
    low = 1
    while low * 10 <= n:
        low *= 10
    return f"{low}-{low * 10 - 1}"


class _SplitWriter:
    """Chunks documents and writes each to train, val or test by a seeded hash (independent of reading order)."""

    def __init__(self, out_dir: Path, config: DataConfig, seed: int):
        self.out_dir = out_dir
        self.config = config
        self.seed_key = seed.to_bytes(8, "little")
        self.names = [n for n in SPLITS if n != "test" or config.test_fraction > 0]
        self.handles = {n: open(self._tmp(n), "w", encoding="utf-8") for n in self.names}
        self.documents: Counter = Counter()
        self.chunks: Counter = Counter()
        self.characters: Counter = Counter()
        self.doc_index = 0
        self.lowest_train: tuple[float, int] | None = None  # whole train document with the smallest bucket
        self.highest_held_out: dict[str, tuple[float, int]] = {}

    def _tmp(self, name: str) -> Path:
        return self.out_dir / f"{name}.jsonl.tmp"

    def path(self, name: str) -> Path:
        return self.out_dir / f"{name}.jsonl"

    def _split_of(self, bucket: float) -> str:
        if bucket < self.config.val_fraction:
            return "val"
        if bucket < self.config.val_fraction + self.config.test_fraction:
            return "test"
        return "train"

    def add(self, kept: KeptDocument, key: bytes) -> None:
        """Write a document's chunks (JSON lines from the worker) to its split, or each chunk to its own."""
        lines, chunk_buckets, lengths = kept.lines, kept.buckets, kept.lengths
        doc = self.doc_index
        self.doc_index += 1
        ending = f', "doc": {doc}}}\n'
        if chunk_buckets is None:
            # split_by = "tail": everything is written to train in reading order; `finish` moves the tail out.
            bucket = 1.0 if self.config.split_by == "tail" else split_bucket(key, self.seed_key)
            name = self._split_of(bucket)
            self.documents[name] += 1
            if name == "train" and (self.lowest_train is None or bucket < self.lowest_train[0]):
                self.lowest_train = (bucket, doc)
            handle = self.handles[name]
            for line in lines:
                handle.write(line + ending)
            self.chunks[name] += len(lines)
            self.characters[name] += sum(lengths)
            return
        names = set()
        for line, bucket, length in zip(lines, chunk_buckets, lengths):
            name = self._split_of(bucket)
            names.add(name)
            self.handles[name].write(line + ending)
            self.chunks[name] += 1
            self.characters[name] += length
        for name in names:
            self.documents[name] += 1

    def finish(self) -> None:
        for handle in self.handles.values():
            handle.close()
        if self.config.split_by == "tail":
            self._hold_out_tail()
        # A small corpus may leave a held-out split empty: move one train document (or the train tail) over.
        for name in self.names[1:]:
            if self.chunks[name] == 0:
                self._fill(name)
        if self.chunks["train"] == 0:
            raise DataError(
                "the corpus left nothing for training after the split",
                hint="add text, or lower data.val_fraction / data.test_fraction",
            )
        for name in self.names:
            self._tmp(name).replace(self.path(name))

    def _hold_out_tail(self) -> None:
        """split_by = "tail": the last val_fraction of the characters (in reading order, whole chunks) becomes
        validation, and the test_fraction before it test, as nanoGPT splits a text at 90%."""
        total = self.characters["train"]
        val_from = total * (1.0 - self.config.val_fraction)
        test_from = val_from - total * self.config.test_fraction
        train_tmp, kept_tmp = self._tmp("train"), self.out_dir / "train.jsonl.keep"
        targets = {name: open(self._tmp(name), "a", encoding="utf-8") for name in self.names[1:]}
        docs: dict[str, set] = {name: set() for name in self.names}
        seen = 0
        try:
            with open(train_tmp, encoding="utf-8") as source, open(kept_tmp, "w", encoding="utf-8") as kept:
                for line in source:
                    item = json.loads(line)
                    length = len(item["text"])
                    middle = seen + length / 2  # a chunk goes where most of it lies
                    seen += length
                    name = (
                        "val"
                        if middle >= val_from
                        else "test"
                        if "test" in targets and middle >= test_from
                        else "train"
                    )
                    (kept if name == "train" else targets[name]).write(line)
                    docs[name].add(item["doc"])
                    if name != "train":
                        for counter, value in ((self.chunks, 1), (self.characters, length)):
                            counter[name] += value
                            counter["train"] -= value
        finally:
            for handle in targets.values():
                handle.close()
        kept_tmp.replace(train_tmp)
        for name in self.names:
            self.documents[name] = len(docs[name])

    def _fill(self, name: str) -> None:
        train_tmp = self._tmp("train")
        if self.chunks["train"] < 2:
            raise DataError(
                "the corpus gives a single chunk of text: too little to hold any out for "
                f"{'validation' if name == 'val' else 'testing'}",
                hint="add more text, or lower data.chunk_chars so documents are split into more chunks",
            )
        fraction = self.config.val_fraction if name == "val" else self.config.test_fraction
        if self.lowest_train is not None and self.documents["train"] >= 2:
            doc = self.lowest_train[1]
            moving = lambda index, item: item["doc"] == doc  # noqa: E731
            self.lowest_train = None
        else:  # one long document: hold out its last chunks, as a share of them
            tail = max(1, round(self.chunks["train"] * fraction))
            first = self.chunks["train"] - tail
            moving = lambda index, item: index >= first  # noqa: E731
        kept_tmp = self.out_dir / "train.jsonl.keep"
        moved_docs = set()
        with (
            open(train_tmp, encoding="utf-8") as source,
            open(kept_tmp, "w", encoding="utf-8") as kept,
            open(self._tmp(name), "a", encoding="utf-8") as target,
        ):
            for index, line in enumerate(source):
                item = json.loads(line)
                if moving(index, item):
                    target.write(line)
                    moved_docs.add(item["doc"])
                    for counter, value in ((self.chunks, 1), (self.characters, len(item["text"]))):
                        counter[name] += value
                        counter["train"] -= value
                else:
                    kept.write(line)
        kept_tmp.replace(train_tmp)
        self.documents[name] += len(moved_docs)
        self.documents["train"] = max(self.documents["train"] - len(moved_docs), 1 if self.chunks["train"] else 0)

    def discard(self) -> None:
        for name, handle in self.handles.items():
            handle.close()
            self._tmp(name).unlink(missing_ok=True)


def _empty_corpus_message(counts: Counter, dropped: Counter, skips: list) -> str:
    if counts["documents_read"] == 0:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skips[:5]) or "the sources hold no documents"
        return f"the corpus is empty: no document could be read ({reasons})"
    causes = [f"{name} removed {n}" for name, n in dropped.most_common()]
    for kind in ("exact_duplicates", "near_duplicates"):
        if counts[kind]:
            causes.append(f"dedup removed {counts[kind]} {kind.replace('_', ' ')}")
    first = dropped.most_common(1)[0][0] if dropped else "data.dedup"
    return (
        f"the corpus is empty after cleaning: of {counts['documents_read']} documents read, "
        + ", ".join(causes)
        + f" (loosen data.{first.removeprefix('data.')} or the other filters)"
    )


def read_split(path: Path) -> Iterator[str]:
    """Documents (chunks) of a split file written by `prepare_data`."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)["text"]


def preview_data(config: DataConfig, base: Path, count: int = 5) -> dict:
    """Clean and filter the first documents of the sources until `count` are kept (no split, no files)."""
    reader = SourceReader(config, base)
    worker = DocumentWorker(config, None)
    samples: list[dict[str, object]] = []
    dropped: Counter[str] = Counter()
    duplicates = read = 0
    seen: set[bytes] = set()
    for doc in reader.documents():
        read += 1
        result, why = worker.clean_and_filter(doc.text, doc.repaired)
        if why:
            dropped[why] += 1
            continue
        text, repaired, key = result.text, result.repaired, exact_key(result.text)
        if config.dedup != "none" and key in seen:
            duplicates += 1
            continue
        seen.add(key)
        samples.append(
            {
                "source": doc.source,
                "origin": doc.origin,
                "characters": len(text),
                "repaired_encoding": repaired,
                "text": text,
            }
        )
        if len(samples) >= count:
            break
    return {
        "documents_read": read,
        "dropped_by_filter": dict(dropped),
        "exact_duplicates": duplicates,
        "skipped": [{"source": s.source, "path": s.path, "reason": s.reason} for s in reader.skips],
        "ignored": reader.ignored_report(),
        "samples": samples,
    }


def report_messages(report: DataReport, most_skips: int = 20) -> list[tuple[str, str]]:
    """What the data stage tells the person watching, as (level, text): the counts, then warnings (files
    ignored, sources skipped, held-out text that shares n-grams with train)."""
    splits = report.splits
    messages = [
        (
            "info",
            f"data: {report.documents_kept} of {report.documents_read} documents kept, "
            f"{report.characters_kept:,} characters; train {splits['train'].chunks} chunks, "
            f"validation {splits['val'].chunks}",
        )
    ]
    if ignored_line(report.ignored):
        messages.append(("warning", ignored_line(report.ignored)))
    messages += [("warning", f"skipped {skip['path']}: {skip['reason']}") for skip in report.skipped[:most_skips]]
    if len(report.skipped) > most_skips:
        messages.append(
            ("warning", f"... and {len(report.skipped) - most_skips} more skipped (llmtui data inspect RUN)")
        )
    contamination = report.contamination or {}
    for name, found in contamination.items():
        if isinstance(found, dict) and found.get("contaminated"):
            messages.append(
                (
                    "warning",
                    f"contamination: {found['contaminated']} of {found['examples']} {name} "
                    f"examples share a {contamination['ngram']}-word n-gram with train",
                )
            )
    return messages


def ignored_line(ignored: dict | None) -> str:
    """ "ignored: 3 files, *.png" (empty when folders held nothing else), from a report's `ignored` counts."""
    ignored = ignored or {}
    if not ignored.get("files"):
        return ""
    kinds = ", ".join(
        f"{pattern}" + (f" ({n})" if len(ignored["by_type"]) > 1 else "")
        for pattern, n in list(ignored["by_type"].items())[:6]
    )
    more = ", …" if len(ignored["by_type"]) > 6 else ""
    return (
        f"ignored: {ignored['files']} file{'s' if ignored['files'] != 1 else ''}, {kinds}{more} "
        "(not read: a source's include decides which files of a folder are read)"
    )


__all__ = [
    "DocumentOutcome",
    "KeptDocument",
    "chunk_text",
    "ignored_line",
    "clean_text",
    "prepare_data",
    "preview_data",
    "read_split",
    "report_messages",
]

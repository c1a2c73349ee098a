"""Sources: what the recipe names, turned into one stream of documents.

A source is a file, a folder (read recursively, filtered by include/exclude globs), a glob pattern, an
http(s) URL (one page, or a crawl), `hf:<dataset>` (Hugging Face `datasets`, streamed; an optional extra)
or a `builtin:` corpus. Inputs that cannot be used (binary, empty, unreadable, HTTP errors, robots.txt…)
are skipped and reported with a reason; a source that names nothing at all is an error.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.config.recipe import DataConfig, SourceConfig
from llmtui.data.builtin import BUILTIN_CORPORA, builtin_fingerprint, iter_builtin
from llmtui.data.readers import detect, kind_pattern, read_file, supported
from llmtui.errors import DataError


@dataclass
class Document:
    source: str  # the recipe source it came from
    origin: str  # file path (with :line or #piece), URL, dataset row or builtin key
    text: str
    repaired: bool = False  # decoded with the fallback encoding


@dataclass
class Skip:
    source: str
    path: str
    reason: str


def source_kind(path: str) -> str:
    if path.startswith("builtin:"):
        return "builtin"
    if path.startswith("hf:"):
        return "hf"
    if path.startswith(("http://", "https://")):
        return "url"
    return "files"


def resolve_files(source: SourceConfig, base: Path, ignored: Counter | None = None) -> list[Path]:
    """The files a file source names, sorted; raises DataError when it names nothing.

    Files of a folder that are not read (not a supported format, or not matching include / matching exclude)
    are counted by type into `ignored` ({"*.png": 3}).
    """
    raw = os.path.expanduser(source.path)
    path = Path(raw) if os.path.isabs(raw) else base / raw
    if glob.has_magic(raw):
        files = sorted(
            Path(p)
            for p in glob.glob(str(path), recursive=True)
            if Path(p).is_file() and not _excluded(Path(p).name, source.exclude)
        )
        if not files:
            raise DataError(f"data source {source.path!r}: the pattern matches no file")
        return files
    if path.is_file():
        return [path]
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataError(f"data source {source.path!r}: permission denied (cannot list the folder {path})")
        files = []
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if _wanted(name, source.include, source.exclude):
                    files.append(Path(folder, name))
                elif ignored is not None:
                    ignored[kind_pattern(name)] += 1
        if not files:
            wanted = source.include or "of a supported format (.txt .md .jsonl .json .csv .tsv .parquet .html)"
            raise DataError(
                f"data source {source.path!r}: the folder has no file {'matching ' if source.include else ''}{wanted}",
                hint='set include = ["*.ext"] (and format) on the source to read other files',
            )
        return files
    if not path.exists():
        raise DataError(f"data source {source.path!r}: no such file or folder ({path})")
    raise DataError(f"data source {source.path!r}: not a regular file or folder")


def _wanted(name: str, include: list[str], exclude: list[str]) -> bool:
    chosen = any(fnmatch.fnmatch(name, p) for p in include) if include else supported(name)
    return chosen and not _excluded(name, exclude)


def _excluded(name: str, exclude: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in exclude)


def source_fingerprint(source: SourceConfig, base: Path) -> list:
    """What decides a source's documents, found cheaply (names, sizes and times; nothing is read or fetched)."""
    kind = source_kind(source.path)
    if kind == "builtin":
        return [builtin_fingerprint(source.path.split(":", 1)[1])]
    if kind in ("url", "hf"):
        return [source.model_dump(mode="json")]  # a rerun reads the web cache; a dataset is pinned by its name
    return [_file_stamp(f) for f in resolve_files(source, base)]


def _file_stamp(path: Path) -> list:
    try:
        stat = path.stat()
    except OSError:  # a dangling link or a file removed meanwhile: the reader reports it as skipped
        return [str(path), None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


class SourceReader:
    """Reads every source of a `[data]` section in order, recording skips and per-source counts."""

    def __init__(self, config: DataConfig, base: Path):
        self.config = config
        self.base = base
        self.skips: list[Skip] = []
        self.ignored: Counter = Counter()  # folder files not read, by type
        self.per_source: dict[str, Counter] = {}
        self.fetcher: Any = None  # a data.web.Fetcher, made on the first URL

    def documents(self) -> Iterator[Document]:
        total = 0
        for source in self.config.sources:
            stats = self.per_source.setdefault(source.path, Counter())
            for count, doc in enumerate(self._iter_source(source, stats), start=1):
                stats["documents_read"] += 1
                yield doc
                total += 1
                if self.config.max_documents and total >= self.config.max_documents:
                    return
                if source.limit and count >= source.limit:
                    break

    def _skip(self, source: SourceConfig, path: str, reason: str) -> None:
        self.skips.append(Skip(source.path, path, reason))
        self.per_source.setdefault(source.path, Counter())["skipped"] += 1

    def _iter_source(self, source: SourceConfig, stats: Counter) -> Iterator[Document]:
        kind = source_kind(source.path)
        if kind == "builtin":
            name = source.path.split(":", 1)[1]
            if name not in BUILTIN_CORPORA:
                raise DataError(
                    f"data source {source.path!r}: unknown builtin corpus",
                    hint=f"builtin corpora: {', '.join('builtin:' + n for n in BUILTIN_CORPORA)}",
                )
            for origin, text in iter_builtin(name):
                yield Document(source.path, origin, text)
        elif kind == "url":
            yield from self._iter_url(source, stats)
        elif kind == "hf":
            yield from iter_hf_dataset(source)
        else:
            for path in resolve_files(source, self.base, self.ignored):
                fmt, compression = detect(path, source.format)
                problems: list[str] = []
                for origin, text, repaired in read_file(
                    path, fmt, compression, source.text_field, source.encoding, problems.append
                ):
                    yield Document(source.path, origin, text, repaired)
                for reason in problems:
                    self._skip(source, str(path), reason)

    def _iter_url(self, source: SourceConfig, stats: Counter) -> Iterator[Document]:
        from llmtui.data.web import Fetcher, iter_url

        if self.fetcher is None:
            self.fetcher = Fetcher(self.config.web)
        crawl: dict = {}
        for url, text in iter_url(source, self.fetcher, lambda u, r: self._skip(source, u, r), crawl):
            yield Document(source.path, url, text)
        stats["pages_requested"] += crawl.get("pages_requested", 0)

    def ignored_report(self) -> dict:
        """{"files": 3, "by_type": {"*.png": 3}}: what folders held that was not read."""
        return {"files": sum(self.ignored.values()), "by_type": dict(self.ignored.most_common())}

    def web_counts(self) -> dict:
        if self.fetcher is None:
            return {}
        return {"requests": self.fetcher.requests, "cache_hits": self.fetcher.cache_hits}


def iter_hf_dataset(source: SourceConfig) -> Iterator[Document]:
    """Rows of a Hugging Face dataset, streamed (needs the optional `datasets` package and a connection)."""
    from llmtui.data.readers import find_texts

    name = source.path.split(":", 1)[1]
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"data source {source.path!r}: reading Hugging Face datasets needs the 'datasets' package",
            hint="pip install 'llmtui[datasets]'  (or save the dataset as .jsonl/.parquet files and name those)",
        ) from None
    try:
        rows = datasets.load_dataset(name, source.subset or None, split=source.split, streaming=True)
        parts = source.text_field.split(".")
        for index, row in enumerate(rows):
            texts = find_texts(row, parts)
            if texts:
                yield Document(source.path, f"{source.path}[{source.split}]:{index}", "\n\n".join(texts))
    except DataError:
        raise
    except Exception as exc:  # the datasets library raises many kinds: missing, offline, bad split…
        raise DataError(
            f"data source {source.path!r}: cannot load the dataset: {type(exc).__name__}: {exc}",
            hint="check the name, subset and split on huggingface.co, and the network connection",
        ) from None

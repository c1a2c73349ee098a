"""Readers that turn the recipe's sources into a stream of documents.

A source is a file, a folder (read recursively, filtered by include/exclude globs), a glob pattern, or a
`builtin:` corpus. Unreadable inputs inside a folder are skipped and reported with a reason; a source
that names nothing at all is an error.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from llmtui.config.recipe import SourceConfig
from llmtui.data.builtin import BUILTIN_CORPORA, builtin_fingerprint, iter_builtin
from llmtui.errors import DataError

BINARY_SNIFF_BYTES = 8192


@dataclass
class Document:
    source: str  # the recipe source it came from
    origin: str  # file path or builtin key
    text: str


@dataclass
class Skip:
    source: str
    path: str
    reason: str


def resolve_files(source: SourceConfig, base: Path) -> list[Path]:
    """The files a (non-builtin) source names, sorted; raises DataError when it names nothing."""
    raw = os.path.expanduser(source.path)
    path = Path(raw) if os.path.isabs(raw) else base / raw
    if glob.has_magic(raw):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"data source {source.path!r}: the pattern matches no file")
        return files
    if path.is_file():
        return [path]
    if path.is_dir():
        files = []
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if _wanted(name, source.include, source.exclude):
                    files.append(Path(folder, name))
        if not files:
            raise DataError(f"data source {source.path!r}: the folder has no file matching {source.include}",
                            hint="set include = [\"*.ext\"] on the source to read other files")
        return files
    if not path.exists():
        raise DataError(f"data source {source.path!r}: no such file or folder ({path})")
    raise DataError(f"data source {source.path!r}: not a regular file or folder")


def _wanted(name: str, include: list[str], exclude: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in include) and not any(fnmatch.fnmatch(name, p) for p in exclude)


def source_fingerprint(source: SourceConfig, base: Path) -> list:
    """What decides a source's documents: names, sizes and modification times (cheap, no reading)."""
    if source.path.startswith("builtin:"):
        return [builtin_fingerprint(source.path.split(":", 1)[1])]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in resolve_files(source, base)]


def iter_source(source: SourceConfig, base: Path, skips: list[Skip]) -> Iterator[Document]:
    """Documents of one source; unreadable files are appended to `skips` with their reason."""
    if source.path.startswith("builtin:"):
        name = source.path.split(":", 1)[1]
        if name not in BUILTIN_CORPORA:
            raise DataError(f"data source {source.path!r}: unknown builtin corpus",
                            hint=f"builtin corpora: {', '.join('builtin:' + n for n in BUILTIN_CORPORA)}")
        for origin, text in iter_builtin(name):
            yield Document(source.path, origin, text)
        return
    for path in resolve_files(source, base):
        text, reason = read_text_file(path)
        if text is None:
            skips.append(Skip(source.path, str(path), reason))
            continue
        yield Document(source.path, str(path), text)


def read_text_file(path: Path) -> tuple[str | None, str]:
    """The file's text, or None with the reason it cannot be used as text."""
    try:
        raw = path.read_bytes()
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if not raw:
        return None, "empty file"
    if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
        return None, "binary file (contains NUL bytes)"
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (invalid byte {raw[exc.start]:#04x} at offset {exc.start})"

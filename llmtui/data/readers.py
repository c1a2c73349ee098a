"""File readers: one function per format, each a stream of documents from one file.

Formats: plain text and Markdown, JSON Lines and JSON (a text field found by a path), CSV/TSV (a column),
Parquet (a column) and HTML (main text extracted by trafilatura), each also gzip/zstd/bz2/xz compressed
(except Parquet, which compresses inside the file). Big text files stream in pieces of about
`TEXT_PIECE_BYTES` cut at blank lines, so memory stays bounded whatever the file size.

A reader yields `(origin, text, repaired)` tuples and reports problems through `problem(reason)`:
a file-level problem (binary, empty, corrupt) ends the file; record-level problems (a JSON line that does
not parse, a record without the field) are counted and reported once per file with the first example.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

SNIFF_BYTES = 8192
TEXT_PIECE_BYTES = 4 << 20  # big text files become documents of about this size
MAX_WHOLE_FILE_BYTES = 256 << 20  # JSON and HTML files are parsed whole; larger ones are refused
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
FORMATS_BY_SUFFIX = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}


def supported(name: str) -> bool:
    """Whether a file name says a format the readers know (optionally compressed): what a folder reads by default."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in FORMATS_BY_SUFFIX


def kind_pattern(name: str) -> str:
    """How an ignored file is counted in the data report: by its type, `*.png` (or its name when it has none)."""
    suffix = Path(name).suffix.lower()
    return f"*{suffix}" if suffix else name


_CONTROL_BYTES = bytes([*range(0, 9), 11, *range(14, 32), 127])
Record = tuple[str, str, bool]  # origin, text, repaired (decoded by the fallback encoding)


class FileProblem(Exception):
    """The whole file cannot be used; the message is the reason shown in the report."""


def detect(path: Path, declared: str = "auto") -> tuple[str, str | None]:
    """(format, compression) of a file from its name, unless the recipe declares the format."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    if declared != "auto":
        return declared, compression
    return FORMATS_BY_SUFFIX.get(suffixes[-1] if suffixes else "", "text"), compression


def open_binary(path: Path, compression: str | None) -> Any:  # a binary file object with peek()
    if compression is None:
        return open(path, "rb")
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    import zstandard

    handle = open(path, "rb")
    # Buffered so that every reader can peek at the start of the decompressed data.
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(handle, closefd=True))


def _decompression_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, gzip.BadGzipFile, lzma.LZMAError, zlib.error, OSError, ValueError]
    if "zstandard" in sys.modules:
        errors.append(sys.modules["zstandard"].ZstdError)
    return tuple(errors)


def decode(raw: bytes, encoding: str) -> tuple[str, bool]:
    """Text of `raw`; with `auto`, UTF-8 or else Windows-1252 (then `repaired` is True).

    Raises FileProblem when the bytes are not text in the declared encoding, or look binary.
    """
    if encoding != "auto":
        try:
            return raw.decode(encoding), False
        except UnicodeDecodeError as exc:
            raise FileProblem(
                f"not {encoding} text (invalid byte {raw[exc.start]:#04x} at offset {exc.start})"
            ) from None
    try:
        return raw.decode("utf-8-sig"), False
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    controls = len(raw) - len(raw.translate(None, _CONTROL_BYTES))
    if controls > len(raw) // 100:
        raise FileProblem(f"binary or unknown encoding (not UTF-8 at offset {first_bad}, {controls} control bytes)")
    # Windows-1252 leaves five bytes undefined; Latin-1 maps every byte.
    try:
        return raw.decode("cp1252"), True
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


def read_file(
    path: Path, fmt: str, compression: str | None, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    """Documents of one file; a file-level problem is passed to `problem` and ends the file."""
    if fmt == "parquet":
        if compression:
            problem("a compressed Parquet file is not supported (Parquet compresses inside the file)")
            return
        try:
            yield from _read_parquet(path, text_field, problem)
        except FileProblem as exc:
            problem(str(exc))
        except OSError as exc:
            problem(_os_reason(exc))
        return
    try:
        with open_binary(path, compression) as stream:
            reader = {
                "text": _read_text,
                "markdown": _read_text,
                "jsonl": _read_jsonl,
                "json": _read_json,
                "csv": _read_csv,
                "tsv": _read_csv,
                "html": _read_html,
            }[fmt]
            yield from reader(path, stream, fmt, text_field, encoding, problem)
    except FileProblem as exc:
        problem(str(exc))
    except PermissionError:
        problem("permission denied")
    except _decompression_errors() as exc:
        if compression and not isinstance(exc, (PermissionError, FileNotFoundError)):
            problem(f"corrupt {compression} data: {exc}")
        else:
            problem(_os_reason(exc))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder"
    return f"unreadable: {getattr(exc, 'strerror', None) or exc}"


def _sniff(head: bytes) -> None:
    if not head:
        raise FileProblem("empty file")
    if b"\x00" in head[:SNIFF_BYTES]:
        raise FileProblem("binary file (contains NUL bytes)")


def _read_text(
    path: Path, stream: BinaryIO, fmt: str, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    yield from text_pieces(path, stream, encoding)


def text_pieces(
    path: Path, stream: BinaryIO, encoding: str, start: int = 0, end: int | None = None
) -> Iterator[Record]:
    """The documents of a text file: the whole file when it holds at most `TEXT_PIECE_BYTES`, else pieces cut
    at the first blank line (else line break, else a character boundary) within half a piece after each
    multiple of `TEXT_PIECE_BYTES`. Where a cut falls depends only on the bytes near it, so a byte range
    `[start, end)` of the file (multiples of `TEXT_PIECE_BYTES`; `stream` placed at `start`) yields exactly
    the pieces a whole read yields there: piece k begins at the cut near k x TEXT_PIECE_BYTES."""
    size = TEXT_PIECE_BYTES
    window = size // 2 + 4
    buffer, base, ended = b"", start, False  # buffer holds the file's bytes from offset `base`

    def fill(upto: int) -> None:
        nonlocal buffer, ended
        while not ended and base + len(buffer) < upto:
            more = stream.read(upto - base - len(buffer))
            ended = not more
            buffer += more

    piece = start // size
    if start == 0:
        fill(size + 1)
        _sniff(buffer)
        if ended and len(buffer) <= size:  # the common case: the whole file is one document
            text, repaired = decode(buffer, encoding)
            yield str(path), text, repaired
            return
        at = 0
    else:
        fill(start + window)
        if not buffer:
            return
        at = start + _cut(buffer, 0)
    while True:
        boundary = (piece + 1) * size
        fill(boundary + window)
        last = base + len(buffer) <= boundary or (end is not None and boundary >= end)
        until = base + len(buffer) if base + len(buffer) <= boundary else boundary + _cut(buffer, boundary - base)
        head = buffer[at - base : until - base]
        if piece:
            head = head.lstrip(b"\n")
        if head.strip():
            text, repaired = decode(head, encoding)
            yield f"{path}#{piece}", text, repaired
        if last:
            return
        buffer, base, at = buffer[until - base :], until, until
        piece += 1


def _cut(buffer: bytes, at: int) -> int:
    """Where the piece boundary near `buffer[at]` falls (relative to `at`): the first blank line within half a
    piece, else the first line break, else `at` moved past any UTF-8 continuation bytes."""
    limit = at + TEXT_PIECE_BYTES // 2
    for mark in (b"\n\n", b"\n"):
        found = buffer.find(mark, at, limit)
        if found >= 0:
            return found - at
    cut = at
    while cut < len(buffer) and cut < at + 4 and (buffer[cut] & 0xC0) == 0x80:
        cut += 1
    return cut - at


def find_texts(value: Any, parts: list[str]) -> list[str]:
    """Strings found in a JSON value by a dotted path; `*` visits every item of a list (or value of a table)."""
    if not parts:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return ["\n".join(value)]
        return []
    head, rest = parts[0], parts[1:]
    if head == "*":
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
        return [text for item in items for text in find_texts(item, rest)]
    if isinstance(value, dict):
        return find_texts(value[head], rest) if head in value else []
    if isinstance(value, list) and head.lstrip("-").isdigit():
        index = int(head)
        return find_texts(value[index], rest) if -len(value) <= index < len(value) else []
    return []


class RecordProblems:
    """Counts record-level problems of one file and reports each kind once, with its first example. The
    problems of a file's byte ranges (read apart) merge into the file's (`merge`, line numbers shifted)."""

    def __init__(self, problem: Callable[[str], None] = lambda reason: None):
        self.problem = problem
        self.counts: Counter = Counter()
        self.first: dict[str, tuple[str, int, str]] = {}  # kind -> (unit, number, detail) of its first example
        self.lines = 0  # lines read (by `read_range`)

    def add(self, kind: str, unit: str, number: int, detail: str = "") -> None:
        self.counts[kind] += 1
        self.first.setdefault(kind, (unit, number, detail))

    def merge(self, other: RecordProblems, lines_before: int) -> None:
        for kind, count in other.counts.items():
            unit, number, detail = other.first[kind]
            self.counts[kind] += count
            self.first.setdefault(kind, (unit, number + lines_before, detail))

    def reasons(self) -> list[str]:
        out = []
        for kind, count in self.counts.items():
            unit, number, detail = self.first[kind]
            out.append(f"{count} {kind} (first: {unit} {number}{': ' + detail if detail else ''})")
        return out

    def flush(self) -> None:
        for reason in self.reasons():
            self.problem(reason)


def _record_text(record: Any, parts: list[str]) -> str | None:
    texts = find_texts(record, parts)
    return "\n\n".join(t for t in texts if t) if texts else None


def _read_jsonl(
    path: Path, stream: Any, fmt: str, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    problems = RecordProblems(problem)
    _sniff(stream.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    for number, text, repaired in jsonl_records(stream, text_field, encoding, problems):
        yield f"{path}:{number}", text, repaired
    problems.flush()


def jsonl_records(
    lines: Iterable[bytes], text_field: str, encoding: str, problems: RecordProblems
) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, repaired) of each JSON line's record; lines that fail go to `problems`."""
    parts = text_field.split(".")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw_text, repaired = decode(line, encoding)
            record = json.loads(raw_text)
        except FileProblem as exc:
            problems.add("lines that are not text", "line", number, str(exc))
            continue
        except json.JSONDecodeError as exc:
            problems.add("lines that are not valid JSON", "line", number, exc.msg)
            continue
        text = _record_text(record, parts)
        if text is None:
            problems.add(f"records without a text at '{text_field}'", "line", number)
            continue
        yield number, text, repaired


def _read_whole(stream: BinaryIO, encoding: str, what: str, advice: str = "") -> tuple[str, bool]:
    """A format that must be parsed whole: read it (up to the size cap), refuse binary, decode."""
    raw = stream.read(MAX_WHOLE_FILE_BYTES + 1)
    _sniff(raw)
    if len(raw) > MAX_WHOLE_FILE_BYTES:
        raise FileProblem(f"{what} over {MAX_WHOLE_FILE_BYTES >> 20} MB{advice}")
    return decode(raw, encoding)


def _read_json(
    path: Path, stream: BinaryIO, fmt: str, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    text, repaired = _read_whole(stream, encoding, "JSON file", "; write it as JSON Lines (.jsonl) to stream it")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    parts = text_field.split(".")
    # A path with `*` names the records: "items.*.text" is one document per item of "items".
    if "*" in parts:
        star = parts.index("*")
        containers = find_containers(value, parts[:star])
        records, parts = (
            [r for c in containers for r in (c if isinstance(c, list) else list(c.values()))],
            parts[star + 1 :],
        )
    else:
        records = value if isinstance(value, list) else [value]
    problems = RecordProblems(problem)
    for index, record in enumerate(records):
        found = _record_text(record, parts)
        if found is None:
            problems.add(f"records without a text at '{text_field}'", "record", index)
            continue
        yield f"{path}:{index}", found, repaired
    problems.flush()


def find_containers(value: Any, parts: list[str]) -> list[Any]:
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return []
    return [value] if isinstance(value, (list, dict)) else []


def _read_csv(
    path: Path, stream: Any, fmt: str, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    _sniff(head)
    repaired = False
    codec = "utf-8-sig" if encoding == "auto" else encoding
    if encoding == "auto" and head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not just a character cut by the sniff window
                codec, repaired = "cp1252", True
    text_stream = io.TextIOWrapper(stream, encoding=codec, errors="replace" if repaired else "strict", newline="")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(text_stream, delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = next(reader, None)
        if header is None:
            raise FileProblem("empty file")
        if text_field in header:
            column = header.index(text_field)
        elif text_field.isdigit() and int(text_field) < len(header):
            column = int(text_field)
        else:
            raise FileProblem(f"no column '{text_field}' (columns: {', '.join(header[:20])}); set text_field")
        problems = RecordProblems(problem)
        for number, row in enumerate(reader, start=2):
            if column >= len(row):
                problems.add("rows too short for the text column", "line", number)
                continue
            if row[column]:
                yield f"{path}:{number}", row[column], repaired
        problems.flush()
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not {codec} text ({exc.reason})") from None
    except csv.Error as exc:
        raise FileProblem(f"malformed CSV: {exc}") from None


def _read_parquet(path: Path, text_field: str, problem: Callable[[str], None]) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise FileProblem("reading Parquet needs pyarrow: pip install pyarrow") from None
    import pyarrow as pa

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise FileProblem(f"not a Parquet file: {exc}") from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise FileProblem(f"no column '{text_field}' (columns: {', '.join(names[:20])}); set text_field")
    row = 0
    for batch in parquet.iter_batches(batch_size=1024, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            if isinstance(value, str) and value:
                yield f"{path}:{row}", value, False
            row += 1


def _read_html(
    path: Path, stream: BinaryIO, fmt: str, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    html, repaired = _read_whole(stream, encoding, "HTML file")
    text = html_main_text(html)
    if not text:
        raise FileProblem("no main text found in the HTML")
    yield str(path), text, repaired


def html_main_text(html: str, url: str | None = None) -> str:
    """The main text of an HTML page (menus, footers and ads dropped) by trafilatura; '' when none."""
    import logging

    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    text = trafilatura.extract(
        html, url=url, include_comments=False, include_tables=True, favor_recall=True, deduplicate=False
    )
    return text or ""


RANGE_FORMATS = ("text", "markdown", "jsonl")  # uncompressed files of these formats can be read in byte ranges


def gzip_size(path: Path) -> int:
    """The decompressed size a gzip file's trailer records (modulo 4 GiB, its last member's only), 0 when
    unreadable: an estimate to cut ranges by, never a bound (the last range of a file reads to its end)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            return int.from_bytes(handle.read(4), "little")
    except OSError:
        return 0


def read_range(
    path: Path,
    fmt: str,
    text_field: str,
    encoding: str,
    start: int,
    end: int,
    problems: RecordProblems,
    compression: str | None = None,
) -> Iterator[tuple[str, bool]]:
    """(text, repaired) of the documents whose bytes begin in `[start, end)` of a file of a `RANGE_FORMATS`
    format, uncompressed or gzip (offsets then in the decompressed bytes, reached by decompressing from the
    start): exactly what `read_file` yields there, so a file read range by range, ranges in order, gives the
    documents a whole read gives. JSON Lines: a line belongs to the range it begins in;
    `problems` gets the range's record problems numbered from its first line, and `problems.lines` the number
    of lines it holds. Text: `start` and `end` are multiples of `TEXT_PIECE_BYTES` (see `text_pieces`).
    A file-level problem raises FileProblem (or OSError), in the range where it lies; a problem of the file's
    head is reported by its first range only (later ranges yield nothing)."""
    with open_binary(path, compression) as handle:
        if start:
            try:
                _sniff(handle.read(SNIFF_BYTES))
            except FileProblem:
                return  # the first range reports it
            handle.seek(start)
        if fmt != "jsonl":
            for _, text, repaired in text_pieces(path, handle, encoding, start, end):
                yield text, repaired
            return
        if start:
            handle.seek(start - 1)
            handle.readline()  # the line that began before the range is the previous range's
        else:
            _sniff(handle.peek(SNIFF_BYTES)[:SNIFF_BYTES])

        def lines() -> Iterator[bytes]:
            position = handle.tell()
            while position < end:
                line = handle.readline()
                if not line:
                    return
                position += len(line)
                problems.lines += 1
                yield line

        for _, text, repaired in jsonl_records(lines(), text_field, encoding, problems):
            yield text, repaired

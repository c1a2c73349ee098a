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
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
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
    buffer = stream.read(TEXT_PIECE_BYTES)
    _sniff(buffer)
    piece = 0
    while True:
        more = stream.read(TEXT_PIECE_BYTES) if buffer else b""
        if not more and piece == 0:  # the common case: the whole file is one document
            text, repaired = decode(buffer, encoding)
            yield str(path), text, repaired
            return
        buffer += more
        if not more:
            if buffer.strip():
                text, repaired = decode(buffer, encoding)
                yield f"{path}#{piece}", text, repaired
            return
        # Cut at the last blank line (else line break) in the buffer: never inside a character.
        cut = buffer.rfind(b"\n\n", 0, TEXT_PIECE_BYTES * 2)
        if cut < TEXT_PIECE_BYTES // 2:
            cut = buffer.rfind(b"\n", 0, TEXT_PIECE_BYTES * 2)
        if cut <= 0:
            cut = TEXT_PIECE_BYTES
            while cut < len(buffer) and (buffer[cut] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
                cut += 1
        head, buffer = buffer[:cut], buffer[cut:].lstrip(b"\n")
        text, repaired = decode(head, encoding)
        yield f"{path}#{piece}", text, repaired
        piece += 1


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


class _RecordProblems:
    """Counts record-level problems of one file and reports each kind once, with its first example."""

    def __init__(self, problem: Callable[[str], None]):
        self.problem = problem
        self.counts: Counter = Counter()
        self.first: dict[str, str] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        self.first.setdefault(kind, example)

    def flush(self) -> None:
        for kind, count in self.counts.items():
            self.problem(f"{count} {kind} (first: {self.first[kind]})")


def _record_text(record: Any, parts: list[str]) -> str | None:
    texts = find_texts(record, parts)
    return "\n\n".join(t for t in texts if t) if texts else None


def _read_jsonl(
    path: Path, stream: Any, fmt: str, text_field: str, encoding: str, problem: Callable[[str], None]
) -> Iterator[Record]:
    parts = text_field.split(".")
    problems = _RecordProblems(problem)
    _sniff(stream.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    seen_any = False
    for number, line in enumerate(stream, start=1):
        seen_any = True
        if not line.strip():
            continue
        try:
            raw_text, repaired = decode(line, encoding)
            record = json.loads(raw_text)
        except FileProblem as exc:
            problems.add("lines that are not text", f"line {number}: {exc}")
            continue
        except json.JSONDecodeError as exc:
            problems.add("lines that are not valid JSON", f"line {number}: {exc.msg}")
            continue
        text = _record_text(record, parts)
        if text is None:
            problems.add(f"records without a text at '{text_field}'", f"line {number}")
            continue
        yield f"{path}:{number}", text, repaired
    if not seen_any:
        raise FileProblem("empty file")
    problems.flush()


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
    problems = _RecordProblems(problem)
    for index, record in enumerate(records):
        found = _record_text(record, parts)
        if found is None:
            problems.add(f"records without a text at '{text_field}'", f"record {index}")
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
        problems = _RecordProblems(problem)
        for number, row in enumerate(reader, start=2):
            if column >= len(row):
                problems.add("rows too short for the text column", f"line {number}")
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

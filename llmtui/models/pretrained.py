"""Pretrained word vectors: read Word2Vec (text, binary) and GloVe (text) files, map them onto a vocabulary.

Reading streams the file and keeps only the rows the vocabulary can use, so a large vectors file costs one
pass and little memory. Every malformed input (missing file, a row of the wrong size, a value that is not a
number, a file shorter than its header says) is a `VectorsError` naming the file and the line.

Mapping: each token is looked up by its piece as written in the vocabulary (vectors trained on our own
tokens, as `llmtui embeddings train` writes them), then by the text it stands for (whole words such as
"Ġthe" -> "the", pieces such as "##ing" -> "ing"), then lowercased. Tokens not found start from random
vectors with the mean and spread of the ones found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmtui.errors import LlmtuiError

FORMATS = ("word2vec", "word2vec_binary", "glove")


class VectorsError(LlmtuiError):
    """A vectors file is missing, malformed, or does not fit the model."""


@dataclass
class Vectors:
    """Rows of a vectors file: `words[i]` has the vector `matrix[i]`."""

    path: Path
    format: str
    dim: int
    count: int  # rows in the file (all of them, not only those kept)
    words: list[str] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}


def read_vectors(path: str | Path, format: str = "auto", keep: Iterable[str] | None = None) -> Vectors:
    """Read a vectors file; with `keep`, only the rows for those words are kept (every row's size is checked,
    the numbers of the rows kept)."""
    path = Path(path)
    if not path.exists():
        raise VectorsError(
            f"vectors file not found: {path}",
            hint="set model.pretrained_path to a Word2Vec or GloVe file, or make one with "
            "`llmtui embeddings train RECIPE`",
        )
    if path.is_dir():
        raise VectorsError(f"model.pretrained_path is a folder, not a vectors file: {path}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise VectorsError(f"unknown vectors format {format!r}", hint=f"use auto or one of {', '.join(FORMATS)}")
    wanted = set(keep) if keep is not None else None
    if fmt == "word2vec_binary":
        return _read_binary(path, wanted)
    return _read_text(path, fmt, wanted)


def detect_format(path: Path) -> str:
    """word2vec (a "count dim" header line, then text rows), word2vec_binary (that header, then raw floats)
    or glove (text rows, no header)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise VectorsError(f"{path}: the vectors file is empty")
    first, _, rest = head.partition(b"\n")
    fields = first.split()
    if len(fields) == 2 and all(x.isdigit() for x in fields):
        probe = rest[: rest.rfind(b"\n")] if b"\n" in rest else rest
        try:
            text = probe.decode("utf-8")
        except UnicodeDecodeError:
            return "word2vec_binary"
        return "word2vec_binary" if "\x00" in text or (rest and not probe) else "word2vec"
    return "glove"


def _read_text(path: Path, fmt: str, wanted: set[str] | None) -> Vectors:
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = declared = None
    count = 0
    with open(path, encoding="utf-8", errors="strict", newline="\n") as f:
        try:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if number == 1 and fmt == "word2vec":
                    declared, dim = _header(path, line)
                    continue
                if not line.strip():
                    continue
                line = line.rstrip(" ")
                spaces = line.count(" ")  # one per number: counting is cheap, splitting every row is not
                if dim is None:  # GloVe: the first row tells the size
                    dim = spaces
                    if dim < 1:
                        raise VectorsError(f"{path}, line {number}: expected a word and its numbers, got {line[:60]!r}")
                if spaces < dim or (spaces > dim and fmt == "word2vec"):
                    raise VectorsError(
                        f"{path}, line {number}: {spaces} numbers where {dim} were expected",
                        hint="is the file cut short, or are rows of different sizes mixed?",
                    )
                # A few GloVe files have words with spaces: the word is what precedes the last `dim` fields.
                word = line[: line.index(" ")] if spaces == dim else line.rsplit(" ", dim)[0]
                count += 1
                if wanted is None or word in wanted:
                    numbers = line.rsplit(" ", dim)[1:]
                    try:
                        rows.append(np.asarray(numbers, dtype=np.float32))
                    except ValueError:
                        bad = next(p for p in numbers if not _is_number(p))
                        raise VectorsError(f"{path}, line {number}: {bad[:30]!r} is not a number") from None
                    words.append(word)
        except UnicodeDecodeError as exc:
            raise VectorsError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a line)",
                hint="a binary Word2Vec file needs model.pretrained_format = 'word2vec_binary'",
            ) from None
    if dim is None or count == 0:
        raise VectorsError(f"{path}: no vectors in the file")
    if declared is not None and count != declared:
        raise VectorsError(
            f"{path}: the header promises {declared} vectors but the file holds {count}",
            hint="the file may be truncated; download or write it again",
        )
    matrix = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return Vectors(path, fmt, dim, count, words, matrix)


def _read_binary(path: Path, wanted: set[str] | None) -> Vectors:
    words: list[str] = []
    rows: list[np.ndarray] = []
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", errors="replace").strip()
        declared, dim = _header(path, header)
        width = 4 * dim
        for index in range(declared):
            raw = bytearray()
            while True:
                ch = f.read(1)
                if not ch:
                    raise VectorsError(
                        f"{path}: truncated: the header promises {declared} vectors, the file ends "
                        f"in vector {index + 1}",
                        hint="download or write the file again",
                    )
                if ch == b" ":
                    break
                if ch != b"\n" or raw:
                    raw += ch
            data = f.read(width)
            if len(data) < width:
                raise VectorsError(
                    f"{path}: truncated: vector {index + 1} of {declared} has {len(data)} of {width} bytes",
                    hint="download or write the file again",
                )
            word = raw.decode("utf-8", errors="replace")
            if wanted is None or word in wanted:
                words.append(word)
                rows.append(np.frombuffer(data, dtype="<f4").astype(np.float32))
    matrix = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return Vectors(path, "word2vec_binary", dim, declared, words, matrix)


def _header(path: Path, line: str) -> tuple[int, int]:
    fields = line.split()
    if len(fields) != 2 or not all(x.isdigit() for x in fields) or int(fields[1]) < 1:
        raise VectorsError(
            f"{path}, line 1: a Word2Vec file starts with 'COUNT DIM', got {line[:60]!r}",
            hint="for a GloVe file (no header) set model.pretrained_format = 'glove'",
        )
    return int(fields[0]), int(fields[1])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def candidates(tokenizer, token_id: int) -> list[tuple[str, str]]:
    """(key, how) pairs to look a token up by, best first."""
    piece = tokenizer.token(token_id)
    text = tokenizer.surface(token_id)
    word = text.strip()
    out = [(piece, "piece"), (text, "text"), (word, "text"), (word.lower(), "lowercase")]
    kept: dict[str, str] = {}  # each candidate once, where it first comes
    for k, how in out:
        if k and k not in kept:
            kept[k] = how
    return list(kept.items())


def map_onto_vocabulary(tokenizer, path: str | Path, format: str = "auto", seed: int = 0) -> tuple[np.ndarray, dict]:
    """The (vocab_size, dim) initial embedding from a vectors file, and a coverage report."""
    from llmtui.tokenizers import SPECIAL_TOKENS

    vocab_size = tokenizer.vocab_size
    special = {tokenizer.backend.token_to_id(t) for t in SPECIAL_TOKENS}
    keys = {i: candidates(tokenizer, i) for i in range(vocab_size) if i not in special}
    vectors = read_vectors(path, format, keep={k for pairs in keys.values() for k, _ in pairs})
    index = vectors.index()
    matrix = np.zeros((vocab_size, vectors.dim), np.float32)
    found = np.zeros(vocab_size, bool)
    how_counts = {"piece": 0, "text": 0, "lowercase": 0}
    word_total = word_found = piece_total = piece_found = 0
    missing: list[str] = []
    for token_id, pairs in keys.items():
        hit = next(((index[k], how) for k, how in pairs if k in index), None)
        whole = tokenizer.is_word_start(token_id)
        word_total += whole
        piece_total += not whole
        if hit is None:
            if len(missing) < 20:
                missing.append(tokenizer.token(token_id))
            continue
        row, how = hit
        matrix[token_id] = vectors.matrix[row]
        found[token_id] = True
        how_counts[how] += 1
        word_found += whole
        piece_found += not whole
    covered = int(found.sum())
    if covered == 0:
        raise VectorsError(
            f"{vectors.path}: none of the {len(keys)} tokens of the vocabulary has a vector there",
            hint="check that the vectors are for this language and casing (data.lowercase), or train vectors on "
            "this corpus: llmtui embeddings train RECIPE",
        )
    rng = np.random.default_rng(seed)
    known = matrix[found]
    mean, std = known.mean(axis=0), known.std(axis=0) + 1e-6
    fill = ~found
    matrix[fill] = rng.normal(mean, std, size=(int(fill.sum()), vectors.dim)).astype(np.float32)
    report = {
        "path": str(vectors.path),
        "format": vectors.format,
        "vectors_in_file": vectors.count,
        "dim": vectors.dim,
        "vocab_size": vocab_size,
        "tokens": len(keys),
        "covered": covered,
        "coverage": covered / max(len(keys), 1),
        "whole_words": {"tokens": word_total, "covered": word_found},
        "pieces": {"tokens": piece_total, "covered": piece_found},
        "matched_by": how_counts,
        "missing_examples": missing,
    }
    return matrix, report


def coverage_line(report: dict) -> str:
    words, pieces = report["whole_words"], report["pieces"]
    return (
        f"pretrained vectors: {report['covered']:,} of {report['tokens']:,} tokens covered "
        f"({100 * report['coverage']:.1f}%; whole words {words['covered']}/{words['tokens']}, "
        f"pieces {pieces['covered']}/{pieces['tokens']}) from {report['path']} "
        f"({report['format']}, {report['vectors_in_file']:,} × {report['dim']})"
    )

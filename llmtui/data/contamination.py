"""Contamination check: word n-grams shared between the train split and held-out text.

The held-out examples (the chunks of the validation and test splits, and the documents of the recipe's
evaluation files) are indexed as sorted arrays of n-gram hashes (small: they are the held-out share). The
train split is then streamed past the index, in worker processes that map the index from disk. A held-out
document is contaminated when at least one of its n-grams also occurs in train; the report counts them per
target (`examples`, `contaminated`) and shows the start of a few (`samples`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from llmtui.data.dedup import batch_word_hashes, ngram_hashes, word_hashes
from llmtui.data.parallel import ordered_map

EXAMPLES = 3


MAX_INDEX_NGRAMS = 4_000_000  # above this the index keeps every 2nd, 4th, … n-gram (by hash value)


def text_ngrams(text: str, n: int, sample: int = 1) -> np.ndarray:
    grams = np.unique(ngram_hashes(word_hashes(text), n))
    return grams if sample == 1 else grams[grams % np.uint64(sample) == 0]


class TrainScanner:
    """Worker state: the index of held-out n-gram hashes, mapped read-only from `index_path`."""

    def __init__(self, index_path: str, n: int, sample: int):
        self.hashes = np.load(index_path, mmap_mode="r")
        self.bitmap = np.load(index_path.replace(".npy", ".bits.npy"), mmap_mode="r")
        self.n = n
        self.sample = sample

    def scan(self, texts: list[str]) -> list[np.ndarray]:
        """Per train text, the positions in the index of the n-grams it shares with held-out text."""
        hashes, bounds = batch_word_hashes(texts)
        n = self.n
        empty = np.empty(0, dtype=np.int64)
        if len(hashes) < n or not len(self.hashes):
            return [empty] * len(texts)
        grams = ngram_hashes(hashes, n)  # every run of n words, also across text boundaries: masked below
        starts = np.arange(len(grams))
        owner = np.searchsorted(bounds, starts, side="right") - 1
        valid = starts + n <= bounds[owner + 1]  # the n-gram ends inside the text it starts in
        if self.sample > 1:
            valid &= grams % np.uint64(self.sample) == 0
        grams, owner = grams[valid], owner[valid]
        maybe = _bitmap_has(self.bitmap, grams)  # a cheap filter: most n-grams are not in the index
        grams, owner = grams[maybe], owner[maybe]
        at = np.searchsorted(self.hashes, grams)
        at[at == len(self.hashes)] = 0
        hit = self.hashes[at] == grams
        at, owner = at[hit], owner[hit]
        found = [empty] * len(texts)
        if len(at):
            cuts = np.flatnonzero(np.diff(owner, prepend=-1))
            for piece, doc in zip(np.split(at, cuts[1:]), owner[cuts]):
                found[doc] = piece
        return found


# The bitmap has about 32 bits per index hash (a few percent filled, so few false hits), within these bounds:
# 1 KB for the smallest corpus, 16 MB for a full index.
MIN_BITMAP_BITS, MAX_BITMAP_BITS = 13, 27
BITMAP_BITS = MAX_BITMAP_BITS


def _bitmap_width(count: int) -> int:
    """log2 of the bitmap's size in bits for `count` index hashes."""
    return min(MAX_BITMAP_BITS, max(MIN_BITMAP_BITS, (max(count, 1) * 32 - 1).bit_length()))


def _bitmap(hashes: np.ndarray) -> np.ndarray:
    """A bit per value of the top bits of a hash (as many as the bitmap's size needs): set when some index
    hash has that prefix. The width is read back from the bitmap's length."""
    width = _bitmap_width(len(hashes))
    bits = np.zeros(1 << (width - 3), dtype=np.uint8)
    prefix = (hashes >> np.uint64(64 - width)).astype(np.int64)
    np.bitwise_or.at(bits, prefix >> 3, (1 << (prefix & 7)).astype(np.uint8))
    return bits


def _bitmap_has(bits: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    width = (len(bits) * 8).bit_length() - 1
    prefix = (hashes >> np.uint64(64 - width)).astype(np.int64)
    return (bits[prefix >> 3] >> (prefix & 7).astype(np.uint8)) & 1 == 1


def check_contamination(
    train_texts: Iterable[str],
    targets: dict[str, Iterable[str]],
    n: int,
    work_dir: Path,
    workers: int,
    inline_bytes: int,
) -> dict:
    """Report of n-gram overlap between train and each target (name → its examples)."""
    all_hashes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    names, documents, short, examples_text = [], [], {}, []
    sample = 1
    entries = 0
    doc_id = 0
    for name, texts in targets.items():
        names.append(name)
        count = too_short = 0
        for text in texts:
            grams = text_ngrams(text, n, sample)
            count += 1
            if len(text.split()) < n:
                too_short += 1
            all_hashes.append(grams)
            owners.append(np.full(len(grams), doc_id, dtype=np.int32))
            entries += len(grams)
            while entries > MAX_INDEX_NGRAMS:  # keep memory bounded: sample the n-grams by hash value
                sample *= 2
                keep = [h % np.uint64(sample) == 0 for h in all_hashes]
                all_hashes = [h[k] for h, k in zip(all_hashes, keep)]
                owners = [o[k] for o, k in zip(owners, keep)]
                entries = sum(len(h) for h in all_hashes)
            examples_text.append(text[:200])
            doc_id += 1
        documents.append(count)
        short[name] = too_short
    hashes = np.concatenate(all_hashes) if all_hashes else np.empty(0, dtype=np.uint64)
    owner = np.concatenate(owners) if owners else np.empty(0, dtype=np.int32)
    del all_hashes, owners
    order = np.argsort(hashes, kind="stable")
    hashes, owner = hashes[order], owner[order]
    del order
    unique, first = np.unique(hashes, return_index=True)
    del hashes
    index_path = work_dir / "contamination.index.npy"
    bits_path = work_dir / "contamination.index.bits.npy"
    hit = np.zeros(len(unique), dtype=bool)
    train_chunks = overlapping = 0
    try:  # the index files go on every way out (a full disk while writing them included)
        np.save(index_path, unique)
        np.save(bits_path, _bitmap(unique))
        for _size, found, _ in ordered_map(
            TrainScanner, (str(index_path), n, sample), "scan", _batches(train_texts), workers, inline_bytes
        ):
            for positions in found:
                train_chunks += 1
                if len(positions):
                    overlapping += 1
                    hit[positions] = True
    finally:
        index_path.unlink(missing_ok=True)
        bits_path.unlink(missing_ok=True)
    # Owners of every hit hash: expand unique positions back to all (hash, owner) pairs.
    counts = np.diff(np.append(first, len(owner)))
    hit_owner = np.unique(owner[np.repeat(hit, counts)])
    report: dict = {
        "ngram": n,
        "sampled_one_in": sample,
        "train_chunks": train_chunks,
        "train_chunks_overlapping": overlapping,
    }
    start = 0
    for name, count in zip(names, documents):
        mine = hit_owner[(hit_owner >= start) & (hit_owner < start + count)]
        report[name] = {
            "examples": count,
            "contaminated": int(len(mine)),
            "share": round(len(mine) / count, 6) if count else 0.0,
            "too_short_to_check": short[name],
            "samples": [examples_text[i] for i in mine[:EXAMPLES].tolist()],
        }
        start += count
    return report


def _batches(texts: Iterable[str], batch_bytes: int = 1 << 20) -> Iterator[tuple[int, list[str], int]]:
    batch, size = [], 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= batch_bytes:
            yield size, batch, size
            batch, size = [], 0
    if batch:
        yield size, batch, size


def read_eval_file(path: Path) -> Iterator[str]:
    """Documents of an evaluation file: JSON Lines with a "text" field, or plain text (one document)."""
    from llmtui.errors import DataError

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"data.eval_files: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield str(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(
                        f'data.eval_files: {path} line {number}: expected a JSON object with a "text" field'
                    ) from None
    else:
        yield text

"""The data stage: read sources, clean, remove duplicates, chunk, split into train/validation, report.

Output in `<run>/data/`: `train.jsonl` and `val.jsonl` (one `{"text": ...}` document a line) and
`report.json`. Documents stream through; only their hashes are kept for deduplication.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterator

from llmtui.config.recipe import DataConfig
from llmtui.data.sources import Document, Skip, iter_source
from llmtui.errors import DataError
from llmtui.runfolder import write_json_atomic

# Control characters other than tab and newline carry no text and confuse tokenizers.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str, lowercase: bool = False) -> str:
    """Unicode NFC, unified line ends, no control characters, no trailing spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    if lowercase:
        text = text.lower()
    return text.strip()


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    """Split at line breaks into pieces of about `chunk_chars` (a line longer than that stays whole)."""
    if len(text) <= chunk_chars:
        return [text]
    chunks, current, size = [], [], 0
    for line in text.split("\n"):
        if size and size + len(line) + 1 > chunk_chars:
            chunks.append("\n".join(current).strip())
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("\n".join(current).strip())
    return [c for c in chunks if c]


def _dedup_key(text: str) -> bytes:
    return hashlib.blake2b(_WHITESPACE.sub(" ", text).strip().encode("utf-8"), digest_size=16).digest()


def _val_bucket(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the document and the seed: the split does not depend on reading order."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little") / 2**64


def prepare_data(config: DataConfig, seed: int, out_dir: Path, base: Path) -> dict:
    """Run the data stage; returns the report (also written to `out_dir/report.json`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    skips: list[Skip] = []
    seen: set[bytes] = set()
    counts = Counter()
    per_source: dict[str, Counter] = {}
    dropped = Counter()
    lengths = []

    train_tmp, val_tmp = out_dir / "train.jsonl.tmp", out_dir / "val.jsonl.tmp"
    with open(train_tmp, "w", encoding="utf-8") as train_out, open(val_tmp, "w", encoding="utf-8") as val_out:
        for doc in _limited(_all_documents(config, base, skips), config.max_documents):
            stats = per_source.setdefault(doc.source, Counter())
            counts["documents_read"] += 1
            stats["documents_read"] += 1
            counts["bytes_read"] += len(doc.text.encode("utf-8"))
            text = clean_text(doc.text, lowercase=config.lowercase)
            if len(text) < config.min_chars:
                dropped["min_chars"] += 1
                continue
            if config.dedup == "exact":
                key = _dedup_key(text)
                if key in seen:
                    counts["exact_duplicates"] += 1
                    continue
                seen.add(key)
            counts["documents_kept"] += 1
            stats["documents_kept"] += 1
            stats["characters_kept"] += len(text)
            counts["characters_kept"] += len(text)
            lengths.append(len(text))
            for chunk in chunk_text(text, config.chunk_chars):
                is_val = _val_bucket(chunk, seed) < config.val_fraction
                split = "val" if is_val else "train"
                (val_out if is_val else train_out).write(json.dumps({"text": chunk}, ensure_ascii=False) + "\n")
                counts[f"{split}_chunks"] += 1
                counts[f"{split}_characters"] += len(chunk)

    if counts["documents_kept"] == 0:
        for tmp in (train_tmp, val_tmp):
            tmp.unlink(missing_ok=True)
        raise DataError(_empty_corpus_message(counts, dropped, skips))
    if counts["val_chunks"] == 0 or counts["train_chunks"] == 0:
        # Too few chunks for the hash split to give both sides something: move one chunk over.
        _rebalance(train_tmp, val_tmp, counts)

    train_tmp.replace(out_dir / "train.jsonl")
    val_tmp.replace(out_dir / "val.jsonl")
    report = {
        "documents_read": counts["documents_read"],
        "documents_kept": counts["documents_kept"],
        "exact_duplicates": counts["exact_duplicates"],
        "dropped_by_filter": dict(dropped),
        "skipped": [{"source": s.source, "path": s.path, "reason": s.reason} for s in skips],
        "bytes_read": counts["bytes_read"],
        "characters_kept": counts["characters_kept"],
        "splits": {split: {"chunks": counts[f"{split}_chunks"], "characters": counts[f"{split}_characters"]}
                   for split in ("train", "val")},
        "per_source": {name: dict(c) for name, c in per_source.items()},
        "document_length_histogram": _histogram(lengths),
    }
    write_json_atomic(out_dir / "report.json", report)
    return report


def _all_documents(config: DataConfig, base: Path, skips: list[Skip]) -> Iterator[Document]:
    for source in config.sources:
        yield from iter_source(source, base, skips)


def _limited(docs: Iterator[Document], limit: int) -> Iterator[Document]:
    for index, doc in enumerate(docs):
        if limit and index >= limit:
            return
        yield doc


def _rebalance(train_tmp: Path, val_tmp: Path, counts: Counter) -> None:
    lines = train_tmp.read_text(encoding="utf-8").splitlines(keepends=True) + \
        val_tmp.read_text(encoding="utf-8").splitlines(keepends=True)
    if len(lines) < 2:
        raise DataError("the corpus gives a single chunk of text: too little to hold any out for validation",
                        hint="add more text, or lower data.chunk_chars so documents are split into more chunks")
    train_lines, val_lines = lines[:-1], lines[-1:]
    train_tmp.write_text("".join(train_lines), encoding="utf-8")
    val_tmp.write_text("".join(val_lines), encoding="utf-8")
    for split, chosen in (("train", train_lines), ("val", val_lines)):
        counts[f"{split}_chunks"] = len(chosen)
        counts[f"{split}_characters"] = sum(len(json.loads(line)["text"]) for line in chosen)


def _empty_corpus_message(counts: Counter, dropped: Counter, skips: list[Skip]) -> str:
    if counts["documents_read"] == 0:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skips[:5]) or "the sources hold no documents"
        return f"the corpus is empty: no document could be read ({reasons})"
    causes = [f"{name} removed {n}" for name, n in dropped.items()]
    if counts["exact_duplicates"]:
        causes.append(f"dedup removed {counts['exact_duplicates']} duplicates")
    return f"the corpus is empty after cleaning: of {counts['documents_read']} documents read, " + \
        ", ".join(causes) + " (lower data.min_chars or change the filters)"


def _histogram(lengths: list[int]) -> dict[str, int]:
    """Documents by length in characters, in powers-of-ten buckets."""
    buckets = Counter()
    for n in lengths:
        low = 1
        while low * 10 <= n:
            low *= 10
        buckets[f"{low}-{low * 10 - 1}"] += 1
    return dict(sorted(buckets.items(), key=lambda kv: int(kv[0].split("-")[0])))


def read_split(path: Path) -> Iterator[str]:
    """Documents of a split file written by `prepare_data`."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)["text"]

"""The vocabulary report: how well a trained vocabulary fits the text (written to tokenizer/report.json)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from llmtui.tokenizers.text_tokenizer import SPECIAL_TOKENS, TextTokenizer

BATCH = 256


def vocabulary_report(
    tokenizer: TextTokenizer, val_texts: Iterable[str], token_counts: np.ndarray | None = None, top: int = 20
) -> dict:
    """Measure `tokenizer` on the validation texts.

    - unknown rate: share of validation tokens that are the unknown token;
    - bytes per token: UTF-8 bytes of the validation text per token (higher = more compression);
    - tokens per word (fertility): tokens per whitespace-separated word;
    - most frequent tokens: from `token_counts` (per id, e.g. of the train split) or else the validation split;
    - longest tokens: by the bytes of text they stand for.
    Special tokens are left out of the lists and of the counts (the texts hold none).
    """
    vocab_size = tokenizer.vocab_size
    val_counts = np.zeros(vocab_size, dtype=np.int64)
    texts = characters = text_bytes = words = 0
    batch: list[str] = []

    def flush() -> None:
        for ids in tokenizer.encode_batch(batch):
            if ids:
                val_counts[:] += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size)[:vocab_size]
        batch.clear()

    for text in val_texts:
        texts += 1
        characters += len(text)
        text_bytes += len(text.encode("utf-8"))
        words += len(text.split())
        batch.append(text)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()

    tokens = int(val_counts.sum())
    unknown = int(val_counts[tokenizer.unk_id]) if tokenizer.unk_id is not None else 0
    counts = np.asarray(token_counts, dtype=np.int64) if token_counts is not None else val_counts
    counts = counts[:vocab_size]
    special_ids = {i for i in (tokenizer.backend.token_to_id(t) for t in SPECIAL_TOKENS) if i is not None}
    ordinary = np.array([i for i in range(vocab_size) if i not in special_ids], dtype=np.int64)
    total = int(counts[ordinary].sum()) or 1
    by_count = ordinary[np.argsort(-counts[ordinary], kind="stable")]
    most_frequent = [
        _entry(tokenizer, int(i), count=int(counts[i]), share=round(int(counts[i]) / total, 6))
        for i in by_count[:top]
        if counts[i] > 0
    ]
    lengths = np.array([len(tokenizer.surface_bytes(int(i))) for i in ordinary], dtype=np.int64)
    by_length = ordinary[np.argsort(-lengths, kind="stable")]
    longest = [_entry(tokenizer, int(i), bytes=len(tokenizer.surface_bytes(int(i)))) for i in by_length[:top]]
    return {
        "kind": tokenizer.kind,
        "vocab_size": vocab_size,
        "lowercase": tokenizer.lowercase,
        "normalization": tokenizer.normalization,
        "special_tokens": SPECIAL_TOKENS,
        "validation": {
            "texts": texts,
            "characters": characters,
            "bytes": text_bytes,
            "words": words,
            "tokens": tokens,
            "unknown_tokens": unknown,
            "unknown_rate": unknown / tokens if tokens else 0.0,
            "bytes_per_token": text_bytes / tokens if tokens else 0.0,
            "characters_per_token": characters / tokens if tokens else 0.0,
            "tokens_per_word": tokens / words if words else 0.0,
        },
        "counts_from": "train" if token_counts is not None else "validation",
        "unused_tokens": int((counts[ordinary] == 0).sum()),
        "most_frequent": most_frequent,
        "longest": longest,
    }


def _entry(tokenizer: TextTokenizer, token_id: int, **extra) -> dict:
    return {"id": token_id, "token": tokenizer.token(token_id), "text": tokenizer.surface(token_id), **extra}


def report_lines(report: dict, top: int = 8) -> list[str]:
    """A few plain lines summarising a report (for the pipeline's messages)."""
    v = report["validation"]
    show = lambda entries: ", ".join(repr(e["text"]) for e in entries[:top])  # noqa: E731
    return [
        f"vocabulary: {report['kind']}, {report['vocab_size']:,} tokens ({report['unused_tokens']:,} unused in "
        f"{report['counts_from']}); validation: {v['bytes_per_token']:.2f} bytes/token, "
        f"{v['tokens_per_word']:.2f} tokens/word, unknown {100 * v['unknown_rate']:.2f}%",
        f"most frequent: {show(report['most_frequent'])}",
        f"longest: {show(report['longest'])}",
    ]

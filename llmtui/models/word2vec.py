"""Word2Vec (skip-gram with negative sampling) on the run's own corpus, with gensim; vectors saved as GloVe text.

Units are the run's tokens (the default: every vocabulary entry the corpus uses gets a vector, so
`model.embedding = "pretrained"` covers the vocabulary) or whitespace-and-punctuation words.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from llmtui.errors import LlmtuiError

MAX_SENTENCE = 10_000  # gensim ignores words past this many in one sentence
_WORD = re.compile(r"\w+|[^\w\s]")


def token_sentences(tokens: np.ndarray, pieces: list[str], eos_id: int) -> Iterator[list[str]]:
    """Documents of a token file (split at end-of-text ids) as lists of token pieces."""
    ends = np.flatnonzero(np.asarray(tokens) == eos_id)
    start = 0
    for end in [*ends.tolist(), len(tokens)]:
        ids = np.asarray(tokens[start:end])
        start = end + 1
        for offset in range(0, len(ids), MAX_SENTENCE):
            chunk = ids[offset : offset + MAX_SENTENCE]
            if len(chunk):
                yield [pieces[i] for i in chunk.tolist()]


def word_sentences(texts: Iterable[str]) -> Iterator[list[str]]:
    """Documents as words and punctuation marks."""
    for text in texts:
        words = _WORD.findall(text)
        for offset in range(0, len(words), MAX_SENTENCE):
            if words[offset : offset + MAX_SENTENCE]:
                yield words[offset : offset + MAX_SENTENCE]


def train_word2vec(
    sentences: list[list[str]],
    dim: int,
    window: int = 5,
    negative: int = 5,
    epochs: int = 5,
    min_count: int = 1,
    workers: int = 2,
    seed: int = 0,
) -> tuple[list[str], np.ndarray, dict]:
    """Skip-gram with negative sampling; returns the words, their (n, dim) vectors and a summary."""
    try:
        from gensim.models import Word2Vec
    except ImportError:  # pragma: no cover - a declared dependency
        raise LlmtuiError("gensim is not installed", hint="pip install 'gensim>=4.3'") from None
    if not sentences:
        raise LlmtuiError("no text to train word vectors on", hint="check the recipe's data sources")
    began = time.perf_counter()
    model = Word2Vec(
        sentences=sentences,
        vector_size=dim,
        window=window,
        negative=negative,
        sg=1,
        hs=0,
        min_count=min_count,
        epochs=epochs,
        workers=workers,
        seed=seed,
    )
    words = list(model.wv.index_to_key)
    if not words:
        raise LlmtuiError(
            f"no unit occurs {min_count} times or more; nothing to train", hint="lower --min-count or add data"
        )
    matrix = np.asarray(model.wv.vectors, dtype=np.float32)
    summary = {
        "method": "word2vec skip-gram, negative sampling (gensim)",
        "dim": dim,
        "window": window,
        "negative": negative,
        "epochs": epochs,
        "min_count": min_count,
        "vectors": len(words),
        "sentences": len(sentences),
        "occurrences": int(sum(len(s) for s in sentences)),
        "seconds": round(time.perf_counter() - began, 3),
    }
    return words, matrix, summary


def write_glove(path: Path, words: list[str], matrix: np.ndarray) -> int:
    """Write `word v1 ... vd` lines (GloVe text format); returns how many words were left out because
    the format cannot hold whitespace inside a word."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    skipped = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        for word, vector in zip(words, matrix):
            if not word or any(ch.isspace() for ch in word):
                skipped += 1
                continue
            out.write(word + " " + " ".join(f"{v:.6g}" for v in vector.tolist()) + "\n")
    tmp.replace(path)
    return skipped

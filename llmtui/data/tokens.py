"""Token files on disk and the batches read from them.

A split is encoded once into a flat binary file of token ids (`uint16`, or `uint32` for large
vocabularies), with an end-of-text token after every document, and read back through a memory map.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from llmtui.config.recipe import DataConfig
from llmtui.data.prepare import read_split
from llmtui.runfolder import TOKEN_META, TokenMeta, read_token_meta, token_file
from llmtui.runfolder import write_token_meta as write_typed_meta

ENCODE_BATCH = 256


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def encode_split(tokenizer, split_path: Path, out_path: Path, engine: DataConfig | None = None) -> dict:
    """Encode a split file into `out_path`; returns its token and byte counts.

    With `engine.engine == "dask"` the documents are encoded on that Dask cluster (`DaskEngine`), in batches
    of about `engine.engine_partition_mb` in reading order, and written here in the same order: the same file.
    """
    dtype = token_dtype(tokenizer.vocab_size)
    tokens = 0
    text_bytes = 0

    def documents():
        nonlocal text_bytes
        for text in read_split(split_path):
            # Each end-of-text token stands for the document break, counted as one byte.
            text_bytes += len(text.encode("utf-8")) + 1
            yield text

    tmp = out_path.with_name(out_path.name + ".tmp")
    with open(tmp, "wb") as out:
        if engine is not None and engine.engine == "dask":
            from llmtui.data.distributed import DaskEngine

            with DaskEngine(engine) as cluster:
                for ids in cluster.encode(tokenizer, dtype, _text_batches(documents(), cluster.partition_bytes)):
                    ids.tofile(out)
                    tokens += len(ids)
        else:
            for batch in _text_batches(documents(), docs=ENCODE_BATCH):
                ids = encode_documents(tokenizer, dtype, batch)
                ids.tofile(out)
                tokens += len(ids)
    tmp.replace(out_path)
    return {"tokens": tokens, "bytes": text_bytes, "dtype": dtype.name}


def encode_documents(tokenizer, dtype: np.dtype, texts: list[str]) -> np.ndarray:
    """The token ids of `texts`, each followed by the end-of-text token, as one array (what a .bin holds)."""
    ids = tokenizer.encode_batch(texts)
    for one in ids:
        one.append(tokenizer.eos_id)
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=sum(map(len, ids)))


def _text_batches(texts: Iterable[str], max_bytes: int = 0, docs: int = 0) -> Iterator[list[str]]:
    """Consecutive documents cut into batches of `docs` documents, or of about `max_bytes` of text."""
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if (docs and len(batch) >= docs) or (max_bytes and size >= max_bytes):
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def write_token_meta(folder: Path, meta: dict) -> None:
    """Write a tokenizer folder's token meta (validated: a malformed one fails here, not at a later read)."""
    write_typed_meta(folder, TokenMeta.from_json(meta, folder / TOKEN_META))


def load_tokens(folder: Path, split: str) -> np.ndarray:
    """A split's token ids (a read-only memory map of <tokenizer folder>/<split>.bin)."""
    return np.memmap(token_file(folder, split), dtype=read_token_meta(folder).split(split).dtype, mode="r")


class WindowSampler:
    """Random (input, target) windows of `context` tokens from a token array, reproducible and resumable.

    The generator's state is part of a checkpoint, so a resumed run draws the same batches.
    """

    def __init__(self, tokens: np.ndarray, context: int, batch_size: int, seed: int, rows: slice = slice(None)):
        if len(tokens) < context + 2:
            raise ValueError(f"{len(tokens)} tokens are fewer than one window of context {context} + 1")
        self.tokens = tokens
        self.context = context
        self.batch_size = batch_size
        self.rows = rows  # in a multi-process job, this process's rows of every global batch
        self.rng = np.random.default_rng(seed)
        self._offsets = np.arange(context + 1)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        # Every process draws the whole batch's start positions (the same generator state everywhere, so any
        # process's checkpoint resumes all of them) and reads only the windows of its own rows.
        starts = self.rng.integers(0, len(self.tokens) - self.context - 1, size=self.batch_size)[self.rows]
        windows = self.tokens[starts[:, None] + self._offsets].astype(np.int32)  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]

    def state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class StreamBatches:
    """Contiguous batches for stateful (truncated-BPTT) training: the token array cut into `batch_size` lanes,
    each read in order `context` tokens at a time, so row b of each batch continues row b of the one before.

    One epoch is `windows` batches; the lanes then start again from their beginnings. Each batch is
    ((x, reset), y) with `reset` (batch_size,) 1.0 on the first window of an epoch (the model starts those
    lanes from a zero state) and 0.0 otherwise. The position is the whole state: checkpointed, it resumes on
    the very next window.
    """

    def __init__(self, tokens: np.ndarray, context: int, batch_size: int):
        self.lane_length = (len(tokens) - 1) // batch_size
        self.windows = self.lane_length // context
        if self.windows < 1:
            raise ValueError(
                f"{len(tokens)} tokens are fewer than {batch_size} lanes of context {context} + 1 "
                f"(stateful training needs batch_size x context + 1)"
            )
        self.tokens, self.context, self.batch_size = tokens, context, batch_size
        self.position = 0  # windows taken since the start of training
        self._offsets = np.arange(batch_size)[:, None] * self.lane_length + np.arange(context + 1)  # (B, T+1)

    def next_batch(self) -> tuple[list[np.ndarray], np.ndarray]:
        window = self.position % self.windows
        block = self.tokens[self._offsets + window * self.context].astype(np.int32)  # (B, T+1)
        reset = np.full(self.batch_size, 1.0 if window == 0 else 0.0, np.float32)
        self.position += 1
        return [block[:, :-1], reset], block[:, 1:]

    def state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])


def stream_windows(tokens: np.ndarray, context: int, batch_size: int, max_batches: int = 0):
    """The whole split as `StreamBatches` lanes for evaluation: yields (x, reset, y, lanes), x and y (lanes, t).

    Lanes are `batch_size` long runs of the split (fewer when it is very short), read `context` tokens at a
    time; the last window of each lane may be shorter so every lane token is predicted once. The at most
    `lanes - 1` tokens beyond the last whole lane are left out.
    """
    lanes = max(1, min(batch_size, len(tokens) - 1))
    length = (len(tokens) - 1) // lanes
    starts = np.arange(lanes) * length
    count = -(-length // context)
    if max_batches:
        count = min(count, max_batches)
    for index in range(count):
        first, last = index * context, min(index * context + context, length)
        block = np.stack([np.asarray(tokens[s + first : s + last + 1], dtype=np.int32) for s in starts])
        reset = np.full(lanes, 1.0 if index == 0 else 0.0, np.float32)
        yield block[:, :-1], reset, block[:, 1:], lanes


def sequential_windows(tokens: np.ndarray, context: int, batch_size: int, max_batches: int = 0):
    """Non-overlapping windows covering the split in order (for evaluation): yields (x, y) batches.

    Every token after the first is predicted exactly once; the last batch may be smaller.
    """
    count = (len(tokens) - 1) // context
    if max_batches:
        count = min(count, max_batches * batch_size)
    for first in range(0, count, batch_size):
        rows = range(first, min(first + batch_size, count))
        block = np.stack([np.asarray(tokens[r * context : r * context + context + 1], dtype=np.int32) for r in rows])
        yield block[:, :-1], block[:, 1:]

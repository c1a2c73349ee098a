"""Duplicate detection: exact (hash of whitespace-normalised text) and near (MinHash LSH).

Signatures are computed in worker processes with numpy: word 5-gram shingles hashed with CRC-32 and a
polynomial roll, then `perms` multiply-shift hash functions, keeping the minimum of each. The index is
datasketch's `MinHashLSH`; a candidate it returns counts as a duplicate only when the two signatures agree
on at least `threshold` of their positions (the estimated Jaccard similarity), so LSH collisions below the
threshold never remove a document.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

SHINGLE_WORDS = 5
_ROLL = np.uint64(0x9E3779B97F4A7C15)


def exact_key(text: str) -> bytes:
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8", errors="surrogatepass"), digest_size=16).digest()


# Bytes that belong to words: ASCII letters, digits and underscore, and every byte of a non-ASCII character.
_WORD_BYTE = np.zeros(256, dtype=bool)
for _byte in b"abcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_BYTE[_byte] = True
_WORD_BYTE[128:] = True
_POWERS = np.cumprod(np.full(64, 0x100000001B3, dtype=np.uint64))  # FNV prime powers; wraps mod 2^64


def word_hashes(text: str) -> np.ndarray:
    """A 64-bit hash of each lowercased word, in order (vectorised: no Python loop over words)."""
    return _hash_words(np.frombuffer(text.lower().encode("utf-8", errors="surrogatepass"), dtype=np.uint8))[0]


def _hash_words(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hash of each word, byte offset where it starts) of UTF-8 bytes."""
    inside = _WORD_BYTE[data]
    edges = np.diff(inside.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    if not len(starts):
        return np.empty(0, dtype=np.uint64), starts
    lengths = np.flatnonzero(edges == -1) - starts
    positions = np.flatnonzero(inside)
    offsets = positions - np.repeat(starts, lengths)  # place of each byte inside its word
    contributions = (data[positions].astype(np.uint64) + np.uint64(1)) * _POWERS[np.minimum(offsets, 63)]
    firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    hashes = np.add.reduceat(contributions, firsts)
    hashes ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return hashes, starts


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """Hashes of every run of `n` consecutive word hashes (empty when there are fewer words)."""
    if len(hashes) < n:
        return np.empty(0, dtype=np.uint64)
    count = len(hashes) - n + 1
    rolled = hashes[:count].copy()
    for k in range(1, n):
        rolled *= _ROLL
        rolled += hashes[k : k + count]
    return rolled


def minhash_signature(text: str, perms: int) -> np.ndarray:
    """MinHash signature (uint32, one value per permutation) of the document's word 5-gram set."""
    return minhash_signatures([text], perms)[0]


def batch_word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes of several texts at once, and the index of the first word of each text (len(texts) + 1)."""
    per_text = [word_hashes(text) for text in texts] if len(texts) < 4 else None
    if per_text is None:
        # One vectorised pass over all texts joined by a non-word byte, then cut at the text boundaries.
        encoded = [t.lower().encode("utf-8", errors="surrogatepass") for t in texts]
        data = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
        ends = np.cumsum([len(e) + 1 for e in encoded])  # byte just past each text (its separator)
        hashes, starts = _hash_words(data)
        bounds = np.searchsorted(starts, np.concatenate(([0], ends)))
        return hashes, bounds
    bounds = np.cumsum([0] + [len(h) for h in per_text])
    return (np.concatenate(per_text) if per_text else np.empty(0, dtype=np.uint64)), bounds


def _mix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: spreads every input bit over the whole 64-bit output."""
    values = values ^ (values >> np.uint64(30))
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def minhash_signatures(texts: list[str], perms: int) -> np.ndarray:
    """MinHash signatures of several texts, (len(texts), perms) uint32.

    One-permutation hashing with densification (Li et al. 2012; Shrivastava & Li 2014): each shingle is
    hashed once, its hash picks one of `perms` bins and the bin keeps its smallest value; an empty bin
    borrows from the next filled one. The share of equal positions estimates the Jaccard similarity as with
    `perms` separate hash functions, at the cost of one hash per shingle instead of `perms`.
    """
    hashes, bounds = batch_word_hashes(texts)
    shingles, owners = [], []
    for i in range(len(texts)):
        words = hashes[bounds[i] : bounds[i + 1]]
        n = SHINGLE_WORDS if len(words) >= SHINGLE_WORDS else max(len(words), 1)
        grams = ngram_hashes(words, n) if len(words) else np.zeros(1, dtype=np.uint64)
        shingles.append(grams)
        owners.append(np.full(len(grams), i, dtype=np.int64))
    mixed = _mix(np.concatenate(shingles))
    slots = np.concatenate(owners) * perms + ((mixed >> np.uint64(32)) % np.uint64(perms)).astype(np.int64)
    empty = np.uint64(1 << 32)
    flat = np.full(len(texts) * perms, empty, dtype=np.uint64)
    np.minimum.at(flat, slots, mixed & np.uint64(0xFFFFFFFF))
    signatures = flat.reshape(len(texts), perms)
    filled = signatures != empty
    if not filled.all():
        # Densify: an empty bin takes the value of the next filled bin (circularly), shifted by the distance.
        positions = np.arange(2 * perms)
        twice = np.concatenate([filled, filled], axis=1)
        marks = np.where(twice, positions, 2 * perms)
        nearest = np.minimum.accumulate(marks[:, ::-1], axis=1)[:, ::-1][:, :perms]
        distance = (nearest - positions[:perms]).astype(np.uint64)
        rows = np.arange(len(texts))[:, None]
        borrowed = signatures[rows, nearest % perms]
        signatures = np.where(filled, signatures, (borrowed + distance * np.uint64(0x9E3779B9)) & np.uint64(0xFFFFFFFF))
    return signatures.astype(np.uint32)


def lsh_shape(threshold: float, perms: int) -> tuple[int, int]:
    """(bands, rows per band): datasketch's `MinHashLSH` choice, minimising false positives and negatives
    around the threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=perms)
    return lsh.b, lsh.r


_BAND_MULTIPLIER_SEED = 0xBA2D


@functools.lru_cache(maxsize=8)
def _band_constants(bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    multipliers = np.random.default_rng(_BAND_MULTIPLIER_SEED).integers(
        1, 2**63, size=(rows,), dtype=np.uint64
    ) | np.uint64(1)
    return multipliers, np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """The LSH band keys of MinHash signatures, (n, perms) -> (n, bands) uint64: one 64-bit key per band of
    `rows` values, different bands never sharing a key."""
    multipliers, band_ids = _band_constants(bands, rows)
    values = np.asarray(signatures)[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    return (values * multipliers).sum(axis=2) ^ band_ids  # wraps mod 2^64


def similar(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Whether two signatures (as kept: 16-bit values) agree on at least `threshold` of their positions."""
    return bool(np.mean(a == b) >= threshold)


class NearDuplicateIndex:
    """Documents seen so far, by MinHash signature; `seen_similar` checks and then remembers one.

    The rule (which `llmtui.data.distributed` reproduces on a cluster): a document is a near duplicate when
    it is similar to the first kept document that had one of its band keys; otherwise it is kept, and becomes
    the first for each of its band keys not yet taken.

    The banding (b bands of r rows, minimising false positives and negatives around the threshold) is
    datasketch's `MinHashLSH` choice. The band tables are kept compactly here, because datasketch's
    in-memory storage costs about 2 kB per document, too much for a streamed corpus of millions: recent band
    keys sit in a dict, which is merged now and then into sorted numpy arrays (12 bytes per key). Signatures
    are kept as 16-bit values (two different values agree by chance once in 65536) to check candidates.
    """

    MERGE_EVERY = 1 << 17  # band keys held in the dict before a merge into the sorted arrays

    def __init__(self, threshold: float, perms: int):
        self.bands, self.rows = lsh_shape(threshold, perms)
        self.threshold = threshold
        self.perms = perms
        self.recent: dict[int, int] = {}
        self.sorted_keys = np.empty(0, dtype=np.uint64)
        self.sorted_docs = np.empty(0, dtype=np.int32)
        self._signatures: list[np.ndarray] = []  # blocks of kept signatures, (4096, perms) uint16 each
        self._count = 0

    def _candidates(self, keys: np.ndarray) -> tuple[list[int], np.ndarray]:
        """The first kept document of each key that has one, and which keys are in the merged arrays."""
        found = [self.recent[k] for k in keys.tolist() if k in self.recent]
        merged = np.zeros(len(keys), dtype=bool)
        if len(self.sorted_keys):
            at = np.searchsorted(self.sorted_keys, keys)
            at[at == len(self.sorted_keys)] = 0
            merged = self.sorted_keys[at] == keys
            found += self.sorted_docs[at[merged]].tolist()
        return list(dict.fromkeys(found)), merged

    def seen_similar(self, signature: np.ndarray) -> bool:
        keys = band_keys(signature[None, :], self.bands, self.rows)[0]
        short = signature.astype(np.uint16)
        candidates, merged = self._candidates(keys)
        for other in candidates:
            if similar(self._signatures[other >> 12][other & 4095], short, self.threshold):
                return True
        index = self._count
        if index & 4095 == 0:
            self._signatures.append(np.zeros((4096, self.perms), dtype=np.uint16))
        self._signatures[index >> 12][index & 4095] = short
        for key, taken in zip(keys.tolist(), merged.tolist()):
            if not taken:  # a key keeps its first document, also after the dict was merged into the arrays
                self.recent.setdefault(key, index)
        self._count += 1
        if len(self.recent) >= self.MERGE_EVERY:
            self._merge()
        return False

    def _merge(self) -> None:
        keys = np.fromiter(self.recent.keys(), dtype=np.uint64, count=len(self.recent))
        docs = np.fromiter(self.recent.values(), dtype=np.int32, count=len(self.recent))
        all_keys = np.concatenate([self.sorted_keys, keys])
        order = np.argsort(all_keys, kind="stable")  # older documents first among equal keys
        self.sorted_keys = all_keys[order]
        self.sorted_docs = np.concatenate([self.sorted_docs, docs])[order]
        self.recent = {}

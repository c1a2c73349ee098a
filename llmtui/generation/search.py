"""Choosing tokens from logits: sampling (greedy, temperature, top-k, top-p) and beam search.

Both work on host arrays; the model side (cache or full window) is behind a callback, so they can be
tested on hand-made scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def allowed_tokens(logits: np.ndarray, top_k: int, top_p: float, temperature: float = 1.0) -> np.ndarray:
    """Probabilities (V,) over the tokens top-k and top-p allow (zero elsewhere) at `temperature` > 0."""
    logits = np.asarray(logits, dtype=np.float64) / temperature
    if 0 < top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < cutoff, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        # The smallest head of the ranking whose mass reaches top_p (at least one token).
        keep = order[: int(np.searchsorted(cumulative, top_p) + 1)]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return probs


def sample_next(logits: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int, top_p: float) -> int:
    """Pick the next token id from one row of logits; temperature 0 is greedy (argmax)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    probs = allowed_tokens(logits, top_k, top_p, temperature)
    return int(rng.choice(probs.size, p=probs))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def beam_search(
    log_probs_fn: Callable[[np.ndarray | None, np.ndarray | None], np.ndarray],
    beams: int,
    max_tokens: int,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
    finished_fn: Callable[[list[int]], bool] | None = None,
) -> tuple[list[int], float]:
    """The best continuation by beam search; returns (token ids, score).

    `log_probs_fn(parents, tokens)` gives the next-token log-probabilities (n, V) of the n live beams: the
    first call has `parents=None, tokens=None` (the prompt alone: one row, or more rows that are all alike);
    each later call says which beam each new beam came from (`parents`, (n,)) and the token it added.

    A hypothesis ends at `eos_id` (the EOS is scored but not returned), when `finished_fn(tokens)` says so
    (stop strings) or at `max_tokens`. Scores are length-normalised: sum of log-probs / length **
    `length_penalty`, the length counting the EOS. The search stops once `beams` hypotheses have ended
    (early stopping, so beams=1 is exactly greedy decoding) or none is left alive.
    """
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[float, list[int]]] = []

    def normalised(total: float, length: int) -> float:
        return total / max(length, 1) ** length_penalty

    log_probs = np.asarray(log_probs_fn(None, None), dtype=np.float64)
    for step in range(max_tokens):
        totals = np.array([score for _, score in live])[:, None] + log_probs[: len(live)]  # (n, V)
        vocab = totals.shape[1]
        flat = totals.ravel()
        candidates = min(2 * beams, flat.size)
        best = np.argpartition(-flat, candidates - 1)[:candidates]
        best = best[np.lexsort((best, -flat[best]))]  # by score, ties to the lower index (as argmax)
        next_live, parents, tokens = [], [], []
        for flat_index in best:
            parent, token = divmod(int(flat_index), vocab)
            total = float(flat[flat_index])
            if not np.isfinite(total):
                continue
            sequence = live[parent][0] + [token]
            if eos_id is not None and token == eos_id:
                finished.append((normalised(total, len(sequence)), live[parent][0]))
            elif finished_fn is not None and finished_fn(sequence):
                finished.append((normalised(total, len(sequence)), sequence))
            else:
                next_live.append((sequence, total))
                parents.append(parent)
                tokens.append(token)
            if len(next_live) == beams or len(finished) >= beams:
                break
        live = next_live
        if not live or len(finished) >= beams or step == max_tokens - 1:
            break
        log_probs = np.asarray(log_probs_fn(np.array(parents), np.array(tokens)), dtype=np.float64)
    hypotheses = finished + [(normalised(score, len(sequence)), sequence) for sequence, score in live]
    if not hypotheses:
        return [], 0.0
    score, sequence = max(hypotheses, key=lambda h: h[0])
    return sequence, score


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, or None."""
    found = [text.find(stop) for stop in stops if stop]
    found = [i for i in found if i >= 0]
    return min(found) if found else None

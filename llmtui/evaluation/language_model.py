"""Held-out language-model metrics: loss, perplexity, bits per byte, next-token accuracy.

Scores are computed per token by a compiled scoring model (token ids, targets) -> (nll, correct), so
the last, partial batch is padded and its padding dropped exactly, with no reliance on loss reductions.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from llmtui.data.tokens import sequential_windows


@keras.saving.register_keras_serializable(package="llmtui")
class TokenScores(keras.layers.Layer):
    """(logits (B, T, V), targets (B, T)) -> stacked (negative log-likelihood, correct) of shape (B, T, 2)."""

    def call(self, logits, targets):
        logits = ops.cast(logits, "float32")
        nll = ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        correct = ops.cast(ops.equal(ops.argmax(logits, axis=-1), ops.cast(targets, "int32")), "float32")
        return ops.stack([nll, correct], axis=-1)


def make_scorer(model, jit_compile: bool = True):
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    targets = keras.Input(shape=(None,), dtype="int32", name="targets")
    scorer = keras.Model([ids, targets], TokenScores(name="token_scores")(model(ids), targets))
    scorer.compile(jit_compile=jit_compile)
    return scorer


def score_tokens(scorer, tokens: np.ndarray, context: int, batch_size: int, max_batches: int = 0) -> dict:
    """Sum of NLL and correct predictions over non-overlapping windows of the split."""
    total_nll, total_correct, count = 0.0, 0.0, 0
    for x, y in sequential_windows(tokens, context, batch_size, max_batches):
        rows = len(x)
        if rows < batch_size:  # pad to a fixed shape: one compiled program for every batch
            pad = batch_size - rows
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
            y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
        scores = np.asarray(scorer.predict_on_batch([x, y]))[:rows]  # (rows, T, 2)
        total_nll += float(scores[..., 0].astype(np.float64).sum())
        total_correct += float(scores[..., 1].sum())
        count += scores.shape[0] * scores.shape[1]
    return {"nll_sum": total_nll, "correct": total_correct, "tokens": count}


def summarize(scores: dict, bytes_per_token: float | None, vocab_size: int) -> dict:
    """Loss, perplexity, accuracy and (given the split's bytes per token) bits per byte."""
    tokens = max(scores["tokens"], 1)
    loss = scores["nll_sum"] / tokens
    report = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": scores["correct"] / tokens,
        "tokens": scores["tokens"],
        "vocab_size": vocab_size,
        "uniform_loss": math.log(vocab_size),
    }
    if bytes_per_token:
        report["bits_per_byte"] = loss / math.log(2) / bytes_per_token
    return report

"""Held-out language-model metrics: loss, perplexity, bits per byte, next-token and top-k accuracy, and the
loss at each position of the context window.

Scores are computed per token by a compiled scoring model (token ids, targets) -> (nll, correct, in top k),
so the last, partial batch is padded and its padding dropped exactly, with no reliance on loss reductions.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from llmtui.data.tokens import sequential_windows

TOP_K = 5


@keras.saving.register_keras_serializable(package="llmtui")
class TokenScores(keras.layers.Layer):
    """(logits (B, T, V), targets (B, T)) -> stacked (negative log-likelihood, correct, in top k), (B, T, 3).

    "correct" compares the argmax with the target; "in top k" counts the target as found when fewer than
    `top_k` logits are strictly greater than the target's (so a tie at the k-th place counts in its favour).

    Args:
        top_k: how many of the highest-scoring tokens the third channel accepts.
    """

    def __init__(self, top_k: int = TOP_K, **kwargs):
        super().__init__(**kwargs)
        self.top_k = top_k

    def call(self, logits, targets):
        logits = ops.cast(logits, "float32")  # (B, T, V)
        targets = ops.cast(targets, "int32")  # (B, T)
        nll = ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)  # (B, T)
        correct = ops.cast(ops.equal(ops.argmax(logits, axis=-1), targets), "float32")
        target_logit = ops.take_along_axis(logits, ops.expand_dims(targets, -1), axis=-1)  # (B, T, 1)
        above = ops.sum(ops.cast(ops.greater(logits, target_logit), "int32"), axis=-1)  # (B, T)
        in_top_k = ops.cast(ops.less(above, self.top_k), "float32")
        return ops.stack([nll, correct, in_top_k], axis=-1)

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k}


def make_scorer(model, jit_compile: bool = True, top_k: int = TOP_K):
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    targets = keras.Input(shape=(None,), dtype="int32", name="targets")
    scorer = keras.Model([ids, targets], TokenScores(top_k=top_k, name="token_scores")(model(ids), targets))
    scorer.compile(jit_compile=jit_compile)
    return scorer


def score_tokens(scorer, tokens: np.ndarray, context: int, batch_size: int, max_batches: int = 0) -> dict:
    """Sums over non-overlapping windows of the split: NLL, correct and top-k predictions, and NLL by position.

    `nll_by_position[t]` sums the NLL of the prediction made from the first t + 1 tokens of each window;
    `windows` counts the windows, so their ratio is the mean loss at that position.
    """
    total_nll, total_correct, total_top_k, count, windows = 0.0, 0.0, 0.0, 0, 0
    by_position = np.zeros(0, np.float64)
    for x, y in sequential_windows(tokens, context, batch_size, max_batches):
        rows = len(x)
        if rows < batch_size:  # pad to a fixed shape: one compiled program for every batch
            pad = batch_size - rows
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
            y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
        scores = np.asarray(scorer.predict_on_batch([x, y]))[:rows]  # (rows, T, 3)
        nll = scores[..., 0].astype(np.float64)  # (rows, T)
        total_nll += float(nll.sum())
        total_correct += float(scores[..., 1].sum())
        total_top_k += float(scores[..., 2].sum())
        if by_position.shape[0] != nll.shape[1]:
            by_position = np.zeros(nll.shape[1], np.float64)
        by_position += nll.sum(axis=0)
        count += nll.size
        windows += rows
    return {"nll_sum": total_nll, "correct": total_correct, "top_k_correct": total_top_k, "tokens": count,
            "windows": windows, "nll_by_position": by_position.tolist()}


def summarize(scores: dict, bytes_per_token: float | None, vocab_size: int) -> dict:
    """Loss, perplexity, accuracy and (given the split's bytes per token) bits per byte.

    With scores from `score_tokens` it adds `top5_accuracy` and `loss_by_position` (mean NLL at each
    position 0..T-1 of the window; position t predicts token t + 1 from tokens 0..t).
    """
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
    if "top_k_correct" in scores:
        report["top5_accuracy"] = scores["top_k_correct"] / tokens
    if scores.get("windows"):
        report["loss_by_position"] = [value / scores["windows"] for value in scores["nll_by_position"]]
    return report

"""Held-out language-model metrics: loss, perplexity, bits per byte, next-token and top-k accuracy, and the
loss at each position of the context window.

Scores are computed per token by a compiled scoring model (token ids, targets) -> (nll, correct, in top k),
so the last, partial batch is padded and its padding dropped exactly, with no reliance on loss reductions.

A recurrent model trained with `train.stateful` is scored the way it was trained: its stateful twin reads
the split as contiguous lanes, carrying its state from one window to the next (`make_scorer(...,
stateful_batch=N)`); `score_tokens` recognises such a scorer by its extra `reset` input.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from llmtui.data.tokens import sequential_windows, stream_windows

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


def make_scorer(model, jit_compile: bool = True, top_k: int = TOP_K, stateful_batch: int = 0, model_config=None):
    """A compiled (ids, targets) -> scores model; with `stateful_batch`, (ids, reset, targets) on the stateful
    twin of a recurrent `model` (`model_config` says its layers) with that many lanes."""
    if stateful_batch:
        from llmtui.models.recurrent import stateful_twin
        from llmtui.tokenizers.text_tokenizer import EOS, SPECIAL_TOKENS

        twin = stateful_twin(model, model_config, stateful_batch, SPECIAL_TOKENS.index(EOS))
        ids = keras.Input(batch_shape=(stateful_batch, None), dtype="int32", name="token_ids")
        reset = keras.Input(batch_shape=(stateful_batch,), dtype="float32", name="reset")
        targets = keras.Input(batch_shape=(stateful_batch, None), dtype="int32", name="targets")
        inputs, logits = [ids, reset, targets], twin([ids, reset])
    else:
        ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        targets = keras.Input(shape=(None,), dtype="int32", name="targets")
        inputs, logits = [ids, targets], model(ids)
    scorer = keras.Model(inputs, TokenScores(top_k=top_k, name="token_scores")(logits, targets))
    scorer.compile(jit_compile=jit_compile)
    return scorer


def scorer_for(model, model_config, train_config, batch_size: int, jit_compile: bool | None = None):
    """The scorer a run's model is evaluated with: stateful when it was trained with `train.stateful`."""
    return make_scorer(
        model,
        train_config.jit_compile if jit_compile is None else jit_compile,
        stateful_batch=batch_size if train_config.stateful else 0,
        model_config=model_config,
    )


def score_tokens(scorer, tokens: np.ndarray, context: int, batch_size: int, max_batches: int = 0) -> dict:
    """Sums over non-overlapping windows of the split: NLL, correct and top-k predictions, and NLL by position.

    `nll_by_position[t]` sums the NLL of the prediction made from the first t + 1 tokens of each window;
    `windows` counts the windows, so their ratio is the mean loss at that position.
    """
    total_nll, total_correct, total_top_k, count, windows = 0.0, 0.0, 0.0, 0, 0
    by_position = np.zeros(0, np.float64)
    stateful = len(scorer.inputs) == 3
    if stateful:  # contiguous lanes, the state carried; the batch size is the twin's, fixed
        batch_size = int(scorer.inputs[0].shape[0])
        batches = ((x, reset, y) for x, reset, y, _ in stream_windows(tokens, context, batch_size, max_batches))
    else:
        batches = ((x, None, y) for x, y in sequential_windows(tokens, context, batch_size, max_batches))
    for x, reset, y in batches:
        rows = len(x)
        if rows < batch_size:  # pad to a fixed shape: one compiled program for every batch
            pad = batch_size - rows
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
            y = np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)])
            if reset is not None:
                reset = np.concatenate([reset, np.ones(pad, reset.dtype)])
        inputs = [x, reset, y] if stateful else [x, y]
        scores = np.asarray(scorer.predict_on_batch(inputs))[:rows]  # (rows, T, 3)
        nll = scores[..., 0].astype(np.float64)  # (rows, T)
        total_nll += float(nll.sum())
        total_correct += float(scores[..., 1].sum())
        total_top_k += float(scores[..., 2].sum())
        if by_position.shape[0] == 0:
            by_position = np.zeros(nll.shape[1], np.float64)
        count += nll.size
        if nll.shape[1] < by_position.shape[0]:  # a stream's shorter last window: not a whole window
            continue
        by_position += nll.sum(axis=0)
        windows += rows
    return {
        "nll_sum": total_nll,
        "correct": total_correct,
        "top_k_correct": total_top_k,
        "tokens": count,
        "windows": windows,
        "nll_by_position": by_position.tolist(),
    }


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

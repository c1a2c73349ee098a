"""Task examples as arrays, and the training tasks (batches, loss, validation) the training loop runs.

- Classification: token ids padded to the context, the true length of each, and a label index.
- Prompt-to-answer (qa, translation): prompt then target then end-of-text as one sequence; the loss weighs
  only the positions that predict target tokens, so the model learns to answer, not to write prompts.
- Chat: each conversation rendered by the run's chat template; the loss weighs the assistant's tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from llmtui.config.recipe import FinetuneConfig, TrainConfig
from llmtui.errors import DataError


@dataclass
class EncodedClassification:
    ids: np.ndarray  # (N, T) int32, zero-padded
    lengths: np.ndarray  # (N,) int32
    labels: np.ndarray  # (N,) int32
    truncated: int  # texts longer than the context (their end was cut)


@dataclass
class EncodedPromptAnswer:
    inputs: np.ndarray  # (N, T) int32
    targets: np.ndarray  # (N, T) int32
    weights: np.ndarray  # (N, T) float32: 1 where the target predicts an answer token
    truncated: int  # examples whose prompt (or answer) was cut to fit the context


def label_set(config: FinetuneConfig, train: list[dict]) -> list[str]:
    found = sorted({e[config.label_field] for e in train})
    if not config.labels:
        if len(found) < 2:
            raise DataError(f"finetune.train_file has a single label ({found[0]!r}); classification needs two or more")
        return found
    unknown = [label for label in found if label not in config.labels]
    if unknown:
        raise DataError(
            f"finetune.train_file has labels not in finetune.labels: {', '.join(map(repr, unknown))}",
            hint="add them to finetune.labels or fix the file",
        )
    return list(config.labels)


def check_labels(examples: list[dict], labels: list[str], field: str, where: str) -> None:
    unknown = sorted({e[field] for e in examples} - set(labels))
    if unknown:
        raise DataError(
            f"{where} has labels the training examples do not: {', '.join(map(repr, unknown))}",
            hint=f"known labels: {', '.join(labels)}",
        )


def encode_classification(
    tokenizer, examples: list[dict], labels: list[str], config: FinetuneConfig, context: int
) -> EncodedClassification:
    index = {label: i for i, label in enumerate(labels)}
    ids = np.zeros((len(examples), context), np.int32)
    lengths = np.zeros(len(examples), np.int32)
    truncated = 0
    for row, encoded in enumerate(tokenizer.encode_batch([e[config.text_field] for e in examples])):
        encoded = encoded or [tokenizer.eos_id]
        truncated += len(encoded) > context
        encoded = encoded[:context]
        ids[row, : len(encoded)] = encoded
        lengths[row] = len(encoded)
    return EncodedClassification(
        ids, lengths, np.array([index[e[config.label_field]] for e in examples], np.int32), truncated
    )


def prompt_of(config: FinetuneConfig, text: str) -> str:
    return config.prompt_template.replace("{input}", text)


def encode_prompt_answer(tokenizer, examples: list[dict], config: FinetuneConfig, context: int) -> EncodedPromptAnswer:
    n = len(examples)
    inputs, targets = np.zeros((n, context), np.int32), np.zeros((n, context), np.int32)
    weights = np.zeros((n, context), np.float32)
    prompts = tokenizer.encode_batch([prompt_of(config, e[config.input_field]) for e in examples])
    answers = tokenizer.encode_batch([e[config.target_field] for e in examples])
    truncated = 0
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        answer = answer + [tokenizer.eos_id]
        prompt = prompt or [tokenizer.eos_id]
        if len(prompt) + len(answer) > context + 1:  # keep the answer whole if it fits, and the prompt's end
            truncated += 1
            answer = answer[:context]
            prompt = prompt[len(prompt) - (context + 1 - len(answer)) :]
        sequence = prompt + answer
        length = len(sequence) - 1
        inputs[row, :length] = sequence[:-1]
        targets[row, :length] = sequence[1:]
        weights[row, len(prompt) - 1 : length] = 1.0  # positions whose next token is part of the answer
    return EncodedPromptAnswer(inputs, targets, weights, truncated)


def encode_chat(tokenizer, conversations: list[list[dict]], template: str, context: int) -> EncodedPromptAnswer:
    """Conversations rendered by the chat template and encoded whole (the ids `apply_chat_template` gives);
    the loss weighs only the positions whose next token the assistant wrote (its replies and the end-of-text
    token closing each). A conversation longer than the context keeps its beginning."""
    from llmtui.tokenizers.chat import assistant_spans, special_token_names

    n = len(conversations)
    inputs, targets = np.zeros((n, context), np.int32), np.zeros((n, context), np.int32)
    weights = np.zeros((n, context), np.float32)
    names = special_token_names(tokenizer)
    truncated = 0
    for row, messages in enumerate(conversations):
        text, spans = assistant_spans(template, messages, **names)
        encoding = tokenizer.backend.encode(text, add_special_tokens=False)
        ids, offsets = encoding.ids, encoding.offsets
        # A token is the assistant's when it starts inside one of its spans.
        wanted = np.zeros(len(ids), np.float32)
        for i, (start, _) in enumerate(offsets):
            wanted[i] = any(a <= start < b for a, b in spans)
        if len(ids) > context + 1:
            truncated += 1
            ids, wanted = ids[: context + 1], wanted[: context + 1]
        length = len(ids) - 1
        inputs[row, :length] = ids[:-1]
        targets[row, :length] = ids[1:]
        weights[row, :length] = wanted[1:]  # position t predicts token t + 1
    return EncodedPromptAnswer(inputs, targets, weights, truncated)


def _padded_batches(arrays: list[np.ndarray], batch_size: int):
    """Fixed-size batches covering every row (the last padded by repeating row 0); yields (batch, real rows)."""
    n = len(arrays[0])
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        batch = [a[start : start + rows] for a in arrays]
        if rows < batch_size:
            batch = [np.concatenate([b, np.repeat(a[:1], batch_size - rows, axis=0)]) for a, b in zip(arrays, batch)]
        yield batch, rows


class _ExampleTask:
    """A task over N fixed examples: random batches of example indices, reproducible and resumable (the
    generator's state goes into checkpoints)."""

    def __init__(self, train, val, config: TrainConfig, seed: int, vocab_size: int, count: int, width: int):
        self.train, self.val, self.config, self.vocab_size = train, val, config, vocab_size
        self.count = count
        self.tokens_per_batch = config.batch_size * width
        self.rng = np.random.default_rng(seed)

    def indices(self) -> np.ndarray:
        return self.rng.integers(0, self.count, size=self.config.batch_size)

    def state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class ClassificationTask(_ExampleTask):
    """Cross-entropy over labels; validated by loss and accuracy on the held-out examples."""

    def __init__(
        self, train: EncodedClassification, val: EncodedClassification, config: TrainConfig, seed: int, vocab_size: int
    ):
        super().__init__(train, val, config, seed, vocab_size, len(train.labels), train.ids.shape[1])

    def loss(self, config: TrainConfig) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="classification_loss")

    def next_batch(self) -> tuple:
        rows = self.indices()
        return (self.train.ids[rows], self.train.lengths[rows]), self.train.labels[rows]

    def validate(self, model) -> dict:
        probabilities = predict_probabilities(model, self.val.ids, self.val.lengths, self.config.batch_size)
        picked = probabilities[np.arange(len(self.val.labels)), self.val.labels]
        return {
            "loss": float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
            "accuracy": float(np.mean(probabilities.argmax(-1) == self.val.labels)),
        }


def predict_probabilities(model, ids: np.ndarray, lengths: np.ndarray, batch_size: int) -> np.ndarray:
    """Label probabilities (N, labels) of a classifier, in fixed-size batches (one compiled program)."""
    out = []
    for (x, n), rows in _padded_batches([ids, lengths], batch_size):
        logits = np.asarray(model.predict_on_batch([x, n]), np.float64)[:rows]
        logits -= logits.max(-1, keepdims=True)
        probabilities = np.exp(logits)
        out.append(probabilities / probabilities.sum(-1, keepdims=True))
    return np.concatenate(out)


class PromptAnswerTask(_ExampleTask):
    """Next-token loss on the answer tokens only; validated by the answer tokens' loss, perplexity, accuracy."""

    def __init__(
        self, train: EncodedPromptAnswer, val: EncodedPromptAnswer, config: TrainConfig, seed: int, vocab_size: int
    ):
        super().__init__(train, val, config, seed, vocab_size, len(train.inputs), train.inputs.shape[1])

    def loss(self, config: TrainConfig) -> keras.losses.Loss:
        from llmtui.training.trainer import NextTokenLoss

        # Averaged over the weighted (answer) positions, not over every position of the padded batch.
        return NextTokenLoss(config.label_smoothing, reduction="mean_with_sample_weight")

    def next_batch(self) -> tuple:
        rows = self.indices()
        return self.train.inputs[rows], self.train.targets[rows], self.train.weights[rows]

    def validate(self, model) -> dict:
        return answer_token_scores(model, self.val, self.config.batch_size)


def answer_token_scores(model, data: EncodedPromptAnswer, batch_size: int) -> dict:
    """Mean negative log-likelihood, perplexity and accuracy over the answer tokens of `data`."""
    nll_sum, correct, count = 0.0, 0.0, 0.0
    for (x, y, w), rows in _padded_batches([data.inputs, data.targets, data.weights], batch_size):
        logits = np.asarray(model.predict_on_batch(x), np.float64)[:rows]  # (rows, T, V)
        y, w = y[:rows], w[:rows]
        logits -= logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
        nll_sum += float(-(picked * w).sum())
        correct += float(((logits.argmax(-1) == y) * w).sum())
        count += float(w.sum())
    loss = nll_sum / max(count, 1.0)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": correct / max(count, 1.0)}

"""Task metrics as plain functions (no Keras): classification, question answering, translation.

Each returns a JSON-able dict with a `kind` key; a run with a task stores it as `report["task"]` in
`eval/report.json` (see `llmtui.evaluation.report.record_task_metrics`). Classification and QA scores are
fractions in [0, 1]; BLEU and chrF keep sacrebleu's 0-100 scale, as they are usually quoted.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro-F1 and the confusion matrix.

    `labels` fixes the order of `per_class` and of the matrix (rows = true label, columns = predicted).
    A class never predicted has precision 0, a class absent from `y_true` has recall 0, and F1 is 0 when
    precision and recall are both 0. Macro-F1 is the unweighted mean of the F1 of every label in `labels`.
    Raises ValueError for lists of different lengths, no examples, repeated labels, or a value not in `labels`.
    """
    labels = list(labels)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no examples to score")
    if len(set(labels)) != len(labels):
        raise ValueError(f"repeated labels in {labels}")
    index = {label: i for i, label in enumerate(labels)}
    for name, values in (("true label", y_true), ("prediction", y_pred)):
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise ValueError(f"{name} {unknown[0]!r} is not one of the labels {labels}")

    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(y_true, y_pred):
        matrix[index[truth]][index[guess]] += 1
    per_class = {}
    for i, label in enumerate(labels):
        hits = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "kind": "classification",
        "accuracy": sum(matrix[i][i] for i in range(len(labels))) / len(y_true),
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels),
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": matrix,
    }


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, reference: str) -> float:
    guess, truth = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not guess or not truth:  # an empty answer scores only against an empty reference
        return float(guess == truth)
    common = sum((Counter(guess) & Counter(truth)).values())
    if not common:
        return 0.0
    precision, recall = common / len(guess), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def qa_metrics(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict:
    """Exact match and token F1 (SQuAD-style), averaged over questions, each in [0, 1].

    A reference may be one answer or a list of acceptable answers; a prediction scores its best match.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no examples to score")
    exact, f1 = 0.0, 0.0
    for prediction, reference in zip(predictions, references):
        answers = [reference] if isinstance(reference, str) else list(reference)
        if not answers:
            raise ValueError(f"no reference answer for the prediction {prediction!r}")
        exact += max(float(normalize_answer(prediction) == normalize_answer(a)) for a in answers)
        f1 += max(_token_f1(prediction, a) for a in answers)
    return {"kind": "qa", "exact_match": exact / len(predictions), "f1": f1 / len(predictions)}


def translation_metrics(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict:
    """Corpus-level BLEU and chrF (sacrebleu defaults: 13a tokenisation, chrF with character 6-grams), 0-100.

    A reference may be one translation or a list of them (the number may differ between sentences).
    """
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no examples to score")
    per_sentence = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not refs for refs in per_sentence):
        raise ValueError("every prediction needs at least one reference")
    # sacrebleu wants one stream per reference slot; a sentence with fewer references leaves None there.
    slots = max(len(refs) for refs in per_sentence)
    streams: list[list[Any]] = [[refs[i] if i < len(refs) else None for refs in per_sentence] for i in range(slots)]
    hypotheses = list(predictions)
    return {
        "kind": "translation",
        "bleu": sacrebleu.corpus_bleu(hypotheses, streams).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, streams).score,
    }

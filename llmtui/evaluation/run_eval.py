"""Evaluating a run's final model: on its validation split, or on any text files, into `eval/report.json`.

The report keeps the validation metrics at its top level (`loss`, `perplexity`, `bits_per_byte`,
`accuracy`, `top5_accuracy`, `loss_by_position`, `tokens`, `vocab_size`, `uniform_loss`); files evaluated
with `llmtui eval RUN --data FILE` go under `files` (by path), and a fine-tuned task's metrics under `task`.
Those two sections survive a new evaluation only while the final model is the same file (by digest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from llmtui.errors import DataError
from llmtui.runfolder import EvalReport, RunFolder, file_digest, load_final_model

# What other commands and stages add to a report of the same model (kept when the model is rescored).
KEPT_SECTIONS = ("files", "task", "harness", "finetune")


def model_digest(run: RunFolder) -> str | None:
    """The digest of the run's final model file (None when there is none)."""
    return file_digest(run.final_model_path) if run.final_model_path.is_file() else None


def training_facts(run: RunFolder) -> dict:
    """What the report repeats from training: steps, tokens per second, parameters."""
    train = run.stage_summary("train")
    parameters = run.stage_summary("model").get("parameters")
    if parameters is None:
        parameters = run.architecture().get("parameters")
    return {
        "train_steps": train.get("steps"),
        "train_tokens_per_sec": train.get("tokens_per_sec"),
        "parameters": parameters,
    }


def evaluate_tokens(
    scorer,
    tokens: np.ndarray,
    context: int,
    batch_size: int,
    max_batches: int,
    bytes_per_token: float | None,
    vocab_size: int,
) -> dict:
    """Metrics of one token stream; a stream shorter than one window is scored as one shorter window."""
    from llmtui.evaluation.language_model import score_tokens, summarize

    if len(tokens) < 2:
        raise DataError(f"{len(tokens)} token(s) are too few to score (at least 2 are needed)")
    window = min(context, len(tokens) - 1)
    return summarize(score_tokens(scorer, tokens, window, batch_size, max_batches), bytes_per_token, vocab_size)


def validation_metrics(scorer, run: RunFolder, context: int, batch_size: int, max_batches: int) -> dict:
    """Metrics on the run's validation split, with the facts from training (steps, tokens/s, parameters)."""
    from llmtui.data.tokens import load_tokens

    run.require(run.token_meta_path, "encoded tokens", "run the tokenizer stage: llmtui run RECIPE --until tokenizer")
    meta = run.token_meta()
    tokens = load_tokens(run.tokenizer_dir, "val")
    report = evaluate_tokens(scorer, tokens, context, batch_size, max_batches, meta.bytes_per_token, meta.vocab_size)
    report["split"] = "val"
    report.update(training_facts(run))
    return report


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """The texts of a file in any format the data stage reads (by its suffix); DataError if it has none."""
    from llmtui.data.readers import detect, read_file

    if not path.is_file():
        raise DataError(f"--data: no such file {str(path)!r}")
    problems: list[str] = []
    fmt, compression = detect(path)
    texts = [text for _, text, _ in read_file(path, fmt, compression, text_field, "auto", problems.append)]
    if problems and not texts:
        raise DataError(f"--data {path}: {problems[0]}")
    if not any(texts):
        raise DataError(f"--data {path}: no text found", hint="for JSONL/CSV files, name the field with --text-field")
    return texts


def encode_documents(tokenizer, texts: Iterable[str]) -> tuple[np.ndarray, int]:
    """Token ids with an end-of-text token after each document, and their UTF-8 bytes (each end of text
    counted as one byte), the same convention as the run's validation split."""
    from llmtui.data.tokens import ENCODE_BATCH

    texts = list(texts)
    pieces, byte_count = [], 0
    for first in range(0, len(texts), ENCODE_BATCH):
        batch = texts[first : first + ENCODE_BATCH]
        for text, ids in zip(batch, tokenizer.encode_batch(batch)):
            pieces.append(np.asarray(ids + [tokenizer.eos_id], np.int32))
            byte_count += len(text.encode("utf-8", errors="surrogatepass")) + 1
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.int32)), byte_count


def file_metrics(
    scorer, tokenizer, path: Path, texts: list[str], context: int, batch_size: int, max_batches: int
) -> dict:
    """Metrics of the texts of one file, tokenised with the run's tokenizer; bits per byte from their UTF-8
    bytes."""
    tokens, byte_count = encode_documents(tokenizer, texts)
    if len(tokens) < 2:
        raise DataError(f"--data {path}: too short to score ({len(tokens)} token)")
    report = evaluate_tokens(
        scorer, tokens, context, batch_size, max_batches, byte_count / len(tokens), tokenizer.vocab_size
    )
    report.update(bytes=byte_count, file_tokens=len(tokens))
    return report


def save_eval_report(run: RunFolder, report: Mapping[str, Any]) -> EvalReport:
    """Write `report` as eval/report.json, keeping the files and task sections of a report of the same model."""
    digest = model_digest(run)
    previous: Mapping[str, Any] = run.eval_report() or {}
    merged = dict(report)
    merged["model_digest"] = digest
    if digest is not None and previous.get("model_digest") == digest:
        for key in KEPT_SECTIONS:
            if key in previous and key not in merged:
                merged[key] = previous[key]
    run.write_eval_report(merged)
    return cast(EvalReport, merged)


def evaluate_run(
    run: RunFolder,
    data_files: Iterable[Path] = (),
    max_batches: int | None = None,
    text_field: str = "text",
    say: Callable[[str], None] = lambda line: None,
) -> EvalReport:
    """Evaluate the final model of `run` (Keras configured by the caller) and update eval/report.json.

    Without `data_files`, the validation split is scored and becomes the report's top level. With them,
    each file is scored into `files`, and the validation split only when the report has none yet for this
    model. Returns the updated report.
    """
    from llmtui.config import load_recipe
    from llmtui.evaluation.language_model import scorer_for
    from llmtui.tokenizers import TextTokenizer

    recipe = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder? (llmtui run RECIPE makes one)"))
    run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
    from llmtui.finetune.use import require_language_model

    require_language_model(run, "eval")
    paths = [Path(p) for p in data_files]
    tokenizer = TextTokenizer.load(run.tokenizer_dir) if paths else None
    texts = {path: read_documents(path, text_field) for path in paths}  # before the slow part: typos fail at once
    batches = recipe.eval.max_batches if max_batches is None else max_batches
    batch_size = recipe.eval.batch_size or recipe.train.batch_size
    context = recipe.model.context
    scorer = scorer_for(load_final_model(run), recipe.model, recipe.train, batch_size)

    previous: Mapping[str, Any] = run.eval_report() or {}
    same_model = previous.get("model_digest") is not None and previous.get("model_digest") == model_digest(run)
    has_validation = run.token_path("val").is_file()
    if not has_validation and not paths:
        from llmtui.errors import RunFolderError

        raise RunFolderError(
            f"{run.root} has no validation text of its own (an imported pretrained model)",
            hint=f"score text files: llmtui eval {run.root} --data FILE, or benchmarks: --harness",
        )
    report: dict[str, Any]
    if not has_validation:
        report = (
            {k: v for k, v in previous.items() if k not in KEPT_SECTIONS and k != "model_digest"} if same_model else {}
        )
    elif not paths or not (same_model and "loss" in previous):
        say("scoring the validation split")
        report = validation_metrics(scorer, run, context, batch_size, batches)
    else:
        report = {k: v for k, v in previous.items() if k not in KEPT_SECTIONS and k != "model_digest"}
    saved = save_eval_report(run, report)
    if paths:
        files = dict(saved.get("files") or {})
        for path in paths:
            say(f"scoring {path}")
            files[str(path)] = file_metrics(scorer, tokenizer, path, texts[path], context, batch_size, batches)
        saved["files"] = files
        saved = save_eval_report(run, saved)
    return saved

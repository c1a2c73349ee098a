"""Putting fine-tuned runs to use: classify texts, answer questions, translate.

The run folder says what it holds (`data/task.json`); these helpers load its model and tokenizer and
apply the same encoding as training did.
"""

from __future__ import annotations

from pathlib import Path

from llmtui.errors import RunFolderError
from llmtui.runfolder import RunFolder, load_final_model, resolve_run_dir


def task_of(run: RunFolder) -> dict | None:
    """The run's task description, or None for a language model (pretrained, domain or chat fine-tuned)."""
    task = run.task()
    return None if task is None or task.get("kind") in ("domain", "chat") else task


def require_language_model(run: RunFolder, command: str) -> None:
    """Refuse a language-model command (eval, generate, chat) on a run fine-tuned for a task."""
    task = task_of(run)
    if task is not None:
        use = "llmtui classify" if task["kind"] == "classification" else "llmtui answer"
        raise RunFolderError(
            f"{run.root} holds a {task['kind']} model; `llmtui {command}` works on language models",
            hint=f"use {use} {run.root}; its task evaluation is in eval/report.json "
            f"(llmtui report {run.root} redraws the pages)",
        )


def _load(run_dir: str | Path, kinds: tuple[str, ...], command: str):
    from llmtui.backend import configure_backend, native_stderr_to
    from llmtui.config import load_recipe

    run = RunFolder(resolve_run_dir(run_dir))
    task = task_of(run)
    if task is None or task["kind"] not in kinds:
        found = "a language model" if task is None else f"a {task['kind']} model"
        raise RunFolderError(
            f"{run.root} holds {found}; `llmtui {command}` needs a {' or '.join(kinds)} run",
            hint="fine-tune one with llmtui finetune RECIPE",
        )
    config = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder?"))
    run.require(run.final_model_path, "trained model", "finish its fine-tuning first: llmtui finetune RECIPE")
    with native_stderr_to(run.log_file):
        configure_backend(config.run.backend)
        from llmtui.tokenizers import TextTokenizer

        return run, task, config, load_final_model(run), TextTokenizer.load(run.tokenizer_dir)


class Classifier:
    """Label probabilities for texts, from a classification run."""

    def __init__(self, run_dir: str | Path):
        self.run, task, config, self.model, self.tokenizer = _load(run_dir, ("classification",), "classify")
        self.labels: list[str] = task["labels"]
        self.context = config.model.context
        self.finetune = config.finetune

    def predict(self, texts: list[str], batch_size: int = 16) -> list[dict[str, float]]:
        from llmtui.finetune.tasks import encode_classification, predict_probabilities

        rows = [{self.finetune.text_field: text or " ", self.finetune.label_field: self.labels[0]} for text in texts]
        encoded = encode_classification(self.tokenizer, rows, self.labels, self.finetune, self.context)
        probabilities = predict_probabilities(self.model, encoded.ids, encoded.lengths, batch_size)
        return [dict(zip(self.labels, map(float, row))) for row in probabilities]


def load_classifier(run_dir: str | Path) -> Classifier:
    return Classifier(run_dir)


def answer_with(generator, tokenizer, template: str, text: str, max_tokens: int) -> str:
    """The greedy answer to one input: the prompt made from the template, continued until end-of-text."""
    prompt = template.replace("{input}", text)
    return generator.generate(prompt, max_tokens, temperature=0.0, top_k=0, top_p=1.0, seed=0).strip()


class Answerer:
    """Answers (qa) or translations (translation) from a prompt-to-answer run."""

    def __init__(self, run_dir: str | Path):
        from llmtui.generation.sampler import Generator

        self.run, self.task, config, model, tokenizer = _load(run_dir, ("qa", "translation"), "answer")
        self.template = config.finetune.prompt_template
        self.max_tokens = config.finetune.max_answer_tokens
        self.tokenizer = tokenizer
        self.generator = Generator(model, tokenizer, config.model.context)

    def answer(self, text: str, max_tokens: int | None = None) -> str:
        return answer_with(self.generator, self.tokenizer, self.template, text, max_tokens or self.max_tokens)

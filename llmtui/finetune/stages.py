"""The stages of a fine-tune, started from a trained run's (or an imported pretrained checkpoint's) model and
tokenizer, with the same fingerprints, checkpoints and resume as training from scratch.

A domain fine-tune: data (the domain corpus, prepared like any other) → tokenizer (the base's, copied; the
domain text encoded with it) → model (the base model, adapted: all weights, LoRA adapters, or the lower layers
frozen) → train → eval (before and after on the domain, and on the base run's validation text to show
forgetting) → generate. A task fine-tune (classification, question answering, translation, chat): data (the
examples checked and split) → tokenizer (the examples encoded) → model (a classification head for
classification) → train → eval (task metrics).

Every stage from the tokenizer on depends on the base (its model's and tokenizer's digests) and on the
`[finetune]` section: `AdaptedBase` is their `ModelSource`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtui.errors import RecipeError
from llmtui.events import Message
from llmtui.runfolder import RunFolder, file_digest, fingerprint, read_json, write_json_atomic
from llmtui.stages.base import Stage, StageContext, StageResult
from llmtui.stages.pretraining import DataStage, EvalStage, GenerateStage, TrainStage, encode_splits

if TYPE_CHECKING:
    from llmtui.finetune.tasks import EncodedClassification, EncodedPromptAnswer

TASK_FILE = "task.json"  # in the data folder: what the examples are (kind, labels, prompt template)
# The [finetune] fields that shape the examples; the others (method, rank, ...) only matter from the model on.
EXAMPLE_FIELDS = (
    "task",
    "train_file",
    "val_file",
    "val_fraction",
    "text_field",
    "label_field",
    "labels",
    "pooling",
    "input_field",
    "target_field",
    "prompt_template",
    "max_answer_tokens",
    "messages_field",
)


def finetune_stages(task: str, base: RunFolder) -> list[Stage]:
    """The stages of a fine-tune of `base` on `task` ("domain", or a task on examples)."""
    source = AdaptedBase(base)
    if task == "domain":
        return [
            DataStage(finetune_task=task),
            DomainTokenizerStage(source),
            AdaptedModelStage(source),
            TrainStage(source),
            DomainEvalStage(source),
            GenerateStage(source),
        ]
    return [
        ExamplesStage(base),
        ExampleTokenizerStage(source),
        AdaptedModelStage(source),
        TrainStage(source, example_inputs, samples=task != "classification"),
        TaskEvalStage(source),
    ]


def task_info(context: StageContext) -> dict:
    """data/task.json: what the examples are (kind, labels, prompt template)."""
    return read_json(context.run.task_path, "task description")


class AdaptedBase:
    """The base run's model, adapted for fine-tuning (`llmtui.finetune.adapt`)."""

    def __init__(self, base: RunFolder):
        self.base = base
        self.digest = fingerprint(
            file_digest(base.final_model_path), file_digest(base.tokenizer_dir / "tokenizer.json")
        )

    def stage_inputs(
        self, context: StageContext, stage: str, section: dict, upstream: str | None, seeded: bool
    ) -> tuple:
        r = context.recipe
        extra = [r.run.seed, context.backend] if seeded else []
        return "finetune", stage, section, r.finetune.model_dump(mode="json"), self.digest, upstream, extra

    def adapt(self, context: StageContext) -> tuple:
        """The adapted model and the names of the layers the method adapted."""
        from llmtui.finetune.adapt import adapt_model
        from llmtui.runfolder import load_final_model

        r = context.recipe
        labels = len(task_info(context)["labels"]) if r.finetune.task == "classification" else 0
        return adapt_model(load_final_model(self.base), r.finetune, r.model.arch, r.model.layers, labels, r.run.seed)

    def build(self, context: StageContext):
        return self.adapt(context)[0]


class ExamplesStage:
    """Read a task's example files, check them (fields, labels) and split them into data/."""

    name = "data"
    on_followers = "wait"

    def __init__(self, base: RunFolder):
        self.base = base

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        r = context.recipe
        finetune = r.finetune.model_dump(mode="json")
        files = [context.resolve(p) for p in (r.finetune.train_file, r.finetune.val_file) if p]
        stats = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else str(p) for p in files]
        return "finetune-data", {k: finetune[k] for k in EXAMPLE_FIELDS}, r.run.seed, stats

    def run(self, context: StageContext) -> StageResult:
        from llmtui.finetune.examples import read_conversations, read_examples, split_examples
        from llmtui.finetune.tasks import check_labels, label_set

        config = context.recipe.finetune
        kind = config.task
        fields = (
            [config.text_field, config.label_field]
            if kind == "classification"
            else [config.messages_field]
            if kind == "chat"
            else [config.input_field, config.target_field]
        )

        def read(path: Path) -> list:
            return read_conversations(path, config.messages_field) if kind == "chat" else read_examples(path, fields)

        train = read(context.resolve(config.train_file))
        if config.val_file:
            val = read(context.resolve(config.val_file))
        else:
            train, val = split_examples(train, config.val_fraction, context.recipe.run.seed)
        task: dict[str, Any] = {
            "kind": kind,
            "base": str(self.base.root),
            "method": config.method,
            "fields": fields,
            "prompt_template": config.prompt_template,
            "max_answer_tokens": config.max_answer_tokens,
        }
        summary: dict[str, Any] = {"train_examples": len(train), "val_examples": len(val)}
        if kind == "classification":
            labels = label_set(config, train)
            check_labels(val, labels, config.label_field, config.val_file or "the held-out examples")
            task.update(labels=labels, pooling=config.pooling, text_field=config.text_field)
            summary["labels"] = {label: sum(e[config.label_field] == label for e in train) for label in labels}
        folder = context.run.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", train), ("val", val)):
            with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_json_atomic(folder / "report.json", {"task": kind, **summary})
        write_json_atomic(folder / TASK_FILE, task)
        context.emit(
            Message(
                f"{kind}: {len(train)} training and {len(val)} validation examples"
                + (f", labels {', '.join(task['labels'])}" if "labels" in task else "")
            )
        )
        return StageResult(
            [folder / "train.jsonl", folder / "val.jsonl", folder / "report.json", folder / TASK_FILE], summary
        )


def copy_base_tokenizer(context: StageContext, base: RunFolder):
    """The base's tokenizer (and chat template), saved as the run's; returns it and the files written."""
    from llmtui.tokenizers import TextTokenizer
    from llmtui.tokenizers.chat import TEMPLATE_FILE

    folder = context.run.tokenizer_dir
    tokenizer = TextTokenizer.load(base.tokenizer_dir)
    saved = tokenizer.save(folder)
    if (base.tokenizer_dir / TEMPLATE_FILE).is_file():  # the base's chat template stays the run's
        shutil.copy2(base.tokenizer_dir / TEMPLATE_FILE, folder / TEMPLATE_FILE)
    if context.recipe.finetune.task == "chat":
        (folder / TEMPLATE_FILE).write_text(chat_template(context, base), encoding="utf-8")
    if (folder / TEMPLATE_FILE).is_file():
        saved.append(folder / TEMPLATE_FILE)
    return tokenizer, saved


def chat_template(context: StageContext, base: RunFolder) -> str:
    """The chat task's template: the recipe's file, else the base's own, else llmtui's."""
    from llmtui.tokenizers.chat import CHAT_TEMPLATE, TEMPLATE_FILE

    config = context.recipe.finetune
    if config.chat_template:
        path = context.resolve(config.chat_template)
        if not path.is_file():
            raise RecipeError(
                f"finetune.chat_template = {config.chat_template!r}: no file at {path}",
                hint="give a Jinja chat template file, or leave it empty for the default",
            )
        return path.read_text(encoding="utf-8")
    base_template = base.tokenizer_dir / TEMPLATE_FILE
    return base_template.read_text(encoding="utf-8") if base_template.is_file() else CHAT_TEMPLATE


class _BaseTokenizerStage:
    """A fine-tune's tokenizer stage: the base's tokenizer, copied, encodes the fine-tune's data."""

    name = "tokenizer"
    on_followers = "wait"

    def __init__(self, source: AdaptedBase):
        self.source = source

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return "finetune", self.name, self.source.digest, upstream


class DomainTokenizerStage(_BaseTokenizerStage):
    """The base's tokenizer, copied; the domain text encoded with it into token files."""

    def run(self, context: StageContext) -> StageResult:
        tokenizer, saved = copy_base_tokenizer(context, self.source.base)
        folder = context.run.tokenizer_dir
        meta = encode_splits(context, tokenizer, "domain text (the base model's context)")
        context.emit(
            Message(
                f"domain text with the base tokenizer: train {meta['train']['tokens']:,} tokens, "
                f"validation {meta['val']['tokens']:,}"
            )
        )
        return StageResult(
            saved + [folder / "tokens.json", folder / "train.bin", folder / "val.bin"],
            {"train_tokens": meta["train"]["tokens"], "val_tokens": meta["val"]["tokens"]},
        )


class ExampleTokenizerStage(_BaseTokenizerStage):
    """The base's tokenizer, copied; the task's examples encoded with it (data/*.jsonl → *_examples.npz)."""

    def run(self, context: StageContext) -> StageResult:
        import numpy as np

        tokenizer, saved = copy_base_tokenizer(context, self.source.base)
        folder = context.run.tokenizer_dir
        for split, data in encode_examples(context, tokenizer).items():
            np.savez(folder / f"{split}_examples.npz", **vars(data))
            if data.truncated:
                context.emit(
                    Message(
                        f"{data.truncated} {split} examples were longer than the context "
                        f"({context.recipe.model.context} tokens) and were cut",
                        level="warning",
                    )
                )
        write_json_atomic(folder / "tokens.json", {"vocab_size": tokenizer.vocab_size, "kind": tokenizer.kind})
        return StageResult(
            saved + [folder / "tokens.json", folder / "train_examples.npz", folder / "val_examples.npz"],
            {"vocab_size": tokenizer.vocab_size},
        )


def encode_examples(context: StageContext, tokenizer) -> dict[str, EncodedClassification | EncodedPromptAnswer]:
    from llmtui.finetune.tasks import encode_chat, encode_classification, encode_prompt_answer
    from llmtui.tokenizers.chat import TEMPLATE_FILE

    config, model_context = context.recipe.finetune, context.recipe.model.context
    task = task_info(context)
    out: dict[str, EncodedClassification | EncodedPromptAnswer] = {}
    for split in ("train", "val"):
        rows = _read_rows(context.run.data_dir / f"{split}.jsonl")
        if config.task == "chat":
            template = (context.run.tokenizer_dir / TEMPLATE_FILE).read_text(encoding="utf-8")
            out[split] = encode_chat(tokenizer, [r[config.messages_field] for r in rows], template, model_context)
        elif config.task == "classification":
            out[split] = encode_classification(tokenizer, rows, task["labels"], config, model_context)
        else:
            out[split] = encode_prompt_answer(tokenizer, rows, config, model_context)
    return out


def _read_rows(path: Path) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class AdaptedModelStage:
    """Adapt the base model (all weights, LoRA adapters or the lower layers frozen; a classification head for
    classification) and describe it in model/."""

    name = "model"
    on_followers = "wait"

    def __init__(self, source: AdaptedBase):
        self.source = source

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return self.source.stage_inputs(context, self.name, {}, upstream, seeded=True)

    def run(self, context: StageContext) -> StageResult:
        from llmtui.finetune.adapt import parameter_counts

        recipe = context.recipe
        context.setup_backend()
        model, adapted = self.source.adapt(context)
        counts = parameter_counts(model)
        folder = context.run.model_dir
        folder.mkdir(parents=True, exist_ok=True)
        info = {
            "arch": recipe.model.arch,
            "base": str(self.source.base.root),
            "task": recipe.finetune.task,
            "method": recipe.finetune.method,
            "parameters": counts["trainable"],
            "total_parameters": counts["total"],
            "adapted_layers": adapted,
            "config": recipe.model.model_dump(mode="json"),
        }
        write_json_atomic(folder / "architecture.json", info)
        share = counts["trainable"] / max(counts["total"], 1)
        context.emit(
            Message(
                f"fine-tune ({recipe.finetune.method}): {counts['trainable']:,} of "
                f"{counts['total']:,} parameters trainable ({share:.1%})"
            )
        )
        return StageResult(
            [folder / "architecture.json"], {"parameters": counts["trainable"], "total_parameters": counts["total"]}
        )


def example_inputs(context: StageContext):
    """A task fine-tune's training data: the tokenizer stage's encoded examples, as a training task."""
    import numpy as np

    from llmtui.finetune.tasks import ClassificationTask, EncodedClassification, EncodedPromptAnswer, PromptAnswerTask

    def fields(split: str) -> dict[str, Any]:
        """The encoded examples' arrays (and counts, stored as 0-d arrays) of one split, by field name."""
        with np.load(context.run.tokenizer_dir / f"{split}_examples.npz") as values:
            return {k: (values[k] if values[k].ndim else int(values[k])) for k in values}

    train, val = fields("train"), fields("val")
    config, seed, vocab_size = context.recipe.train, context.recipe.run.seed, context.vocab_size()
    if context.recipe.finetune.task == "classification":
        return ClassificationTask(
            EncodedClassification(**train), EncodedClassification(**val), config, seed, vocab_size
        )
    return PromptAnswerTask(EncodedPromptAnswer(**train), EncodedPromptAnswer(**val), config, seed, vocab_size)


class DomainEvalStage(EvalStage):
    """The language-model evaluation, plus perplexity before and after fine-tuning, on the domain and on the
    base's own validation text (forgetting)."""

    source: AdaptedBase

    def run(self, context: StageContext) -> StageResult:
        from llmtui.evaluation.report import write_report

        result = super().run(context)
        add_before_after(context, self.source.base)
        write_report(context.run)
        return result


def add_before_after(context: StageContext, base: RunFolder) -> None:
    """Domain runs: perplexity before and after fine-tuning, on the domain and on the base's own text."""
    import math

    from llmtui.data.tokens import load_tokens
    from llmtui.evaluation.language_model import make_scorer, score_tokens, summarize
    from llmtui.runfolder import load_final_model

    recipe, run = context.recipe, context.run
    path = run.eval_dir / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    base_model = load_final_model(base)
    model_context, batch = recipe.model.context, recipe.eval.batch_size or recipe.train.batch_size
    limit = recipe.eval.max_batches

    def perplexity(loss: float) -> dict:
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}

    def loss_on(scorer, folder: Path) -> dict:
        scores = score_tokens(scorer, load_tokens(folder, "val"), model_context, batch, limit)
        return perplexity(summarize(scores, None, context.vocab_size())["loss"])

    # One compiled scorer per model; the domain "after" is the eval stage's own figure (same split and limits).
    jit = recipe.train.jit_compile
    base_scorer, final_scorer = make_scorer(base_model, jit), make_scorer(context.final_model(), jit)
    comparison = {
        "domain_val": {"before": loss_on(base_scorer, run.tokenizer_dir), "after": perplexity(report["loss"])}
    }
    if (base.tokenizer_dir / "val.bin").is_file():  # an imported pretrained base has no text of its own
        comparison["base_val"] = {
            "before": loss_on(base_scorer, base.tokenizer_dir),
            "after": loss_on(final_scorer, base.tokenizer_dir),
        }
    report["finetune"] = {"base": str(base.root), "method": recipe.finetune.method, **comparison}
    write_json_atomic(path, report)
    for name, title in (("domain_val", "domain validation"), ("base_val", "base validation (forgetting)")):
        if name not in comparison:
            continue
        before, after = comparison[name]["before"]["perplexity"], comparison[name]["after"]["perplexity"]
        context.emit(Message(f"{title}: perplexity {before:.2f} before, {after:.2f} after fine-tuning"))


class TaskEvalStage:
    """Task metrics on the held-out examples (accuracy and F1; exact match and F1; BLEU and chrF; chat
    perplexity and replies), written to eval/report.json and the report pages."""

    name = "eval"
    on_followers = "skip"

    def __init__(self, source: AdaptedBase):
        self.source = source

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return self.source.stage_inputs(
            context, self.name, context.recipe.eval.model_dump(mode="json"), upstream, seeded=False
        )

    def run(self, context: StageContext) -> StageResult:
        from llmtui.evaluation.report import write_report
        from llmtui.evaluation.run_eval import save_eval_report

        recipe, kind = context.recipe, context.recipe.finetune.task
        context.setup_backend()
        model = context.final_model()
        inputs = example_inputs(context)
        report: dict[str, Any] = {
            "split": "val",
            "task_kind": kind,
            "examples": len(inputs.val.lengths if kind == "classification" else inputs.val.inputs),
            "vocab_size": context.vocab_size(),
            "base": str(self.source.base.root),
            "method": recipe.finetune.method,
            "parameters": context.summaries.get("model", {}).get("parameters"),
            "train_steps": context.summaries.get("train", {}).get("steps"),
        }
        if kind == "classification":
            report.update(classification_report(context, model, inputs))
        elif kind == "chat":
            report.update(chat_report(context, model, inputs))
        else:
            report.update(prompt_answer_report(context, model, inputs))
        save_eval_report(context.run, report)
        write_report(context.run)
        for line in task_lines(report["task"]):
            context.emit(Message(line))
        keys = ("loss", "accuracy", "perplexity")
        summary = {k: report[k] for k in keys if k in report}
        summary.update({k: v for k, v in report["task"].items() if isinstance(v, (int, float))})
        return StageResult([context.run.eval_dir / "report.json"], summary)


def classification_report(context: StageContext, model, task) -> dict:
    from llmtui.evaluation.tasks import classification_metrics
    from llmtui.finetune.tasks import predict_probabilities

    labels = task_info(context)["labels"]
    val = task.val
    probabilities = predict_probabilities(model, val.ids, val.lengths, context.recipe.train.batch_size)
    metrics = classification_metrics(
        [labels[i] for i in val.labels], [labels[i] for i in probabilities.argmax(-1)], labels
    )
    scores = task.validate(model)
    return {"loss": scores["loss"], "accuracy": metrics["accuracy"], "task": metrics}


def chat_report(context: StageContext, model, task) -> dict:
    """Loss, perplexity and next-token accuracy on the assistant's tokens of the held-out conversations, and
    the model's reply to the first few (greedy, through the chat template as `llmtui chat` sends it)."""
    from llmtui.finetune.tasks import answer_token_scores
    from llmtui.tokenizers import TextTokenizer
    from llmtui.tokenizers.chat import TEMPLATE_FILE, render_chat, special_token_names

    config, run = context.recipe.finetune, context.run
    report = answer_token_scores(model, task.val, context.recipe.train.batch_size)
    tokenizer = TextTokenizer.load(run.tokenizer_dir)
    template = (run.tokenizer_dir / TEMPLATE_FILE).read_text(encoding="utf-8")
    generator = context.generator(model)
    rows = [row[config.messages_field] for row in _read_rows(run.data_dir / "val.jsonl")]
    replies = []
    for messages in rows[:5]:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt = render_chat(template, messages[:last], add_generation_prompt=True, **special_token_names(tokenizer))
        reply = generator.generate_full(prompt, config.max_answer_tokens, temperature=0.0)
        replies.append({"conversation": messages[:last], "target": messages[last]["content"], "reply": reply.text})
    report["task"] = {
        "kind": "chat",
        "perplexity": report["perplexity"],
        "accuracy": report["accuracy"],
        "assistant_tokens": int(task.val.weights.sum()),
        "replies": replies,
    }
    return report


def prompt_answer_report(context: StageContext, model, task) -> dict:
    from llmtui.evaluation.tasks import qa_metrics, translation_metrics
    from llmtui.finetune.tasks import answer_token_scores
    from llmtui.finetune.use import answer_with
    from llmtui.tokenizers import TextTokenizer

    config = context.recipe.finetune
    rows = _read_rows(context.run.data_dir / "val.jsonl")
    tokenizer = TextTokenizer.load(context.run.tokenizer_dir)
    generator = context.generator(model)
    predictions = [
        answer_with(generator, tokenizer, config.prompt_template, row[config.input_field], config.max_answer_tokens)
        for row in rows
    ]
    references = [row[config.target_field] for row in rows]
    metrics = (qa_metrics if config.task == "qa" else translation_metrics)(predictions, references)
    report = answer_token_scores(model, task.val, context.recipe.train.batch_size)
    report["task"] = metrics
    report["answers"] = [
        {"input": row[config.input_field], "target": ref, "prediction": pred}
        for row, ref, pred in zip(rows[:50], references, predictions)
    ]
    return report


def task_lines(task: dict) -> list[str]:
    """One line per headline metric of a task evaluation."""
    if task["kind"] == "classification":
        return [
            f"classification: accuracy {task['accuracy']:.3f}, macro-F1 {task['macro_f1']:.3f} on "
            f"{sum(sum(row) for row in task['confusion_matrix'])} examples"
        ]
    if task["kind"] == "chat":
        return [
            f"chat: assistant-turn perplexity {task['perplexity']:.2f}, next-token accuracy "
            f"{task['accuracy']:.3f} over {task['assistant_tokens']} assistant tokens"
        ]
    if task["kind"] == "qa":
        return [f"question answering: exact match {task['exact_match']:.3f}, token F1 {task['f1']:.3f}"]
    return [f"translation: BLEU {task['bleu']:.2f}, chrF {task['chrf']:.2f}"]

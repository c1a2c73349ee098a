"""The fine-tuning pipeline: the same stages, fingerprints, checkpoints and resume as pretraining, started
from a trained run's model and tokenizer.

Stages: data (the domain corpus, or the task examples checked and split) → tokenizer (the base run's,
copied; the domain text encoded with it) → model (the base model, adapted: all weights, LoRA adapters, or
the lower layers frozen; a classification head for classification) → train → eval (before and after on the
domain, and on the base run's validation text to show forgetting; task metrics for tasks) → generate
(domain runs).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from llmtui.config.loader import load_recipe
from llmtui.config.recipe import Recipe
from llmtui.errors import RecipeError, RunFolderError
from llmtui.events import Event, Message
from llmtui.pipeline import STAGES, Pipeline, StageResult, load_final_model
from llmtui.runfolder import RunFolder, file_digest, fingerprint, resolve_run_dir, write_json_atomic

TASK_STAGES = ("data", "tokenizer", "model", "train", "eval")
TASK_FILE = "task.json"  # in the data folder: what the examples are (kind, labels, prompt template)
# The [finetune] fields that shape the examples; the others (method, rank, ...) only matter from the model on.
EXAMPLE_FIELDS = ("task", "train_file", "val_file", "val_fraction", "text_field", "label_field", "labels", "pooling",
                  "input_field", "target_field", "prompt_template", "max_answer_tokens", "messages_field")


def base_run_folder(recipe: Recipe, base_dir: Path) -> RunFolder:
    """The trained run that `[finetune] base` names (a folder, or a run name under run.out_dir)."""
    name = recipe.finetune.base
    if not name:
        raise RecipeError("[finetune] base is empty: fine-tuning starts from a trained run",
                          hint="set finetune.base to a run folder or run name, e.g. base = \"quickstart\"")
    given = Path(name).expanduser()
    candidates = [given if given.is_absolute() else base_dir / given, base_dir / recipe.run.out_dir / name]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        raise RunFolderError(f"finetune.base = {name!r}: no run folder at {candidates[0]} or {candidates[1]}",
                             hint="train the base first (llmtui run RECIPE) or fix finetune.base")
    run = RunFolder(resolve_run_dir(folder))
    run.require(run.final_model_path, "trained model", "finish training the base run first: llmtui run RECIPE")
    run.require(run.recipe_path, "recipe", "is finetune.base a run folder?")
    return run


def base_folder(recipe: Recipe, base_dir: Path) -> RunFolder:
    """The run folder a fine-tune starts from: the trained run `[finetune] base` names, or the pretrained base
    it names, imported on first use."""
    from llmtui.interop.base import is_pretrained_source

    if recipe.finetune.base and is_pretrained_source(recipe.finetune.base, base_dir):
        return pretrained_base_folder(recipe, base_dir)
    return base_run_folder(recipe, base_dir)


def pretrained_base_folder(recipe: Recipe, base_dir: Path) -> RunFolder:
    """The run folder holding the pretrained base `[finetune] base` names (a Hugging Face folder, a keras-hub
    preset or a hub handle), imported on first use into RUNS/imported/<name>-<digest> and reused after.

    The pre-flight memory check runs on the base's config before any weight is read; the training window is
    the recipe's model.context, at most the base's own length.
    """

    from llmtui.interop.base import import_base, read_base_spec
    from llmtui.models.cost import finetune_cost, preflight_problem

    source = recipe.finetune.base
    spec = read_base_spec(source, base_dir)
    config = spec.model_config(recipe.model.context)
    cost = finetune_cost(config, recipe.train, spec.vocab_size, recipe.finetune.method)
    problem = preflight_problem(cost, recipe.train)
    if problem:
        raise RecipeError(f"pre-flight check for the pretrained base {source}: {problem}",
                          hint="fine-tune with finetune.method = 'lora' (no optimizer state for the base's weights), "
                               "train.precision = 'mixed_bfloat16', a smaller train.batch_size with "
                               "train.grad_accum_steps, or a shorter model.context; see llmtui model summary RECIPE")
    config_digest = file_digest(spec.path / "config.json")
    digest = fingerprint(str(spec.path.resolve()), config_digest, config.context, spec.norm_epsilon)[:10]
    root = base_dir / recipe.run.out_dir / "imported" / f"{spec.path.name}-{digest}"
    run = RunFolder(root)
    if not (run.final_model_path.is_file() and (run.model_dir / "import.json").is_file()):
        from llmtui.backend import configure_backend, native_stderr_to

        root.mkdir(parents=True, exist_ok=True)
        with native_stderr_to(run.log_file):  # TensorFlow's start-up lines go to the log, not the screen
            configure_backend(recipe.run.backend)
            import_base(source, root, config.context, base_dir, spec=spec)
    return run


class FinetunePipeline(Pipeline):
    """A `Pipeline` whose model and tokenizer come from a trained base run or a pretrained checkpoint."""

    def __init__(self, recipe: Recipe, base_dir: Path | str = ".", sinks: list[Callable[[Event], None]] | None = None):
        base_dir = Path(base_dir)
        self.base = base_folder(recipe, base_dir)
        base_recipe = load_recipe(self.base.recipe_path)
        if base_recipe.finetune.task == "classification" and base_recipe.finetune.base:
            raise RecipeError(f"finetune.base = {recipe.finetune.base!r} is a classification model, not a language "
                              "model", hint="start from a pretrained (or domain fine-tuned) run")
        # The base decides the vocabulary and the architecture; the recipe's own sections would not fit its weights.
        recipe = recipe.model_copy(update={"tokenizer": base_recipe.tokenizer, "model": base_recipe.model})
        super().__init__(recipe, base_dir, sinks)
        if self.run.root.resolve() == self.base.root.resolve():
            raise RecipeError(f"the fine-tuned run would overwrite its base {self.base.root}",
                              hint="give the fine-tune its own run.name")
        self.task = recipe.finetune.task
        self.stages = STAGES if self.task == "domain" else TASK_STAGES
        self._base_digest = fingerprint(file_digest(self.base.final_model_path),
                                        file_digest(self.base.tokenizer_dir / "tokenizer.json"))
        self._encoded: dict | None = None

    # Fingerprints: every stage after data also depends on the base model and the [finetune] section.
    def _fingerprint(self, stage: str) -> str:
        finetune = self.recipe.finetune.model_dump(mode="json")
        if stage == "data":
            if self.task == "domain":
                return fingerprint(super()._fingerprint("data"), self.task)
            files = [self._example_path(p) for p in (self.recipe.finetune.train_file, self.recipe.finetune.val_file) if p]
            stats = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else str(p) for p in files]
            return fingerprint("finetune-data", {k: finetune[k] for k in EXAMPLE_FIELDS}, self.recipe.run.seed, stats)
        upstream = self._fingerprints.get(self.stages[self.stages.index(stage) - 1])
        if stage == "tokenizer":
            return fingerprint("finetune", stage, self._base_digest, upstream)
        r = self.recipe
        section = {"tokenizer": {}, "model": {}, "train": r.train, "eval": r.eval, "generate": r.generate}[stage]
        section = section if isinstance(section, dict) else section.model_dump(mode="json")
        extra = [r.run.seed, self.backend] if stage in ("model", "train") else []
        return fingerprint("finetune", stage, section, finetune, self._base_digest, upstream, extra)

    def _example_path(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    # Stages ---------------------------------------------------------------------------------------------
    def _stage_data(self) -> StageResult:
        if self.task == "domain":
            return super()._stage_data()
        from llmtui.finetune.examples import read_examples, split_examples
        from llmtui.finetune.tasks import check_labels, label_set

        config = self.recipe.finetune
        fields = [config.text_field, config.label_field] if self.task == "classification" else \
            [config.messages_field] if self.task == "chat" else [config.input_field, config.target_field]
        if self.task == "chat":
            from llmtui.finetune.examples import read_conversations

            def read(path):
                return read_conversations(path, config.messages_field)
        else:
            def read(path):
                return read_examples(path, fields)
        train = read(self._example_path(config.train_file))
        if config.val_file:
            val = read(self._example_path(config.val_file))
        else:
            train, val = split_examples(train, config.val_fraction, self.recipe.run.seed)
        task = {"kind": self.task, "base": str(self.base.root), "method": config.method, "fields": fields,
                "prompt_template": config.prompt_template, "max_answer_tokens": config.max_answer_tokens}
        summary = {"train_examples": len(train), "val_examples": len(val)}
        if self.task == "classification":
            labels = label_set(config, train)
            check_labels(val, labels, config.label_field, config.val_file or "the held-out examples")
            task.update(labels=labels, pooling=config.pooling, text_field=config.text_field)
            summary["labels"] = {label: sum(e[config.label_field] == label for e in train) for label in labels}
        folder = self.run.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", train), ("val", val)):
            with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_json_atomic(folder / "report.json", {"task": self.task, **summary})
        write_json_atomic(folder / TASK_FILE, task)
        self.bus.emit(Message(f"{self.task}: {len(train)} training and {len(val)} validation examples"
                              + (f", labels {', '.join(task['labels'])}" if "labels" in task else "")))
        return StageResult([folder / "train.jsonl", folder / "val.jsonl", folder / "report.json", folder / TASK_FILE],
                           summary)

    def _stage_tokenizer(self) -> StageResult:
        from llmtui.tokenizers import TextTokenizer
        from llmtui.tokenizers.chat import TEMPLATE_FILE

        folder = self.run.tokenizer_dir
        tokenizer = TextTokenizer.load(self.base.tokenizer_dir)
        saved = tokenizer.save(folder)
        if (self.base.tokenizer_dir / TEMPLATE_FILE).is_file():  # the base's chat template stays the run's
            shutil.copy2(self.base.tokenizer_dir / TEMPLATE_FILE, folder / TEMPLATE_FILE)
        if self.task == "chat":
            (folder / TEMPLATE_FILE).write_text(self._chat_template(), encoding="utf-8")
        if (folder / TEMPLATE_FILE).is_file():
            saved.append(folder / TEMPLATE_FILE)
        if self.task == "domain":
            result = self._encode_domain(tokenizer)
            result.outputs[:1] = saved
            return result
        encoded = self._encode_examples(tokenizer)
        import numpy as np

        for split, data in encoded.items():
            np.savez(folder / f"{split}_examples.npz", **vars(data))
            if data.truncated:
                self.bus.emit(Message(f"{data.truncated} {split} examples were longer than the context "
                                      f"({self.recipe.model.context} tokens) and were cut", level="warning"))
        write_json_atomic(folder / "tokens.json", {"vocab_size": tokenizer.vocab_size, "kind": tokenizer.kind})
        return StageResult(saved + [folder / "tokens.json", folder / "train_examples.npz", folder / "val_examples.npz"],
                           {"vocab_size": tokenizer.vocab_size})

    def _encode_domain(self, tokenizer) -> StageResult:
        folder = self.run.tokenizer_dir
        meta = self._encode_splits(tokenizer, "domain text (the base model's context)")
        self.bus.emit(Message(f"domain text with the base tokenizer: train {meta['train']['tokens']:,} tokens, "
                              f"validation {meta['val']['tokens']:,}"))
        return StageResult([folder / "tokenizer.json", folder / "tokens.json", folder / "train.bin",
                            folder / "val.bin"], {"train_tokens": meta["train"]["tokens"],
                                                  "val_tokens": meta["val"]["tokens"]})

    def _chat_template(self) -> str:
        """The chat task's template: the recipe's file, else the base's own, else llmtui's."""
        from llmtui.tokenizers.chat import CHAT_TEMPLATE, TEMPLATE_FILE

        if self.recipe.finetune.chat_template:
            path = self._example_path(self.recipe.finetune.chat_template)
            if not path.is_file():
                raise RecipeError(f"finetune.chat_template = {self.recipe.finetune.chat_template!r}: no file at {path}",
                                  hint="give a Jinja chat template file, or leave it empty for the default")
            return path.read_text(encoding="utf-8")
        base_template = self.base.tokenizer_dir / TEMPLATE_FILE
        return base_template.read_text(encoding="utf-8") if base_template.is_file() else CHAT_TEMPLATE

    def _encode_examples(self, tokenizer) -> dict:
        from llmtui.finetune.tasks import encode_chat, encode_classification, encode_prompt_answer
        from llmtui.tokenizers.chat import TEMPLATE_FILE

        config, context = self.recipe.finetune, self.recipe.model.context
        task = self._task_info()
        out = {}
        for split in ("train", "val"):
            with open(self.run.data_dir / f"{split}.jsonl", encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle if line.strip()]
            if self.task == "chat":
                template = (self.run.tokenizer_dir / TEMPLATE_FILE).read_text(encoding="utf-8")
                out[split] = encode_chat(tokenizer, [r[config.messages_field] for r in rows], template, context)
            elif self.task == "classification":
                out[split] = encode_classification(tokenizer, rows, task["labels"], config, context)
            else:
                out[split] = encode_prompt_answer(tokenizer, rows, config, context)
        return out

    def _task_info(self) -> dict:
        return json.loads((self.run.data_dir / TASK_FILE).read_text(encoding="utf-8"))

    def _stage_model(self) -> StageResult:
        from llmtui.finetune.adapt import parameter_counts

        self._setup_backend()
        model = self._build_model()
        counts = parameter_counts(model)
        folder = self.run.model_dir
        folder.mkdir(parents=True, exist_ok=True)
        info = {"arch": self.recipe.model.arch, "base": str(self.base.root), "task": self.task,
                "method": self.recipe.finetune.method, "parameters": counts["trainable"],
                "total_parameters": counts["total"], "adapted_layers": self._adapted,
                "config": self.recipe.model.model_dump(mode="json")}
        write_json_atomic(folder / "architecture.json", info)
        share = counts["trainable"] / max(counts["total"], 1)
        self.bus.emit(Message(f"fine-tune ({self.recipe.finetune.method}): {counts['trainable']:,} of "
                              f"{counts['total']:,} parameters trainable ({share:.1%})"))
        return StageResult([folder / "architecture.json"], {"parameters": counts["trainable"],
                                                            "total_parameters": counts["total"]})

    def _build_model(self):
        from llmtui.finetune.adapt import adapt_model

        labels = len(self._task_info()["labels"]) if self.task == "classification" else 0
        model, self._adapted = adapt_model(load_final_model(self.base), self.recipe.finetune, self.recipe.model.arch,
                                           self.recipe.model.layers, labels, self.recipe.run.seed)
        return model

    def _train_inputs(self, cls):
        if self.task == "domain":
            return super()._train_inputs(cls)
        import numpy as np

        from llmtui.finetune.tasks import (
            ClassificationTask,
            EncodedClassification,
            EncodedPromptAnswer,
            PromptAnswerTask,
        )

        encoded_type, task_type = (EncodedClassification, ClassificationTask) if self.task == "classification" \
            else (EncodedPromptAnswer, PromptAnswerTask)
        splits = {}
        for split in ("train", "val"):
            with np.load(self.run.tokenizer_dir / f"{split}_examples.npz") as values:
                splits[split] = encoded_type(**{k: (values[k] if values[k].ndim else int(values[k])) for k in values})
        return task_type(splits["train"], splits["val"], self.recipe.train, self.recipe.run.seed, self._vocab_size())

    def _training_sampler(self, sample):
        return None if self.task == "classification" else sample

    def _stage_eval(self) -> StageResult:
        from llmtui.evaluation.report import write_report
        from llmtui.evaluation.run_eval import save_eval_report

        if self.task == "domain":
            result = super()._stage_eval()
            self._add_before_after()
            write_report(self.run)
            return result
        self._setup_backend()
        model = self._final_model()
        inputs = self._train_inputs(None)
        report = {"split": "val", "task_kind": self.task, "examples": len(inputs.val.lengths if self.task == "classification"
                                                                           else inputs.val.inputs),
                  "vocab_size": self._vocab_size(), "base": str(self.base.root), "method": self.recipe.finetune.method,
                  "parameters": self._summaries.get("model", {}).get("parameters"),
                  "train_steps": self._summaries.get("train", {}).get("steps")}
        if self.task == "classification":
            report.update(self._classification_report(model, inputs))
        elif self.task == "chat":
            report.update(self._chat_report(model, inputs))
        else:
            report.update(self._prompt_answer_report(model, inputs))
        save_eval_report(self.run, report)
        write_report(self.run)
        for line in task_lines(report["task"]):
            self.bus.emit(Message(line))
        keys = ("loss", "accuracy", "perplexity")
        summary = {k: report[k] for k in keys if k in report}
        summary.update({k: v for k, v in report["task"].items() if isinstance(v, (int, float))})
        return StageResult([self.run.eval_dir / "report.json"], summary)

    def _classification_report(self, model, task) -> dict:
        from llmtui.evaluation.tasks import classification_metrics
        from llmtui.finetune.tasks import predict_probabilities

        labels = self._task_info()["labels"]
        val = task.val
        probabilities = predict_probabilities(model, val.ids, val.lengths, self.recipe.train.batch_size)
        metrics = classification_metrics([labels[i] for i in val.labels],
                                         [labels[i] for i in probabilities.argmax(-1)], labels)
        scores = task.validate(model)
        return {"loss": scores["loss"], "accuracy": metrics["accuracy"], "task": metrics}

    def _chat_report(self, model, task) -> dict:
        """Loss, perplexity and next-token accuracy on the assistant's tokens of the held-out conversations, and
        the model's reply to the first few (greedy, through the chat template as `llmtui chat` sends it)."""
        from llmtui.finetune.tasks import answer_token_scores
        from llmtui.tokenizers import TextTokenizer
        from llmtui.tokenizers.chat import TEMPLATE_FILE, render_chat, special_token_names

        report = answer_token_scores(model, task.val, self.recipe.train.batch_size)
        tokenizer = TextTokenizer.load(self.run.tokenizer_dir)
        template = (self.run.tokenizer_dir / TEMPLATE_FILE).read_text(encoding="utf-8")
        generator = self._generator(model)
        with open(self.run.data_dir / "val.jsonl", encoding="utf-8") as handle:
            rows = [json.loads(line)[self.recipe.finetune.messages_field] for line in handle if line.strip()]
        replies = []
        for messages in rows[:5]:
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            prompt = render_chat(template, messages[:last], add_generation_prompt=True, **special_token_names(tokenizer))
            reply = generator.generate_full(prompt, self.recipe.finetune.max_answer_tokens, temperature=0.0)
            replies.append({"conversation": messages[:last], "target": messages[last]["content"],
                            "reply": reply.text})
        report["task"] = {"kind": "chat", "perplexity": report["perplexity"], "accuracy": report["accuracy"],
                          "assistant_tokens": int(task.val.weights.sum()), "replies": replies}
        return report

    def _prompt_answer_report(self, model, task) -> dict:
        from llmtui.evaluation.tasks import qa_metrics, translation_metrics
        from llmtui.finetune.tasks import answer_token_scores
        from llmtui.finetune.use import answer_with
        from llmtui.tokenizers import TextTokenizer

        config = self.recipe.finetune
        with open(self.run.data_dir / "val.jsonl", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        tokenizer = TextTokenizer.load(self.run.tokenizer_dir)
        generator = self._generator(model)
        predictions = [answer_with(generator, tokenizer, config.prompt_template, row[config.input_field],
                                   config.max_answer_tokens) for row in rows]
        references = [row[config.target_field] for row in rows]
        metrics = (qa_metrics if self.task == "qa" else translation_metrics)(predictions, references)
        report = answer_token_scores(model, task.val, self.recipe.train.batch_size)
        report["task"] = metrics
        report["answers"] = [{"input": row[config.input_field], "target": ref, "prediction": pred}
                             for row, ref, pred in zip(rows[:50], references, predictions)]
        return report

    def _add_before_after(self) -> None:
        """Domain runs: perplexity before and after fine-tuning, on the domain and on the base's own text."""
        import math

        from llmtui.data.tokens import load_tokens
        from llmtui.evaluation.language_model import make_scorer, score_tokens, summarize

        path = self.run.eval_dir / "report.json"
        report = json.loads(path.read_text(encoding="utf-8"))
        base_model = load_final_model(self.base)
        context, batch = self.recipe.model.context, self.recipe.eval.batch_size or self.recipe.train.batch_size
        limit = self.recipe.eval.max_batches

        def perplexity(loss: float) -> dict:
            return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}

        def loss_on(scorer, folder: Path) -> dict:
            scores = score_tokens(scorer, load_tokens(folder, "val"), context, batch, limit)
            return perplexity(summarize(scores, None, self._vocab_size())["loss"])

        # One compiled scorer per model; the domain "after" is the eval stage's own figure (same split and limits).
        jit = self.recipe.train.jit_compile
        base_scorer, final_scorer = make_scorer(base_model, jit), make_scorer(self._final_model(), jit)
        comparison = {"domain_val": {"before": loss_on(base_scorer, self.run.tokenizer_dir),
                                     "after": perplexity(report["loss"])}}
        if (self.base.tokenizer_dir / "val.bin").is_file():  # an imported pretrained base has no text of its own
            comparison["base_val"] = {"before": loss_on(base_scorer, self.base.tokenizer_dir),
                                      "after": loss_on(final_scorer, self.base.tokenizer_dir)}
        report["finetune"] = {"base": str(self.base.root), "method": self.recipe.finetune.method, **comparison}
        write_json_atomic(path, report)
        for name, title in (("domain_val", "domain validation"), ("base_val", "base validation (forgetting)")):
            if name not in comparison:
                continue
            before, after = comparison[name]["before"]["perplexity"], comparison[name]["after"]["perplexity"]
            self.bus.emit(Message(f"{title}: perplexity {before:.2f} before, {after:.2f} after fine-tuning"))


def task_lines(task: dict) -> list[str]:
    """One line per headline metric of a task evaluation."""
    if task["kind"] == "classification":
        return [f"classification: accuracy {task['accuracy']:.3f}, macro-F1 {task['macro_f1']:.3f} on "
                f"{sum(sum(row) for row in task['confusion_matrix'])} examples"]
    if task["kind"] == "chat":
        return [f"chat: assistant-turn perplexity {task['perplexity']:.2f}, next-token accuracy "
                f"{task['accuracy']:.3f} over {task['assistant_tokens']} assistant tokens"]
    if task["kind"] == "qa":
        return [f"question answering: exact match {task['exact_match']:.3f}, token F1 {task['f1']:.3f}"]
    return [f"translation: BLEU {task['bleu']:.2f}, chrF {task['chrf']:.2f}"]

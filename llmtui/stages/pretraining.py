"""The stages of training a model from scratch: data → tokenizer → model → train → eval → generate.

Fine-tuning (`llmtui.finetune.stages`) reuses the data, train, eval and generate stages with a different
`ModelSource`: where the model comes from decides how it is built and what every stage that uses it is
fingerprinted by.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from llmtui.errors import LlmtuiError
from llmtui.events import Message, Sample
from llmtui.runfolder import fingerprint, write_json_atomic, write_text_atomic
from llmtui.stages.base import Stage, StageContext, StageResult

if TYPE_CHECKING:
    import numpy as np


class ModelSource(Protocol):
    """Where a run's model comes from: it builds the model, and it is part of the fingerprint of every stage
    from the model on."""

    def build(self, context: StageContext) -> Any: ...

    def stage_inputs(
        self, context: StageContext, stage: str, section: dict, upstream: str | None, seeded: bool
    ) -> tuple:
        """The fingerprint parts of `stage`, whose own recipe section is `section`; `seeded` stages (model,
        train) also depend on the seed and the backend."""
        ...


class NewModel:
    """A model built afresh from the recipe's [model] section (its embedding initialised from pretrained
    vectors when `model.embedding = "pretrained"`)."""

    def __init__(self) -> None:
        self._table: np.ndarray | None = None  # the pretrained embedding table, read once per run

    def stage_inputs(
        self, context: StageContext, stage: str, section: dict, upstream: str | None, seeded: bool
    ) -> tuple:
        r = context.recipe
        extra: list = [r.run.seed, context.backend] if seeded else []
        if extra and r.model.embedding == "pretrained":  # new vectors in the same file redo the model
            vectors = context.resolve(r.model.pretrained_path)
            extra.append([vectors.stat().st_size, vectors.stat().st_mtime_ns] if vectors.is_file() else None)
        return stage, section, upstream, extra

    def build(self, context: StageContext):
        from llmtui.models import build_model
        from llmtui.models.embedding import pretrained_table

        config, accum = context.recipe.model, context.recipe.train.grad_accum_steps
        if config.freeze_steps > 0 and accum > 1:  # the embedding counts forward passes, one per micro-batch
            config = config.model_copy(update={"freeze_steps": config.freeze_steps * accum})
        with pretrained_table(self.pretrained_table(context)):
            return build_model(config, context.vocab_size(), seed=context.recipe.run.seed)

    def pretrained_table(self, context: StageContext):
        """The vocabulary's rows of model.pretrained_path (None unless model.embedding = pretrained)."""
        m = context.recipe.model
        if m.embedding != "pretrained":
            return None
        if self._table is None:
            from llmtui.models.pretrained import coverage_line, map_onto_vocabulary
            from llmtui.tokenizers import TextTokenizer

            run = context.run
            tokenizer = TextTokenizer.load(run.tokenizer_dir)
            matrix, report = map_onto_vocabulary(
                tokenizer, context.resolve(m.pretrained_path), m.pretrained_format, context.recipe.run.seed
            )
            run.model_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run.model_dir / "embedding_report.json", report)
            context.emit(Message(coverage_line(report)))
            self._table = matrix
        return self._table


class DataStage:
    """Read the recipe's sources; clean, deduplicate and split them into data/."""

    name = "data"
    on_followers = "wait"

    def __init__(self, finetune_task: str | None = None):
        # A domain fine-tune prepares its corpus the same way, under a fingerprint of its own.
        self.finetune_task = finetune_task

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        from llmtui.data.sources import source_fingerprint

        r, base_dir = context.recipe, context.base_dir
        sources = [source_fingerprint(s, base_dir) for s in r.data.sources]
        evals = [
            [str(p), p.stat().st_size, p.stat().st_mtime_ns]
            for p in (base_dir / f for f in r.data.eval_files)
            if p.is_file()
        ]
        # Where the stage runs does not change what it writes (the engines' reports are the same).
        section = r.data.model_dump(mode="json", exclude={"engine", "engine_address", "engine_partition_mb"})
        parts = ("data", section, r.run.seed, sources, evals)
        return parts if self.finetune_task is None else (fingerprint(*parts), self.finetune_task)

    def run(self, context: StageContext) -> StageResult:
        from llmtui.data.prepare import prepare_data, report_messages

        run = context.run
        report = prepare_data(context.recipe.data, context.recipe.run.seed, run.data_dir, context.base_dir)
        for level, text in report_messages(report):
            context.emit(Message(text, level=level))
        outputs = [run.split_path(split) for split in report.splits] + [run.data_report_path]
        return StageResult(outputs, report.summary())


class TokenizerStage:
    """Train the recipe's tokenizer on the train split and encode both splits into token files."""

    name = "tokenizer"
    on_followers = "wait"

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return "tokenizer", context.recipe.tokenizer.model_dump(mode="json"), upstream, []

    def run(self, context: StageContext) -> StageResult:
        import numpy as np

        from llmtui.data.prepare import read_split
        from llmtui.data.tokens import load_tokens
        from llmtui.tokenizers import train_tokenizer
        from llmtui.tokenizers.report import report_lines, vocabulary_report

        recipe, run = context.recipe, context.run
        folder = run.tokenizer_dir
        tokenizer = train_tokenizer(
            recipe.tokenizer,
            read_split(run.data_dir / "train.jsonl"),
            lowercase=recipe.data.lowercase,
            normalization=recipe.data.clean.normalize,
        )
        saved = tokenizer.save(folder)
        meta = encode_splits(context, tokenizer, "text")
        context.emit(
            Message(
                f"tokenizer: {tokenizer.kind}, {tokenizer.vocab_size} tokens; "
                f"train {meta['train']['tokens']:,} tokens, validation {meta['val']['tokens']:,}"
            )
        )
        train_counts = np.bincount(load_tokens(folder, "train"), minlength=tokenizer.vocab_size)
        report = vocabulary_report(tokenizer, read_split(run.data_dir / "val.jsonl"), train_counts)
        write_json_atomic(folder / "report.json", report)
        for line in report_lines(report):
            context.emit(Message(line))
        summary = {
            "vocab_size": meta["vocab_size"],
            "train_tokens": meta["train"]["tokens"],
            "val_tokens": meta["val"]["tokens"],
            "unknown_rate": report["validation"]["unknown_rate"],
            "bytes_per_token": report["validation"]["bytes_per_token"],
            "tokens_per_word": report["validation"]["tokens_per_word"],
        }
        outputs = saved + [folder / "tokens.json", folder / "train.bin", folder / "val.bin", folder / "report.json"]
        return StageResult(outputs, summary)


def encode_splits(context: StageContext, tokenizer, what: str) -> dict:
    """Encode the train and validation splits into token files; refuse too little `what` for the context."""
    from llmtui.data.tokens import encode_split, write_token_meta

    run = context.run
    folder = run.tokenizer_dir
    meta = {"vocab_size": tokenizer.vocab_size, "kind": tokenizer.kind}
    for split in ("train", "val"):
        meta[split] = encode_split(
            tokenizer, run.data_dir / f"{split}.jsonl", folder / f"{split}.bin", engine=context.recipe.data
        )
    write_token_meta(folder, meta)
    model_context = context.recipe.model.context
    if meta["val"]["tokens"] < model_context + 1 or meta["train"]["tokens"] < model_context + 2:
        raise LlmtuiError(
            f"too little {what} for model.context={model_context}: train has {meta['train']['tokens']} tokens, "
            f"validation {meta['val']['tokens']}",
            hint="add data, raise data.val_fraction, or lower model.context",
        )
    return meta


class ModelStage:
    """Check the model fits (the pre-flight memory estimate), build it, and describe it in model/."""

    name = "model"
    on_followers = "wait"

    def __init__(self, source: NewModel):
        self.source = source

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return self.source.stage_inputs(
            context, "model", context.recipe.model.model_dump(mode="json"), upstream, seeded=True
        )

    def run(self, context: StageContext) -> StageResult:
        from llmtui.models import count_parameters
        from llmtui.models.cost import estimate_cost, preflight_problem

        recipe = context.recipe
        cost = estimate_cost(recipe.model, recipe.train, context.vocab_size())
        problem = preflight_problem(cost, recipe.train)
        if problem:
            raise LlmtuiError(f"pre-flight check: {problem}", hint="see llmtui model summary RECIPE")
        context.setup_backend()
        model = self.source.build(context)
        folder = context.run.model_dir
        folder.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
        write_text_atomic(folder / "summary.txt", "\n".join(lines) + "\n")
        params = count_parameters(model)
        info = {
            "arch": recipe.model.arch,
            "parameters": params,
            "vocab_size": context.vocab_size(),
            "cost": cost.as_dict(),
            "backend": context.backend,
            "config": recipe.model.model_dump(mode="json"),
        }
        write_json_atomic(folder / "architecture.json", info)
        context.emit(Message(f"model: {recipe.model.arch}, {params:,} parameters"))
        return StageResult([folder / "architecture.json"], {"parameters": params})


def token_inputs(context: StageContext):
    """Next-token prediction's training data: the tokenizer stage's token files."""
    from llmtui.data.tokens import load_tokens
    from llmtui.training.trainer import TrainInputs

    folder = context.run.tokenizer_dir
    meta = context.token_meta()
    return TrainInputs(
        train_tokens=load_tokens(folder, "train"),
        val_tokens=load_tokens(folder, "val"),
        bytes_per_token=meta.bytes_per_token,
        vocab_size=meta.vocab_size,
    )


class TrainStage:
    """Train the source's model on `training_data` (resuming from the newest checkpoint) and save it."""

    name = "train"
    on_followers = "run"

    def __init__(
        self, source: ModelSource, training_data: Callable[[StageContext], Any] = token_inputs, samples: bool = True
    ):
        self.source = source
        self.training_data = training_data  # token files, or a fine-tuning task's encoded examples
        self.samples = samples  # write a sample at each evaluation (when train.eval_samples allows)

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return self.source.stage_inputs(
            context, "train", context.recipe.train.model_dump(mode="json"), upstream, seeded=True
        )

    def run(self, context: StageContext) -> StageResult:
        plan = context.setup_backend()
        config = plan.train_config(context.recipe.train)
        context.emit(Message(f"precision {plan.precision} ({plan.reason}); step {plan.compiler}"))
        multi = context.cluster.multi
        with _distribution(context) as devices:
            if config.distribute == "model_parallel":
                context.emit(Message(f"model parallel on a {devices[0]} x {devices[1]} mesh (data x model)"))
            elif devices > 1:
                context.emit(Message(f"data parallel over {devices} devices"))
            if config.distribute == "data_parallel" and context.backend == "tensorflow" and config.jit_compile:
                # XLA cannot compile a step whose variables live on several devices (MirroredStrategy).
                context.emit(Message("XLA is off for MirroredStrategy training on TensorFlow", level="warning"))
                config = config.model_copy(update={"jit_compile": False})
            model, summary = self._train(context, config)
            if not multi:
                context.save_final_model(model)
                context.model = model
        if multi and context.cluster.leader:
            # A multi-process job's model spans every process: evaluation reloads it on process 0 alone. It is
            # saved outside the mesh: saving makes new variables, which under the mesh would be laid out over
            # every process and wait for the others (who write nothing) to make them too.
            context.save_final_model(model)
        return StageResult([context.run.final_model_path], summary)

    def _train(self, context: StageContext, config) -> tuple[Any, dict]:
        from llmtui.backend import device_kind
        from llmtui.models.cost import estimate_cost, peak_flops
        from llmtui.training.trainer import train

        recipe = context.recipe
        model = self.source.build(context)
        inputs = self.training_data(context)
        cost = estimate_cost(recipe.model, config, inputs.vocab_size)
        peak, peak_source = peak_flops(config, device_kind())
        context.emit(Message(f"MFU is measured against {peak / 1e12:.2f} TFLOP/s ({peak_source})"))
        sampler = _training_sampler(context) if self.samples and config.eval_samples else None
        summary = train(
            model,
            inputs,
            config,
            recipe.model,
            recipe.run.seed,
            context.run,
            context.fingerprints["train"],
            context.emit,
            # samples in training run on one process; a multi-process job samples after training
            sampler_fn=None if context.cluster.multi else sampler,
            flops_per_token=cost.flops_per_token,
            peak_flops=peak,
            stop_requested=context.stop_requested(),
        )
        return model, summary


def _training_sampler(context: StageContext) -> Callable[[Any], tuple[str, str]]:
    """What writes a sample of the model being trained at each evaluation: the first prompt, continued."""
    generate = context.recipe.generate
    prompt = generate.prompts[0] if generate.prompts else ""

    def sample(current_model) -> tuple[str, str]:
        return prompt, context.generator(current_model).generate(
            prompt,
            max_tokens=min(generate.max_tokens, 80),
            temperature=generate.temperature,
            top_k=generate.top_k,
            top_p=generate.top_p,
            seed=generate.seed,
            beams=generate.beams,
            stop=generate.stop,
            use_cache=generate.use_cache,
        )

    return sample


def _distribution(context: StageContext):
    """The devices training spans (a context manager giving their count, or the mesh's shape)."""
    train = context.recipe.train
    if train.distribute == "data_parallel":
        import keras

        from llmtui.training.distribute import data_parallel

        return data_parallel(keras.backend.backend(), train.batch_size)
    if train.distribute == "model_parallel":
        import keras

        from llmtui.models.cost import weight_shapes
        from llmtui.training.distribute import model_parallel

        return model_parallel(
            keras.backend.backend(),
            train.batch_size,
            train.mesh,
            weight_shapes(context.recipe.model, context.vocab_size()),
        )
    return contextlib.nullcontext(1)


class EvalStage:
    """Score the trained model on the validation split; write eval/report.json and the report pages."""

    name = "eval"
    on_followers = "skip"

    def __init__(self, source: ModelSource):
        self.source = source

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return self.source.stage_inputs(
            context, "eval", context.recipe.eval.model_dump(mode="json"), upstream, seeded=False
        )

    def run(self, context: StageContext) -> StageResult:
        from llmtui.evaluation.language_model import scorer_for
        from llmtui.evaluation.report import write_report
        from llmtui.evaluation.run_eval import save_eval_report, validation_metrics

        recipe, run = context.recipe, context.run
        plan = context.setup_backend()
        batch_size = recipe.eval.batch_size or recipe.train.batch_size
        scorer = scorer_for(context.final_model(), recipe.model, recipe.train, batch_size, plan.jit_compile)
        report = validation_metrics(scorer, run, recipe.model.context, batch_size, recipe.eval.max_batches)
        save_eval_report(run, report)
        pages = write_report(run)  # redrawn by llmtui report RUN, e.g. after the generate stage
        context.emit(
            Message(
                f"eval: loss {report['loss']:.4f}, perplexity {report['perplexity']:.3f}, "
                f"top-5 accuracy {report['top5_accuracy']:.3f}; report {run.final_path(pages['report.html'])}"
            )
        )
        return StageResult(
            [run.eval_dir / "report.json"],
            {k: report.get(k) for k in ("loss", "perplexity", "bits_per_byte", "accuracy", "top5_accuracy")},
            redrawn=[pages["report.md"], pages["report.html"]],
        )


class GenerateStage:
    """Continue each of the recipe's prompts with the trained model; write generate/samples.json."""

    name = "generate"
    on_followers = "skip"

    def __init__(self, source: ModelSource):
        self.source = source

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        return self.source.stage_inputs(
            context, "generate", context.recipe.generate.model_dump(mode="json"), upstream, seeded=False
        )

    def run(self, context: StageContext) -> StageResult:
        context.setup_backend()
        generator = context.generator(context.final_model())
        g = context.recipe.generate
        samples = []
        for index, prompt in enumerate(g.prompts):
            text = generator.generate(
                prompt,
                g.max_tokens,
                g.temperature,
                g.top_k,
                g.top_p,
                g.seed + index,
                beams=g.beams,
                stop=g.stop,
                use_cache=g.use_cache,
            )
            samples.append({"prompt": prompt, "text": text})
            context.emit(Sample(step=-1, prompt=prompt, text=text))
        folder = context.run.generate_dir
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "samples.json", {"samples": samples})
        if (context.run.eval_dir / "report.json").exists():  # the report pages show these samples too
            from llmtui.evaluation.report import write_report

            write_report(context.run)
        return StageResult([folder / "samples.json"], {"samples": samples})


def pretraining_stages() -> list[Stage]:
    """The stages of a run that trains its model from scratch."""
    model = NewModel()
    return [DataStage(), TokenizerStage(), ModelStage(model), TrainStage(model), EvalStage(model), GenerateStage(model)]

"""The ordered stages from text to a usable model; the same code serves the CLI, the TUI and tests.

Each stage reads and writes artifacts in the run folder and records a fingerprint of its inputs (its own
recipe section plus the fingerprints of the stages before it) in `manifest.json`. A stage whose
fingerprint matches and whose outputs exist is skipped; training continues from its newest checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmtui.backend import configure_backend, native_stderr_to, require_backend
from llmtui.config.loader import recipe_to_toml
from llmtui.config.recipe import Recipe
from llmtui.errors import LlmtuiError
from llmtui.events import (
    Event,
    EventBus,
    Message,
    RunFailed,
    RunFinished,
    RunStarted,
    Sample,
    StageFinished,
    StageSkipped,
    StageStarted,
)
from llmtui.runfolder import (
    STAGE_FOLDERS,
    STAGES,
    RunFolder,
    StageTransaction,
    clear_staging,
    fingerprint,
    write_json_atomic,
    write_text_atomic,
)


@dataclass
class StageResult:
    outputs: list[Path]
    summary: dict = field(default_factory=dict)
    # Outputs that later stages or commands rewrite (the report pages): checked for presence, not content.
    redrawn: list[Path] = field(default_factory=list)


class Pipeline:
    """Runs a recipe's stages in a run folder, emitting events to `sinks`."""

    stages: tuple[str, ...] = STAGES  # a subclass (fine-tuning) may run other stages by the same rules

    def __init__(self, recipe: Recipe, base_dir: Path | str = ".", sinks: list[Callable[[Event], None]] | None = None):
        self.recipe = recipe
        self.base_dir = Path(base_dir)
        self.run = RunFolder(self.base_dir / recipe.run.out_dir / recipe.run.name)
        self.bus = EventBus(sinks)
        self.backend = require_backend(recipe.run.backend)
        self._fingerprints: dict[str, str] = {}
        self._summaries: dict[str, dict] = {}
        self._model = None
        self._pretrained = None  # the pretrained embedding table, read once per run
        self._plan = None  # precision and compiler, chosen when the backend is set up
        from llmtui.training.cluster import Cluster

        self.cluster = Cluster()  # this process's place in a multi-process job (set when the run starts)
        self._trained = None  # a multi-process job's trained model, saved once out of the device mesh
        # The TUI sets this to ask training to stop at the next step (with a checkpoint).
        self.stop_requested: Callable[[], bool] | None = None

    # Public -------------------------------------------------------------------------------------
    def execute(self, until: str | None = None) -> dict:
        """Run the stages up to and including `until`; returns the summary of the whole run."""
        if until is not None and until not in self.stages:
            raise LlmtuiError(f"unknown stage {until!r}", hint=f"stages: {', '.join(self.stages)}")
        stages = self.stages if until is None else self.stages[: self.stages.index(until) + 1]
        started = time.perf_counter()
        if self._join_cluster() and not self.cluster.leader:
            return self._follow(stages, started)
        with self.run:
            clear_staging(self.run)
            write_text_atomic(self.run.recipe_path, recipe_to_toml(self.recipe))
            self.bus.emit(RunStarted(run_dir=str(self.run.root), stages=stages, backend=self.backend))
            manifest = self.run.read_manifest()
            manifest["recipe"] = self.recipe.model_dump(mode="json")
            current = None
            try:
                with native_stderr_to(self.run.log_file):
                    for stage in stages:
                        current = stage
                        self._run_stage(stage, manifest)
            except LlmtuiError as exc:
                self.bus.emit(RunFailed(stage=current or "", error=str(exc)))
                raise
            finally:
                self.run.write_manifest(manifest)
            seconds = time.perf_counter() - started
            summary = self.summary(seconds)
            self.bus.emit(RunFinished(run_dir=str(self.run.root), seconds=seconds, summary=summary))
            return summary

    def summary(self, seconds: float) -> dict:
        report = self._summaries.get("eval") or _read_json(self.run.eval_dir / "report.json") or {}
        train = self._summaries.get("train") or {}
        samples = self._summaries.get("generate", {}).get("samples") or \
            (_read_json(self.run.generate_dir / "samples.json") or {}).get("samples", [])
        return {
            "run_dir": str(self.run.root),
            "wall_seconds": seconds,
            "val_loss": report.get("loss"),
            "perplexity": report.get("perplexity"),
            "bits_per_byte": report.get("bits_per_byte"),
            "accuracy": report.get("accuracy"),
            "vocab_size": report.get("vocab_size"),
            "uniform_loss": report.get("uniform_loss"),
            "tokens_per_sec": train.get("tokens_per_sec") or report.get("train_tokens_per_sec"),
            "samples": samples,
            # Fine-tuned tasks: accuracy, macro_f1, f1, exact_match, bleu or chrf (only the report file has them).
            "task": (_read_json(self.run.eval_dir / "report.json") or {}).get("task"),
        }

    # Several processes ----------------------------------------------------------------------------
    def _join_cluster(self) -> bool:
        """Join the multi-process job the environment describes (see llmtui.training.cluster); False when
        this is a single-process run."""
        from llmtui.training import cluster

        self.cluster = cluster.current()
        if not self.cluster.multi:
            return False
        if self.recipe.train.distribute == "none":
            raise LlmtuiError(f"this process is one of {self.cluster.count} (JAX_NUM_PROCESSES), but "
                              "train.distribute = 'none' trains on one device",
                              hint="set train.distribute = 'data_parallel' (or 'model_parallel')")
        cluster.join(self.backend)  # before anything starts JAX
        self.bus.emit(Message(f"process {self.cluster.index} of {self.cluster.count} "
                              f"(coordinator {self.cluster.coordinator})"))
        return True

    def _follow(self, stages: tuple[str, ...], started: float) -> dict:
        """A process other than 0: wait for process 0's data, tokenizer and model stages, train in step with
        it, and leave every write (manifest, logs, checkpoints, evaluation, samples) to it."""
        self.bus.emit(RunStarted(run_dir=str(self.run.root), stages=stages, backend=self.backend))
        for stage in stages:
            fp = self._fingerprints[stage] = self._fingerprint(stage)
            if stage == "train":
                self._summaries["train"] = self._stage_train().summary
            elif stage in ("data", "tokenizer", "model"):
                self._wait_for_leader(stage, fp)
        seconds = time.perf_counter() - started
        summary = self.summary(seconds)
        self.bus.emit(RunFinished(run_dir=str(self.run.root), seconds=seconds, summary=summary))
        return summary

    def _wait_for_leader(self, stage: str, fp: str) -> None:
        self.bus.emit(Message(f"waiting for process 0's {stage} stage"))
        while True:
            entry = self.run.read_manifest()["stages"].get(stage, {})
            # The leader commits a stage's files before its entry; the entry's digests say they are whole.
            if entry.get("fingerprint") == fp and self.run.check_outputs(entry) is None:
                return
            time.sleep(0.5)

    # Stages -------------------------------------------------------------------------------------
    def _run_stage(self, stage: str, manifest: dict) -> None:
        fp = self._fingerprint(stage)
        self._fingerprints[stage] = fp
        previous = manifest["stages"].get(stage, {})
        reason = ""
        if previous.get("fingerprint") == fp:
            problem = self.run.check_outputs(previous)
            if problem is None:
                self._summaries[stage] = previous.get("summary", {})
                self.bus.emit(StageSkipped(stage=stage, reason="inputs unchanged since the last run"))
                return
            reason = f"{stage}: {problem}; redoing"
        later = self.stages[self.stages.index(stage) + 1:]
        with StageTransaction(self.run, manifest, stage, later, STAGE_FOLDERS[stage]) as transaction:
            self.bus.emit(StageStarted(stage=stage, reason=reason))
            began = time.perf_counter()
            result: StageResult = getattr(self, f"_stage_{stage}")()
            seconds = time.perf_counter() - began
            transaction.commit(result.outputs, result.redrawn,
                               {"fingerprint": fp, "seconds": round(seconds, 3), "summary": result.summary,
                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self._summaries[stage] = result.summary
        self.bus.emit(StageFinished(stage=stage, seconds=seconds, summary=result.summary))

    def _fingerprint(self, stage: str) -> str:
        r = self.recipe
        upstream = self._fingerprints.get(self.stages[self.stages.index(stage) - 1]) if stage != "data" else None
        if stage == "data":
            from llmtui.data.sources import source_fingerprint

            sources = [source_fingerprint(s, self.base_dir) for s in r.data.sources]
            evals = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in
                     (self.base_dir / f for f in r.data.eval_files) if p.is_file()]
            return fingerprint("data", r.data.model_dump(mode="json"), r.run.seed, sources, evals)
        section = {"tokenizer": r.tokenizer, "model": r.model, "train": r.train, "eval": r.eval,
                   "generate": r.generate}[stage].model_dump(mode="json")
        extra = [r.run.seed, self.backend] if stage in ("model", "train") else []
        if extra and r.model.embedding == "pretrained":  # new vectors in the same file redo the model
            vectors = self._pretrained_path()
            extra.append([vectors.stat().st_size, vectors.stat().st_mtime_ns] if vectors.is_file() else None)
        return fingerprint(stage, section, upstream, extra)

    def _stage_data(self) -> StageResult:
        from llmtui.data.prepare import prepare_data

        folder = self.run.data_dir
        report = prepare_data(self.recipe.data, self.recipe.run.seed, folder, self.base_dir)
        self.bus.emit(Message(
            f"data: {report['documents_kept']} of {report['documents_read']} documents kept, "
            f"{report['characters_kept']:,} characters; train {report['splits']['train']['chunks']} chunks, "
            f"validation {report['splits']['val']['chunks']}"))
        from llmtui.data.prepare import ignored_line

        if ignored_line(report):
            self.bus.emit(Message(ignored_line(report), level="warning"))
        for skip in report["skipped"][:20]:
            self.bus.emit(Message(f"skipped {skip['path']}: {skip['reason']}", level="warning"))
        if len(report["skipped"]) > 20:
            self.bus.emit(Message(f"... and {len(report['skipped']) - 20} more skipped (llmtui data inspect RUN)",
                                  level="warning"))
        for name, found in (report.get("contamination") or {}).items():
            if isinstance(found, dict) and found.get("contaminated"):
                self.bus.emit(Message(f"contamination: {found['contaminated']} of {found['examples']} {name} "
                                      f"examples share a {report['contamination']['ngram']}-word n-gram with train",
                                      level="warning"))
        summary = {k: report[k] for k in ("documents_read", "documents_kept", "exact_duplicates", "near_duplicates",
                                          "characters_kept")}
        outputs = [folder / f"{split}.jsonl" for split in report["splits"]] + [folder / "report.json"]
        return StageResult(outputs, summary)

    def _stage_tokenizer(self) -> StageResult:
        import numpy as np

        from llmtui.data.prepare import read_split
        from llmtui.data.tokens import load_tokens
        from llmtui.tokenizers import train_tokenizer
        from llmtui.tokenizers.report import report_lines, vocabulary_report

        folder = self.run.tokenizer_dir
        tokenizer = train_tokenizer(self.recipe.tokenizer, read_split(self.run.data_dir / "train.jsonl"),
                                    lowercase=self.recipe.data.lowercase,
                                    normalization=self.recipe.data.clean.normalize)
        saved = tokenizer.save(folder)
        meta = self._encode_splits(tokenizer, "text")
        self.bus.emit(Message(
            f"tokenizer: {tokenizer.kind}, {tokenizer.vocab_size} tokens; train {meta['train']['tokens']:,} tokens, "
            f"validation {meta['val']['tokens']:,}"))
        train_counts = np.bincount(load_tokens(folder, "train"), minlength=tokenizer.vocab_size)
        report = vocabulary_report(tokenizer, read_split(self.run.data_dir / "val.jsonl"), train_counts)
        write_json_atomic(folder / "report.json", report)
        for line in report_lines(report):
            self.bus.emit(Message(line))
        summary = {"vocab_size": meta["vocab_size"], "train_tokens": meta["train"]["tokens"],
                   "val_tokens": meta["val"]["tokens"], "unknown_rate": report["validation"]["unknown_rate"],
                   "bytes_per_token": report["validation"]["bytes_per_token"],
                   "tokens_per_word": report["validation"]["tokens_per_word"]}
        outputs = saved + [folder / "tokens.json", folder / "train.bin", folder / "val.bin", folder / "report.json"]
        return StageResult(outputs, summary)

    def _encode_splits(self, tokenizer, what: str) -> dict:
        """Encode the train and validation splits into token files; refuse too little `what` for the context."""
        from llmtui.data.tokens import encode_split, write_token_meta

        folder = self.run.tokenizer_dir
        meta = {"vocab_size": tokenizer.vocab_size, "kind": tokenizer.kind}
        for split in ("train", "val"):
            meta[split] = encode_split(tokenizer, self.run.data_dir / f"{split}.jsonl", folder / f"{split}.bin")
        write_token_meta(folder, meta)
        context = self.recipe.model.context
        if meta["val"]["tokens"] < context + 1 or meta["train"]["tokens"] < context + 2:
            raise LlmtuiError(
                f"too little {what} for model.context={context}: train has {meta['train']['tokens']} tokens, "
                f"validation {meta['val']['tokens']}",
                hint="add data, raise data.val_fraction, or lower model.context")
        return meta

    def _stage_model(self) -> StageResult:
        from llmtui.models import count_parameters
        from llmtui.models.cost import estimate_cost, preflight_problem

        cost = estimate_cost(self.recipe.model, self.recipe.train, self._vocab_size())
        problem = preflight_problem(cost, self.recipe.train)
        if problem:
            raise LlmtuiError(f"pre-flight check: {problem}", hint="see llmtui model summary RECIPE")
        self._setup_backend()
        model = self._build_model()
        folder = self.run.model_dir
        folder.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
        write_text_atomic(folder / "summary.txt", "\n".join(lines) + "\n")
        params = count_parameters(model)
        info = {"arch": self.recipe.model.arch, "parameters": params, "vocab_size": self._vocab_size(),
                "cost": cost.as_dict(),
                "backend": self.backend, "config": self.recipe.model.model_dump(mode="json")}
        write_json_atomic(folder / "architecture.json", info)
        self.bus.emit(Message(f"model: {self.recipe.model.arch}, {params:,} parameters"))
        return StageResult([folder / "architecture.json"], {"parameters": params})

    def _stage_train(self) -> StageResult:
        from llmtui.training.trainer import TrainInputs, train

        self._setup_backend()
        train_config = self._plan.train_config(self.recipe.train)
        self.bus.emit(Message(f"precision {self._plan.precision} ({self._plan.reason}); step {self._plan.compiler}"))
        with self._distribution() as devices:
            if train_config.distribute == "model_parallel":
                self.bus.emit(Message(f"model parallel on a {devices[0]} x {devices[1]} mesh (data x model)"))
            elif devices > 1:
                self.bus.emit(Message(f"data parallel over {devices} devices"))
            if train_config.distribute == "data_parallel" and self.backend == "tensorflow" and train_config.jit_compile:
                # XLA cannot compile a step whose variables live on several devices (MirroredStrategy).
                self.bus.emit(Message("XLA is off for MirroredStrategy training on TensorFlow", level="warning"))
                train_config = train_config.model_copy(update={"jit_compile": False})
            result = self._train_on_devices(train, TrainInputs, train_config)
        if self.cluster.multi and self.cluster.leader:
            # Saved outside the mesh: saving makes new variables, which under the mesh would be laid out over
            # every process and wait for the others (who write nothing) to make them too.
            self._save_final_model(self._trained)
        self._trained = None
        return result

    def _distribution(self):
        if self.recipe.train.distribute == "data_parallel":
            import keras

            from llmtui.training.distribute import data_parallel

            return data_parallel(keras.backend.backend(), self.recipe.train.batch_size)
        if self.recipe.train.distribute == "model_parallel":
            import keras

            from llmtui.models.cost import weight_shapes
            from llmtui.training.distribute import model_parallel

            train = self.recipe.train
            return model_parallel(keras.backend.backend(), train.batch_size, train.mesh,
                                  weight_shapes(self.recipe.model, self._vocab_size()))
        return contextlib.nullcontext(1)

    def _train_on_devices(self, train, inputs_type, train_config) -> StageResult:
        model = self._build_model()
        inputs = self._train_inputs(inputs_type)
        generate = self.recipe.generate
        prompt = generate.prompts[0] if generate.prompts else ""

        def sample(current_model) -> tuple[str, str]:
            return prompt, self._generator(current_model).generate(
                prompt, max_tokens=min(generate.max_tokens, 80), temperature=generate.temperature,
                top_k=generate.top_k, top_p=generate.top_p, seed=generate.seed, beams=generate.beams,
                stop=generate.stop, use_cache=generate.use_cache)

        from llmtui.backend import device_kind
        from llmtui.models.cost import estimate_cost, peak_flops

        cost = estimate_cost(self.recipe.model, train_config, inputs.vocab_size)
        peak, peak_source = peak_flops(train_config, device_kind())
        self.bus.emit(Message(f"MFU is measured against {peak / 1e12:.2f} TFLOP/s ({peak_source})"))
        sampler = self._training_sampler(sample) if train_config.eval_samples else None
        summary = train(model, inputs, train_config, self.recipe.model, self.recipe.run.seed, self.run,
                        self._fingerprints["train"], self.bus.emit,
                        # samples in training run on one process; a multi-process job samples after training
                        sampler_fn=None if self.cluster.multi else sampler,
                        flops_per_token=cost.flops_per_token, peak_flops=peak, stop_requested=self.stop_requested)
        if self.cluster.multi:  # its variables span every process: evaluation reloads it on process 0 alone
            self._trained = model
            return StageResult([self.run.final_model_path], summary)
        self._save_final_model(model)
        self._model = model
        return StageResult([self.run.final_model_path], summary)

    def _stage_eval(self) -> StageResult:
        from llmtui.evaluation.language_model import scorer_for
        from llmtui.evaluation.report import write_report
        from llmtui.evaluation.run_eval import save_eval_report, validation_metrics

        self._setup_backend()
        batch_size = self.recipe.eval.batch_size or self.recipe.train.batch_size
        scorer = scorer_for(self._final_model(), self.recipe.model, self.recipe.train, batch_size,
                            self._plan.jit_compile)
        report = validation_metrics(scorer, self.run, self.recipe.model.context, batch_size,
                                    self.recipe.eval.max_batches)
        save_eval_report(self.run, report)
        pages = write_report(self.run)  # redrawn by llmtui report RUN, e.g. after the generate stage
        self.bus.emit(Message(f"eval: loss {report['loss']:.4f}, perplexity {report['perplexity']:.3f}, "
                              f"top-5 accuracy {report['top5_accuracy']:.3f}; report {pages['report.html']}"))
        return StageResult([self.run.eval_dir / "report.json"],
                           {k: report.get(k) for k in ("loss", "perplexity", "bits_per_byte", "accuracy",
                                                       "top5_accuracy")},
                           redrawn=[pages["report.md"], pages["report.html"]])

    def _stage_generate(self) -> StageResult:
        self._setup_backend()
        generator = self._generator(self._final_model())
        g = self.recipe.generate
        samples = []
        for index, prompt in enumerate(g.prompts):
            text = generator.generate(prompt, g.max_tokens, g.temperature, g.top_k, g.top_p, g.seed + index,
                                      beams=g.beams, stop=g.stop, use_cache=g.use_cache)
            samples.append({"prompt": prompt, "text": text})
            self.bus.emit(Sample(step=-1, prompt=prompt, text=text))
        folder = self.run.generate_dir
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "samples.json", {"samples": samples})
        if (self.run.eval_dir / "report.json").exists():  # the report pages show these samples too
            from llmtui.evaluation.report import write_report

            write_report(self.run)
        return StageResult([folder / "samples.json"], {"samples": samples})

    # Helpers ------------------------------------------------------------------------------------
    def _setup_backend(self) -> None:
        configure_backend(self.recipe.run.backend)
        import keras

        from llmtui.backend import device_kind
        from llmtui.training.precision import plan_execution

        keras.utils.set_random_seed(self.recipe.run.seed)
        self._plan = plan_execution(self.recipe.train, self.recipe.model, keras.backend.backend(), device_kind())
        # Every stage (a trained model's later evaluation and sampling too) computes in the run's precision.
        keras.mixed_precision.set_dtype_policy(self._plan.precision)

    def _vocab_size(self) -> int:
        return int(_read_json(self.run.tokenizer_dir / "tokens.json")["vocab_size"])

    def _build_model(self):
        from llmtui.models import build_model
        from llmtui.models.embedding import pretrained_table

        config, accum = self.recipe.model, self.recipe.train.grad_accum_steps
        if config.freeze_steps > 0 and accum > 1:  # the embedding counts forward passes, one per micro-batch
            config = config.model_copy(update={"freeze_steps": config.freeze_steps * accum})
        with pretrained_table(self._pretrained_table()):
            return build_model(config, self._vocab_size(), seed=self.recipe.run.seed)

    def _pretrained_table(self):
        """The vocabulary's rows of model.pretrained_path (None unless model.embedding = pretrained)."""
        m = self.recipe.model
        if m.embedding != "pretrained":
            return None
        if self._pretrained is None:
            from llmtui.models.pretrained import coverage_line, map_onto_vocabulary
            from llmtui.tokenizers import TextTokenizer

            tokenizer = TextTokenizer.load(self.run.tokenizer_dir)
            matrix, report = map_onto_vocabulary(tokenizer, self._pretrained_path(), m.pretrained_format,
                                                 self.recipe.run.seed)
            self.run.model_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run.model_dir / "embedding_report.json", report)
            self.bus.emit(Message(coverage_line(report)))
            self._pretrained = matrix
        return self._pretrained

    def _pretrained_path(self) -> Path:
        path = Path(self.recipe.model.pretrained_path).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _train_inputs(self, cls):
        from llmtui.data.tokens import load_tokens

        meta = _read_json(self.run.tokenizer_dir / "tokens.json")
        return cls(train_tokens=load_tokens(self.run.tokenizer_dir, "train"),
                   val_tokens=load_tokens(self.run.tokenizer_dir, "val"),
                   bytes_per_token=meta["val"]["bytes"] / meta["val"]["tokens"], vocab_size=meta["vocab_size"])

    def _training_sampler(self, sample):
        """What writes a sample at each evaluation during training (None: no samples, e.g. a classifier)."""
        return sample

    def _save_final_model(self, model) -> None:
        path = self.run.final_model_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("final.tmp.keras")  # Keras wants the .keras suffix
        model.save(tmp)
        tmp.replace(path)

    def _final_model(self):
        if self._model is None:
            self._model = load_final_model(self.run)
        return self._model

    def _generator(self, model):
        from llmtui.generation.sampler import Generator
        from llmtui.tokenizers import TextTokenizer

        return Generator(model, TextTokenizer.load(self.run.tokenizer_dir), self.recipe.model.context,
                         use_cache=self.recipe.generate.use_cache)


def pipeline_for(recipe: Recipe, base_dir: Path | str = ".", sinks: list[Callable[[Event], None]] | None = None) -> Pipeline:
    """The pipeline a recipe asks for: fine-tuning when `[finetune] base` names a run, else training from scratch."""
    if recipe.finetune.base:
        from llmtui.finetune.pipeline import FinetunePipeline

        return FinetunePipeline(recipe, base_dir, sinks)
    return Pipeline(recipe, base_dir, sinks)


def load_final_model(run: RunFolder):
    """The trained model of a run folder (Keras must already be configured)."""
    import keras

    import llmtui.evaluation.language_model  # noqa: F401  (registers custom objects)
    import llmtui.finetune.classifier  # noqa: F401
    import llmtui.models.recurrent_layers  # noqa: F401
    import llmtui.models.token_encoding  # noqa: F401
    import llmtui.models.transformer  # noqa: F401
    import llmtui.training.keras_schedule  # noqa: F401

    path = run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
    try:
        return keras.models.load_model(path, compile=False)
    except OSError:
        raise
    except Exception as exc:  # a truncated or overwritten file: zipfile, h5py and Keras each raise their own
        raise LlmtuiError(f"{path} cannot be read as a Keras model ({type(exc).__name__}: {exc})",
                          hint="the file is damaged: run the recipe again (llmtui run RECIPE) to redo training "
                               "from its last checkpoint") from None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None

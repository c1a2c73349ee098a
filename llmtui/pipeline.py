"""The runner of a run's stages; the same code serves the CLI, the TUI and tests.

A run is a list of stages (`llmtui.stages`: training from scratch; `llmtui.finetune.stages`: fine-tuning).
The runner gives each stage a fingerprint of its inputs (its own recipe section plus the fingerprint of the
stage before it) and records it in `manifest.json`; a stage whose fingerprint matches and whose outputs are
whole is skipped, and training continues from its newest checkpoint. Each stage that runs writes its outputs
inside a `StageTransaction`, so a failed or interrupted stage leaves nothing a later run trusts. The runner
holds the run folder's lock and emits the run's events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llmtui.backend import native_stderr_to, require_backend
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
    StageFinished,
    StageSkipped,
    StageStarted,
)
from llmtui.runfolder import (
    STAGE_FOLDERS,
    STAGES,  # noqa: F401  (the stage names of training from scratch, for callers)
    Manifest,
    RunFolder,
    StageTransaction,
    clear_staging,
    fingerprint,
    write_text_atomic,
)
from llmtui.stages.base import Stage, StageContext
from llmtui.stages.pretraining import pretraining_stages

if TYPE_CHECKING:
    from llmtui.runcontrol import RunControl


class Pipeline:
    """Runs a list of stages (by default those of training from scratch) in a recipe's run folder, emitting
    events to `sinks`; `control` is asked between training steps whether to pause or stop."""

    def __init__(
        self,
        recipe: Recipe,
        base_dir: Path | str = ".",
        sinks: list[Callable[[Event], None]] | None = None,
        control: RunControl | None = None,
        stages: Sequence[Stage] | None = None,
    ):
        self.recipe = recipe
        self.base_dir = Path(base_dir)
        self.run = RunFolder.of_recipe(recipe, self.base_dir)
        self.bus = EventBus(sinks)
        self.backend = require_backend(recipe.run.backend)
        self.stages: tuple[Stage, ...] = tuple(stages if stages is not None else pretraining_stages())
        self.context = StageContext(recipe, self.base_dir, self.run, self.bus.emit, self.backend, control)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return _names(self.stages)

    # Public -------------------------------------------------------------------------------------
    def execute(self, until: str | None = None) -> dict:
        """Run the stages up to and including `until`; returns the summary of the whole run."""
        names = self.stage_names
        if until is not None and until not in names:
            raise LlmtuiError(f"unknown stage {until!r}", hint=f"stages: {', '.join(names)}")
        stages = self.stages if until is None else self.stages[: names.index(until) + 1]
        started = time.perf_counter()
        if self._join_cluster() and not self.context.cluster.leader:
            return self._follow(stages, started)
        with self.run:
            clear_staging(self.run)
            write_text_atomic(self.run.recipe_path, recipe_to_toml(self.recipe))
            self.bus.emit(RunStarted(run_dir=str(self.run.root), stages=_names(stages), backend=self.backend))
            manifest = self.run.read_manifest()
            manifest["recipe"] = self.recipe.model_dump(mode="json")
            current = None
            try:
                with native_stderr_to(self.run.log_file):
                    for stage in stages:
                        current = stage.name
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
        summaries = self.context.summaries
        report = summaries.get("eval") or self.run.eval_report() or {}
        train = summaries.get("train") or {}
        samples = summaries.get("generate", {}).get("samples") or self.run.samples()
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
            "task": (self.run.eval_report() or {}).get("task"),
        }

    # Several processes ----------------------------------------------------------------------------
    def _join_cluster(self) -> bool:
        """Join the multi-process job the environment describes (see llmtui.training.cluster); False when
        this is a single-process run."""
        from llmtui.training import cluster

        here = self.context.cluster = cluster.current()
        if not here.multi:
            return False
        if self.recipe.train.distribute == "none":
            raise LlmtuiError(
                f"this process is one of {here.count} ({here.variables}), but "
                "train.distribute = 'none' trains on one device",
                hint="set train.distribute = 'data_parallel' (or 'model_parallel')",
            )
        cluster.join(self.backend)  # before anything starts JAX or TensorFlow
        self.bus.emit(Message(f"process {here.index} of {here.count} (coordinator {here.coordinator})"))
        return True

    def _follow(self, stages: Sequence[Stage], started: float) -> dict:
        """A process other than 0: wait for process 0's stages that training reads, train in step with it, and
        leave every write (manifest, logs, checkpoints, evaluation, samples) to it."""
        self.bus.emit(RunStarted(run_dir=str(self.run.root), stages=_names(stages), backend=self.backend))
        for stage in stages:
            fp = self._fingerprint(stage)
            if stage.on_followers == "run":
                self.context.summaries[stage.name] = stage.run(self.context).summary
            elif stage.on_followers == "wait":
                self._wait_for_leader(stage.name, fp)
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
    def _fingerprint(self, stage: Stage) -> str:
        """The stage's fingerprint (recorded for the stages after it): its inputs, with the one before it."""
        index = self.stages.index(stage)
        upstream = self.context.fingerprints.get(self.stages[index - 1].name) if index else None
        self.context.fingerprints[stage.name] = fingerprint(*stage.inputs(self.context, upstream))
        return self.context.fingerprints[stage.name]

    def _run_stage(self, stage: Stage, manifest: Manifest) -> None:
        name, context = stage.name, self.context
        fp = self._fingerprint(stage)
        previous = manifest["stages"].get(name, {})
        reason = ""
        if previous.get("fingerprint") == fp:
            problem = self.run.check_outputs(previous)
            if problem is None:
                context.summaries[name] = previous.get("summary", {})
                self.bus.emit(StageSkipped(stage=name, reason="inputs unchanged since the last run"))
                return
            reason = f"{name}: {problem}; redoing"
        later = self.stage_names[self.stage_names.index(name) + 1 :]
        with StageTransaction(self.run, manifest, name, later, STAGE_FOLDERS[name]) as transaction:
            self.bus.emit(StageStarted(stage=name, reason=reason))
            began = time.perf_counter()
            result = stage.run(context)
            seconds = time.perf_counter() - began
            transaction.commit(
                result.outputs,
                result.redrawn,
                {
                    "fingerprint": fp,
                    "seconds": round(seconds, 3),
                    "summary": result.summary,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
            )
        context.summaries[name] = result.summary
        self.bus.emit(StageFinished(stage=name, seconds=seconds, summary=result.summary))


def pipeline_for(
    recipe: Recipe,
    base_dir: Path | str = ".",
    sinks: list[Callable[[Event], None]] | None = None,
    control: RunControl | None = None,
) -> Pipeline:
    """The pipeline a recipe asks for: fine-tuning when `[finetune] base` names a run, else training from scratch."""
    if not recipe.finetune.base:
        return Pipeline(recipe, base_dir, sinks, control)
    from llmtui.finetune.pipeline import finetune_plan

    recipe, stages = finetune_plan(recipe, Path(base_dir))
    return Pipeline(recipe, base_dir, sinks, control, stages)


def _names(stages: Sequence[Stage]) -> tuple[str, ...]:
    return tuple(stage.name for stage in stages)

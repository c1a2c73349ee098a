"""What a stage is, and what the stages of one run share.

A stage has a `name` (its key in the manifest and in events), `inputs` (the JSON-able parts its fingerprint
is the hash of: its own recipe section, the fingerprint of the stage before it, anything else it reads) and
`run`, which writes its outputs in the run folder and returns a `StageResult`. The runner
(`llmtui.pipeline.Pipeline`) owns everything around that: fingerprints, skipping, the stage transaction,
events and the lock. The stages of one run pass things on only through the run folder, the `StageContext`
and the model source they share (`llmtui.stages.pretraining.ModelSource`), never through attributes of one
another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmtui.config.recipe import Recipe
from llmtui.events import Event
from llmtui.runfolder import RunFolder, TokenMeta
from llmtui.training.cluster import Cluster

if TYPE_CHECKING:
    from llmtui.runcontrol import RunControl
    from llmtui.training.precision import ExecutionPlan


@dataclass
class StageResult:
    outputs: list[Path]
    summary: dict = field(default_factory=dict)
    # Outputs that later stages or commands rewrite (the report pages): checked for presence, not content.
    redrawn: list[Path] = field(default_factory=list)


class Stage(Protocol):
    name: str
    # What the other processes of a multi-process job do at this stage: "wait" for process 0 to commit it
    # (what training reads), "run" it in step with process 0 (training), or "skip" it (process 0's alone).
    on_followers: str

    def inputs(self, context: StageContext, upstream: str | None) -> tuple:
        """The parts of this stage's fingerprint; `upstream` is the fingerprint of the stage before it."""
        ...

    def run(self, context: StageContext) -> StageResult: ...


@dataclass
class StageContext:
    """What the stages of one run share: the recipe, the run folder, where events go, the run's control, the
    backend's set-up, the fingerprints and summaries of the stages so far, and the trained model once there."""

    recipe: Recipe
    base_dir: Path
    run: RunFolder
    emit: Callable[[Event], None]
    backend: str
    control: RunControl | None = None
    cluster: Cluster = field(default_factory=Cluster)  # this process's place in a multi-process job
    fingerprints: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, dict] = field(default_factory=dict)
    plan: ExecutionPlan | None = None  # precision and compiler, chosen when the backend is set up
    model: Any = None  # the trained model: kept by training, else loaded from the run folder when needed

    def setup_backend(self) -> ExecutionPlan:
        from llmtui.backend import configure_backend

        configure_backend(self.recipe.run.backend)
        import keras

        from llmtui.backend import device_kind
        from llmtui.training.precision import plan_execution

        keras.utils.set_random_seed(self.recipe.run.seed)
        self.plan = plan_execution(self.recipe.train, self.recipe.model, keras.backend.backend(), device_kind())
        # Every stage (a trained model's later evaluation and sampling too) computes in the run's precision.
        keras.mixed_precision.set_dtype_policy(self.plan.precision)
        return self.plan

    def stop_requested(self) -> Callable[[], bool] | None:
        """What training polls between optimizer steps (None: nothing but Ctrl-C stops it)."""
        control = self.control
        if control is None:
            return None
        return lambda: control.stop_requested(self.emit)

    def token_meta(self) -> TokenMeta:
        """tokenizer/tokens.json: the vocabulary's size and kind, and each split's token and byte counts."""
        return self.run.token_meta()

    def vocab_size(self) -> int:
        return self.token_meta().vocab_size

    def final_model(self):
        if self.model is None:
            from llmtui.runfolder import load_final_model

            self.model = load_final_model(self.run)
        return self.model

    def save_final_model(self, model) -> None:
        path = self.run.final_model_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("final.tmp.keras")  # Keras wants the .keras suffix
        model.save(tmp)
        tmp.replace(path)

    def generator(self, model):
        from llmtui.generation.sampler import Generator
        from llmtui.tokenizers import TextTokenizer

        return Generator(
            model,
            TextTokenizer.load(self.run.tokenizer_dir),
            self.recipe.model.context,
            use_cache=self.recipe.generate.use_cache,
        )

    def resolve(self, name: str | Path) -> Path:
        """A path the recipe gives: absolute, or relative to the folder llmtui was started from."""
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.base_dir / path

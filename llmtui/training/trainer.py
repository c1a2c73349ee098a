"""The training loop: next-token prediction with XLA-compiled steps, evaluation, checkpoints, resume.

A loop over single steps (`TrainStep`: `train_on_batch` on TensorFlow, the compiled step fed its own output
state on JAX) rather than `model.fit`: on 2 CPU cores it had less per-step overhead, and it keeps gradient
accumulation, evaluation, checkpointing, early stopping, the NaN guard and stopping requests (Ctrl-C, the
TUI's stop button) plain Python at optimizer-step boundaries.

What is trained is a *task*: it supplies batches, the loss and the validation metrics. Pretraining and
domain fine-tuning use `LanguageModelingTask` (random windows of a token file) or, with `train.stateful`,
`StatefulLanguageModelingTask` (contiguous lanes, the recurrent state carried between batches: truncated
backpropagation through time); classification and prompt-to-answer fine-tuning bring their own
(`llmtui.finetune.tasks`). The loop is the same for all. A task may train a different model than the one
it is given (`training_model`): the stateful task trains a twin that shares every layer and holds the
carried states as variables, so they are saved in checkpoints along with the weights.

Checkpoints (`checkpoints/step_NNNNNNN/`, and `checkpoints/best/`) hold the model's variables (weights and
dropout random state), the optimizer's variables and the task's batch-sampler random state, so a resumed run
continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import keras
import numpy as np
from keras import ops

from llmtui.config.recipe import ModelConfig, TrainConfig
from llmtui.data.tokens import StreamBatches, WindowSampler
from llmtui.errors import TrainingError, TrainingInterrupted  # noqa: F401  (raised here; defined light)
from llmtui.evaluation.language_model import make_scorer, score_tokens, summarize
from llmtui.events import CheckpointSaved, Message, Metrics, Sample, TrainingStarted
from llmtui.runfolder import RunFolder, write_json_atomic
from llmtui.training.feed import BatchFeed
from llmtui.training.host_memory import reuse_freed_memory
from llmtui.training.optimizers import make_optimizer
from llmtui.training.schedule import lr_at
from llmtui.training.step import TrainStep
from llmtui.training.tensorboard import ScalarWriter

# Losses are read (and checked for NaN) at least this often, even with rare logging.
_MAX_UNREAD_LOSSES = 100


@dataclass
class TrainInputs:
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    bytes_per_token: float
    vocab_size: int


class TrainingTask(Protocol):
    """What the training loop trains: batches, a loss, and a validation that returns at least `loss`."""

    tokens_per_batch: int

    def loss(self, config: TrainConfig) -> keras.losses.Loss: ...

    def next_batch(self) -> tuple: ...  # (x, y) or (x, y, sample_weight)

    def state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...

    def validate(self, model) -> dict: ...


class Resumable(Protocol):
    """What a checkpoint saves of the batches: a task, or the `BatchFeed` prefetching for it."""

    def state(self) -> dict: ...


class LanguageModelingTask:
    """Next-token prediction on random windows of a token file; validated on the validation tokens."""

    def __init__(self, inputs: TrainInputs, context: int, config: TrainConfig, seed: int):
        self.inputs, self.context, self.config = inputs, context, config
        from llmtui.training import cluster

        self.sampler: WindowSampler | StreamBatches = WindowSampler(
            inputs.train_tokens, context, config.batch_size, seed, rows=cluster.current().batch_rows(config.batch_size)
        )
        self.tokens_per_batch = config.batch_size * context
        self._scorer = None

    def loss(self, config: TrainConfig) -> keras.losses.Loss:
        return NextTokenLoss(config.label_smoothing)

    def next_batch(self) -> tuple:
        return self.sampler.next_batch()

    def state(self) -> dict:
        return self.sampler.state()

    def set_state(self, state: dict) -> None:
        self.sampler.set_state(state)

    def validate(self, model) -> dict:
        if self._scorer is None:
            self._scorer = make_scorer(model, self.config.jit_compile)
        val = summarize(
            score_tokens(
                self._scorer, self.inputs.val_tokens, self.context, self.config.batch_size, self.config.eval_batches
            ),
            self.inputs.bytes_per_token,
            self.inputs.vocab_size,
        )
        return {"loss": val["loss"], "perplexity": val["perplexity"], "accuracy": val["accuracy"]}


class StatefulLanguageModelingTask(LanguageModelingTask):
    """Next-token prediction on contiguous lanes of the token file, the recurrent state carried from each
    batch to the next (and zeroed at each end-of-text token and at the start of each epoch); validated the
    same way on the validation tokens, with a state of its own (training's is left untouched)."""

    def __init__(self, inputs: TrainInputs, model_config: ModelConfig, config: TrainConfig, seed: int):
        self.inputs, self.context, self.config, self.model_config = inputs, model_config.context, config, model_config
        try:
            self.sampler = StreamBatches(inputs.train_tokens, self.context, config.batch_size)
        except ValueError as exc:
            raise TrainingError(
                f"train.stateful: the train split is too short: {exc}",
                hint="add data, or lower train.batch_size or model.context",
            ) from None
        self.tokens_per_batch = config.batch_size * self.context
        self._scorer = None

    def training_model(self, model):
        from llmtui.models.recurrent import stateful_twin
        from llmtui.tokenizers.text_tokenizer import EOS, SPECIAL_TOKENS

        return stateful_twin(model, self.model_config, self.config.batch_size, SPECIAL_TOKENS.index(EOS))

    def validate(self, model) -> dict:
        if self._scorer is None:
            self._scorer = make_scorer(
                model, self.config.jit_compile, stateful_batch=self.config.batch_size, model_config=self.model_config
            )
        val = summarize(
            score_tokens(
                self._scorer, self.inputs.val_tokens, self.context, self.config.batch_size, self.config.eval_batches
            ),
            self.inputs.bytes_per_token,
            self.inputs.vocab_size,
        )
        return {"loss": val["loss"], "perplexity": val["perplexity"], "accuracy": val["accuracy"]}


def next_token_nll(targets, logits):
    """-log softmax(logits)[target] per position, computed in float32: logsumexp minus the target's logit.

    Keras' sparse cross-entropy takes a float32 log-softmax of the whole (B, T, V) tensor and keeps it for
    the backward pass, then multiplies it by a one-hot of the targets: at GPT-2's vocabulary and batch 16,
    3.3 GB written and read back each step. Here the forward keeps only the logsumexp per position, and
    the gradient, softmax minus one-hot, is formed in one pass over the logits (bench/README.md,
    "The next-token loss").
    """
    if len(targets.shape) == len(logits.shape):  # (B, T, 1) targets
        targets = ops.squeeze(targets, axis=-1)
    targets = ops.cast(targets, "int32")

    @ops.custom_gradient
    def nll(scores):
        wide = ops.cast(scores, "float32")
        normaliser = ops.logsumexp(wide, axis=-1)
        picked = ops.squeeze(ops.take_along_axis(wide, ops.expand_dims(targets, -1), axis=-1), axis=-1)

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            softmax = ops.exp(ops.cast(scores, "float32") - ops.expand_dims(normaliser, -1))
            hot = ops.one_hot(targets, ops.shape(scores)[-1], dtype="float32")
            return ops.cast((softmax - hot) * ops.expand_dims(upstream, -1), scores.dtype)

        return normaliser - picked, grad

    return nll(logits)


@keras.saving.register_keras_serializable(package="llmtui")
class NextTokenLoss(keras.losses.Loss):
    """Cross-entropy of next-token logits against integer targets, with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "next_token_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        if not self.label_smoothing:
            return next_token_nll(y_true, y_pred)
        logits = ops.cast(y_pred, "float32")
        nll = ops.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
        uniform = -ops.mean(ops.log_softmax(logits, axis=-1), axis=-1)  # cross-entropy against uniform targets
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def compile_model(model, config: TrainConfig, loss: keras.losses.Loss | None = None) -> None:
    model.compile(
        optimizer=make_optimizer(config),
        loss=loss or NextTokenLoss(config.label_smoothing),
        jit_compile=config.jit_compile,
    )
    # Built now rather than inside the first traced step: TensorFlow would otherwise trace the whole training
    # step twice (once to create the optimizer's variables, then again to use them): 13.6 → 10.0 s to the first
    # step of the baby GPT.
    model.optimizer.build(model.trainable_variables)


class _StopFlag:
    """Ctrl-C asks to stop at the next optimizer step (a second Ctrl-C stops at once)."""

    def __init__(self, external: Callable[[], bool] | None):
        self.external = external
        self.requested = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        return self.requested or bool(self.external and self.external())

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class TrainState:
    """Where training stands: what a checkpoint saves and a resumed run restores."""

    step: int = 0
    best_val_loss: float = math.inf
    evals_since_best: int = 0


@dataclass
class MetricsWindow:
    """The optimizer steps since training metrics were last logged: their summed loss, time and input wait."""

    start: float = field(default_factory=time.perf_counter)
    steps: int = 0
    loss: float = 0.0
    input_wait: float = 0.0

    def restart(self) -> None:
        self.start, self.steps, self.loss, self.input_wait = time.perf_counter(), 0, 0.0, 0.0


@dataclass
class TrainSummary:
    """What training reports (the train stage's summary in the manifest, in this key order)."""

    first_loss: float | None = None
    last_loss: float | None = None
    val_loss: float | None = None
    stopped_early: bool = False
    tokens_per_sec: float = 0.0
    train_seconds: float = 0.0
    steps: int = 0
    best_val_loss: float = math.inf


def train(
    model,
    inputs: TrainInputs | TrainingTask,
    config: TrainConfig,
    model_config: ModelConfig,
    seed: int,
    run: RunFolder,
    fingerprint: str,
    emit,
    sampler_fn=None,
    flops_per_token: float = 0.0,
    peak_flops: float = 0.0,
    stop_requested: Callable[[], bool] | None = None,
) -> dict:
    """Train `model` to `config.steps` optimizer steps, resuming from the newest matching checkpoint.

    `inputs` is a task, or token files for next-token prediction (wrapped in a `LanguageModelingTask`, or a
    `StatefulLanguageModelingTask` with `train.stateful`). `model` is what samples and validation see; the
    task's `training_model` (when it has one) is what the optimizer steps and checkpoints hold.
    """
    from llmtui.models import count_parameters
    from llmtui.training import cluster

    task = _task_for(inputs, config, model_config, seed)
    shown = model  # samples, validation and parameter counts
    model = task.training_model(shown) if hasattr(task, "training_model") else shown
    compile_model(model, config, task.loss(config))
    leader = cluster.current().leader  # in a multi-process job only process 0 writes logs and checkpoints
    checkpoints = CheckpointManager(run.checkpoint_dir, config.keep_checkpoints, fingerprint, writes=leader)
    state = _resume(checkpoints, model, task, emit)
    tokens_per_step = task.tokens_per_batch * config.grad_accum_steps
    emit(
        TrainingStarted(
            total_steps=config.steps,
            start_step=state.step,
            tokens_per_step=tokens_per_step,
            parameters=count_parameters(shown),
        )
    )
    loop = _TrainingLoop(
        model,
        shown,
        task,
        config,
        state,
        checkpoints,
        emit,
        _Writers(run, leader),
        sampler_fn,
        _Throughput(tokens_per_step, flops_per_token, peak_flops),
    )
    loop.run(stop_requested)
    loop.result.steps, loop.result.best_val_loss = state.step, state.best_val_loss
    return asdict(loop.result)


def _task_for(
    inputs: TrainInputs | TrainingTask, config: TrainConfig, model_config: ModelConfig, seed: int
) -> TrainingTask:
    """The task to train: `inputs` itself, or next-token prediction on token files."""
    if not isinstance(inputs, TrainInputs):
        return inputs
    if config.stateful:
        return StatefulLanguageModelingTask(inputs, model_config, config, seed)
    return LanguageModelingTask(inputs, model_config.context, config, seed)


def _resume(checkpoints: CheckpointManager, model, task: TrainingTask, emit) -> TrainState:
    """The state of the newest matching checkpoint, restored into `model` and `task` (a fresh state if none)."""
    resumed = checkpoints.latest()
    if resumed is None:
        return TrainState()
    state = checkpoints.restore(resumed, model, task)
    emit(Message(f"resuming from checkpoint {resumed.name} (step {state.step})"))
    return state


@dataclass(frozen=True)
class _Throughput:
    """What turns a metrics window into tokens per second and model FLOPs utilisation."""

    tokens_per_step: int
    flops_per_token: float
    peak_flops: float


class _Writers:
    """The TensorBoard logs, `train` and `val` (nothing written on processes other than 0)."""

    def __init__(self, run: RunFolder, leader: bool):
        self.train = ScalarWriter(run.logs_dir / "train") if leader else _NoWriter()
        self.val = ScalarWriter(run.logs_dir / "val") if leader else _NoWriter()

    def flush(self) -> None:
        self.train.flush()
        self.val.flush()

    def close(self) -> None:
        self.train.close()
        self.val.close()


class _TrainingLoop:
    """The optimizer steps of one `train()` call and what happens between them: metrics, checkpoints,
    evaluation (best checkpoint, plateau, early stopping, samples) and stopping."""

    def __init__(
        self,
        model,
        shown,
        task: TrainingTask,
        config: TrainConfig,
        state: TrainState,
        checkpoints: CheckpointManager,
        emit,
        writers: _Writers,
        sampler_fn,
        throughput: _Throughput,
    ):
        self.model, self.shown, self.task, self.config, self.state = model, shown, task, config, state
        self.checkpoints, self.emit, self.writers, self.sampler_fn = checkpoints, emit, writers, sampler_fn
        self.throughput = throughput
        self.result = TrainSummary()
        self.window = MetricsWindow()
        self.feed = BatchFeed(task)  # the next batches are drawn while the current step runs
        self.train_step = TrainStep(model)
        # Losses not yet read: on JAX each is a device scalar, and reading it waits for its step, so the loop
        # reads them only where it needs them (metrics, checkpoints, evaluation, stopping) and the device is
        # never left idle waiting for the host in between.
        self.pending: list[tuple[int, Any]] = []  # (step, its loss: a backend scalar, read later)

    def run(self, stop_requested: Callable[[], bool] | None) -> None:
        config = self.config
        with _StopFlag(stop_requested) as stop, reuse_freed_memory(), self.feed:
            try:
                while self.state.step < config.steps:
                    step = self.take_step()
                    log_now = step % config.log_every == 0 or step == config.steps
                    evaluate_now = step % config.eval_every == 0 or step == config.steps
                    checkpoint_now = evaluate_now or (step % config.checkpoint_every == 0 and step < config.steps)
                    stopping = stop() and step < config.steps
                    if log_now or checkpoint_now or stopping or len(self.pending) >= _MAX_UNREAD_LOSSES:
                        self.read_losses()
                    if log_now:
                        self.log_metrics(step)
                    if checkpoint_now:
                        saved = self.checkpoint()  # before each evaluation too: a failing evaluation loses nothing
                        self.window.start = time.perf_counter()
                    if evaluate_now and self.evaluate(step, saved):
                        self.result.stopped_early = True
                        break
                    if stopping:
                        raise TrainingInterrupted(step, self.checkpoint())
            except KeyboardInterrupt:
                raise TrainingInterrupted(self.state.step, self.checkpoint() if self.state.step else None) from None
            finally:
                self.train_step.sync()  # the model is whole again for whatever comes after training
                self.writers.close()

    def take_step(self) -> int:
        """One optimizer step (`grad_accum_steps` micro-batches); its loss joins the unread ones."""
        feed, accum = self.feed, self.config.grad_accum_steps
        waited = feed.wait_seconds
        loss = self.train_step(*feed.next_batch())
        for _ in range(accum - 1):
            loss = loss + self.train_step(*feed.next_batch())
        self.window.input_wait += feed.wait_seconds - waited
        self.state.step += 1
        self.window.steps += 1
        self.pending.append((self.state.step, loss / accum if accum > 1 else loss))
        return self.state.step

    def read_losses(self) -> None:
        for at, value in self.pending:
            loss = float(value)
            if not math.isfinite(loss):
                latest = self.checkpoints.latest()
                kept = f"; the last good checkpoint is {latest}" if latest else ""
                raise TrainingError(
                    f"the training loss became {loss} at step {at}{kept}",
                    hint="lower train.lr, keep train.grad_clip on, or check the data",
                )
            self.window.loss += loss
            if self.result.first_loss is None:
                self.result.first_loss = loss
        self.pending.clear()

    def checkpoint(self) -> Path:
        self.read_losses()  # a checkpoint never holds the state of a step whose loss was not finite
        self.train_step.sync()
        path = self.checkpoints.save(self.state, self.model, self.feed)
        self.emit(CheckpointSaved(step=self.state.step, path=str(path)))
        return path

    def log_metrics(self, step: int) -> None:
        optimizer = _tracking_optimizer(self.model)
        grad_norm = float(np.asarray(self.train_step.value(optimizer.grad_norm)))
        values = _train_metrics(self.config, self.window, self.throughput, step, grad_norm)
        if self.config.schedule == "plateau":  # the variable the loop lowers, not a function of the step
            values["lr"] = float(np.asarray(self.train_step.value(optimizer._learning_rate)))
        self.result.train_seconds += time.perf_counter() - self.window.start
        self.result.last_loss, self.result.tokens_per_sec = values["loss"], values["tokens_per_sec"]
        self.emit(Metrics(step=step, split="train", values=values))
        for tag, value in values.items():
            self.writers.train.scalar(tag, value, step)
        self.window.restart()

    def evaluate(self, step: int, saved: Path) -> bool:
        """Validate on the shown model, keep the best checkpoint, lower a plateaued rate and sample; True when
        early stopping ends training here."""
        config, state = self.config, self.state
        val = self.task.validate(self.shown)
        self.result.val_loss = val["loss"]
        self.emit(Metrics(step=step, split="val", values=val))
        for tag, value in val.items():
            self.writers.val.scalar(tag, value, step)
        improved = self.track_best(val["loss"], saved)
        if not improved and config.schedule == "plateau" and state.evals_since_best % config.plateau_patience == 0:
            self.lower_learning_rate(step)
        if self.sampler_fn is not None:
            prompt, text = self.sampler_fn(self.shown)
            self.emit(Sample(step=step, prompt=prompt, text=text))
            self.writers.val.text("sample", f"{prompt}{text}", step)
        self.writers.flush()
        self.window.start = time.perf_counter()  # evaluation time does not count against tokens/s
        patience = config.early_stopping_patience
        if patience and state.evals_since_best >= patience and step < config.steps:
            self.emit(
                Message(
                    f"early stopping at step {step}: no better validation loss in {patience} "
                    f"evaluations (best {state.best_val_loss:.4f})"
                )
            )
            return True
        return False

    def track_best(self, val_loss: float, saved: Path) -> bool:
        """Patience restarts only on an improvement larger than min_delta; the best checkpoint follows every
        improvement. Returns whether this was such an improvement."""
        state = self.state
        improved = val_loss < state.best_val_loss - self.config.early_stopping_min_delta
        state.evals_since_best = 0 if improved else state.evals_since_best + 1
        if val_loss < state.best_val_loss:
            state.best_val_loss = val_loss
            self.checkpoints.mark_best(saved, val_loss)
        return improved

    def lower_learning_rate(self, step: int) -> None:
        optimizer = _tracking_optimizer(self.model)
        lowered = float(np.asarray(optimizer.learning_rate)) * self.config.plateau_factor
        optimizer.learning_rate = lowered
        self.emit(Message(f"validation loss did not improve: learning rate lowered to {lowered:.4g}"))
        if step < self.config.steps:  # the step's checkpoint holds the lowered rate: exact resume
            self.checkpoint()


def _tracking_optimizer(model):
    """Our optimizer, with its `grad_norm`: under mixed_float16 Keras wraps it in a LossScaleOptimizer."""
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


def _train_metrics(
    config: TrainConfig, window: MetricsWindow, throughput: _Throughput, step: int, grad_norm: float
) -> dict:
    elapsed = max(time.perf_counter() - window.start, 1e-9)
    tokens_per_sec = window.steps * throughput.tokens_per_step / elapsed
    values = {
        "loss": window.loss / window.steps,
        "lr": lr_at(
            step - 1,
            config.lr,
            config.steps,
            config.warmup_steps,
            config.schedule,
            config.min_lr_ratio,
            config.decay_fraction,
        ),
        "tokens_per_sec": tokens_per_sec,
        "grad_norm": grad_norm,
        # Time a step spent waiting for its batch (the feed draws batches ahead, so normally ~0).
        "input_wait_ms": 1000.0 * window.input_wait / window.steps,
    }
    if throughput.flops_per_token and throughput.peak_flops:
        values["mfu"] = throughput.flops_per_token * tokens_per_sec / throughput.peak_flops
    return values


class _NoWriter:
    """The logs of a process that does not write them (not process 0 of a multi-process job)."""

    def scalar(self, *args) -> None: ...
    def text(self, *args) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _save_variables(path: Path, variables) -> None:
    """The variables' values as v0, v1, ... of one .npz (what `CheckpointManager.restore` reads back)."""
    arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(variables)}
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types any ** key as allow_pickle: bool


class CheckpointManager:
    """Atomic checkpoints (written to a temporary folder, then renamed): the newest K, and the best.

    `writes=False` (the other processes of a multi-process job): `save` and `mark_best` name the checkpoint
    process 0 writes and write nothing; `latest` and `restore` read process 0's checkpoints.
    """

    def __init__(self, folder: Path, keep: int, fingerprint: str, writes: bool = True):
        self.folder = folder
        self.keep = keep
        self.fingerprint = fingerprint
        self.writes = writes

    def _all(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(
            p
            for p in self.folder.glob("step_*")
            if p.is_dir() and not p.name.endswith(".tmp") and (p / "state.json").exists()
        )

    def _mine(self, path: Path) -> bool:
        try:
            return json.loads((path / "state.json").read_text(encoding="utf-8")).get("fingerprint") == self.fingerprint
        except (OSError, json.JSONDecodeError):
            return False

    def latest(self) -> Path | None:
        """The newest checkpoint written for this same training setup (a changed recipe starts afresh)."""
        return next((path for path in reversed(self._all()) if self._mine(path)), None)

    def save(self, state: TrainState, model, sampler: Resumable) -> Path:
        final = self.folder / f"step_{state.step:07d}"
        if not self.writes:
            return final
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"step_{state.step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        # Every model variable, trainable or not (dropout seed-generator states included).
        _save_variables(tmp / "model.npz", model.variables)
        _save_variables(tmp / "optimizer.npz", model.optimizer.variables)
        best = state.best_val_loss
        write_json_atomic(
            tmp / "state.json",
            {
                "step": state.step,
                "best_val_loss": best if math.isfinite(best) else None,
                "evals_since_best": state.evals_since_best,
                "fingerprint": self.fingerprint,
                "sampler": sampler.state(),
            },
        )
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        # Keep the newest K of this setup; checkpoints of an earlier, different setup can never resume.
        mine = [path for path in self._all() if self._mine(path)]
        for old in mine[: -self.keep] + [path for path in self._all() if path not in mine]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def mark_best(self, checkpoint: Path, val_loss: float) -> None:
        if not self.writes:
            return
        best, tmp = self.folder / "best", self.folder / "best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint, tmp)
        write_json_atomic(tmp / "best.json", {"val_loss": val_loss, "from": checkpoint.name})
        shutil.rmtree(best, ignore_errors=True)
        tmp.rename(best)

    def restore(self, path: Path, model, sampler: TrainingTask) -> TrainState:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        with np.load(path / "model.npz") as values:
            for i, variable in enumerate(model.variables):
                variable.assign(values[f"v{i}"])
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        with np.load(path / "optimizer.npz") as values:
            for i, variable in enumerate(optimizer.variables):
                variable.assign(values[f"v{i}"])
        sampler.set_state(state["sampler"])
        best = state.get("best_val_loss")
        return TrainState(
            step=int(state["step"]),
            best_val_loss=best if best is not None else math.inf,
            evals_since_best=int(state.get("evals_since_best", 0)),
        )

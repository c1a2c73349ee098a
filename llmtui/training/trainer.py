"""The training loop: next-token prediction with XLA-compiled steps, periodic evaluation, checkpoints.

A loop over `train_on_batch` rather than `model.fit`: on 2 CPU cores it had less per-step overhead, and it
keeps evaluation, checkpointing, the NaN guard and Ctrl-C handling plain Python.

Checkpoints (`checkpoints/step_NNNNNNN/`) hold the model weights, the optimizer's variables and the batch
sampler's random state, so a rerun of the same recipe continues where a killed run stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from llmtui.config.recipe import ModelConfig, TrainConfig
from llmtui.data.tokens import WindowSampler
from llmtui.errors import TrainingError
from llmtui.evaluation.language_model import make_scorer, score_tokens, summarize
from llmtui.events import CheckpointSaved, Message, Metrics, Sample, TrainingStarted
from llmtui.runfolder import RunFolder, write_json_atomic
from llmtui.training.optimizers import make_optimizer
from llmtui.training.schedule import lr_at
from llmtui.training.tensorboard import ScalarWriter


class TrainingInterrupted(Exception):
    """Ctrl-C during training; a checkpoint was written first."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainInputs:
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    bytes_per_token: float
    vocab_size: int


def compile_model(model, config: TrainConfig) -> None:
    model.compile(optimizer=make_optimizer(config),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=config.jit_compile)


def train(model, inputs: TrainInputs, config: TrainConfig, model_config: ModelConfig, seed: int,
          run: RunFolder, fingerprint: str, emit, sampler_fn=None) -> dict:
    """Train `model` to `config.steps`, resuming from the newest matching checkpoint. Returns a summary."""
    compile_model(model, config)
    batches = WindowSampler(inputs.train_tokens, model_config.context, config.batch_size, seed)
    scorer = make_scorer(model, config.jit_compile)
    writer = ScalarWriter(run.logs_dir / "train")
    val_writer = ScalarWriter(run.logs_dir / "val")
    checkpoints = CheckpointManager(run.checkpoint_dir, config.keep_checkpoints, fingerprint)

    step, best_val = 0, math.inf
    resumed = checkpoints.latest()
    if resumed is not None:
        step, best_val = checkpoints.restore(resumed, model, batches)
        emit(Message(f"resuming from checkpoint {resumed.name} (step {step})"))

    tokens_per_step = config.batch_size * model_config.context
    from llmtui.models import count_parameters
    emit(TrainingStarted(total_steps=config.steps, start_step=step, tokens_per_step=tokens_per_step,
                         parameters=count_parameters(model)))

    history = {"first_loss": None, "last_loss": None, "val_loss": None}
    window_start, window_steps, window_loss = time.perf_counter(), 0, 0.0
    tokens_per_sec = 0.0
    train_seconds = 0.0
    try:
        while step < config.steps:
            x, y = batches.next_batch()
            logs = model.train_on_batch(x, y, return_dict=True)
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                latest = checkpoints.latest()
                kept = f"; the last good checkpoint is {latest}" if latest else ""
                raise TrainingError(
                    f"the training loss became {loss} at step {step + 1}{kept}",
                    hint="lower train.lr, keep train.grad_clip on, or check the data")
            step += 1
            window_steps += 1
            window_loss += loss
            if history["first_loss"] is None:
                history["first_loss"] = loss
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                train_seconds += elapsed
                tokens_per_sec = window_steps * tokens_per_step / max(elapsed, 1e-9)
                mean_loss = window_loss / window_steps
                history["last_loss"] = mean_loss
                lr = lr_at(step - 1, config.lr, config.steps, config.warmup_steps, config.schedule, config.min_lr_ratio)
                values = {"loss": mean_loss, "lr": lr, "tokens_per_sec": tokens_per_sec}
                emit(Metrics(step=step, split="train", values=values))
                for tag, value in values.items():
                    writer.scalar(tag, value, step)
                window_start, window_steps, window_loss = time.perf_counter(), 0, 0.0
            if step % config.eval_every == 0 or step == config.steps:
                val = summarize(score_tokens(scorer, inputs.val_tokens, model_config.context, config.batch_size,
                                             config.eval_batches), inputs.bytes_per_token, inputs.vocab_size)
                best_val = min(best_val, val["loss"])
                history["val_loss"] = val["loss"]
                values = {"loss": val["loss"], "perplexity": val["perplexity"], "accuracy": val["accuracy"]}
                emit(Metrics(step=step, split="val", values=values))
                for tag, value in values.items():
                    val_writer.scalar(tag, value, step)
                if sampler_fn is not None:
                    prompt, text = sampler_fn(model)
                    emit(Sample(step=step, prompt=prompt, text=text))
                    val_writer.text("sample", f"{prompt}{text}", step)
                writer.flush()
                val_writer.flush()
                window_start = time.perf_counter()  # evaluation time does not count against tokens/s
            if step % config.checkpoint_every == 0 and step < config.steps:
                path = checkpoints.save(step, best_val, model, batches)
                emit(CheckpointSaved(step=step, path=str(path)))
    except KeyboardInterrupt:
        path = checkpoints.save(step, best_val, model, batches) if step else None
        raise TrainingInterrupted(step, path) from None
    finally:
        writer.close()
        val_writer.close()

    path = checkpoints.save(step, best_val, model, batches)
    emit(CheckpointSaved(step=step, path=str(path)))
    return {"steps": step, "first_loss": history["first_loss"], "last_loss": history["last_loss"],
            "val_loss": history["val_loss"], "best_val_loss": best_val, "tokens_per_sec": tokens_per_sec,
            "train_seconds": train_seconds}


class CheckpointManager:
    """Atomic checkpoints (written to a temporary folder, then renamed), keeping the newest K."""

    def __init__(self, folder: Path, keep: int, fingerprint: str):
        self.folder = folder
        self.keep = keep
        self.fingerprint = fingerprint

    def _all(self) -> list[Path]:
        if not self.folder.exists():
            return []
        return sorted(p for p in self.folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")
                      and (p / "state.json").exists())

    def latest(self) -> Path | None:
        """The newest checkpoint written for this same training setup (a changed recipe starts afresh)."""
        for path in reversed(self._all()):
            try:
                state = json.loads((path / "state.json").read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if state.get("fingerprint") == self.fingerprint:
                return path
        return None

    def save(self, step: int, best_val: float, model, sampler: WindowSampler) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"step_{step:07d}"
        tmp = self.folder / f"step_{step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / "model.weights.h5")
        optimizer_values = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)}
        np.savez(tmp / "optimizer.npz", **optimizer_values)
        write_json_atomic(tmp / "state.json", {
            "step": step, "best_val_loss": best_val if math.isfinite(best_val) else None,
            "fingerprint": self.fingerprint, "sampler": sampler.state(),
        })
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in self._all()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, path: Path, model, sampler: WindowSampler) -> tuple[int, float]:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        model.load_weights(path / "model.weights.h5")
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        with np.load(path / "optimizer.npz") as values:
            for i, variable in enumerate(optimizer.variables):
                variable.assign(values[f"v{i}"])
        sampler.set_state(state["sampler"])
        best = state.get("best_val_loss")
        return int(state["step"]), (best if best is not None else math.inf)

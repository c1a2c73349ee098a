"""What the Train screen shows, folded from a run's events (so it survives leaving the screen).

The stage list comes from the run itself (`RunStarted.stages`: a task fine-tune has no generate stage);
before a run has started it is the list the recipe's pipeline would run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from llmtui.events import (
    CheckpointSaved,
    Event,
    Message,
    Metrics,
    RunFailed,
    RunFinished,
    RunInterrupted,
    RunStarted,
    Sample,
    StageFinished,
    StageSkipped,
    StageStarted,
    TrainingStarted,
)


@dataclass
class RunMonitor:
    stages: dict[str, str] = field(default_factory=dict)
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    latest: dict[str, float] = field(default_factory=dict)
    total_steps: int = 0
    start_step: int = 0
    step: int = 0
    tokens_per_step: int = 0
    samples: list[tuple[int, str, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    checkpoint: str = ""
    started: float = 0.0

    def reset(self, stages: tuple[str, ...] = ()) -> None:
        """Forget everything shown: a fresh monitor, its `stages` waiting."""
        vars(self).update(vars(RunMonitor(stages={stage: "waiting" for stage in stages})))

    def load_history(self, run_root: Path, total_steps: int = 0) -> None:
        """Curves, latest values and samples from a run folder's TensorBoard logs (an earlier or stopped run)."""
        from llmtui.evaluation.tensorboard_logs import read_log_folder
        from llmtui.runfolder import RunFolder

        run = RunFolder(run_root)
        train, val = read_log_folder(run.scalar_log_dir("train")), read_log_folder(run.scalar_log_dir("val"))
        self.train_loss = list(train.scalars.get("loss", []))
        self.val_loss = list(val.scalars.get("loss", []))
        self.samples = [(step, "", text) for step, text in val.texts.get("sample", [])]
        self.latest.update({tag: points[-1][1] for tag, points in train.scalars.items() if points})
        self.latest.update({f"val_{tag}": points[-1][1] for tag, points in val.scalars.items() if points})
        self.step = max([p[0] for p in self.train_loss + self.val_loss], default=0)
        self.total_steps = total_steps or self.step

    def consume_all(self, events) -> None:
        for event in events:
            self.consume(event)

    def eta_seconds(self) -> float | None:
        speed = self.latest.get("tokens_per_sec")
        if not speed or not self.tokens_per_step or not self.total_steps:
            return None
        return (self.total_steps - self.step) * self.tokens_per_step / speed

    def consume(self, event: Event) -> None:
        if isinstance(event, RunStarted):  # a new session: its own stages; curves carry on (resumed training)
            self.started = event.time
            self.stages = {stage: "waiting" for stage in event.stages}
            self.log.append(
                f"{time.strftime('%H:%M:%S', time.localtime(event.time))} run folder {event.run_dir} "
                f"· backend {event.backend}"
            )
        elif isinstance(event, StageStarted):
            self.stages[event.stage] = "running"
            if event.reason:
                self.log.append(f"warning: {event.reason}")
        elif isinstance(event, StageSkipped):
            self.stages[event.stage] = "skipped"
        elif isinstance(event, StageFinished):
            self.stages[event.stage] = "done"
        elif isinstance(event, Message):
            self.log.append(event.text if event.level == "info" else f"{event.level}: {event.text}")
        elif isinstance(event, TrainingStarted):
            self.total_steps, self.start_step, self.step = event.total_steps, event.start_step, event.start_step
            self.tokens_per_step = event.tokens_per_step
            self.train_loss = [p for p in self.train_loss if p[0] <= event.start_step]
            self.val_loss = [p for p in self.val_loss if p[0] <= event.start_step]
        elif isinstance(event, Metrics):
            self.step = max(self.step, event.step)
            loss = event.values.get("loss")
            if event.split == "train":
                self.latest.update(event.values)
                if loss is not None:
                    self.train_loss.append((event.step, loss))
            else:
                self.latest.update({f"val_{k}": v for k, v in event.values.items()})
                if loss is not None:
                    self.val_loss.append((event.step, loss))
        elif isinstance(event, Sample):
            self.samples.append((event.step, event.prompt, event.text))
        elif isinstance(event, CheckpointSaved):
            self.checkpoint = event.path
        elif isinstance(event, RunFailed):
            if event.stage:
                self.stages[event.stage] = "failed"
            self.log.append(f"error: {event.error}")
        elif isinstance(event, RunInterrupted):
            for stage, status in self.stages.items():
                if status == "running":
                    self.stages[stage] = "waiting"
            where = f"; checkpoint {event.checkpoint}" if event.checkpoint else ""
            self.log.append(f"stopped at step {event.step}{where}" if event.step else "stopped")
        elif isinstance(event, RunFinished):
            self.log.append(f"finished in {event.seconds:.1f} s")

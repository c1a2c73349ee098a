"""Plain event objects the pipeline emits, and the sinks that receive them.

The core never imports UI code: the console (Rich), the TUI and tests all subscribe as sinks. A sink is any
callable taking one event; `EventBus` fans an event out to every sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Event:
    """Base of every event; `time` is seconds since the epoch."""

    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    run_dir: str
    stages: tuple[str, ...]
    backend: str


@dataclass(frozen=True)
class StageStarted(Event):
    stage: str
    reason: str = ""  # why a stage whose inputs did not change is redone (an output missing or changed)


@dataclass(frozen=True)
class StageSkipped(Event):
    stage: str
    reason: str


@dataclass(frozen=True)
class StageFinished(Event):
    stage: str
    seconds: float
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Message(Event):
    """A line of information for the person watching (level: info | warning)."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class TrainingStarted(Event):
    total_steps: int
    start_step: int
    tokens_per_step: int
    parameters: int


@dataclass(frozen=True)
class Metrics(Event):
    """Scalars at a step; `split` is "train" or "val"."""

    step: int
    split: str
    values: dict[str, float]


@dataclass(frozen=True)
class Sample(Event):
    step: int
    prompt: str
    text: str


@dataclass(frozen=True)
class CheckpointSaved(Event):
    step: int
    path: str


@dataclass(frozen=True)
class RunFinished(Event):
    run_dir: str
    seconds: float
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunFailed(Event):
    stage: str
    error: str


@dataclass(frozen=True)
class RunInterrupted(Event):
    """Stopped on request (Ctrl-C, the wizard's Stop) at `step`, leaving `checkpoint` to resume from (if any)."""

    step: int = 0
    checkpoint: str = ""


class Sink(Protocol):
    def __call__(self, event: Event) -> None: ...


class EventBus:
    """Delivers each event to every subscribed sink, in subscription order."""

    def __init__(self, sinks: list[Callable[[Event], None]] | None = None):
        self._sinks: list[Callable[[Event], None]] = list(sinks or [])

    def subscribe(self, sink: Callable[[Event], None]) -> None:
        self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            sink(event)

    __call__ = emit


class EventRecorder:
    """A sink that keeps every event (handy for tests and for reports)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

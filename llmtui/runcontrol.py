"""Pause, resume and stop a run from another process, and the bookkeeping `llmtui run` adds for its watchers.

The control is a small file in the run folder, `control.json` ({"pause": bool, "stop": bool}), that the
training loop reads between optimizer steps (a `stat` per step; the file is read only when it changed).
A file rather than signals: any number of watchers (the wizard in a terminal, another in the browser) see
the same state and survive restarts, a pause waits between steps (never inside one, with the accelerator
in the middle of a step), and it works the same for a run started from the shell. Stopping also sends
SIGINT, so a run still preparing data (no training step to poll from) stops too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from llmtui.eventlog import EVENT_LOG, EventLogSink
from llmtui.events import Event, Message, RunFailed, RunInterrupted, RunStarted, StageStarted

CONTROL = "control.json"


def control_path(run_root: Path) -> Path:
    return Path(run_root) / CONTROL


def read_control(run_root: Path) -> dict[str, bool]:
    try:
        data = json.loads(control_path(run_root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"pause": False, "stop": False}
    return {"pause": bool(data.get("pause")), "stop": bool(data.get("stop"))}


def write_control(run_root: Path, pause: bool = False, stop: bool = False) -> None:
    path = control_path(run_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pause": pause, "stop": stop}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def request_stop(run_root: Path, pid: int | None) -> None:
    """Ask the run to stop at its next step with a checkpoint (and interrupt it if it is not training yet)."""
    write_control(run_root, stop=True)
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGINT)


class RunControl(Protocol):
    """What a pipeline is given at construction and asks between optimizer steps: stop here (with a
    checkpoint)? A control that pauses holds the caller in `stop_requested` until resumed, saying so on `emit`."""

    def stop_requested(self, emit: Callable[[Event], None]) -> bool: ...


class StopWhen:
    """A control that stops when `predicate()` says so (a tuning trial's time budget, a ladder rung's curve)."""

    def __init__(self, predicate: Callable[[], bool]):
        self.predicate = predicate

    def stop_requested(self, emit: Callable[[Event], None]) -> bool:
        return bool(self.predicate())


class ControlFile:
    """The engine's side of `control.json`: stop when asked; a pause holds the caller here until resumed."""

    POLL_SECONDS = 0.2

    def __init__(self, run_root: Path):
        self.root = Path(run_root)
        self._seen: tuple[int, int] | None = None
        self._state = {"pause": False, "stop": False}

    def _current(self) -> dict[str, bool]:
        try:
            info = os.stat(control_path(self.root))
            key = (info.st_mtime_ns, info.st_size)
        except OSError:
            key = None
        if key != self._seen:
            self._seen = key
            self._state = read_control(self.root)
        return self._state

    def stop_requested(self, emit: Callable[[Event], None]) -> bool:
        state = self._current()
        if state["pause"] and not state["stop"]:
            emit(Message("paused after this step; resume to go on"))
            while state["pause"] and not state["stop"]:
                time.sleep(self.POLL_SECONDS)
                state = self._current()
            if not state["stop"]:
                emit(Message("resumed"))
        return state["stop"]


@contextlib.contextmanager
def watched_run(pipeline) -> Iterator[None]:
    """Give a pipeline what its watchers need: its events appended to `<run>/events.jsonl`, a fresh
    `control.json` (the pipeline was built with a `ControlFile` on it), and the way it ended (interrupted, or
    failed on an unexpected error) in the log too.

    Nothing is written before the pipeline holds the run folder's lock (its RunStarted): a second `llmtui run`
    refused because the folder is busy leaves the running one's log alone.
    """
    from llmtui.errors import LlmtuiError, TrainingInterrupted  # not the trainer's module: that imports TensorFlow

    log = EventLogSink(pipeline.run.root / EVENT_LOG)
    seen: dict[str, Any] = {"started": False, "stage": ""}

    def sink(event: Event) -> None:
        if isinstance(event, RunStarted):
            seen["started"] = True
            write_control(pipeline.run.root)  # a stop or pause left by an earlier run does not apply to this one
        elif isinstance(event, StageStarted):
            seen["stage"] = event.stage
        if seen["started"]:
            log(event)

    pipeline.bus.subscribe(sink)
    try:
        yield
    except TrainingInterrupted as exc:
        if seen["started"]:
            log(RunInterrupted(step=exc.step, checkpoint=str(exc.checkpoint or "")))
        raise
    except KeyboardInterrupt:
        if seen["started"]:
            log(RunInterrupted())
        raise
    except LlmtuiError:  # the pipeline already logged its RunFailed
        raise
    except Exception as exc:
        if seen["started"]:
            log(RunFailed(stage=seen["stage"], error=f"internal error: {type(exc).__name__}: {exc}"))
        raise

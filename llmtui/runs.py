"""What each run folder is doing: running, finished, failed or interrupted, how far, and its best loss.

"Running" is decided by the operating system, not by the log: a run holds its folder's lock (`flock`) for
as long as its process lives, so a killed run reads as interrupted even though its log stops mid-way.
`llmtui runs` and the wizard's Welcome screen show the same rows.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from llmtui.eventlog import EVENT_LOG, read_events
from llmtui.events import Metrics, RunFailed, RunFinished, RunInterrupted, RunStarted, TrainingStarted
from llmtui.runfolder import LOCK, RunFolder


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: str  # running | finished | failed | interrupted
    step: int = 0
    total_steps: int = 0
    best_val_loss: float | None = None
    started: float | None = None  # seconds since the epoch, when the run first started
    seconds: float | None = None  # time spent running, over every session
    error: str = ""
    pid: int | None = None


def lock_holder(run_root: Path, lock: str = LOCK) -> int | None:
    """The process id holding a run folder's lock (0 when it cannot be read), or None when nobody holds it.

    `lock`: the run's own (`.lock`), or the search's (`tune.lock`).
    """
    path = Path(run_root) / lock
    try:
        handle = open(path)
    except OSError:
        return None
    with handle:
        try:
            # A shared lock for an instant: taken only when nobody holds the run's exclusive one.
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            found = re.search(r"pid (\d+)", handle.read())
            return int(found.group(1)) if found else 0
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_info(root: Path) -> RunInfo:
    """The status of one run folder, from its lock and its event log (the manifest for runs without a log)."""
    root = Path(root)
    holder = lock_holder(root)
    status, step, total, best, error = "", 0, 0, math.inf, ""
    started: float | None = None
    seconds = 0.0
    session_start: float | None = None
    last_time: float | None = None
    for event in read_events(root / EVENT_LOG):
        if isinstance(event, RunStarted):
            if session_start is not None and last_time is not None:
                seconds += last_time - session_start
            session_start = event.time
            started = started if started is not None else event.time
            status = "interrupted"  # until the session says how it ended
        elif isinstance(event, TrainingStarted):
            total, step = event.total_steps, event.start_step
        elif isinstance(event, Metrics):
            step = max(step, event.step)
            loss = event.values.get("loss")
            if event.split == "val" and loss is not None and loss < best:
                best = loss
        elif isinstance(event, RunFinished):
            status = "finished"
        elif isinstance(event, RunFailed):
            status, error = "failed", event.error
        elif isinstance(event, RunInterrupted):
            status = "interrupted"
        last_time = event.time
    if session_start is not None and last_time is not None:
        seconds += (time.time() if holder is not None else last_time) - session_start
    if not status:  # made before runs kept an event log
        status, step, total, best, seconds = _from_manifest(root)
        started = _created(root)
    if holder is not None:
        status = "running"
    return RunInfo(
        name=root.name,
        path=root,
        status=status,
        step=step,
        total_steps=total,
        best_val_loss=None if best == math.inf else best,
        started=started,
        seconds=seconds if started is not None else None,
        error=error,
        pid=holder or None,
    )


def _from_manifest(root: Path) -> tuple[str, int, int, float, float]:
    run = RunFolder(root)
    stages = run.read_manifest()["stages"]
    train = stages.get("train", {}).get("summary", {})
    best = train.get("best_val_loss")
    finished = run.final_model_path.is_file()
    steps = int(train.get("steps") or 0)
    seconds = sum(float(s.get("seconds") or 0) for s in stages.values() if isinstance(s, dict))
    return (
        "finished" if finished else "interrupted",
        steps,
        steps,
        best if isinstance(best, (int, float)) else math.inf,
        seconds,
    )


def _created(root: Path) -> float | None:
    run = RunFolder(root)
    for path in (run.recipe_path, run.manifest_path):
        if path.is_file():
            return path.stat().st_mtime
    return None


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (RunFolder(path).recipe_path.is_file() or (path / EVENT_LOG).is_file())


def list_runs(folder: Path) -> list[RunInfo]:
    """Every run folder directly under `folder`, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = [run_info(child) for child in folder.iterdir() if is_run_folder(child)]
    return sorted(runs, key=lambda r: (r.started or 0.0, r.name), reverse=True)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def started_text(when: float | None) -> str:
    return "–" if when is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(when))


def table_rows(runs: list[RunInfo]) -> list[tuple[str, ...]]:
    """The columns `llmtui runs` and the Welcome screen show."""
    rows: list[tuple[str, ...]] = []
    for run in runs:
        step = f"{run.step}/{run.total_steps}" if run.total_steps else (str(run.step) if run.step else "–")
        best = f"{run.best_val_loss:.4f}" if run.best_val_loss is not None else "–"
        rows.append((run.name, run.status, step, best, started_text(run.started), duration_text(run.seconds)))
    return rows


def validation_curve(root: Path) -> list[tuple[int, float]]:
    """A run's validation loss by step, from its event log (the latest value of each step: a resumed run
    re-evaluates from its checkpoint)."""
    points: dict[int, float] = {}
    for event in read_events(Path(root) / EVENT_LOG):
        if isinstance(event, Metrics) and event.split == "val" and event.values.get("loss") is not None:
            points[event.step] = event.values["loss"]
    return sorted(points.items())


COLUMNS = ("run", "status", "step", "best val loss", "started", "duration")

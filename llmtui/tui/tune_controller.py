"""The wizard's search controller: `llmtui tune` as its own process, its SQLite study read as it fills up.

Like training, the search outlives the wizard: its output goes to `<run>/tune.log`, the study lives in
`<run>/study.db`, and whoever opens the recipe again sees the trials (and follows them while `tune.lock`
is held). Stopping writes the search's stop file (`tune.stop`): the running trial stops at its next step and
is queued again; starting again resumes the study where it stopped.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from llmtui.runs import lock_holder
from llmtui.tui.run_controller import last_error_line

TUNE_LOCK = "tune.lock"
TUNE_LOG = "tune.log"
POLL_SECONDS = 1.0


@dataclass
class TuneProgress(Message):
    """The study's trials as last read (rows as `llmtui tune` prints them) and the running trials' curves."""

    rows: list[dict]
    curves: dict[int, list[tuple[float, float]]]


@dataclass
class TuneEnded(Message):
    outcome: str  # finished | interrupted | failed
    text: str = ""


def read_study(storage_url: str, study_name: str) -> tuple[list[dict], dict[int, list[tuple[float, float]]]]:
    """Every trial of the study (none when there is no study yet) and the intermediate curves of running ones."""
    import optuna
    from optuna.trial import TrialState

    from llmtui.tuning.study import trial_row

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError:
        return [], {}
    trials = study.get_trials(deepcopy=False)
    curves = {
        t.number: sorted((float(k), float(v)) for k, v in t.intermediate_values.items())
        for t in trials
        if t.state == TrialState.RUNNING and t.intermediate_values
    }
    return [trial_row(t) for t in trials], curves


def best_row(rows: list[dict], direction: str) -> dict | None:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None and math.isfinite(r["value"])]
    if not done:
        return None
    sign = 1 if direction == "minimize" else -1
    return min(done, key=lambda r: (sign * r["value"], r["number"]))


def best_so_far(rows: list[dict], direction: str) -> list[tuple[float, float]]:
    """(trial number, best objective among trials up to it): the search's progress curve."""
    points, best = [], None
    for row in sorted(rows, key=lambda r: r["number"]):
        value = row["value"] if row["state"] == "complete" else None
        if value is None or not math.isfinite(value):
            continue
        if best is None or (value < best if direction == "minimize" else value > best):
            best = value
        points.append((float(row["number"]), best))
    return points


class TuneController:
    def __init__(self, app):
        self.app = app
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.running = False
        self.outcome = ""
        self.message = ""
        self.rows: list[dict] = []
        self.curves: dict[int, list[tuple[float, float]]] = {}
        self._token = 0

    def show(self, recipe, base_dir: Path) -> None:
        """Show the recipe's study (read once; followed while its search runs)."""
        from llmtui.tuning.study import study_paths

        root, storage = study_paths(recipe, base_dir)
        if root == self.root and self.running:
            return
        self._token += 1
        self.root, self.storage, self.study_name = root, storage, f"llmtui-{recipe.run.name}"
        self.process, self.rows, self.curves, self.outcome, self.message = None, [], {}, "", ""
        self.running = lock_holder(root, TUNE_LOCK) is not None
        self._follow()

    def start(self, recipe, base_dir: Path) -> str:
        """Start (or resume) the search as `llmtui tune`; returns "" or why it could not start."""
        from llmtui.config.loader import recipe_to_toml
        from llmtui.runs import lock_holder as run_lock_holder

        if not recipe.tune.space:
            return "the search space is empty: add at least one field to search (tune.space)"
        self.show(recipe, base_dir)
        root = self.root
        assert root is not None  # show() just set it
        if self.running:
            return f"a search is already running in {root}"
        if run_lock_holder(root) is not None:
            return f"{root} is busy with a training run: stop it or wait for it first"
        try:
            root.mkdir(parents=True, exist_ok=True)
            recipe_file = root / "recipe.toml"
            recipe_file.write_text(recipe_to_toml(recipe), encoding="utf-8")
            env = {
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
                "PYTHONUNBUFFERED": "1",
            }
            with open(root / TUNE_LOG, "ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "llmtui", "tune", str(recipe_file.resolve())],
                    cwd=base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            return f"cannot start the search: {exc.strerror or exc}"
        self.running, self.outcome, self.message = True, "", ""
        self._token += 1
        self._follow()
        return ""

    def stop(self) -> None:
        """Ask the search to stop: the running trial stops at its next step and is queued again."""
        from llmtui.tuning.study import STOP_FILE

        if self.running:
            assert self.root is not None  # a search going is a search shown
            (self.root / STOP_FILE).touch()
            self.app.notify("Stopping the search (the running trial is queued again for a resume)…")

    def detach(self) -> None:
        self._token += 1
        self.running = False
        self.process = None

    def _follow(self) -> None:
        token, process, root = self._token, self.process, self.root
        assert root is not None  # only a study shown is followed
        self.app.run_worker(
            lambda: self._poll(token, process, root), thread=True, group="tune-follower", exit_on_error=False
        )

    def _poll(self, token: int, process, root: Path) -> None:
        while token == self._token:
            alive = process.poll() is None if process is not None else lock_holder(root, TUNE_LOCK) is not None
            rows: list[dict] | None = None
            curves: dict[int, list[tuple[float, float]]] = {}
            for _attempt in range(1 if alive else 3):  # the last read, once the search is over, must succeed
                if not (root / "study.db").is_file():
                    break
                try:
                    rows, curves = read_study(self.storage, self.study_name)
                    break
                except Exception:  # the database busy or half-made: read it again
                    time.sleep(0.2)
            if rows is not None and token == self._token:
                self.app.post_message(TuneProgress(rows, curves))
            if not alive:
                if process is not None and token == self._token:
                    self.app.post_message(TuneEnded(*self._ending(process.returncode, root)))
                return
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _ending(code: int | None, root: Path) -> tuple[str, str]:
        if code == 0:
            return "finished", ""
        if code == 130:
            return "interrupted", "search interrupted; start it again to resume"
        line = last_error_line(root / TUNE_LOG)
        return "failed", line or f"the search ended with exit code {code} (see {root / TUNE_LOG})"

    def progress(self, message: TuneProgress) -> None:
        self.rows, self.curves = message.rows, message.curves

    def ended(self, message: TuneEnded) -> None:
        """The search's process is gone: its outcome, and a notice."""
        self.running, self.process = False, None
        self.outcome, self.message = message.outcome, message.text
        if message.outcome == "failed":
            self.app.notify(message.text, severity="error", title="The search failed", timeout=20)
        else:
            self.app.notify("Search finished." if message.outcome == "finished" else message.text, title="Search")

    def status_line(self) -> str:
        from rich.markup import escape

        done = sum(r["state"] == "complete" for r in self.rows)
        pruned = sum(r["state"] == "pruned" for r in self.rows)
        counts = f"{len(self.rows)} trials, {done} complete, {pruned} pruned" if self.rows else "no trials yet"
        if self.running:
            return f"[yellow]searching[/] · {counts}"
        if self.outcome == "failed":
            return f"[red]failed:[/] {escape(self.message)} · {counts}"
        if self.outcome == "interrupted":
            return f"[yellow]{escape(self.message)}[/] · {counts}"
        if self.outcome == "finished":
            return f"[green]finished[/] · {counts}"
        return f"[dim]not running[/] · {counts}"

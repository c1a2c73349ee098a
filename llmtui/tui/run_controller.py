"""The wizard's run controller: a run is its own `llmtui run` process; the wizard follows its event log.

The controller alone owns the process, the pause/stop requests (through the run folder's control file) and
the follower that tails `<run>/events.jsonl`; it posts `RunEvents` and `RunEnded` to the app, and the
screens redraw from its `monitor`. Because the run is a separate process (in its own session, its output
and native stderr in `<run>/run.log`), it outlives the wizard: quitting may leave it running, and opening
the run again replays its log and follows on. A crash of the training process ends in a message here, never
in the wizard's own terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.markup import escape

from llmtui.eventlog import EVENT_LOG, EventLogReader
from llmtui.events import RunFailed, RunFinished, RunInterrupted, RunStarted
from llmtui.runcontrol import read_control, request_stop, write_control
from llmtui.runs import lock_holder, run_info
from llmtui.tui.messages import RunEnded, RunEvents
from llmtui.tui.run_monitor import RunMonitor

FOLLOW_SECONDS = 0.2


def stages_for(recipe) -> tuple[str, ...]:
    """The stages the recipe's run will go through (what the Train screen lists before it starts)."""
    from llmtui.finetune.pipeline import TASK_STAGES
    from llmtui.runfolder import STAGES

    return TASK_STAGES if recipe.finetune.base and recipe.finetune.task != "domain" else STAGES


def last_error_line(log_file: Path) -> str:
    """The message a failed `llmtui run` printed last (its `error:` line), else the log's last line."""
    try:
        with open(log_file, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 16384))
            lines = [line.strip() for line in handle.read().decode("utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if line.startswith(("error:", "internal error:")):
            return line
    return lines[-1] if lines else ""


class RunController:
    def __init__(self, app):
        self.app = app
        self.monitor = RunMonitor()
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.running = False
        self.outcome = ""  # finished | interrupted | failed, once a run has ended (or was found ended)
        self.message = ""
        self._token = 0  # a follower stops once the token moved on (another run shown, or detached)

    # What is shown -----------------------------------------------------------------------------------
    def show(self, root: Path, stages: tuple[str, ...], total_steps: int = 0) -> None:
        """Show a run folder: replay its log (or its TensorBoard logs when it has none); follow it if it runs."""
        self.detach()
        self.root = Path(root)
        self.monitor.reset(stages)
        reader = EventLogReader(self.root / EVENT_LOG)
        events = reader.read_new()
        if events:
            self.monitor.consume_all(events)
        else:
            try:
                self.monitor.load_history(self.root, total_steps)
            except Exception:  # unreadable logs only cost the history
                self.monitor.reset(stages)
        info = run_info(self.root) if self.root.is_dir() else None
        self.outcome = info.status if info is not None and info.status != "running" and events else ""
        self.message = info.error if info is not None else ""
        if info is not None and info.status == "running":
            self.running, self.pid = True, info.pid
            self._follow(reader, None)

    def start(self, recipe, base_dir: Path, until: str | None = None) -> bool:
        """Run the recipe as `llmtui run` in its own process; False, with a notice saying why, when it cannot."""
        why = self._launch(recipe, base_dir, until)
        if why:
            self.app.notify(why, severity="error", title="Cannot start the run")
        return not why

    def _launch(self, recipe, base_dir: Path, until: str | None) -> str:
        """Start the process and follow its log; returns "" or why it could not start."""
        from llmtui.config.loader import recipe_to_toml
        from llmtui.runfolder import RunFolder

        run = RunFolder(Path(base_dir) / recipe.run.out_dir / recipe.run.name)
        if self.running or lock_holder(run.root) is not None:
            return f"{run.root} is already running"
        self.show(run.root, stages_for(recipe), recipe.train.steps)  # a resumed run continues its curves
        try:
            run.root.mkdir(parents=True, exist_ok=True)
            recipe_file = run.recipe_path  # the run writes the same recipe there itself
            recipe_file.write_text(recipe_to_toml(recipe), encoding="utf-8")
            write_control(run.root)
            command = [sys.executable, "-m", "llmtui", "run", str(recipe_file.resolve())]
            if until:
                command += ["--until", until]
            env = {
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
                "PYTHONUNBUFFERED": "1",
            }
            with open(run.log_file, "ab") as log:
                # Its own session: closing the terminal or the browser tab does not end the run.
                self.process = subprocess.Popen(
                    command,
                    cwd=base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            return f"cannot start the run: {exc.strerror or exc}"
        self.pid = self.process.pid
        self.running, self.outcome, self.message = True, "", ""
        self._follow(EventLogReader(run.root / EVENT_LOG, offset_at_end=True), until)
        return ""

    def detach(self) -> None:
        """Stop following (the run itself goes on)."""
        self._token += 1
        self.running = False
        self.process = None

    # Requests to the run -----------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self.running and self.root is not None and read_control(self.root)["pause"]

    def toggle_pause(self) -> bool:
        """Pause after the current step, or resume; returns whether it is now paused."""
        assert self.root is not None, "toggle_pause without a run shown"
        pause = not self.paused
        write_control(self.root, pause=pause)
        return pause

    def stop(self) -> None:
        """Ask the run to stop at its next training step (it writes a checkpoint first)."""
        if self.running:
            assert self.root is not None  # a run going is a run shown
            request_stop(self.root, self.pid)
            self.app.notify("Stopping at the next training step, with a checkpoint…")

    # Following ---------------------------------------------------------------------------------------
    def _follow(self, reader: EventLogReader, until: str | None) -> None:
        self._token += 1
        token, process, root = self._token, self.process, self.root
        assert root is not None  # only a run shown is followed
        self.app.run_worker(
            lambda: self._follow_log(token, reader, process, root, until),
            thread=True,
            group="run-follower",
            exit_on_error=False,
        )

    def _follow_log(self, token: int, reader: EventLogReader, process, root: Path, until: str | None) -> None:
        ending = None
        while token == self._token:
            alive = process.poll() is None if process is not None else lock_holder(root) is not None
            events = reader.read_new()  # after the liveness check: a run's last events are in by then
            for event in events:
                if isinstance(event, RunStarted):
                    ending = None
                elif isinstance(event, (RunFinished, RunFailed, RunInterrupted)):
                    ending = event
            if events:
                self.app.post_message(RunEvents(events))
            if not alive:
                outcome, text = self._ending(ending, process, root)
                if token == self._token:
                    self.app.post_message(RunEnded(outcome, text, until))
                return
            time.sleep(FOLLOW_SECONDS)

    @staticmethod
    def _ending(ending, process, root: Path) -> tuple[str, str]:
        if isinstance(ending, RunFinished):
            return "finished", ""
        if isinstance(ending, RunFailed):
            return "failed", ending.error
        if isinstance(ending, RunInterrupted):
            where = f"; checkpoint {ending.checkpoint}" if ending.checkpoint else ""
            return "interrupted", f"stopped at step {ending.step}{where}. Run again to resume."
        # The process ended without saying how: a crash, a refused start, or a kill.
        line = last_error_line(root / "run.log")
        code = process.returncode if process is not None else None
        if code == 130:
            return "interrupted", "stopped. Run again to resume."
        where = f" (exit code {code})" if code is not None else ""
        return "failed", f"the run's process ended{where}: {line or 'see ' + str(root / 'run.log')}"

    def consume(self, events: list) -> None:
        """Events the follower read (it posts them to the app, which hands them back here on the UI thread)."""
        self.monitor.consume_all(events)

    def ended(self, message: RunEnded) -> None:
        """The process is gone: its outcome, a last line in the log (unless the run wrote one) and a notice."""
        self.running, self.process = False, None
        self.outcome, self.message = message.outcome, message.text
        log = self.monitor.log
        if message.outcome == "failed":
            if not log or message.text not in log[-1]:
                log.append(f"error: {message.text}")
            self.app.notify(message.text, severity="error", title="The run failed", timeout=20)
        elif message.outcome == "interrupted":
            if not log or not log[-1].startswith("stopped"):  # the run's own RunInterrupted said it already
                log.append(message.text)
            self.app.notify(message.text, title="Training stopped")
        else:
            what = "Vocabulary trained" if message.until == "tokenizer" else "Run finished"
            log.append(what)
            self.app.notify(what + ".", title="Done")

    def status_line(self) -> str:
        if self.running:
            running = [stage for stage, status in self.monitor.stages.items() if status == "running"]
            started = any(status != "waiting" for status in self.monitor.stages.values())
            doing = f"running: {running[0]}" if running else ("finishing" if started else "starting")
            return f"[yellow]{'paused' if self.paused else doing}[/]"
        if self.outcome == "failed":
            return f"[red]failed:[/] {escape(self.message)}"
        if self.outcome == "interrupted":
            return f"[yellow]{escape(self.message or 'interrupted')}[/]"
        if self.outcome == "finished":
            return "[green]finished[/]"
        return "[dim]not running[/]"

"""Train: run the recipe with live loss curves, learning rate, speed, ETA and samples; pause, stop, resume."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, RichLog, Static

from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.line_chart import LineChart

_MARK = {
    "waiting": "[dim]·[/]",
    "running": "[yellow]▶[/]",
    "done": "[green]✓[/]",
    "skipped": "[green]✓[/]",
    "failed": "[red]✗[/]",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class TrainScreen(StepScreen):
    STEP = "train"
    BINDINGS = [
        Binding("r", "app.run_pipeline", "Run / resume"),
        Binding("p", "app.toggle_pause", "Pause"),
        Binding("s", "app.stop_training", "Stop"),
    ]

    def body(self) -> ComposeResult:
        yield Static("", id="stages")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=1, show_eta=False, id="progress")  # steps are known once training starts
            yield Static("", id="run-status")
        yield Static("", id="stats")
        with Horizontal(classes="buttons"):
            yield Button("Run / resume (r)", id="run", variant="primary", compact=True)
            yield Button("Pause (p)", id="pause", compact=True)
            yield Button("Stop (s)", id="stop", variant="error", compact=True)
        yield LineChart("loss", id="chart")
        with Horizontal(id="logs"):
            with Vertical():
                yield Static("[b]Samples[/b]", classes="heading")
                yield RichLog(id="samples", wrap=True, markup=True)
            with Vertical():
                yield Static("[b]Messages[/b]", classes="heading")
                yield RichLog(id="messages", wrap=True, markup=False)

    def on_mount(self) -> None:
        self._shown_log = 0
        self._shown_samples = 0
        self.show_monitor()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        action = {
            "run": self.wizard.action_run_pipeline,
            "pause": self.wizard.action_toggle_pause,
            "stop": self.wizard.action_stop_training,
        }.get(event.button.id or "")
        if action is not None:
            action()

    def refresh_view(self) -> None:
        self.show_monitor()

    def run_changed(self) -> None:
        self.show_monitor()

    def show_monitor(self) -> None:
        controller = self.wizard.controller
        monitor = controller.monitor
        self.query_one("#stages", Static).update(
            "  ".join(f"{_MARK[status]} {stage}" for stage, status in monitor.stages.items())
        )
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=monitor.total_steps or 1, progress=monitor.step if monitor.total_steps else 0)
        latest = monitor.latest
        parts = [f"step {monitor.step}/{monitor.total_steps or '–'}"]
        if "loss" in latest:
            parts.append(f"loss {latest['loss']:.3f}")
        if "val_loss" in latest:
            parts.append(f"val {latest['val_loss']:.3f}")
        if "lr" in latest:
            parts.append(f"lr {latest['lr']:.2e}")
        if "tokens_per_sec" in latest:
            parts.append(f"{latest['tokens_per_sec']:,.0f} tok/s")
        if controller.running:
            parts.append(f"ETA {_duration(monitor.eta_seconds())}")
        self.query_one("#stats", Static).update("  ".join(parts))
        self.query_one("#run-status", Static).update(controller.status_line())
        self.query_one("#pause", Button).label = "Resume (p)" if controller.paused else "Pause (p)"
        self.query_one("#pause", Button).disabled = not controller.running
        self.query_one("#stop", Button).disabled = not controller.running
        self.query_one("#run", Button).disabled = controller.running
        chart = self.query_one(LineChart)
        chart.x_max = monitor.total_steps or None
        chart.set_series("train", "dodger_blue2", [(float(s), v) for s, v in monitor.train_loss])
        chart.set_series("val", "orange1", [(float(s), v) for s, v in monitor.val_loss])
        messages = self.query_one("#messages", RichLog)
        if self._shown_log > len(monitor.log):  # a new run reset the monitor
            messages.clear()
            self._shown_log = 0
        for line in monitor.log[self._shown_log :]:
            messages.write(line)
        self._shown_log = len(monitor.log)
        samples = self.query_one("#samples", RichLog)
        if self._shown_samples > len(monitor.samples):
            samples.clear()
            self._shown_samples = 0
        for step, prompt, text in monitor.samples[self._shown_samples :]:
            where = f"step {step}" if step >= 0 else "final"
            samples.write(f"[dim]{where}[/] [b]{escape(prompt)}[/b]{escape(text)}")
        self._shown_samples = len(monitor.samples)

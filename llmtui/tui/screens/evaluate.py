"""Evaluate: the metrics of the run's held-out evaluation, and where its reports are."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from llmtui.tui.screens.base import StepScreen

# Shown first, in this order, when present; any other scalar in report.json follows.
_KNOWN = (
    "loss",
    "perplexity",
    "bits_per_byte",
    "accuracy",
    "top5_accuracy",
    "uniform_loss",
    "vocab_size",
    "parameters",
    "train_steps",
    "train_tokens_per_sec",
    "split",
)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1e3 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def confusion_table(task: dict) -> Table | None:
    """Rows: the true label; columns: the predicted one; the diagonal (right answers) in green."""
    matrix, labels = task.get("confusion_matrix"), task.get("labels")
    if not (isinstance(matrix, list) and isinstance(labels, list) and len(matrix) == len(labels)):
        return None
    table = Table(title="Confusion matrix", title_justify="left", title_style="bold")
    table.add_column("true \\ predicted", style="bold")
    for label in labels:
        table.add_column(str(label), justify="right")
    for i, (label, row) in enumerate(zip(labels, matrix)):
        table.add_row(
            str(label), *(f"[green]{n}[/]" if i == j else (f"[red]{n}[/]" if n else "0") for j, n in enumerate(row))
        )
    return table


def metrics_table(report: Mapping[str, Any]) -> Table:
    table = Table(title="Held-out evaluation", title_justify="left", title_style="bold")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    keys = [k for k in _KNOWN if k in report] + [k for k in report if k not in _KNOWN]
    for key in keys:
        value = report[key]
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and value is not None:
            table.add_row(key, _format(value))
    task = report.get("task")
    if isinstance(task, dict):
        for key, value in task.items():
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                table.add_row(f"task.{key}", _format(value))
    return table


class EvaluateScreen(StepScreen):
    STEP = "evaluate"
    BINDINGS = [Binding("o", "open_report", "Open report"), Binding("b", "tensorboard", "TensorBoard")]

    def body(self) -> ComposeResult:
        yield Static("", id="metrics")
        yield Static("", id="report-paths")
        yield Static("", id="tensorboard-line")

    def action_open_report(self) -> None:
        page = self.wizard.state.run.eval_dir / "report.html"
        if not page.is_file():
            self.notify("No HTML report yet: it is written when the run's evaluation ends.", severity="warning")
            return
        self.app.open_url(page.resolve().as_uri())  # the browser of this machine (or of `llmtui web`'s page)
        self.notify(f"Opened {self.wizard.state.shown(page)}.")

    def action_tensorboard(self) -> None:
        """Serve this run's logs (one TensorBoard at a time, stopped with the wizard)."""
        run = self.wizard.state.run
        if not run.logs_dir.is_dir():
            self.notify("This run has no TensorBoard logs yet: train it first.", severity="warning")
            return
        address = self.wizard.tensorboard.serve(run.root, run.logs_dir, self.wizard.state.base_dir)
        self.notify(f"TensorBoard at {address}", title="TensorBoard", timeout=15)
        self.query_one("#tensorboard-line", Static).update(
            f"TensorBoard for this run at [b]{address}[/b] (stops when the wizard quits)"
        )

    def refresh_view(self) -> None:
        state = self.wizard.state
        run = state.run
        path = run.eval_report_path
        metrics = self.query_one("#metrics", Static)
        paths = self.query_one("#report-paths", Static)
        report = run.eval_report()
        if report is None:
            metrics.update(
                f"No evaluation yet for [b]{escape(state.shown(run.root))}[/b]: train the run (Train step) and "
                "its held-out evaluation is written when training ends."
            )
            paths.update("")
            return
        task = report.get("task")
        confusion = confusion_table(task) if isinstance(task, dict) else None
        if confusion is not None:
            from rich.console import Group

            metrics.update(Group(metrics_table(report), confusion))
        else:
            metrics.update(metrics_table(report))
        found = [p for p in (path, run.eval_dir / "report.md", run.eval_dir / "report.html") if p.is_file()]
        samples = run.samples_path
        lines = ["[b]Reports[/b]"] + [f"  {escape(state.shown(p))}" for p in found]
        if samples.is_file():
            lines.append(f"  {escape(state.shown(samples))}  (samples after training)")
        lines.append(
            f"[b]o[/b] opens report.html in the browser · [b]b[/b] starts TensorBoard "
            f"(or: llmtui tensorboard {escape(state.shown(run.root))})"
        )
        paths.update("\n".join(lines))

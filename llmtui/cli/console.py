"""The console sink: pipeline events rendered with Rich (progress bar, metrics, samples, summary)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from llmtui import events as ev


class ConsoleSink:
    """Prints what the pipeline does; training shows a live progress bar with loss, tokens/s and ETA."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_val = "-"

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _print(self, *args, **kwargs) -> None:
        (self.progress.console if self.progress else self.console).print(*args, **kwargs)

    def _on_RunStarted(self, e: ev.RunStarted) -> None:
        self.console.print(f"[bold]llmtui[/] run folder [cyan]{e.run_dir}[/] · backend {e.backend}")

    def _on_StageStarted(self, e: ev.StageStarted) -> None:
        self._print(f"[bold blue]▶ {e.stage}[/]")
        if e.reason:
            self._print(f"[yellow]{escape(e.reason)}[/]")

    def _on_StageSkipped(self, e: ev.StageSkipped) -> None:
        self._print(f"[dim]✓ {e.stage}: skipped ({e.reason})[/]")

    def _on_StageFinished(self, e: ev.StageFinished) -> None:
        self._stop_progress()
        self._print(f"[green]✓ {e.stage}[/] [dim]{e.seconds:.1f} s[/]")

    def _on_Message(self, e: ev.Message) -> None:
        style = "yellow" if e.level == "warning" else "dim"
        self._print(f"  [{style}]{e.text}[/]", highlight=False)

    def _on_TrainingStarted(self, e: ev.TrainingStarted) -> None:
        self._print(f"  [dim]{e.parameters:,} parameters · {e.tokens_per_step:,} tokens per step[/]")
        self.progress = Progress(
            TextColumn("  train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} · val {task.fields[val]} · {task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=2,
        )  # redrawn 10 times a second, the bar cost ~1% of a core in the training process
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=e.total_steps, completed=e.start_step, loss="-", val=self.last_val, tps="-"
        )

    def _on_Metrics(self, e: ev.Metrics) -> None:
        if self.progress is None or self.task is None:
            return
        if e.split == "train":
            self.progress.update(
                self.task, completed=e.step, loss=f"{e.values['loss']:.3f}", tps=f"{e.values['tokens_per_sec']:,.0f}"
            )
        else:
            self.last_val = f"{e.values['loss']:.3f}"
            self.progress.update(self.task, val=self.last_val)
            others = ", ".join(
                f"{name} {e.values[name]:.{2 if name == 'perplexity' else 3}f}"
                for name in ("perplexity", "accuracy")
                if name in e.values
            )
            self._print(f"  [dim]step {e.step}: validation loss {e.values['loss']:.4f} ({others})[/]")

    def _on_Sample(self, e: ev.Sample) -> None:
        if e.step >= 0:
            text = (e.prompt + e.text).replace("\n", " ⏎ ")[:160]
            self._print(f"  [dim]sample:[/] [italic]{text}[/]", highlight=False, markup=True)

    def _on_RunFailed(self, e: ev.RunFailed) -> None:
        self._stop_progress()

    def _on_RunFinished(self, e: ev.RunFinished) -> None:
        self._stop_progress()
        print_summary(self.console, e.summary)

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def print_summary(console: Console, summary: dict) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    table = Table(title="Run summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    uniform = summary.get("uniform_loss")
    val = summary.get("val_loss")
    baseline = f" (uniform baseline ln({summary.get('vocab_size')}) = {uniform:.3f})" if uniform else ""
    table.add_row("validation loss", fmt(val, ".4f") + baseline)
    task = summary.get("task")
    if task:  # a fine-tuned task: its own metrics instead of the language model's
        for name, value in task.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                table.add_row(f"{task['kind']} {name.replace('_', ' ')}", fmt(value, ".3f"))
    else:
        table.add_row("perplexity", fmt(summary.get("perplexity"), ".3f"))
        table.add_row("bits per byte", fmt(summary.get("bits_per_byte"), ".4f"))
        table.add_row("next-token accuracy", fmt(summary.get("accuracy"), ".3f"))
    table.add_row("training tokens/s", fmt(summary.get("tokens_per_sec"), ",.0f"))
    table.add_row("wall time", _duration(summary.get("wall_seconds")))
    table.add_row("run folder", str(summary.get("run_dir")))
    console.print(table)
    for sample in summary.get("samples") or []:
        console.print(f"[bold]sample[/] [cyan]{sample['prompt']!r}[/] →", highlight=False)
        console.print(sample["prompt"] + sample["text"], markup=False, highlight=False)
        console.print()


def _duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.1f} s" if minutes else f"{secs:.1f} s"

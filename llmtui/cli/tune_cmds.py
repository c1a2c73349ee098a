"""`llmtui tune RECIPE`: hyperparameter search over the recipe's `[tune.space]` (no heavy imports at load)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import finite, user_errors

cli = typer.Typer()


@cli.command()
def tune(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML) with a \\[tune] section.", show_default=False)],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Run trials in this many processes at once.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Study storage shared by several machines: postgresql://user:password@host/db, mysql://..., "
            "sqlite:///path/study.db, or journal:/shared/folder/study.journal (a file on a shared filesystem); "
            "default: SQLite in the run folder."
        ),
    ] = None,
) -> None:
    """Search hyperparameters: every trial is a real training run in runs/<name>/trials/trial_NNN/.

    The data and tokenizer are built once and shared by all trials. The study is stored in runs/<name>/study.db, so a killed search continues where it stopped when run again. With --storage, the same command on several machines splits one study's trials between them (each trial runs once). At the end the trials are listed best first with each parameter's importance, and runs/<name>/best_recipe.toml is written (llmtui run accepts it).
    """  # noqa: E501  (Typer's rich help keeps a docstring's line breaks: one paragraph, one line)
    with user_errors():
        from rich.console import Console
        from rich.live import Live

        from llmtui.cli.console import ConsoleSink
        from llmtui.config import load_recipe
        from llmtui.tuning import Tuner

        config = load_recipe(recipe, set_ or [])
        tuner = Tuner(config, base_dir=Path.cwd(), storage=storage, where=str(recipe))
        console = Console()
        t = config.tune
        console.print(
            f"[bold]tune[/] {config.run.name}: {t.method} search, {t.trials} trials, "
            f"{t.direction} {t.objective}, pruner {t.pruner}, {workers} worker(s)"
        )
        live: list = []

        def on_prepared(study) -> None:
            console.print(
                f"study {tuner.study_name} in {tuner.storage_url}: {len(study.trials)} earlier trials, "
                f"{tuner.remaining_trials(study)} to run"
            )
            display = Live(
                get_renderable=lambda: trials_table(tuner, study),
                console=console,
                refresh_per_second=1,
                transient=False,
            )
            display.start()
            live.append(display)

        try:
            result = tuner.run(workers=workers, on_prepared=on_prepared, prepare_sinks=[ConsoleSink(console)])
        except _interrupted():
            typer.secho("interrupted. Run the same command again to continue the search.", err=True, fg="yellow")
            raise typer.Exit(130) from None
        finally:
            for display in live:
                display.stop()
                console.print()
        print_result(console, tuner, result)


def _interrupted():
    from llmtui.errors import TrainingInterrupted

    return TrainingInterrupted


def trials_table(tuner, study):
    """The live view while the search runs: every trial of the study so far."""
    from llmtui.tuning.study import trial_row

    return _table(tuner, [trial_row(t) for t in study.get_trials(deepcopy=False)], title="trials")


def _table(tuner, rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    for param in tuner.params:
        table.add_column(param.path)
    table.add_column(tuner.recipe.tune.objective, justify="right")
    table.add_column("state")
    table.add_column("step", justify="right")
    table.add_column("time", justify="right")
    styles = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan", "waiting": "dim"}
    for row in rows:
        value = (
            f"{row['value']:.4f}"
            if row["value"] is not None
            else (f"({row['last_intermediate']:.4f})" if row["last_intermediate"] is not None else "")
        )
        seconds = f"{row['seconds']:.1f}s" if row["seconds"] is not None else ""
        state = f"[{styles.get(row['state'], 'default')}]{row['state']}[/]"  # a queued trial waits
        table.add_row(
            str(row["number"]),
            *(_show(row["params"].get(p.path)) for p in tuner.params),
            value,
            state,
            "" if row["step"] is None else str(row["step"]),
            seconds,
        )
    return table


def print_result(console, tuner, result) -> None:
    console.print(_table(tuner, result.trials, title="trials, best first"))
    if result.importances:
        console.print(
            "[bold]parameter importance[/] (fANOVA): "
            + ", ".join(f"{name} {value:.2f}" for name, value in result.importances.items())
        )
    if result.best is None:
        console.print("[red]no trial finished[/]; see the trial folders' run.log")
        return
    params = ", ".join(f"{k} = {_show(v)}" for k, v in result.best["params"].items())
    console.print(
        f"[bold green]best[/] trial {result.best['number']}: {tuner.recipe.tune.objective} "
        f"{result.best['value']:.4f} with {params}"
    )
    console.print(f"best recipe: {result.best_recipe}  (llmtui run {result.best_recipe})")
    console.print(f"compare trials: tensorboard --logdir {tuner.trials_dir}")


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@cli.command()
def ladder(
    recipe: Annotated[
        Path, typer.Argument(help="Recipe file (TOML); its model is the reference size.", show_default=False)
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable)."),
    ] = None,
    archs: Annotated[str, typer.Option(help="Architectures, comma-separated.")] = "rnn,lstm,gru,gpt,llama",
    match: Annotated[str, typer.Option(help="Matched budget: params, flops (per token) or time.")] = "params",
    seconds: Annotated[
        float, typer.Option(min=0.0, callback=finite, help="Training seconds per architecture (--match time).")
    ] = 0.0,
) -> None:
    """Train RNN, LSTM, GRU, GPT and Llama-style models on the same data and tokenizer at a matched budget.

    Parameters or FLOPs are matched by choosing each architecture's model.dim; time gives every one the same training seconds. Writes runs/<name>/ladder/ (report.json, curves.png, one run folder per architecture with TensorBoard logs) and prints a report card in bits per byte. A rung that is a benchmarked configuration (recipes/nanogpt-baby.toml) is shown beside the peer's figure.
    """  # noqa: E501  (Typer's rich help keeps a docstring's line breaks: one paragraph, one line)
    with user_errors():
        from rich.console import Console
        from rich.table import Table

        from llmtui.config import load_recipe
        from llmtui.tuning.ladder import peer_lines, run_ladder
        from llmtui.tuning.study import study_paths

        config = load_recipe(recipe, set_ or [])
        console = Console()
        chosen = tuple(a.strip() for a in archs.split(",") if a.strip())

        def on_rung(rung) -> None:
            console.print(
                f"{rung.arch}: dim {rung.dim}, {rung.parameters:,} parameters, {rung.steps} steps, "
                f"{rung.bits_per_byte:.4f} bits per byte ({rung.seconds:.1f}s)"
            )

        report = run_ladder(config, Path.cwd(), chosen, match, seconds, on_rung=on_rung)
        table = Table(title=f"report card (matched by {match})", title_justify="left")
        for name in ("rank", "arch", "dim", "parameters", "MFLOPs/token", "steps", "val loss", "bits/byte"):
            table.add_column(name, justify="left" if name == "arch" else "right")
        for rank, rung in enumerate(report["rungs"], 1):
            table.add_row(
                str(rank),
                rung["arch"],
                str(rung["dim"]),
                f"{rung['parameters']:,}",
                f"{rung['flops_per_token'] / 1e6:.3f}",
                str(rung["steps"]),
                f"{rung['val_loss']:.4f}",
                f"{rung['bits_per_byte']:.4f}",
            )
        console.print(table)
        for line in peer_lines(report):  # rungs that are a benchmarked configuration
            console.print(line, highlight=False, soft_wrap=True)
        folder = study_paths(config, Path.cwd())[0] / "ladder"
        console.print(f"curves: {folder / 'curves.png'}  ·  tensorboard --logdir {folder}")

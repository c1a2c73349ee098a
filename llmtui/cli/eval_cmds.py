"""`llmtui eval`, `llmtui report` and `llmtui compare`: held-out metrics, report pages and side-by-side runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from llmtui.cli.common import RunArg, recipe_rule, user_errors

cli = typer.Typer()


@cli.command("eval")
def evaluate(
    run_dir: RunArg,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            "-d",
            help="Score this text file instead of the validation split (repeatable; any format the "
            "data stage reads: txt, md, jsonl, json, csv, html, compressed too).",
        ),
    ] = None,
    max_batches: Annotated[
        int | None,
        typer.Option(
            callback=recipe_rule("eval", "max_batches"),
            help="Score at most this many batches per text (0 = all; default: the recipe's eval.max_batches).",
        ),
    ] = None,
    text_field: Annotated[str, typer.Option(help="Field holding the text in JSON/JSONL/CSV files.")] = "text",
    harness: Annotated[
        str | None,
        typer.Option(
            help="Score with EleutherAI's lm-evaluation-harness instead: TASK[,TASK...] (hellaswag, arc_easy, "
            "lambada_openai, ... or your own tasks with --harness-include)."
        ),
    ] = None,
    harness_include: Annotated[
        list[Path] | None,
        typer.Option(help="A folder of lm-eval task YAML files (repeatable), e.g. tasks over local data."),
    ] = None,
    harness_limit: Annotated[
        int | None, typer.Option(min=1, help="Score at most this many documents per harness task.")
    ] = None,
) -> None:
    """Score a run's final model: loss, perplexity, bits per byte, accuracy, top-5, loss by position.

    Updates eval/report.json (files given with --data go in its `files` section) and redraws the report
    pages eval/report.md and eval/report.html. With --harness, lm-evaluation-harness tasks are scored
    instead (needs `pip install lm_eval`) and go in the report's `harness` section.
    """
    with user_errors():
        from rich.console import Console

        from llmtui.backend import configure_backend, native_stderr_to
        from llmtui.config import load_recipe
        from llmtui.evaluation.run_facts import open_run

        console = Console()
        run = open_run(run_dir)
        config = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder?"))
        run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
        if harness:
            tasks = [t.strip() for t in harness.split(",") if t.strip()]
            with run, native_stderr_to(run.log_file):  # the lock: no run writes the folder meanwhile
                configure_backend(config.run.backend)
                from llmtui.evaluation.harness import run_harness
                from llmtui.evaluation.report import write_report

                scores = run_harness(
                    run,
                    tasks,
                    list(harness_include or []),
                    harness_limit,
                    say=lambda line: console.print(f"[dim]{line}[/]", highlight=False),
                )
                pages = write_report(run)
            for task, metrics in scores.items():
                console.print(
                    f"[bold]{task}[/]: "
                    + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
                    highlight=False,
                )
            console.print(f"report: {pages['report.html']} (and report.md, report.json)", highlight=False)
            return
        with run, native_stderr_to(run.log_file):  # the lock: no run writes the folder meanwhile
            configure_backend(config.run.backend)
            from llmtui.evaluation.report import write_report
            from llmtui.evaluation.run_eval import evaluate_run

            result = evaluate_run(
                run,
                list(data or []),
                max_batches,
                text_field,
                say=lambda line: console.print(f"[dim]{line}[/]", highlight=False),
            )
            pages = write_report(run)
        _print_metrics(console, result)
        console.print(f"report: {pages['report.html']} (and report.md, report.json)", highlight=False)


@cli.command()
def report(run_dir: RunArg) -> None:
    """Redraw a run's report pages (eval/report.md and eval/report.html) from its files, without re-scoring."""
    with user_errors():
        from llmtui.evaluation.report import write_report
        from llmtui.evaluation.run_facts import open_run

        run = open_run(run_dir)
        with run:
            pages = write_report(run)
        typer.echo(f"wrote {pages['report.md']} and {pages['report.html']}")


@cli.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run folders or names under ./runs (two or more).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Compare evaluated runs side by side; the best value of each scored row is highlighted."""
    with user_errors():
        from llmtui.evaluation.compare import compare_runs, comparison_table

        result = compare_runs(runs)
        if as_json:
            typer.echo(json.dumps({"runs": result["runs"], "best": result["best"]}, indent=2, default=str))
            return
        from rich.console import Console

        Console().print(comparison_table(result))


def _print_metrics(console, result: Mapping[str, Any]) -> None:
    from rich.table import Table

    from llmtui.evaluation.report import metric_table, task_rows

    columns, rows = metric_table(result)
    table = Table(title="Evaluation", title_justify="left")
    table.add_column("metric", style="bold")
    for name in columns:
        table.add_column(Path(name).name if name != "validation" else name, justify="right")
    for label, values in rows:
        table.add_row(label, *values)
    console.print(table)
    task = result.get("task")
    if task:
        extra = Table(title=f"Task: {task.get('kind')}", title_justify="left", show_header=False)
        extra.add_column(style="bold")
        extra.add_column(justify="right")
        for label, value in task_rows(task):
            extra.add_row(label, value)
        console.print(extra)

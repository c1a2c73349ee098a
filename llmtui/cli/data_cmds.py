"""`llmtui data …`: look at the data stage — a run's data report, or cleaned samples before a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmtui.cli.common import user_errors

if TYPE_CHECKING:
    from llmtui.runfolder import DataReport

cli = typer.Typer(
    help="Inspect a run's data report or preview cleaned samples of a recipe.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@cli.command("inspect")
def inspect(
    run_dir: Annotated[str, typer.Argument(help="Run folder (e.g. runs/quickstart) or run name under ./runs.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Print the data report of a run: documents read and kept, duplicates, filters, skips, splits."""
    with user_errors():
        from llmtui.runfolder import RunFolder, read_json, resolve_run_dir

        run = RunFolder(resolve_run_dir(run_dir))
        path = run.require(
            run.data_report_path, "data report", "prepare the data first: llmtui run RECIPE --until data"
        )
        if as_json:  # the file as it is, keys the report record does not know included
            typer.echo(json.dumps(read_json(path, "data report"), indent=2, ensure_ascii=False))
            return
        _print_report(run.data_report(), str(path))


@cli.command("preview")
def preview(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML).", show_default=False)],
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many cleaned documents to show.")] = 5,
    chars: Annotated[int, typer.Option(min=20, help="Show at most this many characters of each.")] = 600,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable)."),
    ] = None,
) -> None:
    """Show the first documents of a recipe's sources as they come out of cleaning and filtering.

    Nothing is written. Steps over the whole corpus (deduplication against everything, boilerplate lines
    counted across documents, the split) happen only in a full run.
    """
    with user_errors():
        from rich.console import Console
        from rich.panel import Panel
        from rich.text import Text

        from llmtui.config import load_recipe
        from llmtui.data.prepare import preview_data

        config = load_recipe(recipe, set_ or [])
        result = preview_data(config.data, Path.cwd(), count)
        console = Console()
        for sample in result["samples"]:
            text = sample["text"]
            shown = text if len(text) <= chars else text[:chars] + " …"
            title = f"{sample['characters']:,} characters"
            if sample["repaired_encoding"]:
                title += " · encoding repaired"
            title += f" · {_relative(sample['origin'])}"
            console.print(Panel(Text(shown), title=title, title_align="left", border_style="cyan"))
        dropped = ", ".join(f"{k} {v}" for k, v in result["dropped_by_filter"].items()) or "none"
        console.print(
            f"[dim]{result['documents_read']} documents read, {len(result['samples'])} shown; "
            f"dropped by filters: {dropped}; exact duplicates: {result['exact_duplicates']}[/]",
            highlight=False,
        )
        for skip in result["skipped"][:10]:
            console.print(f"[yellow]skipped {skip['path']}: {skip['reason']}[/]", highlight=False)
        from llmtui.data.prepare import ignored_line

        ignored = ignored_line(result["ignored"])
        if ignored:
            console.print(f"[yellow]{ignored}[/]", highlight=False)
        if not result["samples"]:
            console.print("[yellow]no document came through cleaning and filtering[/]")


def _relative(origin: str) -> str:
    """A file origin relative to the working folder, when it is inside it (titles stay short)."""
    try:
        return str(Path(origin).relative_to(Path.cwd()))
    except ValueError:
        return origin


def _print_report(report: DataReport, where: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]data report[/] {where}", highlight=False)
    overview = Table(show_header=False)
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    for key in (
        "documents_read",
        "documents_kept",
        "exact_duplicates",
        "near_duplicates",
        "repaired_encoding",
        "bytes_read",
        "characters_kept",
    ):
        overview.add_row(key, f"{getattr(report, key) or 0:,}")
    for key in ("dropped_by_filter", "lines_removed", "pii_scrubbed"):
        for name, value in (getattr(report, key) or {}).items():
            overview.add_row(f"{key}: {name}", f"{value:,}")
    console.print(overview)

    splits = Table(title="splits", title_justify="left")
    for column in ("split", "documents", "chunks", "characters"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for name, counts in report.splits.items():
        splits.add_row(name, f"{counts.documents:,}", f"{counts.chunks:,}", f"{counts.characters:,}")
    console.print(splits)

    sources = Table(title="per source", title_justify="left")
    columns = {
        "documents_read": "read",
        "documents_kept": "kept",
        "exact_duplicates": "exact dup",
        "near_duplicates": "near dup",
        "dropped_by_filter": "filtered",
        "skipped": "skipped",
        "pages_requested": "pages",
        "characters_kept": "characters",
    }
    per_source = report.per_source or {}
    present = [k for k in columns if any(k in c for c in per_source.values())]
    sources.add_column("source", overflow="fold")
    for key in present:
        sources.add_column(columns[key], justify="right")
    for name, source_counts in per_source.items():
        sources.add_row(name, *(f"{source_counts.get(k, 0):,}" for k in present))
    console.print(sources)

    histogram = report.document_length_histogram or {}
    if histogram:
        table = Table(title="document lengths (characters)", title_justify="left")
        table.add_column("range")
        table.add_column("documents", justify="right")
        table.add_column("")
        peak = max(histogram.values())
        for bucket, value in histogram.items():
            table.add_row(bucket, f"{value:,}", "█" * max(1, round(30 * value / peak)))
        console.print(table)

    contamination = report.contamination
    if contamination:
        table = Table(
            title=f"contamination ({contamination['ngram']}-word n-grams shared with train)", title_justify="left"
        )
        for column in ("held out", "examples", "contaminated", "share"):
            table.add_column(column, justify="left" if column == "held out" else "right")
        for name, values in contamination.items():
            if isinstance(values, dict):
                table.add_row(name, f"{values['examples']:,}", f"{values['contaminated']:,}", f"{values['share']:.2%}")
        console.print(table)

    skipped = report.skipped or []
    if skipped:
        table = Table(title=f"skipped ({len(skipped)})", title_justify="left")
        table.add_column("path")
        table.add_column("reason")
        for skip in skipped[:50]:
            table.add_row(skip["path"], skip["reason"])
        if len(skipped) > 50:
            table.add_row("…", f"{len(skipped) - 50} more (--json shows all)")
        console.print(table)
    from llmtui.data.prepare import ignored_line

    if ignored_line(report.ignored):
        console.print(f"[yellow]{ignored_line(report.ignored)}[/]", highlight=False)
    timings = report.timings
    if timings:
        console.print("[dim]timings: " + ", ".join(f"{k} {v}" for k, v in timings.items()) + "[/]", highlight=False)

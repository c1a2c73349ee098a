"""`llmtui tokenizer …`: build a recipe's vocabulary and look at how it splits text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import user_errors

cli = typer.Typer(
    help="Train a recipe's vocabulary and see how it splits text.", no_args_is_help=True, rich_markup_mode="rich"
)

# Alternating backgrounds make token boundaries visible in the text.
PIECE_STYLES = ["black on #a6d8ff", "black on #ffd6a5", "black on #caffbf", "black on #ffc6ff", "black on #fdffb6"]


@cli.command("train")
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML).", show_default=False)],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable)."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=200, help="How many frequent and long tokens to list.")] = 15,
) -> None:
    """Prepare the data and train the vocabulary of a recipe (the data and tokenizer stages), then print
    the vocabulary report (also in runs/NAME/tokenizer/report.json)."""
    with user_errors():
        from rich.console import Console

        from llmtui.config import load_recipe
        from llmtui.pipeline import Pipeline

        config = load_recipe(recipe, set_ or [])
        console = Console()
        pipeline = Pipeline(config, base_dir=Path.cwd(), sinks=[stages_sink(console)])
        pipeline.execute(until="tokenizer")
        print_report(console, pipeline.run.require_vocabulary_report(), top)
        console.print(f"[dim]report: {pipeline.run.vocabulary_report_path}[/]")


@cli.command("encode")
def encode(
    run_dir: Annotated[str, typer.Argument(help="Run folder (e.g. runs/quickstart) or run name under ./runs.")],
    text: Annotated[str, typer.Argument(help="Text to split into tokens.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print ids and pieces as JSON.")] = False,
) -> None:
    """Show how a run's vocabulary splits TEXT: the text coloured piece by piece, then each token's id."""
    with user_errors():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from llmtui.runfolder import RunFolder, resolve_run_dir
        from llmtui.tokenizers import TextTokenizer

        run = RunFolder(resolve_run_dir(run_dir))
        tokenizer = TextTokenizer.load(run.tokenizer_dir)
        pieces = tokenizer.pieces(text)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "ids": [i for i, _, _ in pieces],
                        "pieces": [p for _, p, _ in pieces],
                        "decoded": tokenizer.decode(i for i, _, _ in pieces),
                    },
                    ensure_ascii=False,
                )
            )
            return
        console = Console(highlight=False)
        shown = Text()
        cursor = 0
        for index, (_, _, (start, end)) in enumerate(pieces):
            if start < cursor:  # byte pieces of one character share its span
                continue
            shown.append(text[cursor:start])
            shown.append(text[start:end].replace("\n", "⏎\n"), style=PIECE_STYLES[index % len(PIECE_STYLES)])
            cursor = end
        shown.append(text[cursor:])
        console.print(shown)
        unknown = sum(1 for token_id, _, _ in pieces if token_id == tokenizer.unk_id)
        console.print(
            f"[bold]{len(pieces)}[/] tokens · {len(text.encode('utf-8'))} bytes · "
            f"{tokenizer.kind} vocabulary of {tokenizer.vocab_size:,}"
            + (f" · [red]{unknown} unknown[/]" if unknown else "")
        )
        table = Table(show_header=True, header_style="bold", box=None)
        table.add_column("#", justify="right", style="dim")
        table.add_column("id", justify="right", style="cyan")
        table.add_column("piece")
        table.add_column("text")
        for index, (token_id, piece, _) in enumerate(pieces):
            style = "red" if token_id == tokenizer.unk_id else PIECE_STYLES[index % len(PIECE_STYLES)]
            table.add_row(
                str(index),
                str(token_id),
                Text(piece, style=style),
                Text(repr(tokenizer.surface(token_id)), style="dim"),
            )
        console.print(table)
        console.print("ids: " + " ".join(str(token_id) for token_id, _, _ in pieces))


def stages_sink(console):
    """The run's console output without the end-of-run summary (these commands stop before training)."""
    from llmtui.cli.console import ConsoleSink

    class _stages_sink(ConsoleSink):
        def _on_RunFinished(self, event) -> None:
            self._stop_progress()

    return _stages_sink(console)


def print_report(console, report: dict, top: int = 15) -> None:
    """The vocabulary report as Rich tables."""
    from rich.table import Table

    v = report["validation"]
    summary = Table(title=f"Vocabulary · {report['kind']}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row(
        "vocabulary size", f"{report['vocab_size']:,} ({report['unused_tokens']:,} unused in {report['counts_from']})"
    )
    summary.add_row(
        "unknown rate (validation)",
        f"{100 * v['unknown_rate']:.3f}% ({v['unknown_tokens']:,} of {v['tokens']:,} tokens)",
    )
    summary.add_row("bytes per token", f"{v['bytes_per_token']:.3f}")
    summary.add_row("characters per token", f"{v['characters_per_token']:.3f}")
    summary.add_row("tokens per word", f"{v['tokens_per_word']:.3f}")
    summary.add_row(
        "normalisation", f"{report.get('normalization', 'nfc')}" + (", lowercase" if report.get("lowercase") else "")
    )
    console.print(summary)
    lists = Table(show_header=True, header_style="bold", title_justify="left")
    lists.add_column("most frequent")
    lists.add_column("count", justify="right")
    lists.add_column("longest")
    lists.add_column("bytes", justify="right")
    frequent, longest = report["most_frequent"][:top], report["longest"][:top]
    for row in range(max(len(frequent), len(longest))):
        f = frequent[row] if row < len(frequent) else None
        g = longest[row] if row < len(longest) else None
        lists.add_row(
            repr(f["text"]) if f else "",
            f"{f['count']:,}" if f else "",
            repr(g["text"]) if g else "",
            str(g["bytes"]) if g else "",
        )
    console.print(lists)

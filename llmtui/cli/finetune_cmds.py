"""`llmtui finetune`, `llmtui classify` and `llmtui answer`: adapt a trained model and put it to use."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from llmtui.cli.common import RecipeArg, RunArg, SetOpt, recipe_rule, stage_name, user_errors

cli = typer.Typer()


@cli.command()
def finetune(
    recipe: RecipeArg,
    set_: SetOpt = None,
    base: Annotated[
        str | None,
        typer.Option(
            help="The trained run, Hugging Face folder or keras-hub preset to start from (overrides [finetune] base)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            callback=lambda value: stage_name(value), help="Stop after this stage (data, tokenizer, model, train, ...)."
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over in the fine-tune's run folder.")] = False,
) -> None:
    """Fine-tune a trained run: on a domain corpus, or for classification, question answering or translation.

    The recipe's \\[finetune] section names the base run, the task (domain, classification, qa, translation)
    and the method (full, lora, freeze); \\[train] holds the fine-tuning steps and learning rate. The report
    compares perplexity before and after, on the domain and on the base's own text (forgetting), or gives
    the task's metrics.
    """
    with user_errors():
        from llmtui.cli.console import ConsoleSink
        from llmtui.cli.run_cmds import execute_recipe
        from llmtui.config import load_recipe
        from llmtui.errors import RecipeError

        overrides = list(set_ or []) + ([f"finetune.base={base}"] if base else [])
        config = load_recipe(recipe, overrides)
        if not config.finetune.base:
            raise RecipeError(
                f"{recipe}: [finetune] base is not set",
                hint='name the trained run to start from: base = "quickstart" (or --base RUN)',
            )
        execute_recipe(config, until, fresh, ConsoleSink())


def _texts(texts: list[str]) -> list[str]:
    """The texts given, with "-" standing for one text per line of standard input."""
    out: list[str] = []
    for text in texts:
        out.extend(line.rstrip("\n") for line in sys.stdin if line.strip()) if text == "-" else out.append(text)
    return out


@cli.command()
def classify(
    run_dir: RunArg,
    texts: Annotated[list[str], typer.Argument(help="Texts to classify; - reads one per line from standard input.")],
    top: Annotated[int, typer.Option(min=1, help="Show this many labels per text.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (label probabilities per text).")] = False,
) -> None:
    """Classify texts with a classification run (e.g. sentiment)."""
    with user_errors():
        import json

        from rich.console import Console
        from rich.table import Table

        from llmtui.finetune.use import load_classifier

        items = _texts(texts)
        results = load_classifier(run_dir).predict(items)
        if as_json:
            typer.echo(json.dumps([{"text": t, "probabilities": r} for t, r in zip(items, results)], indent=2))
            return
        table = Table("text", "label", "probability", show_lines=False)
        for text, result in zip(items, results):
            ranked = sorted(result.items(), key=lambda item: -item[1])[:top]
            for rank, (label, probability) in enumerate(ranked):
                table.add_row(
                    text if rank == 0 else "", f"[bold]{label}[/]" if rank == 0 else label, f"{probability:.3f}"
                )
        Console().print(table)


@cli.command()
def answer(
    run_dir: RunArg,
    texts: Annotated[
        list[str], typer.Argument(help="Questions or sentences; - reads one per line from standard input.")
    ],
    max_tokens: Annotated[
        int | None,
        typer.Option(
            callback=recipe_rule("finetune", "max_answer_tokens"), help="Longest answer (default: the run's)."
        ),
    ] = None,
) -> None:
    """Answer questions or translate sentences with a qa or translation run."""
    with user_errors():
        from llmtui.finetune.use import Answerer

        answerer = Answerer(run_dir)
        for text in _texts(texts):
            typer.echo(f"{text}\t{answerer.answer(text, max_tokens)}")

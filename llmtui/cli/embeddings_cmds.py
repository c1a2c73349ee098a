"""`llmtui embeddings …`: word vectors trained on a recipe's own corpus, to start a model's embedding from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import user_errors

cli = typer.Typer(
    help="Train Word2Vec vectors on a recipe's corpus (for model.embedding = pretrained).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@cli.command("train")
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML).", show_default=False)],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable)."),
    ] = None,
    units: Annotated[
        str,
        typer.Option(
            help="tokens: one vector per vocabulary token (covers the recipe's vocabulary); "
            "words: words and punctuation."
        ),
    ] = "tokens",
    dim: Annotated[int, typer.Option(min=0, help="Vector size (0 = the recipe's model.dim).")] = 0,
    window: Annotated[int, typer.Option(min=1, help="Context window on each side.")] = 5,
    negative: Annotated[int, typer.Option(min=1, help="Negative samples per positive pair.")] = 5,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the corpus.")] = 5,
    min_count: Annotated[int, typer.Option(min=1, help="Ignore units seen fewer times.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Training threads (1 = reproducible to the bit).")] = 2,
    out: Annotated[Path | None, typer.Option(help="Output file (default runs/NAME/embeddings/vectors.txt).")] = None,
) -> None:
    """Train skip-gram Word2Vec with negative sampling on the recipe's training split and write the
    vectors in GloVe text format, ready for model.embedding = "pretrained"."""
    with user_errors():
        from rich.console import Console

        from llmtui.cli.tokenizer_cmds import stages_sink
        from llmtui.config import load_recipe
        from llmtui.errors import LlmtuiError
        from llmtui.models.word2vec import token_sentences, train_word2vec, word_sentences, write_glove
        from llmtui.pipeline import Pipeline
        from llmtui.runfolder import write_json_atomic

        if units not in ("tokens", "words"):
            raise LlmtuiError(f"--units {units!r} is not allowed; choose tokens or words")
        config = load_recipe(recipe, set_ or [])
        console = Console()
        pipeline = Pipeline(config, base_dir=Path.cwd(), sinks=[stages_sink(console)])
        pipeline.execute(until="tokenizer" if units == "tokens" else "data")
        if units == "tokens":
            from llmtui.data.tokens import load_tokens
            from llmtui.tokenizers import TextTokenizer

            tokenizer = TextTokenizer.load(pipeline.run.tokenizer_dir)
            pieces = [tokenizer.token(i) for i in range(tokenizer.vocab_size)]
            sentences = list(
                token_sentences(load_tokens(pipeline.run.tokenizer_dir, "train"), pieces, tokenizer.eos_id)
            )
        else:
            from llmtui.data.prepare import read_split

            sentences = list(word_sentences(read_split(pipeline.run.split_path("train"))))
        size = dim or config.model.dim
        console.print(f"[bold blue]▶ embeddings[/] skip-gram, {size} dimensions, {len(sentences):,} documents")
        words, matrix, summary = train_word2vec(
            sentences, size, window, negative, epochs, min_count, workers, config.run.seed
        )
        path = out or pipeline.run.root / "embeddings" / "vectors.txt"
        skipped = write_glove(path, words, matrix)
        summary.update(
            {"units": units, "path": str(path), "written": len(words) - skipped, "left_out_with_whitespace": skipped}
        )
        write_json_atomic(path.with_name(path.stem + ".report.json"), summary)
        console.print(
            f"[green]✓ embeddings[/] [dim]{summary['seconds']:.1f} s[/]  {len(words) - skipped:,} vectors "
            f"of {size} → [cyan]{path}[/]"
        )
        if skipped:
            console.print(
                f"  [yellow]{skipped} units hold whitespace (e.g. ' ' or a newline), which GloVe text "
                f"cannot store; they will start from random vectors[/]"
            )
        console.print(
            f"  use them: [bold]--set model.embedding=pretrained --set model.pretrained_path={path}[/]"
            + ("" if size == config.model.dim else " --set model.projection=true")
        )

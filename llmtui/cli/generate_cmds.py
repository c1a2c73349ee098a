"""`llmtui generate` and `llmtui chat`: use a trained model."""

from __future__ import annotations

from typing import Annotated

import typer

from llmtui.cli.app import RunArg, user_errors


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command()(generate)


def generate(
    run_dir: RunArg,
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Text to continue (repeatable).")] = ["The "],
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option(min=0, help="Keep the k most likely tokens; 0 turns it off.")] = 40,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus mass; 1 turns it off.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Continue a prompt with the trained model of a run."""
    with user_errors():
        from llmtui.backend import configure_backend, native_stderr_to
        from llmtui.config import load_recipe
        from llmtui.runfolder import RunFolder, resolve_run_dir

        run = RunFolder(resolve_run_dir(run_dir))
        config = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder?"))
        run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
        with native_stderr_to(run.log_file):
            configure_backend(config.run.backend)
            from llmtui.generation.sampler import Generator
            from llmtui.pipeline import load_final_model
            from llmtui.tokenizers import TextTokenizer

            generator = Generator(load_final_model(run), TextTokenizer.load(run.tokenizer_dir), config.model.context)
            for index, text in enumerate(prompt):
                out = generator.generate(text, max_tokens, temperature, top_k, top_p, seed + index)
                typer.echo(text + out)
                if index < len(prompt) - 1:
                    typer.echo("")

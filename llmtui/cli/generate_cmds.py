"""`llmtui generate` and `llmtui chat`: use a trained model.

Options left out take their values from the run's recipe `[generate]` section.
"""

from __future__ import annotations

from typing import Annotated

import typer

from llmtui.cli.common import RunArg, recipe_rule, user_errors

PromptOpt = Annotated[
    list[str] | None,
    typer.Option("--prompt", "-p", help="Text to continue (repeatable). Default: the recipe's [generate] prompts."),
]
# Each option obeys the rule of the [generate] field it overrides (recipe_rule: one definition of what is allowed).
MaxTokensOpt = Annotated[
    int | None,
    typer.Option(callback=recipe_rule("generate", "max_tokens"), help="Most tokens to generate (1 to 100000)."),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(callback=recipe_rule("generate", "temperature"), help="Sampling temperature, 0 to 100; 0 is greedy."),
]
TopKOpt = Annotated[
    int | None,
    typer.Option(callback=recipe_rule("generate", "top_k"), help="Keep the k most likely tokens; 0 turns it off."),
]
TopPOpt = Annotated[
    float | None,
    typer.Option(
        callback=recipe_rule("generate", "top_p"), help="Nucleus mass, above 0 and at most 1; 1 turns it off."
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(callback=recipe_rule("generate", "seed"), help="Sampling seed, 0 or more (same seed, same text)."),
]
BeamsOpt = Annotated[
    int | None,
    typer.Option(
        callback=recipe_rule("generate", "beams"),
        help="Beam search width, 1 to 64; 1 samples (or is greedy at temperature 0).",
    ),
]
StopOpt = Annotated[
    list[str] | None, typer.Option("--stop", help="Stop at this string and cut the text there (repeatable).")
]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache", help="Recompute the whole window per token instead of the key/value cache or carried state."
    ),
]


cli = typer.Typer()


def _open(run_dir: str):
    """(generator, [generate] section of the recipe) for a run folder with a trained model."""
    from llmtui.backend import configure_backend, native_stderr_to
    from llmtui.config import load_recipe
    from llmtui.runfolder import RunFolder, resolve_run_dir

    run = RunFolder(resolve_run_dir(run_dir))
    config = load_recipe(run.require(run.recipe_path, "recipe", "is this a run folder?"))
    run.require(run.final_model_path, "trained model", "train it first: llmtui run RECIPE")
    from llmtui.finetune.use import require_language_model

    require_language_model(run, "generate")
    with native_stderr_to(run.log_file):
        configure_backend(config.run.backend)
        from llmtui.generation.sampler import Generator
        from llmtui.runfolder import load_final_model
        from llmtui.tokenizers import TextTokenizer

        generator = Generator(
            load_final_model(run),
            TextTokenizer.load(run.tokenizer_dir),
            config.model.context,
            use_cache=config.generate.use_cache,
        )
    return generator, config.generate, run


def _settings(defaults, **given) -> dict:
    """The options given on the command line, the recipe's [generate] values for the others."""
    return {name: getattr(defaults, name) if value is None else value for name, value in given.items()}


@cli.command()
def generate(
    run_dir: RunArg,
    prompt: PromptOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    seed: SeedOpt = None,
    beams: BeamsOpt = None,
    stop: StopOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Continue prompts with the trained model of a run (prompt followed by its continuation)."""
    with user_errors():
        from llmtui.backend import native_stderr_to

        generator, defaults, run = _open(run_dir)
        s = _settings(
            defaults,
            prompts=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            beams=beams,
            stop=stop,
        )
        use_cache = defaults.use_cache and not no_cache
        for index, text in enumerate(s["prompts"]):
            with native_stderr_to(run.log_file):
                result = generator.generate_full(
                    text,
                    s["max_tokens"],
                    s["temperature"],
                    s["top_k"],
                    s["top_p"],
                    s["seed"] + index,
                    beams=s["beams"],
                    stop=s["stop"],
                    use_cache=use_cache,
                )
            if result.warning:
                typer.secho(f"warning: {result.warning}", err=True, fg="yellow")
            typer.echo(text + result.text)
            if index < len(s["prompts"]) - 1:
                typer.echo("")


@cli.command()
def chat(
    run_dir: RunArg,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    seed: SeedOpt = None,
    beams: BeamsOpt = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            "--stop",
            help="Stop the reply at this string (repeatable). Default: the recipe's [generate] stop "
            "strings, or the end of the line (a run without a chat template).",
        ),
    ] = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Talk with the trained model of a run: each turn continues the conversation so far.

    The conversation is rendered by the run's chat template (RUN/tokenizer/chat_template.jinja, written by a
    chat fine-tune or brought by a pretrained base), the same text training and every export use; the reply
    ends at the end-of-text token. A run without one writes each turn as a line: your line and a newline,
    then the model's reply to the end of its line. The model sees the most recent part that fits its context.
    /reset starts over, /quit (or Ctrl-D) leaves.
    """
    with user_errors():
        from llmtui.backend import native_stderr_to
        from llmtui.generation.chat import ChatSession

        generator, defaults, run = _open(run_dir)
        s = _settings(
            defaults,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            beams=beams,
            stop=stop,
        )
        session = ChatSession.for_run(generator, run.tokenizer_dir)
        use_cache = defaults.use_cache and not no_cache
        typer.secho(
            f"chat with {run.root} (context {generator.context} tokens) · /reset starts over, /quit or Ctrl-D leaves",
            fg="cyan",
        )
        while True:
            try:
                line = input("> ")
            except EOFError:
                typer.echo("")
                break
            command = line.strip()
            if command in ("/quit", "/exit"):
                break
            if command == "/reset":
                session.reset()
                typer.secho("(conversation cleared)", fg="cyan")
                continue
            if not command:
                continue
            with native_stderr_to(run.log_file):
                session.reply(
                    line,
                    s["max_tokens"],
                    s["temperature"],
                    s["top_k"],
                    s["top_p"],
                    s["seed"],
                    beams=s["beams"],
                    stop=s["stop"],
                    use_cache=use_cache,
                    on_text=lambda piece: typer.echo(piece, nl=False),
                )
            typer.echo("")

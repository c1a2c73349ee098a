"""The `llmtui` command line: thin commands that parse arguments and call the library.

Heavy libraries (TensorFlow, Keras) are imported inside the commands that need them, so `--help`,
`validate` and `schema` answer at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

import llmtui
from llmtui.cli import (
    data_cmds,
    embeddings_cmds,
    eval_cmds,
    export_cmds,
    finetune_cmds,
    generate_cmds,
    import_cmds,
    launch_cmds,
    model_cmds,
    run_cmds,
    runs_cmds,
    tokenizer_cmds,
    tui_cmds,
    tune_cmds,
)
from llmtui.cli.common import user_errors

app = typer.Typer(
    name="llmtui",
    help="Build, train, evaluate and use your own language model: raw text → vocabulary → model → results.",
    invoke_without_command=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmtui {llmtui.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """llmtui: from raw text to a trained, evaluated, usable language model.

    With no command, opens the wizard (a terminal app that walks through every step).
    """
    if ctx.invoked_subcommand is None:
        from llmtui.cli.tui_cmds import open_wizard

        with user_errors():
            open_wizard()


# The one way commands are added: every command module owns a `typer.Typer` named `cli`, its commands declared
# with `@cli.command()` on their functions, and is added here with `add_typer`: with a name it is a command group
# (`llmtui data inspect`), without one its commands join the root (`llmtui eval`). Why this way: the command's
# name sits on its function, the modules import nothing from this file (no import cycle, so no imports at the
# bottom of it), and this list is the whole command tree in the order --help shows it. The modules are light:
# their commands import the library when they run.
for _commands in (
    run_cmds,
    tune_cmds,
    generate_cmds,
    eval_cmds,
    finetune_cmds,
    export_cmds,
    import_cmds,
    tui_cmds,
    runs_cmds,
    launch_cmds,
):
    app.add_typer(_commands.cli)
app.add_typer(data_cmds.cli, name="data")
app.add_typer(tokenizer_cmds.cli, name="tokenizer")
app.add_typer(embeddings_cmds.cli, name="embeddings")
app.add_typer(model_cmds.cli, name="model")


def main() -> None:
    app()

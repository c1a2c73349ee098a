"""The `llmtui` command line: thin commands that parse arguments and call the library.

Heavy libraries (TensorFlow, Keras) are imported inside the commands that need them, so `--help`,
`validate` and `schema` answer at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

import llmtui
from llmtui.errors import LlmtuiError, TrainingInterrupted
from llmtui.runfolder import STAGES

app = typer.Typer(
    name="llmtui",
    help="Build, train, evaluate and use your own language model: raw text → vocabulary → model → results.",
    invoke_without_command=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe file (TOML), e.g. recipes/quickstart.toml.", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable); wins over the file.")]
RunArg = Annotated[str, typer.Argument(help="Run folder (e.g. runs/quickstart) or run name under ./runs.")]


def recipe_rule(section: str, name: str):
    """An option callback that checks the value by the recipe field `section.name` (one definition of what is
    allowed); a bad value is a usage error (exit 2) that says why."""

    def check(value):
        if value is None:
            return value
        from llmtui.config import recipe as recipe_module
        from llmtui.config.loader import check_field
        from llmtui.errors import RecipeError

        sections = {field: info.annotation for field, info in recipe_module.Recipe.model_fields.items()}
        try:
            check_field(sections[section], name, value)
        except RecipeError as exc:
            raise typer.BadParameter(f"{exc.message} (the same rule as the recipe's {section}.{name})") from None
        return value

    return check


def stage_name(value: str | None) -> str | None:
    """An option callback for --until: a usage error (exit 2) before anything is loaded or imported."""
    if value is not None and value not in STAGES:
        raise typer.BadParameter(f"{value!r} is not a stage; choose one of {', '.join(STAGES)}")
    return value


def finite(value: float | None) -> float | None:
    """An option callback for numbers that stand for no recipe field: inf and nan are never meant."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"expected a finite number, got {value}")
    return value


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmtui {llmtui.__version__}")
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """llmtui: from raw text to a trained, evaluated, usable language model.

    With no command, opens the wizard (a terminal app that walks through every step).
    """
    if ctx.invoked_subcommand is None:
        from llmtui.cli.tui_cmds import open_wizard

        with user_errors():
            open_wizard()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one message on stderr and an exit code; never a raw traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except LlmtuiError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True, fg="yellow")
        raise typer.Exit(130) from None
    except OSError as exc:  # the machine, not the input: a full disk, a permission, a file gone meanwhile
        typer.secho(f"error: {os_error_line(exc)}", err=True, fg="red")
        raise typer.Exit(1) from None
    except Exception as exc:  # a bug of ours: keep the details in a file, show one line
        log = Path(tempfile.gettempdir()) / "llmtui-error.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        typer.secho(f"internal error: {type(exc).__name__}: {exc}\n  details: {log}", err=True, fg="red")
        raise typer.Exit(1) from None


_OS_HINTS = {errno.ENOSPC: "the disk is full: free some space (or point run.out_dir elsewhere) and run again",
             errno.EDQUOT: "the disk quota is used up: free some space and run again",
             errno.EACCES: "check the permissions of that path",
             errno.EPERM: "check the permissions of that path",
             errno.EROFS: "that file system is read-only: choose another run.out_dir",
             errno.ENOENT: "it was there a moment ago: is something else removing files?"}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and a hint where one helps."""
    where = f" ({exc.filename})" if exc.filename else ""
    line = f"{exc.strerror or exc}{where}"
    hint = _OS_HINTS.get(exc.errno or -1)
    return f"{line}\n  hint: {hint}" if hint else line


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    until: Annotated[Optional[str], typer.Option(
        callback=lambda value: stage_name(value),
        help="Stop after this stage: data, tokenizer, model, train, eval or generate.")] = None,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Start over: ignore earlier results and checkpoints in the run folder.")] = False,
) -> None:
    """Run a recipe headless: data → tokenizer → model → train → eval → generate.

    A recipe whose \\[finetune] base names a trained run fine-tunes it (the same as llmtui finetune).
    Stages whose inputs have not changed since the last run are skipped, and training continues from the
    newest checkpoint, so a killed or interrupted run resumes when the same command runs again.
    Every event is appended to RUN/events.jsonl (the wizard follows it); RUN/control.json pauses or stops it.
    """
    try:
        with user_errors():
            from llmtui.cli.console import ConsoleSink
            from llmtui.config import load_recipe

            execute_recipe(load_recipe(recipe, set_ or []), until, fresh, ConsoleSink())
    except typer.Exit as exc:
        from llmtui.training import cluster

        if exc.exit_code and cluster.joined():
            # One process of a multi-process job failed: leave now. The normal exit would first wait (minutes)
            # at JAX's shutdown barrier for processes that will never get there; the others notice this
            # process is gone within the heartbeat timeout and stop too.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        raise


def execute_recipe(config, until: str | None, fresh: bool, sink) -> None:
    """Run a loaded recipe (fine-tuning when [finetune] base is set); Ctrl-C leaves a checkpoint and exits 130."""
    from llmtui.pipeline import pipeline_for
    from llmtui.runcontrol import ControlFile, watched_run
    from llmtui.runfolder import RunFolder

    control = ControlFile(RunFolder.of_recipe(config, Path.cwd()).root)  # the wizard pauses and stops through it
    pipeline = pipeline_for(config, base_dir=Path.cwd(), sinks=[sink], control=control)
    if fresh:
        pipeline.run.clear()
    try:
        with watched_run(pipeline):  # events.jsonl and control.json: the wizard attaches, pauses and stops
            pipeline.execute(until=until)
    except TrainingInterrupted as exc:
        where = f"; checkpoint {exc.checkpoint}" if exc.checkpoint else ""
        typer.secho(f"interrupted at step {exc.step}{where}. Run the same command again to continue.",
                    err=True, fg="yellow")
        raise typer.Exit(130) from None


@app.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe and print it fully resolved (defaults filled in, overrides applied)."""
    with user_errors():
        from llmtui.config import load_recipe, recipe_to_toml
        from llmtui.config.loader import names_run_from_file

        config = load_recipe(recipe, set_ or [])
        if names_run_from_file(recipe) and not any(s.strip().startswith("run.name") for s in set_ or []):
            typer.echo(f"# {recipe} sets no [run] name: the run is named after the file, so its folder is "
                       f"{Path(config.run.out_dir) / config.run.name}")
        typer.echo(recipe_to_toml(config), nl=False)


@app.command()
def schema() -> None:
    """Print the recipe's JSON Schema (for editor completion and checking)."""
    from llmtui.config import recipe_schema

    typer.echo(json.dumps(recipe_schema(), indent=2))


@app.command()
def tensorboard(
    run_dir: RunArg,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 6006,
) -> None:
    """Serve a run's TensorBoard logs on 127.0.0.1 and print the address."""
    with user_errors():
        from llmtui.runfolder import RunFolder, resolve_run_dir

        run = RunFolder(resolve_run_dir(run_dir))
        logdir = run.require(run.logs_dir, "TensorBoard logs", "train the run first: llmtui run RECIPE")
        import subprocess

        command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                   "--port", str(port)]
        typer.echo(f"TensorBoard for {run.root} at http://127.0.0.1:{port}/  (Ctrl-C to stop)")
        if os.name == "posix":
            # Become TensorBoard rather than wait on it: whoever stops this process (Ctrl-C, a script's or the
            # wizard's terminate) then stops the server, where a child would be left running.
            sys.stdout.flush()
            os.execv(sys.executable, command)
        try:
            raise typer.Exit(subprocess.call(command))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


from llmtui.cli.data_cmds import data_app  # noqa: E402  (light: its commands import the library when run)
app.add_typer(data_app, name="data")
from llmtui.cli.tokenizer_cmds import tokenizer_app  # noqa: E402
app.add_typer(tokenizer_app, name="tokenizer")
from llmtui.cli.embeddings_cmds import embeddings_app  # noqa: E402
app.add_typer(embeddings_app, name="embeddings")
from llmtui.cli.model_cmds import model_app  # noqa: E402  (light: its commands import the library when run)
app.add_typer(model_app, name="model")
from llmtui.cli.tune_cmds import ladder as ladder_command, tune as tune_command  # noqa: E402  (light)
app.command("tune")(tune_command)
app.command("ladder")(ladder_command)
# Each of these modules adds its own commands to `app` (they import the library only when a command runs).
from llmtui.cli import (eval_cmds, export_cmds, finetune_cmds, generate_cmds, import_cmds,  # noqa: E402
                        launch_cmds, runs_cmds, tui_cmds)
for _module in (generate_cmds, eval_cmds, finetune_cmds, export_cmds, import_cmds, tui_cmds, runs_cmds, launch_cmds):
    _module.register(app)


def main() -> None:
    app()

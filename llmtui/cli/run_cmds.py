"""`llmtui run`, `validate`, `schema` and `tensorboard`: a recipe run headless, checked, described, and watched."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import RecipeArg, RunArg, SetOpt, stage_name, user_errors
from llmtui.errors import TrainingInterrupted

cli = typer.Typer()


@cli.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    until: Annotated[
        str | None,
        typer.Option(
            callback=lambda value: stage_name(value),
            help="Stop after this stage: data, tokenizer, model, train, eval or generate.",
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over: ignore earlier results and checkpoints in the run folder.")
    ] = False,
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
        typer.secho(
            f"interrupted at step {exc.step}{where}. Run the same command again to continue.", err=True, fg="yellow"
        )
        raise typer.Exit(130) from None


@cli.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe and print it fully resolved (defaults filled in, overrides applied)."""
    with user_errors():
        from llmtui.config import load_recipe, recipe_to_toml
        from llmtui.config.loader import names_run_from_file

        config = load_recipe(recipe, set_ or [])
        if names_run_from_file(recipe) and not any(s.strip().startswith("run.name") for s in set_ or []):
            typer.echo(
                f"# {recipe} sets no [run] name: the run is named after the file, so its folder is "
                f"{Path(config.run.out_dir) / config.run.name}"
            )
        typer.echo(recipe_to_toml(config), nl=False)


@cli.command()
def schema() -> None:
    """Print the recipe's JSON Schema (for editor completion and checking)."""
    from llmtui.config import recipe_schema

    typer.echo(json.dumps(recipe_schema(), indent=2))


@cli.command()
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

        command = [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
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

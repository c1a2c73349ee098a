"""The wizard: `llmtui` with no command, `llmtui wizard [RECIPE|RUN]`, and `llmtui web` (the same app in a browser).

Textual is imported inside the commands, so `llmtui --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("wizard")(wizard)
    app.command("web")(web)


def wizard(
    path: Annotated[Path | None, typer.Argument(
        help="A recipe (TOML) to edit, or a run folder to look at; nothing starts from the tiny template.",
        show_default=False)] = None,
) -> None:
    """Open the wizard: data → vocabulary → model → training → review → train → evaluate → playground."""
    from llmtui.cli.app import user_errors

    with user_errors():
        open_wizard(path)


def open_wizard(path: Path | None = None) -> None:
    """Open the Textual wizard in this terminal (on a recipe file or a run folder when given)."""
    from llmtui.errors import LlmtuiError

    if path is not None and not path.exists():
        raise LlmtuiError(f"no recipe or run folder at {path}",
                          hint="give a .toml recipe (e.g. recipes/quickstart.toml) or a run folder (runs/NAME)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from llmtui.tui.app import WizardApp

    recipe, run = (None, path) if path is not None and path.is_dir() else (path, None)
    with _terminal_kept_for_textual():
        WizardApp(recipe=recipe, run=run).run()


@contextlib.contextmanager
def _terminal_kept_for_textual() -> Iterator[None]:
    """Give Textual its own handle on the terminal while the app runs.

    Textual draws through `sys.__stderr__` (file descriptor 2), and the pipeline points descriptor 2 at the
    run's log file while it runs (native libraries write there); TensorFlow writes notices to it at import.
    Textual gets a duplicate of the terminal's descriptor, and descriptor 2 goes to a log file until the
    app closes.
    """
    if sys.__stderr__ is None or not sys.__stderr__.isatty():
        yield
        return
    import tempfile

    original, python_stderr = sys.__stderr__, sys.stderr
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", encoding=original.encoding or "utf-8", errors="replace")
    with open(Path(tempfile.gettempdir()) / "llmtui-wizard.log", "a", encoding="utf-8") as log:
        sys.__stderr__ = terminal  # type: ignore[misc]
        os.dup2(log.fileno(), 2)
        sys.stderr = log
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.__stderr__, sys.stderr = original, python_stderr  # type: ignore[misc]
            terminal.close()


def web(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1 keeps it to this machine).")] = "127.0.0.1",
    path: Annotated[Path | None, typer.Argument(help="A recipe or run folder to open.", show_default=False)] = None,
) -> None:
    """Serve the wizard in a web browser (textual-serve) on 127.0.0.1, and print the address."""
    from llmtui.cli.app import user_errors

    with user_errors():
        from textual_serve.server import Server

        command = f"{shlex.quote(sys.executable)} -m llmtui wizard"
        if path is not None:
            command += f" {shlex.quote(str(path))}"
        typer.echo(f"llmtui in the browser at http://{host}:{port}/  (Ctrl-C to stop)")
        Server(command, host=host, port=port, title="llmtui").serve()

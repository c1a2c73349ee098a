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

from llmtui.cli.common import user_errors

cli = typer.Typer()


@cli.command()
def wizard(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A recipe (TOML) to edit, or a run folder to look at; nothing starts from the tiny template.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the wizard: data → vocabulary → model → training → review → train → evaluate → playground."""
    with user_errors():
        open_wizard(path)


def open_wizard(path: Path | None = None) -> None:
    """Open the Textual wizard in this terminal (on a recipe file or a run folder when given)."""
    from llmtui.errors import LlmtuiError

    if path is not None and not path.exists():
        raise LlmtuiError(
            f"no recipe or run folder at {path}",
            hint="give a .toml recipe (e.g. recipes/quickstart.toml) or a run folder (runs/NAME)",
        )
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


@cli.command()
def web(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8000,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. 127.0.0.1 keeps it to this machine; any other needs --allow-remote."),
    ] = "127.0.0.1",
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Let --host be an address other machines can reach (anyone with the printed "
            "address, token included, can then use this machine's files).",
        ),
    ] = False,
    max_sessions: Annotated[
        int, typer.Option(min=1, max=64, help="Most wizard sessions (browser tabs, each a process) at once.")
    ] = 2,
    path: Annotated[Path | None, typer.Argument(help="A recipe or run folder to open.", show_default=False)] = None,
) -> None:
    """Serve the wizard in a web browser (textual-serve) on 127.0.0.1, and print its address.

    The address carries a random token made at each launch: the page and its websocket refuse requests
    without it, and requests from other sites' pages (their Origin).
    """
    with user_errors():
        from llmtui.errors import LlmtuiError
        from llmtui.tui.web_server import GuardedServer, check_listen_address

        if path is not None and not path.exists():  # found now, not by each browser session's wizard
            raise LlmtuiError(
                f"no recipe or run folder at {path}",
                hint="give a .toml recipe (e.g. recipes/quickstart.toml) or a run folder (runs/NAME)",
            )
        check_listen_address(host, port, allow_remote)
        if allow_remote:
            typer.secho(
                f"warning: --allow-remote: llmtui web listens on {host}; whoever has the address below "
                "can read, write and train on this machine as you. Use it on a network you trust.",
                err=True,
                fg="yellow",
            )
        command = f"{shlex.quote(sys.executable)} -m llmtui wizard"
        if path is not None:
            command += f" {shlex.quote(str(path))}"
        server = GuardedServer(
            command, host=host, port=port, max_sessions=max_sessions, allow_remote=allow_remote, title="llmtui"
        )
        typer.echo(f"llmtui in the browser at {server.url}  (Ctrl-C to stop)")
        sys.stdout.flush()
        server.serve()

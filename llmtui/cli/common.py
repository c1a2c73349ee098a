"""What every command module shares: argument types, option checks, and `user_errors` (one message, an exit
code, never a traceback). Light on purpose: every command module imports it, and `llmtui --help` imports them
all."""

from __future__ import annotations

import contextlib
import errno
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from llmtui.errors import LlmtuiError
from llmtui.runfolder import STAGES

RecipeArg = Annotated[
    Path, typer.Argument(help="Recipe file (TOML), e.g. recipes/quickstart.toml.", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable); wins over the file."
    ),
]
RunArg = Annotated[str, typer.Argument(help="Run folder (e.g. runs/quickstart) or run name under ./runs.")]


def recipe_rule(section: str, name: str) -> Callable[[Any], Any]:
    """An option callback that checks the value by the recipe field `section.name` (one definition of what is
    allowed); a bad value is a usage error (exit 2) that says why."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        from llmtui.config import recipe as recipe_module
        from llmtui.config.loader import check_field
        from llmtui.errors import RecipeError

        sections: dict[str, Any] = {field: info.annotation for field, info in recipe_module.Recipe.model_fields.items()}
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


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space (or point run.out_dir elsewhere) and run again",
    errno.EDQUOT: "the disk quota is used up: free some space and run again",
    errno.EACCES: "check the permissions of that path",
    errno.EPERM: "check the permissions of that path",
    errno.EROFS: "that file system is read-only: choose another run.out_dir",
    errno.ENOENT: "it was there a moment ago: is something else removing files?",
}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and a hint where one helps."""
    where = f" ({exc.filename})" if exc.filename else ""
    line = f"{exc.strerror or exc}{where}"
    hint = _OS_HINTS.get(exc.errno or -1)
    return f"{line}\n  hint: {hint}" if hint else line

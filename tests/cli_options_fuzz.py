"""Run by tests/test_cli_faults.py in a fresh interpreter: random values of every type for every option of every
`llmtui` command, each through the command line's own entry point (typer, standalone mode), stderr captured per
call. Exits non-zero, with the falsifying example, if a call raises, prints a traceback or an internal error, or
ends with another exit code than 1 or 2 (2: the option's rule refused the value; 1 or 2: the value passed, and the
command then failed on the missing recipe or run folder it was given).

Usage: python cli_options_fuzz.py EXAMPLES
"""

from __future__ import annotations

import contextlib
import io
import sys

import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtui.cli.app import app

MISSING = "/nonexistent/llmtui-fuzz"


def options(command, path: list[str]):
    """(command path, required arguments, option) for every option that takes a value (typer may use its own
    copy of click, so the kinds are told by name)."""
    if hasattr(command, "commands"):
        for name, child in sorted(command.commands.items()):
            yield from options(child, path + [name])
        return
    arguments = [MISSING for p in command.params if p.param_type_name == "argument" and p.required]
    for param in command.params:
        if param.param_type_name == "option" and not param.is_flag and param.name not in ("help", "version"):
            yield path, arguments, max(param.opts, key=len)


CASES = list(options(typer.main.get_command(app), []))

VALUES = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "-1",
            "0",
            "1e999",
            "NaN",
            "-inf",
            "true",
            "[1, 2]",
            "{}",
            "train.steps=true",
            "generate.top_p=0",
            "train.grad_clip=inf",
            "a=b",
            "=",
        ]
    ),
)


def call(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            app(argv, prog_name="llmtui", standalone_mode=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue() + out.getvalue()


def main(examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True)
    @given(st.sampled_from(CASES), VALUES)
    def every_option_takes_any_value(case, value):
        path, arguments, option = case
        argv = [*path, f"{option}={value}", *arguments]
        code, output = call(argv)
        assert "Traceback" not in output and "internal error" not in output, (argv, output)
        assert code in (1, 2), (argv, code, output)

    every_option_takes_any_value()
    print(f"{len(CASES)} options, {examples} examples: all refused or failed cleanly")


if __name__ == "__main__":
    main(int(sys.argv[1]))

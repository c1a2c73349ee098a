"""Errors that reach the user as one clear message (never a traceback).

Every error the library raises on purpose is an `LlmtuiError`; the CLI prints its message on stderr and
exits with its `exit_code`.
"""

from __future__ import annotations


class LlmtuiError(Exception):
    """An error with a message meant for the user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class RecipeError(LlmtuiError):
    """The recipe (file or --set override) is malformed or invalid.

    `errors` keeps every problem by key path (`{"model.dim": "0 is out of range; ..."}`, `""` for the recipe as
    a whole) so the wizard can put each one under its field; `message` is what a terminal shows, which may list
    only the first few of them.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, errors: dict[str, str] | None = None):
        super().__init__(message, hint)
        self.errors: dict[str, str] = dict(errors or {})


class DataError(LlmtuiError):
    """A data source is missing, unreadable, or left nothing to train on."""


class RunFolderError(LlmtuiError):
    """The run folder is locked by another run, or lacks what a command needs."""


class TrainingError(LlmtuiError):
    """Training cannot go on (for example the loss became NaN)."""


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C or a stop button) after writing a checkpoint.

    Not an `LlmtuiError`: the run is resumable, not failed. Defined here, with no heavy imports, so a command
    can catch it without importing the trainer (and TensorFlow) while it handles an error."""

    def __init__(self, step: int, checkpoint=None):
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint = checkpoint

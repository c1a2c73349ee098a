"""How the wizard words an error it caught: the message of an `LlmtuiError`; for anything unexpected, one line
naming it and a file holding its traceback (a traceback on screen helps nobody, lost it helps no maintainer)."""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

from llmtui.errors import LlmtuiError

ERROR_LOG = Path(tempfile.gettempdir()) / "llmtui-error.log"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, LlmtuiError):
        return str(exc)
    ERROR_LOG.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return f"internal error: {type(exc).__name__}: {exc} (details: {ERROR_LOG})"

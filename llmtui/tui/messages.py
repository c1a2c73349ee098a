"""Messages the wizard's worker threads post to the app (small dataclasses, posted thread-safely)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from llmtui.events import Event


@dataclass
class PipelineEvent(Message):
    """One event from the pipeline (data, tokenizer, training metrics, samples...)."""

    event: Event


@dataclass
class RunEnded(Message):
    """The pipeline worker is done: finished, interrupted (with a checkpoint) or failed."""

    outcome: str  # finished | interrupted | failed
    text: str = ""
    until: str | None = None


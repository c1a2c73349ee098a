"""Messages the run controller posts to the app (small dataclasses, posted thread-safely from its follower)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from llmtui.events import Event


@dataclass
class RunEvents(Message):
    """Events read from the run's log since the last message (all of them at once when re-attaching)."""

    events: list[Event]


@dataclass
class RunEnded(Message):
    """The run's process is gone: finished, interrupted (with a checkpoint) or failed (with its message)."""

    outcome: str  # finished | interrupted | failed
    text: str = ""
    until: str | None = None

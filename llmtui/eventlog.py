"""A run's event log: every pipeline event as one JSON line in `<run>/events.jsonl`, append-only.

`llmtui run` writes it (a sink like the console), so a run outlives whoever watches it: the wizard, in this
terminal or another, follows the log as it grows and replays it on reopening. The JSON round trip of the
typed events lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmtui import events as ev

EVENT_LOG = "events.jsonl"

# Every event class by name: the "event" key of a line says which one to rebuild.
EVENT_TYPES: dict[str, type[ev.Event]] = {
    cls.__name__: cls
    for cls in vars(ev).values()
    if isinstance(cls, type) and issubclass(cls, ev.Event) and cls is not ev.Event
}


def event_to_dict(event: ev.Event) -> dict[str, Any]:
    """A JSON-able dict: {"event": "Metrics", "time": ..., "step": 5, ...}."""
    return {"event": type(event).__name__, **{f.name: getattr(event, f.name) for f in dataclasses.fields(event)}}


def event_from_dict(data: dict[str, Any]) -> ev.Event | None:
    """The event a line describes, or None for a kind this version does not know (a newer writer)."""
    cls = EVENT_TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        values[f.name] = tuple(value) if isinstance(value, list) and "tuple" in str(f.type) else value
    try:
        return cls(**values)
    except TypeError:  # a field this version requires is missing
        return None


def event_to_json(event: ev.Event) -> str:
    return json.dumps(event_to_dict(event), default=str, ensure_ascii=False)


def event_from_json(line: str) -> ev.Event | None:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event_from_dict(data) if isinstance(data, dict) else None


class EventLogSink:
    """A sink appending each event to the log as one line, flushed at once (a reader sees it immediately)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __call__(self, event: ev.Event) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (event_to_json(event) + "\n").encode("utf-8")
        # One write of a whole line in append mode: readers never see half of it interleaved with another.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class EventLogReader:
    """Reads a growing log from where it last stopped; a line still being written waits for its newline."""

    def __init__(self, path: Path, offset_at_end: bool = False):
        self.path = Path(path)
        self.offset = 0
        if offset_at_end and self.path.is_file():  # only what is written from now on
            self.offset = self.path.stat().st_size

    def read_new(self) -> list[ev.Event]:
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # the log was replaced (a fresh run): read it again from the start
                    self.offset = 0
                handle.seek(self.offset)
                blob = handle.read()
        except FileNotFoundError:
            return []
        end = blob.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        found = []
        for line in blob[: end + 1].decode("utf-8", errors="replace").splitlines():
            event = event_from_json(line) if line.strip() else None
            if event is not None:
                found.append(event)
        return found


def read_events(path: Path) -> Iterator[ev.Event]:
    """Every complete event in a log (none when there is no log)."""
    yield from EventLogReader(path).read_new()

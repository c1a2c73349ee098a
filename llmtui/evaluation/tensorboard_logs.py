"""Reading a run's TensorBoard event files without TensorFlow.

TensorBoard's own loaders (EventAccumulator, summary iterators) import TensorFlow whenever it is installed,
which costs seconds and fills stderr; event files are TFRecord files of `Event` protos, so this reads the
records directly and parses them with the protos tensorboard ships.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LogSeries:
    """Scalars (tag -> [(step, value)], sorted by step) and texts (tag -> [(step, text)]) of one log folder.

    When a resumed run logged a step twice, the later record wins.
    """

    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    texts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


def _records(path: Path) -> Iterator[bytes]:
    """Payloads of a TFRecord file: length (u64), its CRC (u32), data, data CRC (u32); a cut-off tail ends it."""
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                return
            yield data


def _summary_events(folder: Path):
    """The events with summaries in `folder`'s event files, oldest file first; a damaged record is skipped."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.event_pb2 import Event

    files = (
        sorted(folder.glob("events.out.tfevents.*"), key=lambda p: (p.stat().st_mtime, p.name))
        if folder.is_dir()
        else []
    )
    for path in files:
        for record in _records(path):
            event = Event()
            try:
                event.ParseFromString(record)
            except DecodeError:  # keep the rest of the curve
                continue
            if event.HasField("summary"):
                yield event


def read_log_walls(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    """Scalars with their wall times: tag -> [(step, wall time in seconds since the epoch, value)], in the order
    written (how long training took to reach a validation loss, e.g.)."""
    series: dict[str, list[tuple[int, float, float]]] = {}
    for event in _summary_events(folder):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                series.setdefault(value.tag, []).append((event.step, event.wall_time, float(value.simple_value)))
    return series


def read_log_folder(folder: Path) -> LogSeries:
    """Every scalar and text summary in the event files of `folder` (empty if there are none)."""
    scalars: dict[str, dict[int, float]] = {}
    texts: dict[str, dict[int, str]] = {}
    for event in _summary_events(folder):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, {})[event.step] = float(value.simple_value)
            elif value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "text":
                strings = value.tensor.string_val
                if strings:
                    texts.setdefault(value.tag, {})[event.step] = strings[0].decode("utf-8", errors="replace")
    return LogSeries(
        scalars={tag: sorted(points.items()) for tag, points in scalars.items()},
        texts={tag: sorted(points.items()) for tag, points in texts.items()},
    )

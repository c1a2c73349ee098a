"""TensorBoard event files written with TensorBoard's own writer (no TensorFlow needed, any backend)."""

from __future__ import annotations

import time
from pathlib import Path


class ScalarWriter:
    """Writes scalars and text to standard TensorBoard event files in `logdir`."""

    def __init__(self, logdir: Path):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        logdir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(logdir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def text(self, tag: str, text: str, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        tensor = TensorProto(
            dtype=7,
            string_val=[text.encode("utf-8")],  # 7 = DT_STRING
            tensor_shape=TensorShapeProto(dim=[]),
        )
        summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def hparams(self, values: dict, trial_id: str) -> None:
        """Record a trial's hyperparameters for TensorBoard's HParams dashboard (scalars in the same folder
        become its metrics)."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.plugins.hparams import summary_v2

        summary = summary_v2.hparams_pb(values, trial_id=trial_id)
        self._writer.add_event(Event(wall_time=time.time(), step=0, summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

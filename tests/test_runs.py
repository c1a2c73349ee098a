"""The event log (every event's JSON round trip, a reader following a growing file), the control file, and the
status of run folders (`llmtui runs`) decided by the folder lock and the log."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from llmtui import events as ev
from llmtui.eventlog import EVENT_TYPES, EventLogReader, EventLogSink, event_from_json, event_to_json
from llmtui.runcontrol import ControlFile, read_control, write_control
from llmtui.runfolder import RunFolder
from llmtui.runs import list_runs, lock_holder, run_info, table_rows

EXAMPLES = [
    ev.RunStarted(run_dir="runs/a", stages=("data", "tokenizer"), backend="jax", time=1.5),
    ev.StageStarted(stage="data"),
    ev.StageSkipped(stage="data", reason="inputs unchanged"),
    ev.StageFinished(stage="data", seconds=0.25, summary={"documents_kept": 3}),
    ev.Message(text="hello «world»", level="warning"),
    ev.TrainingStarted(total_steps=40, start_step=20, tokens_per_step=128, parameters=14464),
    ev.Metrics(step=5, split="val", values={"loss": 2.5, "perplexity": 12.18}),
    ev.Sample(step=-1, prompt="the ", text="model\nreads"),
    ev.CheckpointSaved(step=20, path="runs/a/checkpoints/step_20"),
    ev.RunFinished(run_dir="runs/a", seconds=3.0, summary={"val_loss": None, "samples": [{"prompt": "x"}]}),
    ev.RunFailed(stage="train", error="the training loss became nan"),
    ev.RunInterrupted(step=7, checkpoint="runs/a/checkpoints/step_7"),
]


def test_every_event_kind_has_an_example():
    assert {type(e).__name__ for e in EXAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_event_json_round_trip(event):
    line = event_to_json(event)
    assert "\n" not in line
    assert event_from_json(line) == event


def test_unknown_or_damaged_lines_are_skipped():
    assert event_from_json('{"event": "FromTheFuture", "x": 1}') is None
    assert event_from_json("{not json") is None
    assert event_from_json('{"event": "Metrics", "step": 1}') is None  # required fields missing


def test_reader_follows_a_growing_log_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    sink, reader = EventLogSink(path), EventLogReader(path)
    assert reader.read_new() == []
    sink(EXAMPLES[0])
    sink(EXAMPLES[1])
    assert reader.read_new() == EXAMPLES[:2]
    with open(path, "a", encoding="utf-8") as handle:  # half a line: not read until its newline comes
        handle.write(event_to_json(EXAMPLES[2])[:10])
    assert reader.read_new() == []
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(event_to_json(EXAMPLES[2])[10:] + "\n")
    assert reader.read_new() == [EXAMPLES[2]]
    path.write_text(event_to_json(EXAMPLES[3]) + "\n", encoding="utf-8")  # replaced by a fresh run
    assert reader.read_new() == [EXAMPLES[3]]
    assert EventLogReader(path, offset_at_end=True).read_new() == []


def test_control_file_pauses_until_resumed_and_stops(tmp_path):
    import threading
    import time

    said: list[ev.Event] = []
    control = ControlFile(tmp_path)
    assert control.stop_requested(said.append) is False and read_control(tmp_path) == {"pause": False, "stop": False}
    write_control(tmp_path, pause=True)
    threading.Timer(0.5, lambda: write_control(tmp_path, pause=False)).start()
    began = time.monotonic()
    assert control.stop_requested(said.append) is False  # held while paused, then goes on
    assert time.monotonic() - began >= 0.4
    assert [e.text for e in said] == ["paused after this step; resume to go on", "resumed"]
    write_control(tmp_path, stop=True)
    assert control.stop_requested(said.append) is True


def _log(folder, *events):
    sink = EventLogSink(folder / "events.jsonl")
    for event in events:
        sink(event)
    (folder / "recipe.toml").write_text("", encoding="utf-8")
    return folder


def test_run_status_from_the_log_and_the_lock(tmp_path):
    runs = tmp_path / "runs"
    start = ev.RunStarted(run_dir="x", stages=("train",), backend="jax", time=1000.0)
    train = ev.TrainingStarted(total_steps=40, start_step=0, tokens_per_step=8, parameters=1, time=1001.0)
    val = [
        ev.Metrics(step=s, split="val", values={"loss": loss}, time=1000.0 + s) for s, loss in ((20, 2.0), (40, 1.5))
    ]
    _log(runs / "done", start, train, *val, ev.RunFinished(run_dir="x", seconds=40.0, time=1050.0))
    _log(runs / "broken", start, train, val[0], ev.RunFailed(stage="train", error="boom", time=1021.0))
    _log(runs / "killed", start, train, val[0])  # the log just stops: nobody holds the lock
    _log(runs / "going", start, train, val[0])
    (runs / "not-a-run").mkdir()
    holder = RunFolder(runs / "going")
    holder.lock()
    try:
        found = {r.name: r for r in list_runs(runs)}
        assert lock_holder(runs / "going") == __import__("os").getpid()
    finally:
        holder.unlock()
    assert set(found) == {"done", "broken", "killed", "going"}
    assert {n: r.status for n, r in found.items()} == {
        "done": "finished",
        "broken": "failed",
        "killed": "interrupted",
        "going": "running",
    }
    done = found["done"]
    assert (done.step, done.total_steps, done.best_val_loss, done.seconds) == (40, 40, 1.5, 50.0)
    assert found["broken"].error == "boom"
    assert table_rows([done])[0][:4] == ("done", "finished", "40/40", "1.5000")
    assert run_info(runs / "going").status == "interrupted"  # the lock went with its holder


def test_runs_command_lists_runs_and_refuses_a_missing_folder(tmp_path):
    runs = tmp_path / "runs"
    _log(
        runs / "done",
        ev.RunStarted(run_dir="x", stages=("train",), backend="jax"),
        ev.RunFinished(run_dir="x", seconds=1.0),
    )
    command = [sys.executable, "-m", "llmtui", "runs"]
    table = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "done" in table.stdout and "finished" in table.stdout and "best val loss" in table.stdout
    listed = subprocess.run(command + [str(runs), "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout)[0]["status"] == "finished"
    missing = subprocess.run(command + ["nowhere"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no folder nowhere" in missing.stderr and "Traceback" not in missing.stderr


def test_event_fields_are_plain_json_types():
    """A new event with a field JSON cannot carry would not come back equal: keep them plain."""
    for cls in EVENT_TYPES.values():
        for f in dataclasses.fields(cls):
            assert any(t in str(f.type) for t in ("str", "int", "float", "dict", "tuple")), (cls, f.name)

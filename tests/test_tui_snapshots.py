"""SVG snapshots of every wizard screen at 100×32 (pytest-textual-snapshot); update with --snapshot-update.

Deterministic by construction: a recipe with relative paths in the test's own working folder, a fixed
evaluation report, and a fixed device speed for the duration estimate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytest_textual_snapshot")

from llmtui.tui.app import WizardApp  # noqa: E402
from llmtui.tui.steps import STEP_NAMES  # noqa: E402
from tests.test_tui import write_tiny_recipe  # noqa: E402

SIZE = (100, 32)
REPORT = {
    "loss": 1.8734,
    "perplexity": 6.5112,
    "bits_per_byte": 2.7027,
    "accuracy": 0.4521,
    "top5_accuracy": 0.8133,
    "uniform_loss": 3.6889,
    "vocab_size": 40,
    "parameters": 14464,
    "split": "val",
}


@pytest.fixture
def wizard(tmp_path, monkeypatch):
    from llmtui.models import cost

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cost, "peak_flops", lambda train, kind="": (100e9, "fixed for the snapshot"))
    monkeypatch.setattr(cost, "available_memory_bytes", lambda: 8e9)
    write_tiny_recipe(tmp_path)
    return lambda: WizardApp(recipe=Path("tiny.toml"))


@pytest.mark.parametrize("step", ["welcome", *STEP_NAMES])
def test_screen(step, wizard, snap_compare, tmp_path):
    if step == "evaluate":
        folder = tmp_path / "runs" / "tiny" / "eval"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(REPORT), encoding="utf-8")

    async def go(pilot):
        await pilot.pause()
        if step != "welcome":
            pilot.app.goto_step(step)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(wizard(), terminal_size=SIZE, run_before=go)


def test_invalid_field(wizard, snap_compare):
    async def go(pilot):
        await pilot.pause()
        pilot.app.goto_step("model")
        await pilot.pause()
        form = pilot.app.screen.query_one("SectionForm")
        form.controls["heads"].value = "3"
        await pilot.pause()
        await pilot.press("ctrl+n")  # held on this step (the toast that says so fades: not in the picture)
        await pilot.pause()
        assert pilot.app.screen.name == "model"
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(wizard(), terminal_size=SIZE, run_before=go)


def test_small_terminal(wizard, snap_compare):
    """Usable at 80×24: the training step with its cost panel."""

    async def go(pilot):
        await pilot.pause()
        pilot.app.goto_step("training")
        await pilot.pause()

    assert snap_compare(wizard(), terminal_size=(80, 24), run_before=go)


@pytest.mark.parametrize("size", [(100, 30), (120, 36)], ids=["100x30", "120x36"])
def test_cost_panel_sizes(size, wizard, snap_compare):
    """The Training step's cost panel reads whole (labels, values and notes) at both sizes."""

    async def go(pilot):
        await pilot.pause()
        pilot.app.goto_step("training")
        await pilot.pause()

    assert snap_compare(wizard(), terminal_size=size, run_before=go)


def _finished_run(folder: Path) -> None:
    """A run folder whose log says it finished (fixed times: the snapshot shows them)."""
    from llmtui import events as ev
    from llmtui.eventlog import EventLogSink

    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(Path("tiny.toml").read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "model").mkdir()
    (folder / "model" / "final.keras").write_bytes(b"")
    sink = EventLogSink(folder / "events.jsonl")
    start = 1_767_225_600.0  # 2026-01-01 00:00 UTC
    sink(ev.RunStarted(run_dir=str(folder), stages=("data", "train"), backend="tensorflow", time=start))
    sink(ev.TrainingStarted(total_steps=40, start_step=0, tokens_per_step=128, parameters=14464, time=start + 5))
    sink(ev.Metrics(step=40, split="val", values={"loss": 2.2871}, time=start + 80))
    sink(ev.RunFinished(run_dir=str(folder), seconds=95.0, time=start + 95))


@pytest.mark.parametrize("screen", ["welcome-runs", "finetune"])
def test_new_screens_at_100x30(screen, wizard, snap_compare, tmp_path, monkeypatch, request):
    """The Welcome screen's list of runs, and the fine-tune setup of the run selected there."""
    import time

    monkeypatch.setenv("TZ", "UTC")  # the list shows local start times
    time.tzset()
    request.addfinalizer(time.tzset)  # runs after monkeypatch has put TZ back
    app = wizard()
    _finished_run(tmp_path / "runs" / "tiny")

    async def go(pilot):
        await pilot.pause()
        if screen == "finetune":
            await pilot.press("f")
            await pilot.pause()
            pilot.app.clear_notifications()
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(app, terminal_size=(100, 30), run_before=go)

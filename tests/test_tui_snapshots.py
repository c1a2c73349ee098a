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
REPORT = {"loss": 1.8734, "perplexity": 6.5112, "bits_per_byte": 2.7027, "accuracy": 0.4521,
          "top5_accuracy": 0.8133, "uniform_loss": 3.6889, "vocab_size": 40, "parameters": 14464, "split": "val"}


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

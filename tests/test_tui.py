"""The wizard, driven by Textual's Pilot: the round trip recipe → forms → recipe, on-the-spot validation,
a whole walk from a recipe to a trained model (real training of a tiny model), and quitting during training."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

pytest.importorskip("textual")

from llmtui.config import load_recipe  # noqa: E402
from llmtui.tokenizers.chat import chat_template  # noqa: E402
from llmtui.tui.app import WizardApp  # noqa: E402
from llmtui.tui.steps import STEP_NAMES  # noqa: E402
from tests.helpers import tiny_recipe_dict, write_corpus  # noqa: E402

pytestmark = pytest.mark.anyio
SIZE = (100, 32)


@pytest.fixture
def anyio_backend():
    return "asyncio"


QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.toml"


def write_tiny_recipe(folder: Path, **sections) -> Path:
    """A tiny recipe with relative paths (the tests chdir into `folder`)."""
    write_corpus(folder / "corpus")
    data = tiny_recipe_dict(Path("corpus"), Path("runs"), **sections)
    path = folder / "tiny.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def text_of(widget) -> str:
    """What a Static shows, as plain text (markup strings, Rich tables and Text alike)."""
    import io

    from rich.console import Console
    from rich.text import Text

    content = widget.content
    if isinstance(content, str):
        return Text.from_markup(content).plain
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


async def visit_every_step(app, pilot) -> None:
    for step in STEP_NAMES:
        app.goto_step(step)
        await pilot.pause()
        assert app.screen.name == step


async def wait_for_run(app, pilot, timeout: float = 240.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while app.controller.running:
        assert loop.time() < deadline, "the run did not finish in time"
        await pilot.pause(0.2)
    await pilot.pause()


@pytest.mark.parametrize("which", ["quickstart", "tiny"])
async def test_recipe_fills_every_form_and_comes_back_equal(which, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = QUICKSTART if which == "quickstart" else write_tiny_recipe(tmp_path)
    # Give the tiny recipe values off the defaults in nested sections, lists and the search space too.
    if which == "tiny":
        data = load_recipe(path).model_dump(mode="json")
        data["data"]["clean"]["scrub_pii"] = ["email", "ip"]
        data["data"]["filters"]["min_words"] = 3
        data["generate"]["stop"] = ["\n\n", "END"]
        data["tune"]["space"] = {
            "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "model.arch": {"choices": ["lstm", "gpt"]},
        }
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
    original = load_recipe(path)
    app = WizardApp(recipe=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.state.recipe == original
        await visit_every_step(app, pilot)
        assert app.recipe_from_forms() == original
        assert app.all_problems() == []


async def test_invalid_field_shows_the_loader_message_and_holds_the_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = WizardApp(recipe=write_tiny_recipe(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("model")
        await pilot.pause()
        form = app.screen.query_one("SectionForm")
        dim = form.controls["dim"]
        dim.focus()  # the screen's help line describes the field in focus
        await pilot.pause()
        assert text_of(app.screen.query_one("#help")).startswith("model.dim  ")
        dim.value = "abc"
        await pilot.pause()
        message = text_of(app.screen.query_one("#err-model-dim"))
        assert "expected a whole number, got 'abc'" in message
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.name == "model"  # held
        assert app.state.recipe.model.dim == 32  # the recipe keeps its last valid value

        dim.value = "30"  # valid with 2 heads; 4 heads break a rule across fields
        await pilot.pause()
        assert form.errors == {}
        form.controls["heads"].value = "4"
        await pilot.pause()
        summary = text_of(app.screen.query_one("#model-error"))
        assert "model.dim (30) must be a multiple of model.heads (4)" in summary
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.name == "model"

        form.controls["heads"].value = "3"
        await pilot.pause()
        assert form.errors == {}
        assert (app.state.recipe.model.dim, app.state.recipe.model.heads) == (30, 3)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.name == "training"
        await pilot.press("escape")  # back is always allowed
        await pilot.pause()
        assert app.screen.name == "model"


async def test_keys_typed_in_one_burst_apply_in_the_order_typed(tmp_path, monkeypatch):
    """Editing keys (bindings) and typed characters arriving together, as from a fast typist or tmux: Textual
    alone runs the bindings after the characters, which left "" here instead of "60" (Textual issue #6605)."""
    from textual import events

    monkeypatch.chdir(tmp_path)
    app = WizardApp(recipe=write_tiny_recipe(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("training")
        await pilot.pause()
        form = app.screen.query_one("SectionForm")
        steps = form.controls["steps"]
        steps.focus()  # focus selects the whole value
        await pilot.pause()
        assert steps.value == "40"
        burst = ["end", "backspace", "backspace", "backspace", "6", "0", "left", "backspace", "7", "end", "5"]
        for key in burst:  # queued together, before the app reads the first
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause()
        assert steps.value == "705"
        assert form.errors == {}
        assert app.state.recipe.train.steps == 705


async def test_walk_the_wizard_train_evaluate_and_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_tiny_recipe(tmp_path)
    app = WizardApp(recipe=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.__class__.__name__ == "WelcomeScreen"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.name == "data"
        assert len(app.screen.query_one("#sources").children) == 1

        await pilot.press("ctrl+n")  # Vocabulary: train it, read the report, try some text
        await pilot.pause()
        assert app.screen.name == "vocabulary"
        await pilot.press("ctrl+t")
        await wait_for_run(app, pilot)
        assert app.controller.outcome == "finished", app.controller.monitor.log
        assert "Vocabulary report" in text_of(app.screen.query_one("#vocab-report"))
        await pilot.click("#try-text")
        await pilot.press(*"the model")
        await pilot.pause()
        assert "9 tokens" in text_of(app.screen.query_one("#tokens"))

        for step in ("model", "training", "tuning", "review"):
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert app.screen.name == step
        assert "parameters" in text_of(app.get_screen("model").query_one("CostPanel"))
        assert "duration" in text_of(app.get_screen("training").query_one("CostPanel"))

        await pilot.press("ctrl+r")  # Review: save and run
        await pilot.pause()
        assert app.screen.name == "train"
        assert load_recipe(tmp_path / "tiny.toml") == load_recipe(path)
        await wait_for_run(app, pilot)
        assert app.controller.outcome == "finished", app.controller.monitor.log
        monitor = app.controller.monitor
        assert monitor.total_steps == 40 and monitor.step == 40
        assert len(monitor.train_loss) == 8 and len(monitor.val_loss) == 2
        assert monitor.samples
        assert "step 40/40" in text_of(app.screen.query_one("#stats"))

        await pilot.press("ctrl+n")  # Evaluate
        await pilot.pause()
        metrics = text_of(app.screen.query_one("#metrics"))
        assert "perplexity" in metrics and "bits_per_byte" in metrics
        assert "runs/tiny/eval/report.json" in text_of(app.screen.query_one("#report-paths"))

        await pilot.press("ctrl+n")  # Playground
        await pilot.pause()
        assert app.screen.name == "playground"
        await pilot.press("ctrl+g")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen.last_output, str)
        output = text_of(app.screen.query_one("#output"))
        assert output.startswith("the ") and "error" not in output

        playground = app.screen  # chat: two turns continue one conversation, /reset clears it
        for turn, message in enumerate(("the model", "reads text")):
            playground.query_one("#chat-input").focus()
            playground.query_one("#chat-input").value = message
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert playground.chat.turns == turn + 1
        messages = playground.chat.messages  # rendered by the run's chat template (one line a turn: plain text)
        assert [m["role"] for m in messages] == ["user", "assistant"] * 2
        assert messages[0]["content"] == "the model" and messages[2]["content"] == "reads text"
        assert playground.chat.template == chat_template(app.state.run.tokenizer_dir)
        assert playground.chat.prompt() == "".join(m["content"] + "\n" for m in messages)
        assert playground.streamed_pieces >= 1  # the reply came piece by piece
        log = text_of(playground.query_one("#chat-log"))
        assert "> the model" in log and "> reads text" in log and "error" not in log
        playground.query_one("#chat-input").value = "/reset"
        await pilot.press("enter")
        await pilot.pause()
        assert playground.chat.messages == [] and "conversation cleared" in text_of(playground.query_one("#chat-log"))


async def test_quitting_during_training_asks_and_leaves_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_tiny_recipe(
        tmp_path,
        run={"name": "long"},
        train={"steps": 5000, "checkpoint_every": 5000},
        generate={"prompts": ["the "], "max_tokens": 4},
    )
    app = WizardApp(recipe=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("train")
        await pilot.pause()
        await pilot.press("r")
        import asyncio

        for _ in range(1200):  # until training has started
            if app.controller.monitor.step > 0:
                break
            await asyncio.sleep(0.1)
        assert app.controller.monitor.step > 0, app.controller.monitor.log
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "ChoiceDialog"
        await pilot.press("escape")  # keep training
        await pilot.pause()
        assert app.controller.running and app.screen.name == "train"
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("s")  # stop and quit
        for _ in range(1200):
            if not app.is_running:
                break
            await asyncio.sleep(0.1)
    assert app.controller.outcome == "interrupted"
    checkpoints = list((tmp_path / "runs" / "long" / "checkpoints").glob("step_*"))
    assert checkpoints, "stopping leaves a checkpoint to resume from"


async def test_a_failing_stage_shows_its_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_tiny_recipe(tmp_path, data={"sources": ["missing-folder"]})
    app = WizardApp(recipe=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("vocabulary")
        await pilot.pause()
        await pilot.press("ctrl+t")
        await wait_for_run(app, pilot, timeout=60)
        assert app.controller.outcome == "failed"
        status = text_of(app.screen.query_one("#vocab-status"))
        assert status.startswith("failed:") and "missing-folder" in status
        assert "Traceback" not in status and "internal error" not in status


async def test_train_step_lists_the_stages_the_run_announced(tmp_path, monkeypatch):
    """The stage list is the run's own (`RunStarted.stages`): a task fine-tune has no generate stage, so the
    Train step of a finished one shows every stage done and none waiting; before it runs, the recipe's list."""
    from llmtui import events as ev
    from llmtui.config.loader import recipe_from_dict, save_recipe
    from llmtui.eventlog import EventLogSink
    from llmtui.finetune.pipeline import TASK_STAGES
    from llmtui.pipeline import STAGES
    from llmtui.tui.run_monitor import RunMonitor

    monitor = RunMonitor()
    monitor.reset(STAGES)  # what a domain recipe would run, generate included
    monitor.consume(ev.RunStarted(run_dir="runs/x", stages=TASK_STAGES, backend="jax"))
    assert "generate" in STAGES and tuple(monitor.stages) == TASK_STAGES

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "cls"
    run.mkdir(parents=True)
    data = tiny_recipe_dict(Path("corpus"), Path("runs"), run={"name": "cls"})
    data["finetune"] = {"base": "tiny", "task": "classification", "train_file": "labels.csv"}
    save_recipe(recipe_from_dict(data), run / "recipe.toml")
    sink = EventLogSink(run / "events.jsonl")
    sink(ev.RunStarted(run_dir=str(run), stages=TASK_STAGES, backend="jax"))
    for stage in TASK_STAGES:
        sink(ev.StageStarted(stage=stage))
        sink(ev.StageFinished(stage=stage, seconds=0.1))
    sink(ev.RunFinished(run_dir=str(run), seconds=1.0))
    app = WizardApp(run=run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.name == "train" and app.controller.outcome == "finished"
        assert app.controller.monitor.stages == dict.fromkeys(TASK_STAGES, "done")
        shown = text_of(app.screen.query_one("#stages"))
        assert "generate" not in shown and shown.count("✓") == len(TASK_STAGES), shown

        app.state.try_update("run", {"name": "cls-again"})  # not run yet: the stages its recipe will run
        app.recipe_replaced()
        await pilot.pause()
        assert app.controller.monitor.stages == dict.fromkeys(TASK_STAGES, "waiting")
        assert "generate" not in text_of(app.screen.query_one("#stages"))


async def test_data_step_adds_a_source_through_the_picker_and_previews_cleaned_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_tiny_recipe(tmp_path)
    write_corpus(tmp_path / "more", files=1, lines=3, seed=1)
    app = WizardApp(recipe=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("data")
        await pilot.pause()
        await pilot.click("#browse")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "PathDialog"
        await pilot.press(*"more", "enter")
        await pilot.pause()
        assert [s.path for s in app.state.recipe.data.sources] == ["corpus", "more"]
        assert len(app.screen.query_one("#sources").children) == 2
        await pilot.press("ctrl+e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        preview = text_of(app.screen.query_one("#preview-out"))
        assert "characters" in preview and "documents read" in preview


async def test_templates_get_a_run_folder_of_their_own(tmp_path):
    """A new recipe from a template never trains into an existing run folder (the README's runs/quickstart)."""
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "quickstart").mkdir()
    app = WizardApp(base_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.state.recipe.run.name == "tiny-2"
        app.new_from_template("quickstart")
        await pilot.pause()
        assert app.state.recipe.run.name == "quickstart-2" and app.state.recipe_path is None
        assert app.state.recipe.model == load_recipe(QUICKSTART).model  # the template itself is unchanged


async def test_vocabulary_step_offers_the_word_kind_and_its_options(tmp_path, monkeypatch):
    from textual.widgets import Select

    from llmtui.tui.widgets.section_form import SectionForm

    monkeypatch.chdir(tmp_path)
    app = WizardApp(recipe=write_tiny_recipe(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("vocabulary")
        await pilot.pause()
        form = app.screen.query_one(SectionForm)
        kind = form.controls["kind"]
        assert isinstance(kind, Select) and "word" in [value for _, value in kind._options]
        assert {"word_pattern", "end_of_line"} <= set(form.controls)
        kind.value = "word"
        await pilot.pause()
        assert app.state.recipe.tokenizer.kind == "word"


async def _until(pilot, condition, seconds: float = 240.0, what: str = "") -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.2)


def _runs_json(folder: Path) -> dict:
    import json
    import subprocess
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", "llmtui", "runs", "runs", "--json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    return {run["name"]: run for run in json.loads(listed.stdout)}


async def test_a_run_outlives_the_wizard_and_a_new_wizard_reattaches(tmp_path, monkeypatch):
    """Leave a run going on quit; a new wizard on the run folder replays its curves, follows on, pauses and
    resumes it across processes, and shows the end of a killed training process as a message."""
    import os
    import signal

    from llmtui.runs import lock_holder

    monkeypatch.chdir(tmp_path)
    path = write_tiny_recipe(
        tmp_path,
        run={"name": "long"},
        train={"steps": 5000, "checkpoint_every": 5000},
        generate={"prompts": ["the "], "max_tokens": 4},
    )
    run_dir = tmp_path / "runs" / "long"
    pid = None
    try:
        first = WizardApp(recipe=path)
        async with first.run_test(size=SIZE) as pilot:
            await pilot.pause()
            first.goto_step("train")
            await pilot.pause()
            await pilot.press("r")
            await _until(pilot, lambda: first.controller.monitor.val_loss, what="a validation loss")
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert first.screen.__class__.__name__ == "ChoiceDialog"
            await pilot.press("l")  # leave it running
            await pilot.pause()
        pid = lock_holder(run_dir)
        assert pid and pid != os.getpid(), "the run goes on in its own process after the wizard quit"
        assert _runs_json(tmp_path)["long"]["status"] == "running"

        second = WizardApp(run=run_dir)
        async with second.run_test(size=SIZE) as pilot:
            await pilot.pause()
            controller = second.controller
            assert controller.running and second.screen.name == "train"
            replayed = controller.monitor.step
            assert replayed > 0 and controller.monitor.train_loss and controller.monitor.val_loss
            assert list(controller.monitor.stages)[:4] == ["data", "tokenizer", "model", "train"]
            await _until(pilot, lambda: controller.monitor.step > replayed, what="new steps")

            await pilot.press("p")
            await _until(pilot, lambda: any("paused" in line for line in controller.monitor.log), 60, "the pause")
            held = controller.monitor.step
            await pilot.pause(1.5)
            assert controller.monitor.step == held and controller.paused
            await pilot.press("p")
            await _until(pilot, lambda: controller.monitor.step > held, 60, "steps after resuming")

            os.kill(pid, signal.SIGKILL)  # a crash of the training process
            await _until(pilot, lambda: not controller.running, 60, "the end of the run")
            assert controller.outcome == "failed" and "process ended" in controller.message
            assert "failed" in text_of(second.screen.query_one("#run-status"))
            pid = None
        assert _runs_json(tmp_path)["long"]["status"] == "interrupted"
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)


async def test_tuning_step_searches_stops_resumes_and_uses_the_best_trial(tmp_path, monkeypatch):
    """The search runs as its own `llmtui tune` process: trials appear as they finish, Stop interrupts it, Use best
    writes the best trial's values into the recipe, and starting again resumes the same study to its end."""
    monkeypatch.chdir(tmp_path)
    path = write_tiny_recipe(
        tmp_path,
        run={"name": "search"},
        tune={
            "method": "random",
            "trials": 2,
            "steps": 40,
            "pruner": "none",
            "space": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
        },
    )
    app = WizardApp(recipe=path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("tuning")
        await pilot.pause()
        tuner = app.tuner
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert tuner.running
        await _until(pilot, lambda: any(r["state"] == "complete" for r in tuner.rows), what="a finished trial")
        await pilot.press("ctrl+o")
        await _until(pilot, lambda: not tuner.running, 120, "the search to stop")
        assert tuner.outcome == "interrupted", tuner.message
        table = app.screen.query_one("#trials")
        assert table.row_count == len(tuner.rows) >= 1
        assert "interrupted" in text_of(app.screen.query_one("#search-status"))

        await pilot.press("ctrl+t")  # resume the same study
        await pilot.pause()
        await _until(pilot, lambda: not tuner.running, 240, "the search to finish")
        assert tuner.outcome == "finished", tuner.message
        assert sum(r["state"] == "complete" for r in tuner.rows) == 2
        assert app.screen.query_one("#best-chart").series  # the best-so-far curve

        best = min((r for r in tuner.rows if r["state"] == "complete"), key=lambda r: r["value"])
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert app.state.recipe.train.lr == pytest.approx(best["params"]["train.lr"])
        app.goto_step("training")  # its form shows the value taken
        await pilot.pause()
        lr = app.screen.query_one("SectionForm").controls["lr"].value
        assert float(lr) == pytest.approx(best["params"]["train.lr"])


async def test_finetune_path_from_welcome_to_the_task_metrics(tmp_path, monkeypatch):
    """Welcome → fine-tune the selected run: the examples previewed with their label counts, LoRA's trainable
    parameters counted, then trained as its own process and evaluated with the task's metrics."""
    import csv

    from llmtui.config.loader import recipe_from_dict
    from llmtui.pipeline import Pipeline
    from tests.helpers import WORDS

    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus")
    base = recipe_from_dict(tiny_recipe_dict(Path("corpus"), Path("runs"), train={"steps": 10}))
    Pipeline(base, base_dir=tmp_path).execute(until="train")
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(60):
            writer.writerow(
                [
                    " ".join(WORDS[(i * 3 + k) % 12 + (12 if i % 3 == 0 else 0)] for k in range(4)),
                    "first" if i % 3 == 0 else "second",
                ]
            )

    app = WizardApp(base_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f")  # the selected (only) run is the base
        await pilot.pause()
        assert app.screen.name == "finetune"
        assert app.state.recipe.finetune.base == "tiny" and app.state.recipe.run.name == "tiny-finetune"
        assert app.state.recipe.model == base.model  # the base's architecture: the costs and Model step show it
        form = app.screen.query_one("SectionForm")
        form.controls["task"].value = "classification"
        form.controls["train_file"].value = "labels.csv"
        form.controls["method"].value = "lora"
        form.controls["lora_rank"].value = "2"
        await pilot.pause()
        assert form.errors == {}
        form.controls["lora_rank"].focus()  # the keys work from inside a field too
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause()
        preview = text_of(app.screen.query_one("#ft-preview"))
        assert "60 examples in labels.csv" in preview
        assert "first" in preview and " 20 " in preview and " 40 " in preview  # the label counts
        await pilot.press("ctrl+g")
        await app.workers.wait_for_complete()
        await pilot.pause()
        counted = text_of(app.screen.query_one("#ft-params"))
        assert "parameters trainable" in counted and "LoRA rank 2" in counted and "MiB" in counted, counted

        app.state.try_update(
            "train", {"steps": 10, "eval_every": 5, "checkpoint_every": 5, "batch_size": 8, "jit_compile": False}
        )
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.name == "training"
        app.goto_step("review")
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen.name == "train"
        assert list(app.controller.monitor.stages) == ["data", "tokenizer", "model", "train", "eval"]
        await wait_for_run(app, pilot)
        assert app.controller.outcome == "finished", app.controller.monitor.log
        app.goto_step("evaluate")
        await pilot.pause()
        metrics = text_of(app.screen.query_one("#metrics"))
        assert "task.accuracy" in metrics and "task.macro_f1" in metrics and "Confusion matrix" in metrics


async def test_evaluate_opens_the_report_and_serves_tensorboard(tmp_path, monkeypatch):
    import json
    import urllib.request

    from llmtui.config.loader import recipe_from_dict, save_recipe

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "done"
    (run / "eval").mkdir(parents=True)
    (run / "logs" / "train").mkdir(parents=True)
    save_recipe(
        recipe_from_dict(tiny_recipe_dict(Path("corpus"), Path("runs"), run={"name": "done"})), run / "recipe.toml"
    )
    (run / "eval" / "report.json").write_text(json.dumps({"loss": 1.5, "perplexity": 4.48}), encoding="utf-8")
    (run / "eval" / "report.html").write_text("<html>report</html>", encoding="utf-8")
    app = WizardApp(run=run)
    opened: list[str] = []
    monkeypatch.setattr(app, "open_url", lambda url, **kwargs: opened.append(url))  # no browser in tests
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.name == "evaluate"
        await pilot.press("o")
        assert opened == [(run / "eval" / "report.html").resolve().as_uri()]
        await pilot.press("b")
        await pilot.pause()
        line = text_of(app.screen.query_one("#tensorboard-line"))
        address = line.split(" at ")[1].split()[0]
        assert address.startswith("http://127.0.0.1:")
        process = app.tensorboard.process

        def answers() -> bool:
            try:
                return urllib.request.urlopen(address, timeout=2).status == 200
            except OSError:
                return False

        await _until(pilot, answers, 120, "TensorBoard to answer")
    assert process.wait(timeout=20) is not None  # stopped with the wizard


async def test_compare_screen_shows_evaluated_runs_side_by_side_with_their_curves(tmp_path, monkeypatch):
    import json

    from llmtui import events as ev
    from llmtui.config.loader import recipe_from_dict, save_recipe
    from llmtui.eventlog import EventLogSink

    monkeypatch.chdir(tmp_path)
    for name, losses in (("small", (2.4, 2.1)), ("large", (2.2, 1.8))):
        run = tmp_path / "runs" / name
        (run / "eval").mkdir(parents=True)
        save_recipe(
            recipe_from_dict(tiny_recipe_dict(Path("corpus"), Path("runs"), run={"name": name})), run / "recipe.toml"
        )
        (run / "eval" / "report.json").write_text(
            json.dumps({"loss": losses[-1], "perplexity": 2.718 ** losses[-1]}), encoding="utf-8"
        )
        sink = EventLogSink(run / "events.jsonl")
        sink(ev.RunStarted(run_dir=str(run), stages=("train",), backend="jax"))
        for step, loss in zip((20, 40), losses):
            sink(ev.Metrics(step=step, split="val", values={"loss": loss}))
        sink(ev.RunFinished(run_dir=str(run), seconds=1.0))
    (tmp_path / "runs" / "unevaluated").mkdir()
    (tmp_path / "runs" / "unevaluated" / "recipe.toml").write_text("", encoding="utf-8")
    app = WizardApp(base_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "CompareScreen"
        assert app.screen.query_one("#compare-runs").option_count == 2  # only the evaluated runs
        table = app.screen.query_one("#compare-table").content
        assert [c.header for c in table.columns][1:] == ["large", "small"]
        loss_row = [
            str(
                c._cells[
                    [r.plain if hasattr(r, "plain") else r for r in table.columns[0]._cells].index("validation loss ↓")
                ]
            )
            for c in table.columns[1:]
        ]
        assert loss_row[0].startswith("[bold green]") and not loss_row[1].startswith("[bold green]")  # large best
        chart = app.screen.query_one("#compare-chart")
        assert {name: [p[1] for p in points] for name, (_, points) in chart.series.items()} == {
            "large": [2.2, 1.8],
            "small": [2.4, 2.1],
        }
        await pilot.press("space")  # tick the first run out: one left
        await pilot.pause()
        assert len(app.screen.query_one("#compare-table").content.columns) == 2
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "WelcomeScreen"


async def test_playground_answers_with_a_qa_run(tmp_path, monkeypatch):
    """A qa fine-tune in the Playground: the task box answers (the prompt template applied as in training)."""
    import json

    from llmtui.config.loader import recipe_from_dict
    from llmtui.pipeline import Pipeline, pipeline_for
    from tests.helpers import WORDS

    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus")
    base = recipe_from_dict(tiny_recipe_dict(Path("corpus"), Path("runs"), train={"steps": 10}))
    Pipeline(base, base_dir=tmp_path).execute(until="train")
    with open(tmp_path / "pairs.jsonl", "w", encoding="utf-8") as handle:
        for i in range(30):
            words = [WORDS[i % len(WORDS)], WORDS[(i * 7) % len(WORDS)]]
            handle.write(json.dumps({"input": " ".join(words), "target": " ".join(reversed(words))}) + "\n")
    qa = tiny_recipe_dict(
        Path("corpus"),
        Path("runs"),
        run={"name": "qa"},
        train={"steps": 10, "eval_every": 10, "checkpoint_every": 10, "jit_compile": False},
    )
    qa["finetune"] = {"base": "tiny", "task": "qa", "train_file": "pairs.jsonl", "max_answer_tokens": 6}
    pipeline_for(recipe_from_dict(qa), base_dir=tmp_path).execute()

    app = WizardApp(run=tmp_path / "runs" / "qa")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.goto_step("playground")
        await pilot.pause()
        assert "Answer (qa)" in text_of(app.screen.query_one("#classify-line"))
        field = app.screen.query_one("#classify-text")
        field.focus()
        field.value = "the model"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = text_of(app.screen.query_one("#classify-out"))
        assert shown.startswith("the model →") and "error" not in shown, shown
        assert isinstance(app.screen.last_output, str)


async def test_finetune_step_takes_a_pretrained_base_and_previews_chat_conversations(tmp_path, monkeypatch):
    """A Hugging Face model folder as the base: the Model step takes its architecture from its config, the chat
    task previews the conversations, and counting imports the base and counts its trainable parameters."""
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    if any(importlib.util.find_spec(name) is None for name in ("torch", "transformers")):
        pytest.skip("needs the test extra: torch (CPU) and transformers")
    from tests.test_import import BUILD_SCRIPT

    monkeypatch.chdir(tmp_path)
    built = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(tmp_path / "hf"), "the model reads text"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert built.returncode == 0, built.stderr[-2000:]
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": f"hi {i}"}]}
            )
            + "\n"
            for i in range(7)
        ),
        encoding="utf-8",
    )
    app = WizardApp(base_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.new_finetune("")
        await pilot.pause()
        assert app.screen.name == "finetune"
        assert "pretrained model" in text_of(app.screen.query_one("#ft-bases"))
        form = app.screen.query_one("SectionForm")
        form.controls["base"].value = "hf/gpt2"
        form.controls["task"].value = "chat"
        form.controls["train_file"].value = "chats.jsonl"
        form.controls["method"].value = "lora"
        form.controls["lora_rank"].value = "2"
        await pilot.pause()
        assert form.errors == {}
        model = app.state.recipe.model
        assert (model.arch, model.layers, model.dim, model.heads) == ("gpt", 2, 32, 4)  # from its config.json
        await pilot.press("ctrl+r")
        await pilot.pause()
        preview = text_of(app.screen.query_one("#ft-preview"))
        assert "7 examples in chats.jsonl" in preview and "user: hello 0 | assistant: hi 0" in preview
        await pilot.press("ctrl+g")
        await app.workers.wait_for_complete()
        await pilot.pause()
        counted = text_of(app.screen.query_one("#ft-params"))
        assert "parameters trainable" in counted and "LoRA rank 2" in counted and "gpt, 2 layers, 32 wide" in counted

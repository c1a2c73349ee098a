"""The whole pipeline on a tiny real corpus and a tiny real model (TensorFlow backend, XLA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmtui.config import recipe_from_dict
from llmtui.errors import LlmtuiError, RunFolderError
from llmtui.events import EventRecorder, Metrics, RunFinished, Sample, StageFinished, StageSkipped, TrainingStarted
from llmtui.pipeline import STAGES, Pipeline
from tests.helpers import tiny_recipe_dict


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One tiny end-to-end run shared by the tests below (training a model is the slow part)."""
    from tests.helpers import write_corpus

    root = tmp_path_factory.mktemp("e2e")
    corpus = write_corpus(root / "corpus")
    recipe = recipe_from_dict(tiny_recipe_dict(corpus, root / "runs"))
    recorder = EventRecorder()
    summary = Pipeline(recipe, base_dir=root, sinks=[recorder]).execute()
    return recipe, root, recorder, summary


def test_artifacts_exist(finished_run):
    recipe, root, _, summary = finished_run
    run = root / "runs" / "tiny"
    for relative in [
        "recipe.toml",
        "manifest.json",
        "data/train.jsonl",
        "data/val.jsonl",
        "data/report.json",
        "tokenizer/tokenizer.json",
        "tokenizer/train.bin",
        "model/architecture.json",
        "model/final.keras",
        "eval/report.json",
        "generate/samples.json",
    ]:
        assert (run / relative).is_file(), relative
    assert any((run / "checkpoints").glob("step_*/model.npz"))
    assert (run / "checkpoints/best/best.json").is_file()
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["stages"]) == set(STAGES)
    assert all(manifest["stages"][s]["seconds"] >= 0 for s in STAGES)
    assert manifest["versions"]["keras"]
    assert summary["run_dir"] == str(run)


def test_loss_fell_and_report_has_its_keys(finished_run):
    _, root, recorder, summary = finished_run
    train = [e for e in recorder.of_type(Metrics) if e.split == "train"]
    assert train[-1].values["loss"] < train[0].values["loss"] - 0.5
    report = json.loads((root / "runs/tiny/eval/report.json").read_text())
    for key in ("loss", "perplexity", "bits_per_byte", "vocab_size"):
        assert key in report
    assert report["loss"] < report["uniform_loss"]  # better than guessing uniformly
    assert report["perplexity"] == pytest.approx(2.718281828 ** report["loss"], rel=1e-6)
    assert summary["val_loss"] == pytest.approx(report["loss"])


def test_events_cover_the_run(finished_run):
    _, _, recorder, _ = finished_run
    assert [e.stage for e in recorder.of_type(StageFinished)] == list(STAGES)
    assert recorder.of_type(TrainingStarted)[0].parameters > 0
    assert any(e.split == "val" for e in recorder.of_type(Metrics))
    samples = recorder.of_type(Sample)
    assert samples and all(isinstance(s.text, str) for s in samples)
    assert len(recorder.of_type(RunFinished)) == 1


def test_tensorboard_events_read_back(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, root, _, _ = finished_run
    train = EventAccumulator(str(root / "runs/tiny/logs/train"))
    train.Reload()
    assert {"loss", "lr", "tokens_per_sec"} <= set(train.Tags()["scalars"])
    losses = [e.value for e in train.Scalars("loss")]
    assert losses[-1] < losses[0]
    val = EventAccumulator(str(root / "runs/tiny/logs/val"))
    val.Reload()
    assert "loss" in val.Tags()["scalars"]
    assert [e.step for e in val.Scalars("loss")] == [20, 40]


def test_rerun_skips_unchanged_stages(finished_run):
    recipe, root, _, _ = finished_run
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=root, sinks=[recorder]).execute()
    assert [e.stage for e in recorder.of_type(StageSkipped)] == list(STAGES)


def test_changed_generation_settings_only_redo_generation(finished_run):
    recipe, root, _, _ = finished_run
    changed = recipe.model_copy(deep=True)
    changed.generate.max_tokens = 5
    recorder = EventRecorder()
    Pipeline(changed, base_dir=root, sinks=[recorder]).execute()
    assert [e.stage for e in recorder.of_type(StageSkipped)] == list(STAGES[:-1])
    assert [e.stage for e in recorder.of_type(StageFinished)] == ["generate"]


def test_a_locked_run_folder_is_refused(finished_run):
    recipe, root, _, _ = finished_run
    holder = Pipeline(recipe, base_dir=root).run
    holder.lock()
    try:
        with pytest.raises(RunFolderError, match="is in use by pid"):
            Pipeline(recipe, base_dir=root).execute(until="data")
    finally:
        holder.unlock()


def test_until_stops_after_the_stage(tmp_path, corpus):
    recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs"))
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=tmp_path, sinks=[recorder]).execute(until="tokenizer")
    assert [e.stage for e in recorder.of_type(StageFinished)] == ["data", "tokenizer"]
    assert not (tmp_path / "runs/tiny/model").exists()
    with pytest.raises(LlmtuiError, match="unknown stage"):
        Pipeline(recipe, base_dir=tmp_path).execute(until="nope")


def test_context_longer_than_the_text_is_a_clear_error(tmp_path, corpus):
    recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs", model={"context": 100_000}))
    with pytest.raises(LlmtuiError, match="too little text for model.context=100000"):
        Pipeline(recipe, base_dir=tmp_path).execute(until="tokenizer")


def test_interrupt_saves_and_rerun_resumes(tmp_path, corpus):
    """Ctrl-C (KeyboardInterrupt) right after the step-20 checkpoint; the same recipe again continues at 20."""
    from llmtui.events import CheckpointSaved
    from llmtui.training.trainer import TrainingInterrupted

    recipe = recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs", train={"steps": 40, "checkpoint_every": 20}))

    pressed = []

    def press_ctrl_c(event):
        if isinstance(event, CheckpointSaved) and not pressed:
            pressed.append(event.step)
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stopped:
        Pipeline(recipe, base_dir=tmp_path, sinks=[press_ctrl_c]).execute()
    assert stopped.value.step == 20 and stopped.value.checkpoint.name == "step_0000020"
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=tmp_path, sinks=[recorder]).execute()
    assert recorder.of_type(TrainingStarted)[0].start_step == 20
    steps = [e.step for e in recorder.of_type(Metrics) if e.split == "train"]
    assert steps[0] > 20 and steps[-1] == 40
    assert [e.stage for e in recorder.of_type(StageSkipped)] == ["data", "tokenizer", "model"]


def test_jax_backend_runs_the_same_recipe(tmp_path, corpus):
    """The same tiny recipe on KERAS_BACKEND=jax, in its own process (a process has one backend)."""
    pytest.importorskip("jax")
    recipe = tmp_path / "tiny.toml"
    import tomli_w

    recipe.write_text(tomli_w.dumps(tiny_recipe_dict(corpus, tmp_path / "runs")), encoding="utf-8")
    env = {**os.environ, "KERAS_BACKEND": "jax", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "run", str(recipe)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backend jax" in result.stdout
    report = json.loads((tmp_path / "runs/tiny/eval/report.json").read_text())
    assert report["loss"] < report["uniform_loss"]
    manifest = json.loads((tmp_path / "runs/tiny/manifest.json").read_text())
    assert "jax" in manifest["versions"]


def test_tensorboard_command_serves_the_run_on_loopback(finished_run):
    import socket
    import time
    import urllib.request

    _, root, _, _ = finished_run
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "llmtui", "tensorboard", str(root / "runs/tiny"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}/" in server.stdout.readline()
        runs = None
        deadline = time.time() + 60
        while time.time() < deadline and runs is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2) as reply:
                    runs = json.loads(reply.read())
            except OSError:
                time.sleep(0.5)
        assert runs is not None and {"train", "val"} <= set(runs)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, corpus):
    from llmtui.errors import TrainingError

    recipe = recipe_from_dict(
        tiny_recipe_dict(
            corpus,
            tmp_path / "runs",
            train={
                "steps": 200,
                "optimizer": "sgd",
                "lr": 10.0,
                "schedule": "constant",
                "warmup_steps": 0,
                "grad_clip": 0.0,
                "checkpoint_every": 1,
                "keep_checkpoints": 1,
                "eval_every": 1000,
            },
        )
    )
    with pytest.raises(
        TrainingError, match=r"the training loss became (nan|inf) at step \d+; the last good checkpoint"
    ):
        Pipeline(recipe, base_dir=tmp_path).execute()
    assert list((tmp_path / "runs/tiny/checkpoints").glob("step_*/state.json"))
    assert not (tmp_path / "runs/tiny/model/final.keras").exists()


def test_shakespeare_fast_recipe_runs_from_the_shipped_text_and_validates_on_its_end(tmp_path):
    """recipes/shakespeare-fast.toml runs as written (shrunk to a few steps) from assets/tinyshakespeare.txt,
    holds out the last 10% of the text for validation, logs validation loss with wall times, says which
    precision and compiler it chose, and writes no samples during training (`train.eval_samples = false`)."""
    from pathlib import Path

    from llmtui.config import load_recipe
    from llmtui.data.prepare import read_split
    from llmtui.evaluation.tensorboard_logs import read_log_walls
    from llmtui.events import Message

    repo = Path(__file__).resolve().parents[1]
    recipe = load_recipe(
        repo / "recipes" / "shakespeare-fast.toml",
        [
            f"run.out_dir={tmp_path}",
            "train.steps=4",
            "model.layers=1",
            "model.dim=32",
            "train.batch_size=4",
            "train.warmup_steps=1",
            "train.eval_every=2",
            "train.eval_batches=2",
            "eval.max_batches=2",
            "generate.max_tokens=5",
            "train.log_every=2",
        ],
    )
    recorder = EventRecorder()
    pipeline = Pipeline(recipe, repo, [recorder])
    pipeline.execute()
    text = (repo / "assets" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    val = "\n".join(read_split(pipeline.run.data_dir / "val.jsonl"))
    assert text.rstrip().endswith(val.rstrip()[-2000:])  # validation is the end of the text
    assert abs(len(val) / len(text) - 0.1) < 0.02
    walls = read_log_walls(pipeline.run.logs_dir / "val")["loss"]
    assert [step for step, _, _ in walls] == [2, 4] and walls[0][1] <= walls[1][1]
    assert any(
        isinstance(e, Message) and e.text.startswith("precision float32 (auto:") and "XLA" in e.text
        for e in recorder.events
    )
    # The eval message names the report where it stays, not the stage's staging copy.
    report_line = next(e.text for e in recorder.events if isinstance(e, Message) and e.text.startswith("eval: "))
    assert report_line.endswith(str(pipeline.run.root / "eval" / "report.html"))
    assert (pipeline.run.root / "eval" / "report.html").is_file()
    # eval_samples = false: no sample during training (the generate stage's own samples have step -1).
    samples = [e.step for e in recorder.events if isinstance(e, Sample)]
    assert samples and all(step == -1 for step in samples)

"""Stateful (truncated-BPTT) training of recurrent models: contiguous lanes, the state carried between batches
and zeroed at each end-of-text token, evaluation the same way, and exact resume."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.data.tokens import StreamBatches, stream_windows
from llmtui.events import EventRecorder, Message
from llmtui.models import build_model
from llmtui.models.recurrent import stateful_twin
from llmtui.pipeline import Pipeline
from tests.helpers import tiny_recipe_dict

EOS = 3


def small_model(arch, **extra):
    config = recipe_from_dict({"model": {"arch": arch, "layers": 2, "dim": 16, "context": 8, **extra}}).model
    return build_model(config, 30, seed=0), config


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
def test_twin_carries_the_state_and_restarts_at_end_of_text(arch):
    model, config = small_model(arch)
    twin = stateful_twin(model, config, 3, reset_id=EOS)
    ids = np.random.default_rng(0).integers(4, 30, size=(3, 16)).astype("int32")
    whole = np.asarray(model.predict_on_batch(ids))
    first = np.asarray(twin.predict_on_batch([ids[:, :8], np.ones(3, "float32")]))
    second = np.asarray(twin.predict_on_batch([ids[:, 8:], np.zeros(3, "float32")]))
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-4, atol=1e-5)
    # An end-of-text token at position 5: from there on, the outputs are those of a fresh start at 5.
    ids[:, 5] = EOS
    carried = np.asarray(twin.predict_on_batch([ids[:, :8], np.zeros(3, "float32")]))
    np.testing.assert_allclose(carried[:, 5:], np.asarray(model.predict_on_batch(ids[:, 5:8])), rtol=1e-4, atol=1e-5)
    # reset = 1 starts a lane from zero, whatever the state carried.
    restarted = np.asarray(twin.predict_on_batch([ids[:, 8:], np.ones(3, "float32")]))
    np.testing.assert_allclose(restarted, np.asarray(model.predict_on_batch(ids[:, 8:])), rtol=1e-4, atol=1e-5)


class _Carried(keras.layers.Layer):
    """Runs a recurrent layer from states computed from its input, through its own backward pass or through
    Keras' loop and autodiff."""

    def __init__(self, name: str, hand_written: bool, **kwargs):
        super().__init__(**kwargs)
        from llmtui.models.recurrent_layers import RECURRENT_LAYERS

        self.hand_written = hand_written
        self.recurrent = RECURRENT_LAYERS[name](6, return_sequences=True, bias_initializer="random_normal")
        self.states = [keras.layers.Dense(6, activation="tanh") for _ in range(2 if name == "lstm" else 1)]

    def build(self, shape):
        self.recurrent.build(shape)
        for dense in self.states:
            dense.build((shape[0], shape[1] * shape[2]))

    def call(self, x):
        from keras import ops

        summary = ops.reshape(x, (ops.shape(x)[0], -1))
        keep = ops.expand_dims(ops.cast(x[..., 0] > 0.5, "float32"), -1)  # some steps restart
        layer = self.recurrent
        assert layer._hand_written()
        runner = layer.run_carried if self.hand_written else layer._carried_loop
        outputs, finals = runner(x, [dense(summary) for dense in self.states], keep)
        return ops.concatenate([ops.reshape(outputs, (ops.shape(x)[0], -1)), *finals], axis=-1)


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
def test_backward_with_restarts_matches_autodiff(arch):
    from tests.helpers import assert_trains_alike

    x = np.random.default_rng(0).normal(size=(3, 7, 5)).astype("float32")
    y = np.random.default_rng(1).normal(size=(3, 7 * 6 + 6 * (2 if arch == "lstm" else 1))).astype("float32")
    assert (x[..., 0] > 0.5).any() and (x[..., 0] <= 0.5).any()

    def model(hand_written):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((7, 5), batch_size=3)
        m = keras.Model(inputs, _Carried(arch, hand_written)(inputs))
        m.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return m

    assert_trains_alike(model(True), model(False), x, y)


def test_stream_batches_are_contiguous_lanes_and_resume_exactly():
    tokens = np.arange(100, dtype=np.uint16)
    stream = StreamBatches(tokens, context=4, batch_size=3)  # lanes of 33 tokens: 8 windows an epoch
    assert (stream.lane_length, stream.windows) == (33, 8)
    (x0, reset0), y0 = stream.next_batch()
    (x1, reset1), y1 = stream.next_batch()
    assert x0.tolist() == [[0, 1, 2, 3], [33, 34, 35, 36], [66, 67, 68, 69]]
    assert x1[:, 0].tolist() == [4, 37, 70] and (y1 == x1 + 1).all()
    assert reset0.tolist() == [1.0] * 3 and reset1.tolist() == [0.0] * 3
    saved = stream.state()
    after = [stream.next_batch() for _ in range(7)]
    assert after[-1][0][1].tolist() == [1.0] * 3 and after[-1][0][0][:, 0].tolist() == [0, 33, 66]  # a new epoch
    again = StreamBatches(tokens, context=4, batch_size=3)
    again.set_state(saved)
    assert all((a[0][0] == b[0][0]).all() for a, b in zip(after, [again.next_batch() for _ in range(7)]))
    with pytest.raises(ValueError, match="batch_size x context"):
        StreamBatches(np.arange(10), context=4, batch_size=3)


def test_stream_windows_score_every_lane_token_once():
    tokens = np.arange(23)
    windows = list(stream_windows(tokens, context=4, batch_size=2))  # lanes of 11: windows of 4, 4, 3
    assert [x.shape for x, *_ in windows] == [(2, 4), (2, 4), (2, 3)]
    predicted = sorted(int(t) for _, _, y, _ in windows for t in y.ravel())
    assert predicted == list(range(1, 12)) + list(range(12, 23))
    assert [reset.tolist() for _, reset, _, _ in windows] == [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]


def run_stateful(corpus, root, sinks=(), **train):
    recipe = recipe_from_dict(
        tiny_recipe_dict(
            corpus,
            root / "runs",
            model={"arch": "lstm", "layers": 1, "dim": 32, "dropout": 0.1, "embedding_dropout": 0.1},
            train={"stateful": True, "batch_size": 4, **train},
        )
    )
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=root, sinks=[recorder, *sinks]).execute(until="eval")
    return recorder, json.loads((root / "runs/tiny/eval/report.json").read_text())


def test_stateful_run_interrupted_and_resumed_ends_like_an_uninterrupted_one(tmp_path, corpus):
    """The feed position and the carried states are in the checkpoint: a resumed run ends where a straight one does."""
    from llmtui.events import CheckpointSaved
    from llmtui.training.trainer import TrainingInterrupted

    _, straight = run_stateful(corpus, tmp_path / "a", steps=30, checkpoint_every=10, eval_every=15)
    assert straight["loss"] < straight["uniform_loss"]
    pressed = []

    def ctrl_c_once(event):
        if isinstance(event, CheckpointSaved) and not pressed:
            pressed.append(event.step)
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        run_stateful(corpus, tmp_path / "b", sinks=[ctrl_c_once], steps=30, checkpoint_every=10, eval_every=15)
    assert pressed == [10]
    state = json.loads((tmp_path / "b/runs/tiny/checkpoints/step_0000010/state.json").read_text())
    assert state["sampler"] == {"position": 10}
    recorder, resumed = run_stateful(corpus, tmp_path / "b", steps=30, checkpoint_every=10, eval_every=15)
    assert any("resuming from checkpoint step_0000010" in e.text for e in recorder.of_type(Message))
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5, abs=1e-5)

    # `llmtui eval RUN --data FILE` scores a file the same (stateful) way.
    from llmtui.evaluation.run_eval import evaluate_run
    from llmtui.runfolder import RunFolder

    sample = tmp_path / "sample.txt"
    sample.write_text("the model reads the text\n" * 20, encoding="utf-8")
    report = evaluate_run(RunFolder(tmp_path / "b/runs/tiny"), [sample], max_batches=0)
    scored = report["files"][str(sample)]
    assert scored["tokens"] == scored["file_tokens"] - 1 - (scored["file_tokens"] - 1) % 4  # 4 lanes, in full
    assert 0 < scored["bits_per_byte"] < 10


def test_stateful_needs_a_recurrent_model_on_the_command_line(tmp_path):
    import tomli_w

    path = tmp_path / "r.toml"
    path.write_text(tomli_w.dumps({"model": {"arch": "gpt"}, "train": {"stateful": True}}), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "train.stateful" in result.stderr and "rnn, lstm or gru" in result.stderr
    assert "Traceback" not in result.stderr

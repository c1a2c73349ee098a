"""The recipe options found to matter for recurrent models' quality (issue 18): the plateau learning-rate
schedule, the recurrent and embedding initialisation, and the learning-rate bound."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.errors import RecipeError
from llmtui.events import EventRecorder, Message, Metrics
from llmtui.models import build_model
from llmtui.pipeline import Pipeline
from tests.helpers import tiny_recipe_dict


def test_plateau_divides_the_learning_rate_when_validation_stalls_and_checkpoints_it(tmp_path, corpus):
    recipe = recipe_from_dict(
        tiny_recipe_dict(
            corpus,
            tmp_path / "runs",
            train={
                "steps": 30,
                "optimizer": "sgd",
                "momentum": 0.0,
                "nesterov": False,
                "lr": 1e-12,
                "warmup_steps": 0,
                "schedule": "plateau",
                "plateau_factor": 0.5,
                "plateau_patience": 1,
                "eval_every": 10,
                "checkpoint_every": 10,
                "log_every": 10,
            },
        )
    )
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=tmp_path, sinks=[recorder]).execute(until="train")
    lrs = [e.values["lr"] for e in recorder.of_type(Metrics) if e.split == "train"]
    # Evaluation at 10 sets the best; at 20 and 30 nothing improves at lr 1e-12: halved after 20 (step 30 is the end).
    assert lrs[0] == pytest.approx(1e-12) and lrs[1] == pytest.approx(1e-12) and lrs[2] == pytest.approx(5e-13)
    assert sum("learning rate lowered" in e.text for e in recorder.of_type(Message)) == 2
    with np.load(tmp_path / "runs/tiny/checkpoints/step_0000020/optimizer.npz") as saved:
        assert any(math.isclose(float(saved[k]), 5e-13, rel_tol=1e-5) for k in saved.files if saved[k].shape == ())


def test_plateau_refuses_a_warmup():
    with pytest.raises(RecipeError, match="warmup_steps = 0"):
        recipe_from_dict({"train": {"schedule": "plateau", "warmup_steps": 10}})


def test_learning_rate_of_the_classic_sgd_recipe_is_allowed():
    assert recipe_from_dict({"train": {"optimizer": "sgd", "lr": 20}}).train.lr == 20
    with pytest.raises(RecipeError, match="lr"):
        recipe_from_dict({"train": {"lr": 1000}})


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
def test_uniform_recurrent_init_and_embedding_bound(arch):
    config = recipe_from_dict(
        {"model": {"arch": arch, "layers": 1, "dim": 64, "recurrent_init": "uniform", "embedding_init": 0.1}}
    ).model
    model = build_model(config, 50, seed=0)
    bound = 1 / math.sqrt(64)
    for weight in model.get_layer(f"{arch}_0").weights:
        values = np.asarray(weight)
        assert np.abs(values).max() <= bound + 1e-6 and values.std() > bound / 3, weight.name
    table = np.asarray(model.get_layer("token_embedding").embeddings)
    assert np.abs(table).max() <= 0.1 + 1e-6 and table.std() > 0.04


def test_output_bias_is_learned_used_by_the_cached_decoder_and_the_twin_and_saved(tmp_path):
    import keras

    from llmtui.generation.decoder import RecurrentDecoder
    from llmtui.models.recurrent import stateful_twin

    config = recipe_from_dict(
        {"model": {"arch": "lstm", "layers": 1, "dim": 16, "context": 8, "output_bias": True}}
    ).model
    model = build_model(config, 30, seed=0)
    bias = model.get_layer("output_bias").bias
    bias.assign(np.linspace(-2, 2, 30).astype("float32"))  # as if trained
    ids = np.array([[5, 6, 7, 8]], "int32")
    full = np.asarray(model.predict_on_batch(ids))[:, -1]
    decoder = RecurrentDecoder(model, 8)
    logits, _ = decoder.step(ids, decoder.initial_state(1), 0, 3)
    np.testing.assert_allclose(logits, full, rtol=1e-4, atol=1e-4)
    twin = stateful_twin(model, config, 1, reset_id=3)
    np.testing.assert_allclose(
        np.asarray(twin.predict_on_batch([ids, np.ones(1, "float32")]))[:, -1], full, rtol=1e-4, atol=1e-4
    )
    model.save(tmp_path / "m.keras")
    import llmtui.export.custom_objects  # noqa: F401

    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(ids))[:, -1], full, rtol=1e-5, atol=1e-5)
    gpt = build_model(
        recipe_from_dict({"model": {"arch": "gpt", "layers": 1, "dim": 16, "heads": 2, "output_bias": True}}).model, 30
    )
    assert "output_bias" not in {layer.name for layer in gpt.layers}  # a recurrent-only option


def test_ladder_from_a_stateful_lstm_recipe_keeps_recurrent_options_to_recurrent_rungs(tmp_path, monkeypatch):
    import tomli_w
    from typer.testing import CliRunner

    from llmtui.cli.app import app
    from tests.test_tuning import tune_dict

    data = tune_dict(tmp_path, name="ladder")
    data["model"].update(arch="lstm", output_bias=True)
    data["train"].update(steps=5, stateful=True, batch_size=4)
    (tmp_path / "r.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ladder", "r.toml", "--archs", "lstm,gpt"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "ladder" / "ladder"
    recipes = {arch: json.loads((folder / arch / "manifest.json").read_text())["recipe"] for arch in ("lstm", "gpt")}
    assert recipes["lstm"]["train"]["stateful"] and recipes["lstm"]["model"]["output_bias"]
    assert not recipes["gpt"]["train"]["stateful"]

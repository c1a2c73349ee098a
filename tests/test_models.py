"""llmtui/models: every architecture built tiny (shapes, parameters against the cost arithmetic, causality,
save/load), the layers against Keras' own, and the cost estimate (tests/test_embeddings.py covers the token
embeddings' pretrained vectors and Word2Vec)."""

from __future__ import annotations

import typing

import keras
import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.config.recipe import ModelConfig
from llmtui.models import build_model, count_parameters
from llmtui.models.cost import (
    count_model_parameters,
    cpu_flops_per_cycle,
    estimate_cost,
    finetune_cost,
    preflight_problem,
    weight_shapes,
)
from llmtui.training.trainer import compile_model
from tests.helpers import assert_trains_alike, fixed_batches, model_config

ARCHS = ["gpt", "llama", "lstm", "gru", "rnn"]
VOCAB = 40


def test_every_architecture_in_the_recipe_has_a_builder():
    from llmtui.models.build import BUILDERS

    assert set(BUILDERS) == set(typing.get_args(ModelConfig.model_fields["arch"].annotation))


@pytest.mark.parametrize(
    "arch, extra",
    [
        ("gpt", {}),
        ("gpt", {"tie_embeddings": False, "mlp_ratio": 2.0}),
        ("gpt", {"embedding": "onehot"}),
        ("gpt", {"bias": False}),
        ("llama", {}),
        ("llama", {"kv_heads": 1, "tie_embeddings": False}),
        ("llama", {"mlp_ratio": 3.0}),
        ("lstm", {}),
        ("lstm", {"output_bias": False, "tie_embeddings": False}),
        ("lstm", {"embedding": "onehot"}),
        ("gru", {}),
        ("rnn", {"layers": 1}),
    ],
)
def test_built_model_matches_the_cost_arithmetic_and_takes_any_length(arch, extra):
    """What `models/cost.py` says before building (the wizard's and `llmtui model summary`'s figures) is what
    `build_model` builds: every parameter, the embedding's share, and (transformers) every weight's shape."""
    config = model_config(arch, **extra)
    model = build_model(config, VOCAB, seed=0)
    total, embedding = count_model_parameters(config, VOCAB)
    assert count_parameters(model) == total == estimate_cost(config, recipe_from_dict({}).train, VOCAB).parameters
    embedding_paths = ("token_embedding/embeddings", "position_embedding/embeddings")
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights if v.path in embedding_paths) == embedding
    if arch in ("gpt", "llama"):
        assert {v.path: tuple(v.shape) for v in model.trainable_weights} == weight_shapes(config, VOCAB)
    for length in (1, 5, config.context):  # the sequence length is free: generation feeds short prompts
        ids = np.arange(2 * length, dtype="int32").reshape(2, length) % VOCAB
        logits = model(ids)
        assert tuple(logits.shape) == (2, length, VOCAB) and np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_learns_and_round_trips(arch, tmp_path):
    config = model_config(arch)
    model = build_model(config, VOCAB, seed=0)
    # Not XLA: these only check the architectures (the pipeline tests cover XLA-compiled training).
    train = recipe_from_dict(
        {"train": {"lr": 1e-2, "warmup_steps": 0, "schedule": "constant", "jit_compile": False}}
    ).train
    compile_model(model, train)
    losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for x, y in fixed_batches(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    x = fixed_batches(1)[0][0]
    path = tmp_path / "m.keras"
    model.save(path)
    import llmtui.evaluation.language_model  # noqa: F401  (registers custom layers)

    reloaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_the_same_seed_builds_the_same_weights_and_another_seed_others():
    config = model_config("gpt")
    first, again, other = (build_model(config, VOCAB, seed=s).get_weights() for s in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other) if a.size > 1)


def test_blocks_start_different_from_each_other():
    """Each block's initializers are seeded apart: one unseeded initializer shared by the blocks would fill
    every block with the same weights."""
    model = build_model(model_config("gpt"), VOCAB, seed=0)
    first, second = (model.get_layer(f"block_{i}").attention.get_weights()[0] for i in (0, 1))
    assert not np.allclose(first, second)


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_transformers_are_causal(arch):
    model = build_model(model_config(arch, attention_dropout=0.1, dropout=0.1), VOCAB, seed=0)
    x = fixed_batches(1)[0][0]
    changed = x.copy()
    changed[:, 10] = (changed[:, 10] + 1) % VOCAB
    a, b = np.asarray(model(x)), np.asarray(model(changed))
    np.testing.assert_allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert np.abs(a[:, 10:] - b[:, 10:]).max() > 1e-4


def test_llama_uses_grouped_query_attention_without_biases():
    model = build_model(model_config("llama"), VOCAB)
    names = [v.path for v in model.trainable_variables]
    assert not any("bias" in n for n in names)
    qkv = next(v for v in model.trainable_variables if "qkv" in v.path)
    assert qkv.shape == (32, (4 + 2 * 2) * 8)  # 4 query heads, 2 key/value heads of width 8


def test_swiglu_width_keeps_the_gelu_mlps_parameters_in_multiples_of_32():
    from llmtui.models.llama import swiglu_width

    assert swiglu_width(96, 4.0) == 256  # 2/3 of 384, rounded up to a multiple of 32
    assert swiglu_width(768, 4.0) == 2048
    assert swiglu_width(8, 1.0) == 32  # never below 32


@pytest.mark.parametrize(
    "settings",
    [
        {"norm": "layer", "mlp": "gelu", "use_bias": True},
        {"norm": "rms", "mlp": "swiglu", "use_bias": False, "rotary": True, "kv_heads": 2},
    ],
)
def test_decoder_block_config_round_trip_gives_the_same_outputs(settings):
    from llmtui.models.transformer import DecoderBlock

    block = DecoderBlock(heads=4, mlp_dim=48, init_seed=3, name="block", **settings)
    x = np.random.default_rng(0).normal(size=(2, 6, 32)).astype("float32")
    y = np.asarray(block(x))  # (B, T, C)
    assert y.shape == x.shape
    clone = DecoderBlock.from_config(block.get_config())
    clone.build(x.shape)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), y, rtol=1e-6, atol=1e-6)


def test_token_encoding_one_hot_equals_the_lookup_and_projects_to_the_model_width():
    from llmtui.models.token_encoding import TokenEncoding

    ids = np.array([[0, 5, 39, 5]], dtype="int32")
    lookup = TokenEncoding(VOCAB, 16, embedding_dim=8, seed=1)
    one_hot = TokenEncoding(VOCAB, 16, embedding_dim=8, one_hot=True, seed=1)
    lookup.build(ids.shape)
    one_hot.build(ids.shape)
    one_hot.set_weights(lookup.get_weights())
    vectors = np.asarray(lookup(ids))
    assert vectors.shape == (1, 4, 16)  # an 8-wide table projected to the model's 16
    np.testing.assert_allclose(np.asarray(one_hot(ids)), vectors, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(vectors[0, 1], vectors[0, 3])  # the same id, the same vector
    assert tuple(lookup(vectors, reverse=True).shape) == (1, 4, VOCAB)  # tied: logits over the vocabulary


def test_recurrent_embedding_starts_within_its_bound():
    from llmtui.models.recurrent import embedding_limit

    config = model_config("lstm", dim=64)
    assert embedding_limit(config) == pytest.approx(1.0)  # 8 / sqrt(64)
    assert embedding_limit(model_config("lstm", embedding_init=0.1)) == pytest.approx(0.1)
    table = np.asarray(build_model(config, VOCAB, seed=0).get_layer("token_embedding").embeddings)
    assert 0.9 < np.abs(table).max() <= 1.0


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_recurrent_layers_match_keras_own(name):
    """Our recurrent layers project the whole input sequence before the time loop; outputs, and the
    weights after a few optimizer steps, must equal those of Keras' layer with the same weights."""
    from llmtui.models.recurrent_layers import RECURRENT_LAYERS

    stock_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}[name]
    x = np.random.default_rng(0).normal(size=(3, 7, 5)).astype("float32")
    y = np.random.default_rng(1).normal(size=(3, 7, 6)).astype("float32")

    def model(cls):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((7, 5))
        m = keras.Model(inputs, cls(6, return_sequences=True, name="recurrent")(inputs))
        m.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return m

    assert_trains_alike(model(RECURRENT_LAYERS[name]), model(stock_cls), x, y)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_hand_written_backward_matches_keras_through_initial_and_final_states(name):
    """Our layers' own backward passes must also send the right gradients into the initial states and out of
    the final ones: both come from (and feed) trained layers here, and the weights must match Keras'."""
    from llmtui.models.recurrent_layers import RECURRENT_LAYERS

    stock_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}[name]
    count = 2 if name == "lstm" else 1
    x = np.random.default_rng(0).normal(size=(3, 7, 5)).astype("float32")
    y = np.random.default_rng(1).normal(size=(3, 7 * 6 + 6 * count)).astype("float32")

    def model(cls):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((7, 5))
        summary = keras.layers.Flatten()(inputs)
        states = [keras.layers.Dense(6, activation="tanh", name=f"state_{k}")(summary) for k in range(count)]
        # A random bias, so that the GRU's recurrent bias (inside its reset product) counts from the first step.
        layer = cls(6, return_sequences=True, return_state=True, bias_initializer="random_normal", name="recurrent")
        sequence, *finals = layer(inputs, initial_state=states)
        outputs = keras.layers.Concatenate()([keras.layers.Flatten()(sequence), *finals])
        m = keras.Model(inputs, outputs)
        m.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return m

    assert_trains_alike(model(RECURRENT_LAYERS[name]), model(stock_cls), x, y)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_first_layer_projects_token_ids_through_the_embedding_table_exactly(arch):
    """With a learned embedding and no embedding dropout the first recurrent layer's input projection is a
    lookup into embedding @ kernel + bias: the outputs, and the embedding's and kernels' weights after a few
    Adam steps (so the gradients into both), equal the plain path's; the same for the stateful twin."""
    from llmtui.models.recurrent import build_recurrent, stateful_twin

    config = model_config(arch, dim=16, dropout=0.0, embedding_dropout=0.0)
    x, y = fixed_batches(1, VOCAB, batch=3, context=8)[0]

    def models(lookup):
        keras.utils.set_random_seed(0)
        model = build_recurrent(config, VOCAB, 0, token_lookup=lookup)
        assert (model.get_layer(f"{arch}_0")._token_table is not None) == lookup
        twin = stateful_twin(model, config, 3, reset_id=1)
        for m in (model, twin):
            m.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(True))
        return model, twin

    (fast, fast_twin), (plain, plain_twin) = models(True), models(False)
    assert_trains_alike(fast, plain, x, y)
    reset = np.ones(3, "float32")
    assert_trains_alike(fast_twin, plain_twin, [x, reset], y)
    # Anything between the embedding and the layer (here its dropout) keeps the plain projection.
    dropped = build_recurrent(model_config(arch, dim=16, embedding_dropout=0.1), VOCAB, 0)
    assert dropped.get_layer(f"{arch}_0")._token_table is None


def _plain_lstm(p, r, b, states, k):
    h, c = states
    hs = []
    for t in range(p.shape[0]):
        h, c = h * k[t], c * k[t]
        i, f, g, o = keras.ops.split(p[t] + keras.ops.matmul(h, r), 4, axis=-1)
        c = keras.ops.sigmoid(f) * c + keras.ops.sigmoid(i) * keras.ops.tanh(g)
        h = keras.ops.sigmoid(o) * keras.ops.tanh(c)
        hs.append(h)
    return keras.ops.stack(hs), [c]


def _plain_gru(p, r, b, states, k):
    """Keras' GRU cell with reset_after, written out (its `GRUCell.call`)."""
    ops = keras.ops
    (h,) = states
    hs = []
    for t in range(p.shape[0]):
        h = h * k[t]
        x_z, x_r, x_h = ops.split(p[t], 3, axis=-1)
        rec_z, rec_r, rec_h = ops.split(ops.matmul(h, r) + b, 3, axis=-1)
        z, reset = ops.sigmoid(x_z + rec_z), ops.sigmoid(x_r + rec_r)
        h = z * h + (1 - z) * ops.tanh(x_h + reset * rec_h)
        hs.append(h)
    return ops.stack(hs), []


def _plain_rnn(p, r, b, states, k):
    (h,) = states
    hs = []
    for t in range(p.shape[0]):
        h = keras.ops.tanh(p[t] + keras.ops.matmul(h * k[t], r))
        hs.append(h)
    return keras.ops.stack(hs), []


@pytest.mark.parametrize("restarts", [False, True])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_sequence_gradients_match_autodiff_with_static_and_dynamic_length(name, restarts):
    """`lstm_sequence`'s, `gru_sequence`'s and `simple_rnn_sequence`'s own backward passes (time-major; one loop
    sequence per saved quantity when the length is static, joined along the last axis when TensorFlow traces an
    unknown length) against autodiff of a plain loop of the cell, with and without restarts (`keep`): gradients
    of the inputs, the recurrent kernel, the GRU's recurrent bias and the initial states."""
    from keras import ops

    from llmtui.models.recurrent_layers import gru_sequence, lstm_sequence, simple_rnn_sequence

    rng = np.random.default_rng(0)
    steps, batch, units = 6, 3, 4
    gates, count = {"lstm": (4, 2), "gru": (3, 1), "rnn": (1, 1)}[name]
    projected = rng.normal(size=(steps, batch, gates * units)).astype("float32")
    kernel = rng.normal(size=(units, gates * units)).astype("float32") * 0.7
    bias = rng.normal(size=(gates * units,)).astype("float32")
    states = [rng.normal(size=(batch, units)).astype("float32") for _ in range(count)]
    keep = (rng.random((steps, batch, 1)) > 0.3).astype("float32") if restarts else np.ones((steps, batch, 1), "f4")
    w_h, w_c = rng.normal(size=(steps, batch, units)).astype("float32"), rng.normal(size=(batch, units)).astype("f4")

    def ours(p, r, b, k, *s):
        k = k if restarts else None
        if name == "lstm":
            hs, c_last = lstm_sequence(p, *s, r, k)
            return ops.sum(hs * w_h) + ops.sum(c_last * w_c)
        hs = gru_sequence(p, *s, r, b, k) if name == "gru" else simple_rnn_sequence(p, *s, r, k)
        return ops.sum(hs * w_h)

    def plain(p, r, b, k, *s):
        hs, finals = {"lstm": _plain_lstm, "gru": _plain_gru, "rnn": _plain_rnn}[name](p, r, b, list(s), k)
        return ops.sum(hs * w_h) + sum(ops.sum(final * w_c) for final in finals)

    inputs = (projected, kernel, bias, keep, *states)
    watched = [0, 1, 2, *range(4, 4 + count)] if name == "gru" else [0, 1, *range(4, 4 + count)]
    labels = [["projected", "kernel", "bias", "keep", "h0", "c0"][i] for i in watched]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def gradients(fn, length):
            @tf.function(
                input_signature=[
                    tf.TensorSpec((length, *x.shape[1:])) if x.ndim == 3 else tf.TensorSpec(x.shape) for x in inputs
                ]
            )
            def run(*args):
                with tf.GradientTape() as tape:
                    tape.watch([args[i] for i in watched])
                    value = fn(*args)
                return value, tape.gradient(value, [args[i] for i in watched])

            value, grads = run(*inputs)
            return [np.asarray(value)] + [np.asarray(g) for g in grads]

        expected = gradients(plain, steps)
        found = {"static": gradients(ours, steps), "dynamic": gradients(ours, None)}
    else:
        import jax

        def gradients(fn):
            value, grads = jax.value_and_grad(fn, argnums=tuple(watched))(*inputs)
            return [np.asarray(value)] + [np.asarray(g) for g in grads]

        expected, found = gradients(plain), {"static": gradients(ours)}
    for case, values in found.items():
        for label, a, b in zip(["loss", *labels], values, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=f"{case} length: {label}")


def test_cost_estimate_and_preflight():
    recipe = recipe_from_dict(
        {"model": {"arch": "gpt", "layers": 12, "dim": 768, "heads": 12, "context": 1024}, "train": {"batch_size": 8}}
    )
    cost = estimate_cost(recipe.model, recipe.train, 50257)
    assert 120e6 < cost.parameters < 130e6  # GPT-2 small: 124M
    assert cost.flops_per_token == pytest.approx(
        6 * (cost.parameters - cost.embedding_parameters + 50257 * 768) + 12 * 12 * 768 * 1024
    )
    assert preflight_problem(cost, recipe.train, available=1e12) is None
    problem = preflight_problem(cost, recipe.train, available=cost.memory_bytes - cost.activation_bytes / 2)
    assert "train.batch_size=" in problem and "grad_accum_steps=" in problem
    assert "smaller model" in preflight_problem(cost, recipe.train, available=1e6)


def test_lora_fine_tuning_costs_no_gradients_or_optimizer_state():
    recipe = recipe_from_dict({"model": {"arch": "gpt", "layers": 2, "dim": 64, "heads": 2}})
    full = estimate_cost(recipe.model, recipe.train, 1000)
    assert finetune_cost(recipe.model, recipe.train, 1000, "full") == full
    lora = finetune_cost(recipe.model, recipe.train, 1000, "lora")
    assert lora.optimizer_bytes == 0 and lora.memory_bytes == full.weights_bytes + full.activation_bytes
    assert lora.memory_bytes < full.memory_bytes and lora.parameters == full.parameters


def test_cpu_peak_follows_the_instruction_sets():
    assert cpu_flops_per_cycle({"avx512f", "amx_bf16"}, bfloat16=True)[0] == 1024
    assert cpu_flops_per_cycle({"avx512f", "amx_bf16"}, bfloat16=False)[0] == 64  # float32 does not use AMX
    assert cpu_flops_per_cycle({"avx2", "fma"}, bfloat16=True)[0] == 32
    assert cpu_flops_per_cycle(set(), bfloat16=False)[0] == 8

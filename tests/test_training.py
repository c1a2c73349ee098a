"""The training engine: optimizers, schedules, accumulation, resume, backends, precision (the architectures
themselves: tests/test_models.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.events import EventRecorder, Message, Metrics
from llmtui.models import build_model
from llmtui.models.cost import count_model_parameters
from llmtui.pipeline import Pipeline
from llmtui.training.optimizers import make_optimizer
from llmtui.training.schedule import lr_at
from llmtui.training.trainer import compile_model
from tests.helpers import fixed_batches, model_config, tiny_recipe_dict

HERE = Path(__file__).parent


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd", "adagrad", "rmsprop", "lion", "muon"])
def test_each_optimizer_is_built_from_the_recipe_and_trains(optimizer):
    train = recipe_from_dict(
        {"train": {"optimizer": optimizer, "lr": 3e-3, "warmup_steps": 0, "weight_decay": 0.1, "jit_compile": False}}
    ).train
    model = build_model(model_config("gpt"), 40, seed=0)
    compile_model(model, train)
    losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for x, y in fixed_batches(12)]
    assert all(math.isfinite(v) for v in losses)
    assert float(np.asarray(model.optimizer.grad_norm)) > 0
    if getattr(model.optimizer, "weight_decay", None):
        # Weight decay skips biases, norm scales and (by default) embeddings.
        decayed = {v.path for v in model.trainable_variables if model.optimizer._use_weight_decay(v)}
        assert decayed and not any(("bias" in p or "gamma" in p or "beta" in p or "embeddings" in p) for p in decayed)


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_gradient_norm_is_logged_and_clips_like_keras_own(clip):
    """The logged norm is the one clipping uses (computed once per step); the update equals Keras' own
    `global_clipnorm` optimizer's."""
    train = recipe_from_dict(
        {
            "train": {
                "optimizer": "adamw",
                "lr": 1e-2,
                "warmup_steps": 0,
                "schedule": "constant",
                "weight_decay": 0.0,
                "grad_clip": clip,
            }
        }
    ).train
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")]
    grads = [rng.normal(size=(4, 3)).astype("float32") * 3, rng.normal(size=(3,)).astype("float32")]
    ours, theirs = [keras.Variable(v) for v in start], [keras.Variable(v) for v in start]
    optimizer = make_optimizer(train)
    reference = keras.optimizers.AdamW(
        learning_rate=1e-2, weight_decay=0.0, beta_1=train.beta1, beta_2=train.beta2, global_clipnorm=clip or None
    )
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], ours)
    reference.apply([keras.ops.convert_to_tensor(g) for g in grads], theirs)
    norm = math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads))
    assert norm > 1.0 and float(np.asarray(optimizer.grad_norm)) == pytest.approx(norm, rel=1e-5)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_the_training_step_is_traced_once():
    """The optimizer is built with the model, not inside the first traced step: otherwise TensorFlow traces the
    whole step twice (once creating the optimizer's variables, again using them)."""
    model = build_model(model_config("gpt"), 40, seed=0)
    compile_model(model, recipe_from_dict({"train": {"jit_compile": False}}).train)
    assert model.optimizer.built
    traces = []
    step = model.train_step  # called in Python only while a step is being traced
    model.train_step = lambda data: (traces.append(1), step(data))[1]
    for x, y in fixed_batches(3):
        model.train_on_batch(x, y)
    assert len(traces) == 1


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear", "wsd"])
@pytest.mark.parametrize("accum", [1, 3])
def test_keras_schedule_matches_the_plain_definition(schedule, accum):
    train = recipe_from_dict(
        {
            "train": {
                "schedule": schedule,
                "steps": 100,
                "warmup_steps": 10,
                "lr": 1e-3,
                "min_lr_ratio": 0.1,
                "decay_fraction": 0.3,
                "grad_accum_steps": accum,
            }
        }
    ).train
    schedule_fn = make_optimizer(train)._learning_rate  # the optimizer's own schedule object
    for step in (0, 5, 9, 10, 50, 75, 99, 100):
        expected = lr_at(step, 1e-3, 100, 10, schedule, 0.1, 0.3)
        for micro in range(step * accum, (step + 1) * accum):  # every micro-batch of the step
            assert float(np.asarray(schedule_fn(micro))) == pytest.approx(expected, rel=1e-5)
    assert lr_at(99, 1e-3, 100, 10, "cosine", 0.1) == pytest.approx(1e-4, rel=1e-2)
    assert lr_at(50, 1e-3, 100, 10, "wsd", 0.1, 0.3) == pytest.approx(1e-3)  # stable phase


def test_gradient_accumulation_equals_the_larger_batch():
    (x1, y1), (x2, y2) = fixed_batches(2, batch=4)
    big_x, big_y = np.concatenate([x1, x2]), np.concatenate([y1, y2])
    results = []
    for accum, batches in ((1, [(big_x, big_y)]), (2, [(x1, y1), (x2, y2)])):
        keras.utils.set_random_seed(0)
        model = build_model(model_config("gpt"), 40, seed=0)
        compile_model(
            model,
            recipe_from_dict(
                {
                    "train": {
                        "grad_accum_steps": accum,
                        "lr": 1e-2,
                        "warmup_steps": 0,
                        "grad_clip": 0.0,
                        "jit_compile": False,
                    }
                }
            ).train,
        )
        for x, y in batches:
            model.train_on_batch(x, y)
        results.append([np.asarray(v) for v in model.trainable_variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_label_smoothing_raises_the_loss_of_confident_predictions():
    from llmtui.training.trainer import NextTokenLoss

    logits = np.array([[[10.0, 0.0, 0.0]]], dtype="float32")
    targets = np.array([[0]])
    plain = float(np.asarray(NextTokenLoss(0.0)(targets, logits)))
    smooth = float(np.asarray(NextTokenLoss(0.1)(targets, logits)))
    assert smooth > plain
    log_probs = logits[0, 0] - np.log(np.exp(logits[0, 0]).sum())
    assert smooth == pytest.approx(0.9 * -log_probs[0] + 0.1 * -log_probs.mean(), rel=1e-5)


def run_recipe(corpus, root, sinks=(), **train):
    recipe = recipe_from_dict(
        tiny_recipe_dict(corpus, root / "runs", train=train, model={"dropout": 0.1, "embedding_dropout": 0.1})
    )
    recorder = EventRecorder()
    Pipeline(recipe, base_dir=root, sinks=[recorder, *sinks]).execute(until="eval")
    report = json.loads((root / "runs/tiny/eval/report.json").read_text())
    return recorder, report


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, corpus):
    """Same final metrics (float tolerance) whether or not training stopped at step 20 and resumed."""
    from llmtui.events import CheckpointSaved
    from llmtui.training.trainer import TrainingInterrupted

    _, straight = run_recipe(corpus, tmp_path / "a", steps=40, checkpoint_every=20)
    pressed = []

    def ctrl_c_once(event):
        if isinstance(event, CheckpointSaved) and not pressed:
            pressed.append(event.step)
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        run_recipe(corpus, tmp_path / "b", sinks=[ctrl_c_once], steps=40, checkpoint_every=20)
    assert pressed == [20]
    recorder, resumed = run_recipe(corpus, tmp_path / "b", steps=40, checkpoint_every=20)
    assert any("resuming from checkpoint step_0000020" in e.text for e in recorder.of_type(Message))
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5, abs=1e-5)


def test_early_stopping_stops_when_validation_stalls(tmp_path, corpus):
    # lr 1e-12: the validation loss changes at most in its last bits, which min_delta does not count.
    recorder, _ = run_recipe(
        corpus,
        tmp_path,
        steps=200,
        optimizer="sgd",
        lr=1e-12,
        warmup_steps=0,
        schedule="constant",
        eval_every=10,
        early_stopping_patience=2,
        early_stopping_min_delta=1e-3,
    )
    assert any("early stopping at step 30" in e.text for e in recorder.of_type(Message))
    assert max(e.step for e in recorder.of_type(Metrics)) == 30


def test_early_stopping_min_delta_counts_only_real_improvements(tmp_path, corpus):
    """A learning model improves by more than a tiny min_delta and is never stopped; a huge min_delta stops
    it at the first chance although its loss keeps falling."""
    learning = dict(steps=40, lr=3e-3, warmup_steps=0, eval_every=10, early_stopping_patience=2)
    recorder, _ = run_recipe(corpus, tmp_path / "a", early_stopping_min_delta=1e-4, **learning)
    assert not any("early stopping" in e.text for e in recorder.of_type(Message))
    recorder, _ = run_recipe(corpus, tmp_path / "b", early_stopping_min_delta=100.0, **learning)
    assert any("early stopping at step 30" in e.text for e in recorder.of_type(Message))


def test_training_logs_grad_norm_and_mfu(tmp_path, corpus):
    recorder, _ = run_recipe(corpus, tmp_path, steps=10, log_every=5)
    train = [e.values for e in recorder.of_type(Metrics) if e.split == "train"]
    assert all(
        v["grad_norm"] > 0 and 0 < v["mfu"] < 1 and v["tokens_per_sec"] > 0 and v["input_wait_ms"] >= 0 for v in train
    )


def test_mixed_float16_trains_with_loss_scaling(tmp_path, corpus):
    """The trainer under `mixed_float16`, where Keras wraps our optimizer in a LossScaleOptimizer: the
    gradient norm (our optimizer's) is still logged, and the run trains."""
    if keras.backend.backend() == "jax":
        pytest.skip("XLA on the CPU has no float16 matrix product under JAX (bench/bench_gpu.py checks it on a GPU)")
    try:
        recorder, report = run_recipe(corpus, tmp_path, steps=20, log_every=5, precision="mixed_float16")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    train = [e.values for e in recorder.of_type(Metrics) if e.split == "train"]
    assert len(train) == 4 and all(v["grad_norm"] > 0 and math.isfinite(v["loss"]) for v in train)
    assert report["loss"] < report["uniform_loss"]


def test_pipeline_refuses_a_model_too_big_for_memory(tmp_path, corpus):
    from llmtui.errors import LlmtuiError

    recipe = recipe_from_dict(
        tiny_recipe_dict(
            corpus, tmp_path / "runs", train={"max_memory_gb": 0.001}, model={"dim": 512, "layers": 4, "heads": 4}
        )
    )
    with pytest.raises(LlmtuiError, match="pre-flight check"):
        Pipeline(recipe, base_dir=tmp_path).execute(until="model")


def test_backends_agree_on_the_first_steps(tmp_path):
    """The same weights and batches give matching losses on TensorFlow and on JAX (within 1e-4)."""
    pytest.importorskip("jax")
    results = {}
    for arch in ("gpt", "llama", "lstm"):  # lstm: our recurrent layer's own time loop on both backends
        weights = tmp_path / f"{arch}.npz"
        for backend in ("tensorflow", "jax"):
            env = {**os.environ, "KERAS_BACKEND": backend}
            out = subprocess.run(
                [sys.executable, str(HERE / "parity_script.py"), arch, str(weights)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=HERE.parent,
            )
            assert out.returncode == 0, out.stderr[-2000:]
            results[arch, backend] = json.loads(out.stdout.strip().splitlines()[-1])
        np.testing.assert_allclose(results[arch, "tensorflow"], results[arch, "jax"], rtol=1e-4, atol=1e-4)
        assert results[arch, "jax"][-1] < results[arch, "jax"][0]


def test_train_step_equals_train_on_batch():
    """`TrainStep` (on JAX: the compiled step fed its own output state) trains exactly as `train_on_batch` does:
    dropout's random state, gradient accumulation, and a sync in the middle with the model used in between."""
    from llmtui.training.step import TrainStep

    batches = fixed_batches(6, batch=4)
    config = recipe_from_dict({"train": {"grad_accum_steps": 2, "lr": 1e-2, "warmup_steps": 0}}).train
    runs = []
    for stepper in ("keras", "ours"):
        keras.utils.set_random_seed(0)
        model = build_model(model_config("gpt", dropout=0.1, embedding_dropout=0.1), 40, seed=0)
        compile_model(model, config)
        step = TrainStep(model)
        losses = []
        for i, (x, y) in enumerate(batches):
            losses.append(
                float(model.train_on_batch(x, y, return_dict=True)["loss"] if stepper == "keras" else step(x, y))
            )
            if i == 2:
                losses.append(float(np.asarray(step.value(model.optimizer.grad_norm))))  # read without a sync
                step.sync()
                losses.append(float(np.asarray(model.optimizer.grad_norm)))
                losses.append(float(model.predict_on_batch(x).mean()))  # the model is usable between steps
        step.sync()
        runs.append((losses, [np.asarray(v) for v in model.variables]))
    (keras_losses, keras_weights), (our_losses, our_weights) = runs
    # Within float tolerance, not bit for bit: XLA on some CPUs (AVX-512/AMX) does not repeat its sums exactly.
    np.testing.assert_allclose(our_losses, keras_losses, rtol=1e-5, atol=1e-6)
    for a, b in zip(keras_weights, our_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# The engine's tests that exercise the training loop itself, run again on JAX, where `TrainStep` holds the
# state between steps: resume, the NaN guard, metrics, early stopping.
LOOP_TESTS = [
    "tests/test_training.py::test_train_step_equals_train_on_batch",
    "tests/test_training.py::test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one",
    "tests/test_training.py::test_training_logs_grad_norm_and_mfu",
    "tests/test_training.py::test_early_stopping_stops_when_validation_stalls",
    "tests/test_pipeline.py::test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint",
]


def test_the_training_loop_on_jax():
    pytest.importorskip("jax")
    if keras.backend.backend() == "jax":
        pytest.skip("this session already runs on JAX")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *LOOP_TESTS],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=HERE.parent,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert f"{len(LOOP_TESTS)} passed" in out.stdout


def test_model_summary_command(tmp_path):
    from typer.testing import CliRunner

    from llmtui.cli.app import app

    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[tokenizer]\nkind = "bpe"\nvocab_size = 1000\n[model]\narch = "llama"\nlayers = 2\ndim = 64\n'
        "heads = 4\nkv_heads = 2\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["model", "summary", str(recipe)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    params = count_model_parameters(
        recipe_from_dict({"model": {"arch": "llama", "layers": 2, "dim": 64, "heads": 4, "kv_heads": 2}}).model, 1000
    )[0]
    assert f"{params:,}" in result.output and "FLOPs per token" in result.output and "fits" in result.output
    big = CliRunner().invoke(
        app,
        ["model", "summary", str(recipe), "--set", "train.max_memory_gb=0.3", "--set", "model.dim=512"],
        env={"COLUMNS": "160"},
    )
    assert big.exit_code == 1 and "does not fit" in big.output and "grad_accum_steps=" in big.output


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_data_parallel_on_two_virtual_devices(backend, tmp_path, corpus):
    """`train.distribute = "data_parallel"` over 2 virtual CPU devices, in a fresh process per backend."""
    if backend == "jax":
        pytest.importorskip("jax")
    import tomli_w

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        tomli_w.dumps(tiny_recipe_dict(corpus, tmp_path / "runs", train={"distribute": "data_parallel", "steps": 30})),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "COLUMNS": "200",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    out = subprocess.run(
        [sys.executable, "-m", "llmtui", "run", str(recipe), "--until", "eval"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "data parallel over 2 devices" in out.stdout
    report = json.loads((tmp_path / "runs/tiny/eval/report.json").read_text())
    assert report["loss"] < report["uniform_loss"]


@pytest.mark.slow
def test_ctrl_c_and_kill_9_then_rerun_continues(tmp_path, corpus):
    """A real SIGINT saves and exits 130; a SIGKILL loses at most the steps since the last checkpoint."""
    import signal
    import time

    import tomli_w

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        tomli_w.dumps(
            tiny_recipe_dict(
                corpus,
                tmp_path / "runs",
                train={
                    "steps": 2000,
                    "checkpoint_every": 5,
                    "eval_every": 1000,
                    "log_every": 50,
                    "keep_checkpoints": 1000,
                },
            )
        ),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "llmtui", "run", str(recipe), "--until", "train"]
    env = {**os.environ, "COLUMNS": "200"}
    checkpoints = tmp_path / "runs/tiny/checkpoints"

    def start_and_wait_for_checkpoint(after: int):
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + 300
        while time.time() < deadline:
            steps = [int(p.name[5:]) for p in checkpoints.glob("step_*") if not p.name.endswith(".tmp")]
            if steps and max(steps) > after:
                return process, max(steps)
            if process.poll() is not None:
                break
            time.sleep(0.2)
        process.kill()
        raise AssertionError(process.communicate()[1][-3000:])

    process, _ = start_and_wait_for_checkpoint(0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    stopped_at = int(stderr.split("interrupted at step ")[1].split(";")[0])
    assert (checkpoints / f"step_{stopped_at:07d}" / "state.json").exists()

    process, seen = start_and_wait_for_checkpoint(stopped_at)
    process.kill()  # SIGKILL: no chance to save anything
    process.communicate(timeout=60)
    latest = max(int(p.name[5:]) for p in checkpoints.glob("step_*") if not p.name.endswith(".tmp"))
    assert latest >= seen > stopped_at

    final = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resuming from checkpoint step_{latest:07d} (step {latest})" in final.stdout
    assert (checkpoints / "step_0002000").exists()


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_mixed_bfloat16_trains(arch):
    """Under `train.precision = "mixed_bfloat16"` layers compute in bfloat16 (our recurrent loop included),
    variables and the loss stay float32, and the loss falls."""
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(model_config(arch), 40, seed=0)
        train = recipe_from_dict(
            {"train": {"lr": 1e-2, "warmup_steps": 0, "schedule": "constant", "precision": "mixed_bfloat16"}}
        ).train
        compile_model(model, train)
        assert model.get_layer(f"{'block' if arch == 'gpt' else 'lstm'}_0").compute_dtype == "bfloat16"
        assert all(v.dtype == "float32" for v in model.trainable_variables)
        losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for x, y in fixed_batches(30)]
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses


def test_bfloat16_through_onednn_reaches_float32s_validation_loss_at_equal_steps():
    """The bf16 path `precision = "auto"` picks on a bf16-capable CPU (TensorFlow graph, oneDNN kernels, no
    XLA) trains like float32: the same validation loss after the same steps, within bf16's rounding."""
    batches, held_out = fixed_batches(60, seed=1), fixed_batches(4, seed=2)

    def validation_loss(precision: str, jit_compile: bool) -> float:
        keras.mixed_precision.set_dtype_policy(precision)
        try:
            model = build_model(model_config("gpt"), 40, seed=0)
            train = recipe_from_dict(
                {
                    "train": {
                        "lr": 3e-3,
                        "warmup_steps": 5,
                        "steps": 60,
                        "precision": precision,
                        "jit_compile": jit_compile,
                    }
                }
            ).train
            compile_model(model, train)
            for x, y in batches:
                model.train_on_batch(x, y)
            return float(np.mean([model.test_on_batch(x, y) for x, y in held_out]))
        finally:
            keras.mixed_precision.set_dtype_policy("float32")

    full, half = validation_loss("float32", True), validation_loss("mixed_bfloat16", False)
    assert full < math.log(40) - 1.0  # it learned the pattern
    assert half == pytest.approx(full, abs=0.05, rel=0.03)


def test_precision_and_compiler_follow_device_backend_and_model_size():
    from llmtui.models.cost import cpu_flops_per_cycle
    from llmtui.training.precision import plan_execution

    def plan(
        precision="auto", dim=512, arch="gpt", backend="tensorflow", device="cpu", flags=("avx512_bf16",), jit=True
    ):
        train = recipe_from_dict({"train": {"precision": precision, "jit_compile": jit}}).train
        return plan_execution(train, model_config(arch, dim=dim, heads=8), backend, device, set(flags))

    assert recipe_from_dict({}).train.precision == "auto"
    big_bf16 = plan()
    assert (big_bf16.precision, big_bf16.jit_compile) == ("mixed_bfloat16", False)
    assert "oneDNN" in big_bf16.compiler and "XLA" in plan(dim=128).compiler
    assert (plan(dim=128).precision, plan(dim=128).jit_compile) == ("float32", True)  # overhead-bound: never bf16
    assert plan(flags=()).precision == "float32" and plan(backend="jax").precision == "float32"
    assert plan(arch="lstm", dim=512).precision == "float32"
    gpu = plan(device="NVIDIA H100 80GB HBM3", flags=())
    assert (gpu.precision, gpu.jit_compile) == ("mixed_bfloat16", True)
    assert plan(device="Tesla T4").precision == "float32"
    # An explicit bf16 on a bf16 CPU runs through oneDNN; on a CPU without bf16 XLA stays; jit_compile=false wins.
    assert plan("mixed_bfloat16", dim=128).jit_compile is False and plan("mixed_bfloat16", flags=()).jit_compile
    assert plan("float32").jit_compile and not plan("float32", jit=False).jit_compile
    assert cpu_flops_per_cycle({"avx2", "fma"}, False)[0] == 32
    assert cpu_flops_per_cycle({"avx2", "avx512f", "avx512_bf16"}, False)[0] == 64
    assert cpu_flops_per_cycle({"avx512f", "avx512_bf16"}, True)[0] == 128
    assert cpu_flops_per_cycle({"avx512f", "amx_bf16", "avx512_bf16"}, True)[0] == 1024


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_next_token_loss_and_its_gradient_equal_keras_sparse_cross_entropy(dtype):
    """The hand-written gradient (softmax minus one-hot) is the derivative of the loss Keras computes."""
    import tensorflow as tf
    from keras import ops

    from llmtui.training.trainer import next_token_nll

    rng = np.random.default_rng(3)
    logits = tf.constant(rng.normal(size=(3, 7, 29)) * 4, dtype=dtype)
    targets = rng.integers(0, 29, size=(3, 7)).astype("int32")
    weights = tf.constant(rng.normal(size=(3, 7)), dtype="float32")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ours = next_token_nll(targets, logits)
        ours_shaped = next_token_nll(targets[..., None], logits)  # (B, T, 1) targets
        keras_own = ops.sparse_categorical_crossentropy(targets, ops.cast(logits, "float32"), from_logits=True)
        weighted_ours, weighted_keras = tf.reduce_sum(ours * weights), tf.reduce_sum(keras_own * weights)
    np.testing.assert_allclose(ours.numpy(), keras_own.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.numpy(), ours_shaped.numpy())
    ours_grad, keras_grad = tape.gradient(weighted_ours, logits), tape.gradient(weighted_keras, logits)
    assert ours_grad.dtype == logits.dtype
    tolerance = 1e-6 if dtype == "float32" else 1e-2  # bfloat16 gradients round to 8 significant bits
    np.testing.assert_allclose(
        tf.cast(ours_grad, "float32").numpy(), tf.cast(keras_grad, "float32").numpy(), atol=tolerance
    )

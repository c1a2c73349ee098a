"""Training over several devices: model parallel (JAX) on 4 virtual CPU devices, each run in its own process
(the device count is fixed when JAX starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtui.config import recipe_from_dict
from tests.helpers import tiny_recipe_dict

FOUR_DEVICES = {
    "KERAS_BACKEND": "jax",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    "COLUMNS": "200",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}

# Builds each model under model_parallel on a mesh and reads what device 0 holds of its weights and optimizer
# state (the shards' own sizes), beside the summary's arithmetic for the same mesh.
SHARDS = r"""
import json, sys
import keras
from llmtui.config import recipe_from_dict
from llmtui.models import build_model
from llmtui.models.cost import per_device, weight_shapes
from llmtui.training.distribute import model_parallel

out = []
for arch, mesh in json.loads(sys.argv[1]):
    recipe = recipe_from_dict(json.loads(sys.argv[2]) | {"model": json.loads(sys.argv[3]) | {"arch": arch},
                                                          "train": {"distribute": "model_parallel", "mesh": mesh}})
    vocab = 61
    with model_parallel("jax", recipe.train.batch_size, mesh, weight_shapes(recipe.model, vocab)):
        model = build_model(recipe.model, vocab)
        optimizer = keras.optimizers.AdamW()
        optimizer.build(model.trainable_variables)
    device = keras.distribution.list_devices()[0]
    def on_device(variables):
        return sum(s.data.nbytes for v in variables for s in v.value.addressable_shards if str(s.device) == device
                   or s.device.id == 0)
    slots = [v for v in optimizer.variables if len(v.shape) > 0]  # momentum and velocity (not the step counter)
    share = per_device(recipe.model, recipe.train, vocab, *mesh)
    out.append({"arch": arch, "mesh": mesh, "weights_device0": on_device(model.weights),
                "slots_device0": on_device(slots), "weights_total": sum(v.value.nbytes for v in model.weights),
                "summary_weights": share.weights_bytes, "shapes": {v.path: list(v.shape) for v in model.weights},
                "arithmetic_shapes": {k: list(v) for k, v in weight_shapes(recipe.model, vocab).items()}})
print("RESULT " + json.dumps(out))
"""


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **FOUR_DEVICES},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_model_parallel_splits_weights_and_optimizer_state(tmp_path):
    """Device 0 holds about 1/N of the weights and of Adam's slots on an N-way model axis, exactly what
    `llmtui model summary --mesh` reports; the layout arithmetic matches the built models' weights."""
    pytest.importorskip("jax")
    base = tiny_recipe_dict(tmp_path / "corpus", tmp_path / "runs")
    model = {"layers": 2, "dim": 64, "heads": 4, "context": 16}
    cases = [["gpt", [1, 4]], ["llama", [1, 4]], ["gpt", [2, 2]]]
    result = _run(
        ["-c", SHARDS, json.dumps(cases), json.dumps({k: base[k] for k in ("run", "data")}), json.dumps(model)],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.split("RESULT ", 1)[1])
    for row in rows:
        shards = row["mesh"][1]
        assert row["shapes"] == row["arithmetic_shapes"], row["arch"]
        assert row["weights_device0"] == row["summary_weights"]
        # Only norms and two biases per block stay whole: the share is 1/N plus under 3%.
        assert row["weights_total"] / shards <= row["weights_device0"] < row["weights_total"] / shards * 1.03
        assert row["slots_device0"] == 2 * row["weights_device0"]  # momentum and velocity follow their weights


def _losses(run: Path) -> dict[int, float]:
    from llmtui.evaluation.tensorboard_logs import read_log_folder

    return dict(read_log_folder(run / "logs" / "train").scalars["loss"])


@pytest.mark.parametrize("arch", ["gpt", pytest.param("llama", marks=pytest.mark.slow)])  # same layouts: one by default
def test_model_parallel_training_matches_one_device(tmp_path, arch):
    """`llmtui run` with train.distribute = "model_parallel" on a 2 x 2 (data x model) mesh trains to the same
    losses as the same recipe on one device (float32; differences come from the order of sums only)."""
    pytest.importorskip("jax")
    import tomli_w

    from tests.helpers import write_corpus

    corpus = write_corpus(tmp_path / "corpus")
    train = {"steps": 8, "log_every": 1, "eval_every": 8, "checkpoint_every": 8, "warmup_steps": 2, "lr": 3e-3}
    model = {"arch": arch, "dim": 32, "heads": 4, "layers": 1}
    losses = {}
    for name, extra in (("single", {}), ("sharded", {"distribute": "model_parallel", "mesh": [2, 2]})):
        data = tiny_recipe_dict(corpus, tmp_path / "runs", run={"name": name}, model=model, train={**train, **extra})
        (tmp_path / f"{name}.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
        result = _run(["-m", "llmtui", "run", f"{name}.toml", "--until", "eval"], tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        if extra:
            assert "model parallel on a 2 x 2 mesh (data x model)" in result.stdout
        losses[name] = _losses(tmp_path / "runs" / name)
    assert sorted(losses["sharded"]) == list(range(1, 9))
    for step, loss in losses["single"].items():
        assert losses["sharded"][step] == pytest.approx(loss, rel=2e-4, abs=2e-4), step
    reports = [json.loads((tmp_path / "runs" / n / "eval" / "report.json").read_text()) for n in ("single", "sharded")]
    assert reports[1]["loss"] == pytest.approx(reports[0]["loss"], rel=1e-3)


def test_model_parallel_input_errors(tmp_path):
    from llmtui.errors import RecipeError

    base = tiny_recipe_dict(tmp_path / "corpus", tmp_path / "runs")
    with pytest.raises(RecipeError, match="splits gpt and llama models"):
        recipe_from_dict(
            base
            | {"model": base["model"] | {"arch": "lstm"}, "train": base["train"] | {"distribute": "model_parallel"}}
        )
    with pytest.raises(RecipeError, match="two device counts"):
        recipe_from_dict(base | {"train": base["train"] | {"distribute": "model_parallel", "mesh": [4]}})
    with pytest.raises(RecipeError, match="applies to train.distribute = 'model_parallel'"):
        recipe_from_dict(base | {"train": base["train"] | {"mesh": [2, 2]}})


def test_model_summary_shows_memory_per_device(tmp_path):
    """`llmtui model summary --mesh 2x4`: per-device rows from the layout's arithmetic (which the shard test holds to
    the real shards); a mesh the model cannot split is one error, not a traceback."""
    import tomli_w

    from llmtui.models.cost import per_device

    data = tiny_recipe_dict(Path("corpus"), Path("runs"), model={"dim": 64, "heads": 4, "layers": 2})
    (tmp_path / "r.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "model", "summary", "r.toml", "--mesh", "2x4"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    share = per_device(recipe_from_dict(data).model, recipe_from_dict(data).train, 256, 2, 4)
    row = next(line for line in result.stdout.splitlines() if "per device: parameters" in line)
    assert f"{share.parameters:,}" in row and "mesh 2 x 4 (data x model), 8 devices" in row
    assert share.parameters < 117_504 / 4 * 1.03  # 117,504 parameters in all, split 4 ways but for the norms
    bad = subprocess.run(
        [sys.executable, "-m", "llmtui", "model", "summary", "r.toml", "--mesh", "1x3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "cannot split token_embedding/embeddings (256, 64) along its axis 1" in bad.stderr


# Several processes (JAX's multi-controller runtime on 127.0.0.1) -------------------------------------------
MULTI_TRAIN = {
    "distribute": "data_parallel",
    "log_every": 1,
    "eval_every": 100,
    "checkpoint_every": 5,
    "warmup_steps": 2,
    "lr": 3e-3,
    "batch_size": 8,
}


def _multi_recipe(tmp_path: Path, name: str, steps: int, backend: str = "jax") -> Path:
    import tomli_w

    from tests.helpers import write_corpus

    corpus = tmp_path / "corpus"
    if not corpus.exists():
        write_corpus(corpus)
    data = tiny_recipe_dict(
        Path("corpus"),
        Path("runs"),
        run={"name": name, "backend": backend},
        train={**MULTI_TRAIN, "steps": steps, "eval_every": steps},
    )
    (tmp_path / f"{name}.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    return tmp_path / f"{name}.toml"


def _launch(tmp_path: Path, recipe: Path, *extra: str, wait: bool = True, backend: str = "jax"):
    env = {**os.environ, "COLUMNS": "200", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    command = [sys.executable, "-m", "llmtui", "launch", "--processes", "2", recipe.name, *extra]
    if not wait:
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


def test_two_processes_match_one_process_with_two_devices(tmp_path):
    """`llmtui launch --processes 2` (1 CPU device each, JAX over 127.0.0.1) trains to the same losses as one
    process with 2 virtual devices on the same global batch; only process 0 writes the run folder."""
    pytest.importorskip("jax")
    one = _multi_recipe(tmp_path, "one", steps=8)
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "run", one.name, "--until", "train"],
        cwd=tmp_path,
        env={**os.environ, **FOUR_DEVICES, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    two = _multi_recipe(tmp_path, "two", steps=8)
    launched = _launch(tmp_path, two)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "process 0 of 2 (coordinator 127.0.0.1:" in launched.stdout
    assert "data parallel over 2 devices" in launched.stdout
    reference, losses = _losses(tmp_path / "runs" / "one"), _losses(tmp_path / "runs" / "two")
    assert sorted(losses) == list(range(1, 9))
    for step, loss in reference.items():  # float32 sums in another order: equal within 1e-4
        assert losses[step] == pytest.approx(loss, rel=1e-4, abs=1e-4), step
    run = tmp_path / "runs" / "two"
    assert len(list((run / "logs" / "train").iterdir())) == 1  # one writer of the logs
    assert (run / "eval" / "report.json").exists() and (run / "generate" / "samples.json").exists()
    follower = (run / "processes" / "process-1.log").read_text()
    assert "process 1 of 2" in follower and "waiting for process 0's model stage" in follower


def test_tensorflow_two_workers_match_one_process_with_two_devices(tmp_path):
    """`llmtui launch --processes 2` on TensorFlow (MultiWorkerMirroredStrategy, a loopback TF_CONFIG, 1 CPU
    device each) trains to the same losses as one process with 2 virtual devices (MirroredStrategy) on the same
    global batch; only process 0 writes the run folder."""
    pytest.importorskip("tensorflow")
    one = _multi_recipe(tmp_path, "one", steps=6, backend="tensorflow")
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "run", one.name, "--until", "train"],
        cwd=tmp_path,
        env={
            **os.environ,
            **FOUR_DEVICES,
            "KERAS_BACKEND": "tensorflow",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "data parallel over 2 devices" in result.stdout
    two = _multi_recipe(tmp_path, "two", steps=6, backend="tensorflow")
    launched = _launch(tmp_path, two, backend="tensorflow")
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "process 0 of 2 (coordinator 127.0.0.1:" in launched.stdout
    assert "data parallel over 2 devices" in launched.stdout
    reference, losses = _losses(tmp_path / "runs" / "one"), _losses(tmp_path / "runs" / "two")
    assert sorted(losses) == list(range(1, 7))
    for step, loss in reference.items():  # float32 sums in another order
        assert losses[step] == pytest.approx(loss, rel=1e-4, abs=1e-4), step
    run = tmp_path / "runs" / "two"
    assert len(list((run / "logs" / "train").iterdir())) == 1  # one writer of the logs
    assert (run / "eval" / "report.json").exists() and (run / "generate" / "samples.json").exists()
    follower = (run / "processes" / "process-1.log").read_text()
    assert "process 1 of 2" in follower and "waiting for process 0's model stage" in follower


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_killing_one_process_stops_the_job_and_it_resumes(tmp_path, backend):
    """kill -9 of process 1: the launch ends with one clear error naming it and the checkpoint to resume from;
    the same command then resumes both processes from that checkpoint and finishes."""
    import signal
    import time

    pytest.importorskip(backend)
    recipe = _multi_recipe(tmp_path, "job", steps=200, backend=backend)
    launcher = _launch(tmp_path, recipe, wait=False, backend=backend)
    checkpoints = tmp_path / "runs" / "job" / "checkpoints"
    deadline = time.time() + 600
    while not any(
        p.name.startswith("step_") and not p.name.endswith(".tmp")
        for p in (checkpoints.iterdir() if checkpoints.exists() else [])
    ):
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()
        time.sleep(0.5)
    follower = next(pid for pid in _children(launcher.pid) if _process_index(_environ(pid)) == 1)
    os.kill(follower, signal.SIGKILL)
    out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 1, out[-2000:] + err[-2000:]
    assert "error: process 1 of 2 was killed by SIGKILL" in err and "Traceback" not in err
    assert "run the same command again to resume from" in err and "checkpoints/step_" in err
    assert not _children(launcher.pid)
    saved = max(int(p.name[5:]) for p in checkpoints.glob("step_*") if not p.name.endswith(".tmp"))

    again = _launch(tmp_path, recipe, backend=backend)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming from checkpoint step_{saved:07d} (step {saved})" in again.stdout
    assert (tmp_path / "runs" / "job" / "eval" / "report.json").exists()
    follower_log = (tmp_path / "runs" / "job" / "processes" / "process-1.log").read_text()
    assert f"resuming from checkpoint step_{saved:07d}" in follower_log


def _process_index(environ: dict) -> int | None:
    if "JAX_PROCESS_ID" in environ:
        return int(environ["JAX_PROCESS_ID"])
    if "TF_CONFIG" in environ:
        return json.loads(environ["TF_CONFIG"])["task"]["index"]
    return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry.name))
    return found


def _environ(pid: int) -> dict:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_multi_process_setup_errors_are_one_message(tmp_path):
    """Incomplete JAX variables, a one-device recipe in a multi-process job, a TF_CONFIG job on another backend,
    a TF_CONFIG that is not one, or launch on torch: one error each, before any stage runs."""
    recipe = _multi_recipe(tmp_path, "bad", steps=4)

    def run(args: list[str], **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "llmtui", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "200", **env},
        )

    missing = run(["run", recipe.name], JAX_COORDINATOR_ADDRESS="127.0.0.1:1")
    assert missing.returncode == 1 and "JAX_NUM_PROCESSES or JAX_PROCESS_ID is missing" in missing.stderr
    one_device = run(
        ["run", recipe.name, "--set", "train.distribute=none"],
        JAX_COORDINATOR_ADDRESS="127.0.0.1:1",
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID="1",
    )
    assert one_device.returncode == 1 and "train.distribute = 'none' trains on one device" in one_device.stderr
    two_workers = json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    )
    wrong_backend = run(["run", recipe.name], TF_CONFIG=two_workers, KERAS_BACKEND="jax")
    assert wrong_backend.returncode == 1
    assert "TF_CONFIG describes a 2-process TensorFlow job, but the backend is jax" in wrong_backend.stderr
    not_json = run(["run", recipe.name], TF_CONFIG="workers=2")
    assert not_json.returncode == 1 and "TF_CONFIG is not a JSON object" in not_json.stderr
    torch = run(["launch", "--processes", "2", recipe.name], KERAS_BACKEND="torch")
    assert torch.returncode == 2 and "the backend is torch" in torch.stderr
    for result in (missing, one_device, wrong_backend, not_json, torch):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "bad" / "data").exists()
